"""The GPT model: embeddings -> N transformer blocks -> final norm -> linear head to vocabulary logits (Chapter 4).

A whole GPT in one file, in the spirit of nanoGPT. Every piece is an option of one ``GPTConfig``, so GPT-2 and a
LLaMA-style model are the same code with different settings:

=============  ======================  =====================================
setting        GPT-2                   LLaMA style
=============  ======================  =====================================
``norm``       ``"layernorm"``         ``"rmsnorm"``
``mlp``        ``"gelu"``              ``"swiglu"``
``position``   ``"learned"`` (added)   ``"rope"`` (rotates q and k)
``n_kv_heads`` ``None`` (= n_heads)    fewer (grouped-query attention)
``bias``       ``True``                ``False``
=============  ======================  =====================================

Shapes: ``B`` batch, ``T`` positions, ``d`` = ``d_model``, ``V`` vocabulary size.
"""

import math
from dataclasses import dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from gptcourse.attention import MultiHeadAttention
from gptcourse.embeddings import TokenAndPositionEmbedding


@dataclass
class GPTConfig:
    """Every number and choice that defines a GPT. The defaults are GPT-2 small (124M parameters).

    ``d_ff`` is the hidden width of the feed-forward network; ``None`` picks the usual value (see ``ffn_dim``).
    The presets in ``GPT2_SIZES`` are shared: copy one with ``dataclasses.replace`` (or ``gpt2_config``) before
    changing it.
    """

    vocab_size: int = 50257
    context_length: int = 1024
    d_model: int = 768
    n_layers: int = 12
    n_heads: int = 12
    n_kv_heads: int | None = None  # None: every query head has its own keys and values
    d_ff: int | None = None
    dropout: float = 0.0
    bias: bool = True  # biases in the linear layers and LayerNorms (GPT-2 has them, LLaMA does not)
    norm: str = "layernorm"  # "layernorm" | "rmsnorm"
    mlp: str = "gelu"  # "gelu" | "swiglu"
    position: str = "learned"  # "learned" | "rope"
    tie_weights: bool = True  # the output head reuses the token embedding matrix
    use_sdpa: bool = False  # PyTorch's fused attention kernel instead of the from-scratch one (same result)
    use_fused_ops: bool = False  # PyTorch's one-kernel LayerNorm/RMSNorm/GELU instead of the formulas (same result)
    norm_eps: float = 1e-5
    rope_base: float = 10_000.0

    def __post_init__(self):
        choices = {"norm": ("layernorm", "rmsnorm"), "mlp": ("gelu", "swiglu"), "position": ("learned", "rope")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        kv = self.kv_heads
        if self.d_model % self.n_heads or self.n_heads % kv:
            raise ValueError(f"d_model ({self.d_model}) must divide into n_heads ({self.n_heads}) heads, and "
                             f"n_heads into n_kv_heads ({kv}) groups")

    @property
    def kv_heads(self) -> int:
        return self.n_heads if self.n_kv_heads is None else self.n_kv_heads

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    @property
    def ffn_dim(self) -> int:
        """The feed-forward hidden width: ``d_ff`` if set, else 4 * d_model (GELU) or about 8/3 * d_model (SwiGLU).

        SwiGLU has three matrices instead of two; 8/3 instead of 4 keeps its parameter count that of the GELU
        network (3 * 8/3 = 2 * 4). Rounded up to a multiple of 8, which matrix-multiply kernels like.
        """
        if self.d_ff is not None:
            return self.d_ff
        if self.mlp == "gelu":
            return 4 * self.d_model
        return 8 * math.ceil(8 * self.d_model / 3 / 8)


# GPT-2's four published sizes (Radford et al. 2019). They differ only in width, depth and number of heads:
# d_head = 64 in all of them, and the feed-forward network is always 4 * d_model wide.
GPT2_SIZES = {
    "gpt2": GPTConfig(d_model=768, n_layers=12, n_heads=12),  # "124M"
    "gpt2-medium": GPTConfig(d_model=1024, n_layers=24, n_heads=16),  # "355M"
    "gpt2-large": GPTConfig(d_model=1280, n_layers=36, n_heads=20),  # "774M"
    "gpt2-xl": GPTConfig(d_model=1600, n_layers=48, n_heads=25),  # "1558M"
}


def gpt2_config(name: str = "gpt2", **overrides) -> GPTConfig:
    """A fresh copy of a GPT-2 preset, with any field changed: ``gpt2_config("gpt2", n_layers=2)``."""
    return replace(GPT2_SIZES[name], **overrides)


def llama_style(**overrides) -> GPTConfig:
    """A LLaMA-style configuration: RMSNorm, SwiGLU, RoPE, no biases, an untied head, RMSNorm eps 1e-6.

    Pass the sizes as keywords, e.g. ``llama_style(vocab_size=2048, d_model=256, n_layers=4, n_heads=8,
    n_kv_heads=2)``; anything not given keeps ``GPTConfig``'s default.
    """
    settings = dict(norm="rmsnorm", mlp="swiglu", position="rope", bias=False, tie_weights=False, norm_eps=1e-6)
    return GPTConfig(**(settings | overrides))


# ----------------------------------------------------------------------------------------------------------------
# Normalisation


class LayerNorm(nn.Module):
    """Layer normalisation (Ba et al. 2016), from scratch: each position's vector gets mean 0 and variance 1, then a
    learned scale and shift.

    ``y = (x - mean) / sqrt(var + eps) * weight + bias``, with mean and variance over the last axis (the ``d``
    features of one position, never across positions or the batch). The variance is the *biased* one (divide by
    ``d``, not ``d - 1``), as in ``torch.nn.LayerNorm``. ``eps`` keeps the division finite for a constant vector.
    ``fused=True`` calls ``F.layer_norm`` instead: one kernel, and far less memory kept for the backward pass.
    """

    def __init__(self, d: int, eps: float = 1e-5, bias: bool = True, fused: bool = False):
        super().__init__()
        self.eps, self.fused = eps, fused
        self.weight = nn.Parameter(torch.ones(d))  # starts as the identity: scale 1, shift 0
        self.bias = nn.Parameter(torch.zeros(d)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused:
            return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)
        mean = x.mean(dim=-1, keepdim=True)
        var = x.var(dim=-1, keepdim=True, unbiased=False)
        x_hat = (x - mean) / torch.sqrt(var + self.eps)
        return x_hat * self.weight + self.bias if self.bias is not None else x_hat * self.weight

    def extra_repr(self) -> str:
        return f"{self.weight.numel()}, eps={self.eps}, bias={self.bias is not None}" + (", fused" if self.fused else "")


class RMSNorm(nn.Module):
    """Root-mean-square normalisation (Zhang and Sennrich 2019), used by LLaMA: LayerNorm without the mean.

    ``y = x / sqrt(mean(x**2) + eps) * weight``. No centring and no bias: cheaper, and works as well in practice.
    ``fused=True`` calls ``F.rms_norm`` instead.
    """

    def __init__(self, d: int, eps: float = 1e-6, fused: bool = False):
        super().__init__()
        self.eps, self.fused = eps, fused
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused:
            return F.rms_norm(x, self.weight.shape, self.weight, self.eps)
        return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps) * self.weight

    def extra_repr(self) -> str:
        return f"{self.weight.numel()}, eps={self.eps}" + (", fused" if self.fused else "")


def make_norm(config: GPTConfig) -> nn.Module:
    """The normalisation layer the configuration asks for."""
    if config.norm == "rmsnorm":
        return RMSNorm(config.d_model, config.norm_eps, fused=config.use_fused_ops)
    return LayerNorm(config.d_model, config.norm_eps, bias=config.bias, fused=config.use_fused_ops)


# ----------------------------------------------------------------------------------------------------------------
# The feed-forward network


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """GELU, the tanh approximation GPT-2 was trained with: ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``.

    The exact GELU is ``x * Phi(x)`` (Phi: the standard normal CDF): a smooth ReLU that lets small negative values
    through and has a gradient everywhere.
    """
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


class GELU(nn.Module):
    """``gelu_tanh`` as a module, so that it shows up in ``print(model)``; ``fused=True`` calls PyTorch's
    ``F.gelu(x, approximate="tanh")``, one kernel instead of seven."""

    def __init__(self, fused: bool = False):
        super().__init__()
        self.fused = fused

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x, approximate="tanh") if self.fused else gelu_tanh(x)

    def extra_repr(self) -> str:
        return "fused=True" if self.fused else ""


class FeedForward(nn.Module):
    """The position-wise feed-forward network: the same small MLP applied to every position on its own.

    - ``mlp="gelu"`` (GPT-2): ``fc_out(gelu(fc_in(x)))``, widening ``d_model`` to ``ffn_dim`` and back.
    - ``mlp="swiglu"`` (LLaMA, Shazeer 2020): ``down(silu(gate(x)) * up(x))``: one projection, passed through SiLU,
      decides how much of the other one goes through (a learned "gate").
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        d, hidden = config.d_model, config.ffn_dim
        self.swiglu = config.mlp == "swiglu"
        if self.swiglu:
            self.gate = nn.Linear(d, hidden, bias=config.bias)
            self.up = nn.Linear(d, hidden, bias=config.bias)
            self.down = nn.Linear(hidden, d, bias=config.bias)
        else:
            self.fc_in = nn.Linear(d, hidden, bias=config.bias)
            self.act = GELU(fused=config.use_fused_ops)
            self.fc_out = nn.Linear(hidden, d, bias=config.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.swiglu:
            return self.down(F.silu(self.gate(x)) * self.up(x))
        return self.fc_out(self.act(self.fc_in(x)))


# ----------------------------------------------------------------------------------------------------------------
# The transformer block and the whole model


class Block(nn.Module):
    """One transformer block, pre-norm as in GPT-2: ``x + attn(norm1(x))``, then ``x + ffn(norm2(x))``.

    Attention is where positions exchange information; the feed-forward network then works on each position alone.
    Each sub-layer *adds* its result to ``x`` (the residual stream) instead of replacing it, so the gradient has a
    direct path through every block; the norm sits in front of each sub-layer, never on the stream itself.
    ``causal=False`` makes an encoder block (BERT-style, every position sees every other); ``mask`` (boolean, True =
    may attend, see ``gptcourse.attention``) is passed on to attention, e.g. a padding mask; so is ``cache``, this
    layer's part of a ``gptcourse.kv_cache.KVCache``.
    """

    def __init__(self, config: GPTConfig, causal: bool = True):
        super().__init__()
        self.norm1 = make_norm(config)
        self.attn = MultiHeadAttention(config.d_model, config.n_heads, n_kv_heads=config.n_kv_heads,
                                       dropout=config.dropout, bias=config.bias, causal=causal,
                                       use_sdpa=config.use_sdpa, rope=config.position == "rope",
                                       rope_base=config.rope_base)
        self.norm2 = make_norm(config)
        self.ffn = FeedForward(config)
        self.dropout = nn.Dropout(config.dropout)  # on each sub-layer's output, before it joins the stream

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, cache=None) -> torch.Tensor:
        x = x + self.dropout(self.attn(self.norm1(x), mask=mask, cache=cache))
        x = x + self.dropout(self.ffn(self.norm2(x)))
        return x


class TokenEmbedding(nn.Module):
    """Token embedding and dropout, no position vectors: the input layer of a RoPE model (positions are rotations
    inside attention). Same attribute names as ``TokenAndPositionEmbedding``."""

    def __init__(self, vocab_size: int, d_model: int, context_length: int, dropout: float = 0.0):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, d_model)
        self.dropout = nn.Dropout(dropout)
        self.context_length = context_length

    def forward(self, ids: torch.Tensor, start: int = 0) -> torch.Tensor:
        if start + ids.shape[-1] > self.context_length:
            raise ValueError(f"The sequence has {start + ids.shape[-1]} tokens but the model was built for at most "
                             f"{self.context_length}; cut it to the last {self.context_length} tokens.")
        return self.dropout(self.token_embedding(ids))


class GPT(nn.Module):
    """A decoder-only transformer language model: ids ``(B, T)`` -> logits ``(B, T, V)``.

    ``logits[b, t]`` holds one score per vocabulary entry for the token that comes *after* position ``t``; the
    softmax turns them into probabilities. ``forward(ids, targets)`` also returns the mean cross-entropy loss
    against ``targets`` ``(B, T)`` (the next tokens), as ``(logits, loss)``.

    ``forward(ids, cache=cache)`` (Chapter 6) continues a sequence whose earlier positions are in ``cache`` (a
    ``gptcourse.kv_cache.KVCache``): ``ids`` are the next positions only, and their keys and values are appended.
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        embedding = TokenAndPositionEmbedding if config.position == "learned" else TokenEmbedding
        self.embed = embedding(config.vocab_size, config.d_model, config.context_length, config.dropout)
        self.blocks = nn.ModuleList([Block(config) for _ in range(config.n_layers)])
        self.final_norm = make_norm(config)  # pre-norm blocks leave the stream un-normalised: one last norm
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_weights:
            # One matrix, two jobs: row i of the embedding is token i's input vector and its output direction.
            self.lm_head.weight = self.embed.token_embedding.weight
        self.apply(self._init_weights)
        self._init_residual_projections()

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        """GPT-2's initialisation: normal(0, 0.02) for every matrix and embedding, zero biases."""
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def _init_residual_projections(self) -> None:
        """Scale the layers that write into the residual stream by 1/sqrt(2 * n_layers), as GPT-2 does: the stream
        is a sum of 2 * n_layers contributions, and its variance should not grow with depth."""
        std = 0.02 / math.sqrt(2 * self.config.n_layers)
        for block in self.blocks:
            out = block.ffn.down if block.ffn.swiglu else block.ffn.fc_out
            for linear in (block.attn.out_proj, out):
                nn.init.normal_(linear.weight, mean=0.0, std=std)

    def hidden_states(self, ids: torch.Tensor, mask: torch.Tensor | None = None, cache=None) -> torch.Tensor:
        """The final, normalised vector of every position, ``(B, T, d)``: what the head turns into logits (and what
        a classification head would use instead, Chapter 7)."""
        x = self.embed(ids, start=0 if cache is None else cache.length)
        for i, block in enumerate(self.blocks):
            x = block(x, mask=mask, cache=None if cache is None else cache.layers[i])
        return self.final_norm(x)

    def forward(self, ids: torch.Tensor, targets: torch.Tensor | None = None, cache=None):
        logits = self.lm_head(self.hidden_states(ids, cache=cache))
        if targets is None:
            return logits
        # Cross-entropy over all B * T positions at once: flatten the batch and time axes.
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        return logits, loss


# ----------------------------------------------------------------------------------------------------------------
# Generation and counting


@torch.no_grad()
def generate_greedy(model: GPT, ids: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """Append ``max_new_tokens`` tokens to ``ids`` ``(B, T)`` (or ``(T,)``), each the most likely next token.

    Each step runs the model on (at most) the last ``context_length`` tokens and keeps only the logits of the last
    position: they are the prediction for the token that comes next. Greedy = always the argmax, no randomness.
    """
    single = ids.dim() == 1
    if single:
        ids = ids[None]
    context_length = model.config.context_length
    for _ in range(max_new_tokens):
        logits = model(ids[:, -context_length:])  # (B, T, V)
        next_id = logits[:, -1].argmax(dim=-1, keepdim=True)  # (B, 1)
        ids = torch.cat([ids, next_id], dim=1)
    return ids[0] if single else ids


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """How many numbers the model learns. A tied matrix counts once (``parameters()`` yields it once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


PARTS = ("embeddings", "attention", "feed-forward", "norms", "head")


def _part_of(name: str) -> str:
    if name.startswith("embed."):
        return "embeddings"
    if ".attn." in name:
        return "attention"
    if ".ffn." in name:
        return "feed-forward"
    if name.startswith("lm_head."):
        return "head"
    return "norms"


def parameter_breakdown(model: GPT) -> dict[str, int]:
    """Parameters per part of the model: ``{"embeddings", "attention", "feed-forward", "norms", "head"}``.

    With tied weights the head has no matrix of its own, so it counts 0 (``named_parameters`` lists a shared
    tensor once, under the name it was registered with first: the embedding).
    """
    counts = dict.fromkeys(PARTS, 0)
    for name, p in model.named_parameters():
        counts[_part_of(name)] += p.numel()
    return counts


def gpt_parameter_count(config: GPTConfig, breakdown: bool = False) -> int | dict[str, int]:
    """The number of parameters of ``GPT(config)``, by formula, without building the model.

    With ``breakdown=True``, a dict with the same parts as ``parameter_breakdown``.
    """
    d, V, L, hidden = config.d_model, config.vocab_size, config.n_layers, config.ffn_dim
    b = 1 if config.bias else 0  # one bias per output feature, or none
    d_qkv = d + 2 * config.kv_heads * config.d_head  # queries, then keys and values (fewer with GQA)
    attention = (d * d_qkv + b * d_qkv) + (d * d + b * d)  # fused qkv, output projection
    if config.mlp == "swiglu":
        ffn = 2 * (d * hidden + b * hidden) + (hidden * d + b * d)  # gate, up, down
    else:
        ffn = (d * hidden + b * hidden) + (hidden * d + b * d)  # in, out
    norm = d if config.norm == "rmsnorm" else d + b * d  # a scale (and a shift)
    counts = {
        "embeddings": V * d + (config.context_length * d if config.position == "learned" else 0),
        "attention": L * attention,
        "feed-forward": L * ffn,
        "norms": (2 * L + 1) * norm,  # two per block, one final
        "head": 0 if config.tie_weights else V * d,
    }
    return counts if breakdown else sum(counts.values())


def parameter_memory_bytes(config: GPTConfig, dtype: torch.dtype = torch.float32) -> int:
    """Bytes needed to hold the parameters alone (no gradients, optimizer state or activations) in ``dtype``."""
    return gpt_parameter_count(config) * torch.tensor([], dtype=dtype).element_size()
