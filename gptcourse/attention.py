"""Attention: every position of a sequence looks at the others and takes what it needs from them (Chapter 3).

Shapes: ``B`` batch, ``T`` query positions, ``S`` key/value positions (``S == T`` in self-attention), ``H`` heads,
``d_head`` numbers per head, ``d_model = H * d_head``.

**Mask convention.** A mask is a boolean tensor that broadcasts to ``(..., T, S)``: ``True`` means "this query may
attend to this key", ``False`` means "blocked". That is the convention of PyTorch's
``torch.nn.functional.scaled_dot_product_attention`` (boolean ``attn_mask``), and the *opposite* of
``torch.nn.MultiheadAttention``, whose boolean ``attn_mask`` and ``key_padding_mask`` mark with ``True`` what is NOT
allowed. Combine masks with ``&``: ``causal_mask(T) & padding_mask(lengths, T)``.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def causal_mask(T: int, device: torch.device | str | None = None, S: int | None = None) -> torch.Tensor:
    """``(T, T)`` boolean mask, True on and below the diagonal: position ``i`` may attend to positions ``0..i``.

    With ``S > T`` keys (the first ``S - T`` of them cached, Chapter 6) the ``T`` queries are the last ``T``
    positions: ``(T, S)``, query ``i`` may attend to keys ``0..S - T + i``.
    """
    S = T if S is None else S
    return torch.ones(T, S, dtype=torch.bool, device=device).tril(S - T)


def padding_mask(lengths, T: int, device: torch.device | str | None = None) -> torch.Tensor:
    """``(B, 1, 1, T)`` boolean mask, True at the real tokens of each sequence (its first ``lengths[b]`` positions).

    The padding at the end of a shorter sequence is blocked as a *key*, for every head and every query; the two
    singleton dimensions let it broadcast against ``(B, H, T, T)`` scores and combine with ``causal_mask(T)``.
    """
    lengths = torch.as_tensor(lengths, device=device)
    keep = torch.arange(T, device=device) < lengths[:, None]  # (B, T)
    return keep[:, None, None, :]


def attention_weights(q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``softmax(q @ k^T / sqrt(d_head))`` over the keys, ``(..., T, S)``; each row sums to 1 (or is all 0).

    A row whose keys are all blocked (a query with nothing it may see, e.g. left padding) gets weights 0, so its
    output is 0, as in PyTorch's ``scaled_dot_product_attention``.
    """
    # Dividing by sqrt(d_head) keeps the scores' spread near 1 whatever the head size; without it the softmax
    # saturates to almost one-hot weights, whose gradients vanish.
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    if mask is None:
        return torch.softmax(scores, dim=-1)
    # The most negative finite number, not -inf: a fully blocked row then gives uniform weights instead of 0/0 = NaN
    # (NaN would also poison the gradients); the second masked_fill sets that row to 0.
    scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return torch.softmax(scores, dim=-1).masked_fill(~mask, 0.0)


def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
                                 dropout_p: float = 0.0, training: bool = True) -> torch.Tensor:
    """Attention from scratch: ``dropout(softmax(q k^T / sqrt(d_head) + mask)) @ v``.

    ``q`` is ``(..., T, d_head)``, ``k`` and ``v`` are ``(..., S, d_head)``; returns ``(..., T, d_head)``. ``mask`` is
    boolean, True = may attend (see the module docstring). Dropout zeroes attention weights at random with
    probability ``dropout_p`` (and scales the rest by ``1 / (1 - dropout_p)``), only when ``training`` is True, like
    ``torch.nn.functional.dropout``. Same result as ``torch.nn.functional.scaled_dot_product_attention(q, k, v,
    attn_mask=mask)`` without dropout.
    """
    weights = attention_weights(q, k, mask)
    weights = F.dropout(weights, p=dropout_p, training=training)
    return weights @ v


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """``[x1, x2] -> [-x2, x1]`` on the last axis, split in two halves: a 90-degree turn of each pair ``(x1_i, x2_i)``."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


class RotaryEmbedding(nn.Module):
    """Rotary position embeddings (RoPE, Su et al. 2021), as in LLaMA: positions enter as rotations of q and k.

    The ``d_head`` numbers of a query or key are seen as ``d_head / 2`` pairs ``(x_i, x_{i + d_head/2})``: the
    "rotate half" layout of GPT-NeoX and Hugging Face's Llama. (Meta's original LLaMA code pairs neighbours,
    ``(x_{2i}, x_{2i+1})``; the two are the same up to a fixed reordering of the features, which the Hugging Face
    conversion script applies to the query and key weights.) At position ``p`` pair ``i`` is turned by the angle
    ``p * w_i``, with ``w_i = base ** (-2i / d_head)``: fast turns for the first pairs, slow ones for the last, like
    the sinusoidal encodings of Chapter 2. Because a rotation by ``a`` then a dot product with a rotation by ``b``
    only sees ``a - b``, the score ``q_m . k_n`` depends on the *relative* position ``m - n``, and nothing is added
    to the token vectors themselves. RoPE has no parameters.
    """

    def __init__(self, d_head: int, base: float = 10_000.0):
        super().__init__()
        if d_head % 2:
            raise ValueError(f"RoPE rotates pairs of numbers, so d_head must be even; got {d_head}")
        self.d_head, self.base = d_head, base

    def cos_sin(self, positions: torch.Tensor, dtype: torch.dtype):
        """``cos`` and ``sin`` of every angle, ``(T, d_head)`` each (the ``d_head / 2`` angles twice, per half)."""
        # Computed on the fly (d_head / 2 numbers, cheap) and in float32 at least, not stored as a buffer that
        # model.to(torch.bfloat16) would round: bfloat16 cannot even tell position 1000 from 1004.
        angle_dtype = torch.float64 if dtype == torch.float64 else torch.float32
        exponents = torch.arange(0, self.d_head, 2, dtype=angle_dtype, device=positions.device) / self.d_head
        inv_freq = self.base ** -exponents  # w_i = base^(-2i / d_head)
        angles = positions.to(angle_dtype)[:, None] * inv_freq[None, :]  # (T, d_head/2)
        angles = torch.cat([angles, angles], dim=-1)  # (T, d_head): the same angle for x_i and x_{i + d_head/2}
        return angles.cos().to(dtype), angles.sin().to(dtype)

    def forward(self, x: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """Rotate ``x`` ``(..., T, d_head)``; ``positions`` defaults to ``0, 1, ..., T-1``."""
        if positions is None:
            positions = torch.arange(x.size(-2), device=x.device)
        cos, sin = self.cos_sin(positions, x.dtype)
        # (x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin): the 2-D rotation of every pair.
        return x * cos + rotate_half(x) * sin


class MultiHeadAttention(nn.Module):
    """Multi-head attention, nanoGPT style: one fused projection for queries, keys and values, then the heads.

    - ``n_heads`` heads of ``d_head = d_model // n_heads`` numbers each attend in parallel; an output projection
      mixes their results back into ``d_model`` numbers per position.
    - ``n_kv_heads``: how many key/value heads (default ``n_heads``). ``1`` is multi-query attention, anything in
      between grouped-query attention: query head ``h`` uses key/value head ``h // (n_heads // n_kv_heads)``.
    - ``causal``: each position attends only to itself and earlier positions.
    - ``dropout``: on the attention weights, only in training mode (``model.train()``), never in ``model.eval()``.
    - ``use_sdpa``: compute attention with PyTorch's fused ``F.scaled_dot_product_attention`` instead of the
      from-scratch ``scaled_dot_product_attention`` above; same weights, same result, faster.
    - ``rope``: rotate queries and keys by their positions (``RotaryEmbedding``, LLaMA style) after splitting the
      heads. Off by default: GPT-2 adds learned position vectors to its input instead (Chapter 2).

    ``forward(x, kv=None, mask=None)``: ``x`` is ``(B, T, d_model)``. With ``kv`` ``(B, S, d_model)`` it is
    cross-attention: queries from ``x``, keys and values from ``kv``. ``mask`` is boolean, True = may attend,
    broadcasting to ``(B, H, T, S)`` (e.g. ``padding_mask``); it is combined with the causal mask. With ``cache``
    (one layer of a ``gptcourse.kv_cache.KVCache``) ``x`` holds only the new positions: their keys and values are
    appended to the cache, and their queries attend to everything cached so far (Chapter 6).
    """

    def __init__(self, d_model: int, n_heads: int, n_kv_heads: int | None = None, dropout: float = 0.0,
                 bias: bool = True, causal: bool = False, use_sdpa: bool = False, rope: bool = False,
                 rope_base: float = 10_000.0):
        super().__init__()
        n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        if d_model % n_heads or n_heads % n_kv_heads:
            raise ValueError(f"d_model ({d_model}) must divide into n_heads ({n_heads}) heads, and n_heads into "
                             f"n_kv_heads ({n_kv_heads}) groups")
        self.d_model, self.n_heads, self.n_kv_heads = d_model, n_heads, n_kv_heads
        self.d_head = d_model // n_heads
        self.dropout, self.causal, self.use_sdpa = dropout, causal, use_sdpa
        # One matrix product makes queries, keys and values at once: rows [W_q; W_k; W_v], shape
        # (d_model + 2 * n_kv_heads * d_head, d_model), i.e. (3 * d_model, d_model) when every head has its own K/V.
        self.qkv = nn.Linear(d_model, d_model + 2 * n_kv_heads * self.d_head, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)
        self.rotary = RotaryEmbedding(self.d_head, rope_base) if rope else None

    def _split_heads(self, t: torch.Tensor, n: int) -> torch.Tensor:
        """``(B, T, n * d_head)`` -> ``(B, n, T, d_head)``: view the last axis as heads, then move heads forward."""
        B, T, _ = t.shape
        return t.view(B, T, n, self.d_head).transpose(1, 2)

    def project(self, x: torch.Tensor, kv: torch.Tensor | None = None, start: int = 0):
        """Queries ``(B, H, T, d_head)``, keys and values ``(B, n_kv_heads, S, d_head)``; with RoPE the positions
        are ``start, ..., start + T - 1`` (``start`` > 0 when earlier positions are in a KV cache)."""
        d_kv = self.n_kv_heads * self.d_head
        if kv is None:  # self-attention: one fused product
            q, k, v = self.qkv(x).split([self.d_model, d_kv, d_kv], dim=-1)
        else:  # cross-attention: the same weights, queries from x, keys and values from kv
            w_q, w_kv = self.qkv.weight.split([self.d_model, 2 * d_kv])
            b_q, b_kv = self.qkv.bias.split([self.d_model, 2 * d_kv]) if self.qkv.bias is not None else (None, None)
            q = F.linear(x, w_q, b_q)
            k, v = F.linear(kv, w_kv, b_kv).split([d_kv, d_kv], dim=-1)
        q = self._split_heads(q, self.n_heads)
        k, v = self._split_heads(k, self.n_kv_heads), self._split_heads(v, self.n_kv_heads)
        if self.rotary is not None:  # positions enter here, as rotations of q and k; v carries no position
            positions = torch.arange(start, start + q.size(-2), device=x.device)
            q, k = self.rotary(q, positions), self.rotary(k, positions)
        return q, k, v

    def _repeat_kv(self, t: torch.Tensor) -> torch.Tensor:
        """Give each query head its key/value head: [kv0, kv1] -> [kv0, kv0, kv1, kv1] (not [kv0, kv1, kv0, kv1])."""
        return t.repeat_interleave(self.n_heads // self.n_kv_heads, dim=1)

    def _mask(self, T: int, S: int, mask: torch.Tensor | None, device, cached: bool = False) -> torch.Tensor | None:
        """The caller's mask combined with the causal mask (if this layer is causal); None if there is neither.

        With a KV cache the ``T`` queries are the *last* ``T`` of the ``S`` positions: query ``i`` may see keys up
        to ``S - T + i``. One new query (``T == 1``) sees every key, so it needs no causal mask at all.
        """
        if not self.causal:
            return mask
        if T != S and not cached:
            raise ValueError(f"a causal mask needs as many queries as keys; got {T} and {S}")
        if T == 1 and mask is None:
            return None
        causal = causal_mask(T, device, S)
        return causal if mask is None else causal & mask

    def attention_weights(self, x: torch.Tensor, kv: torch.Tensor | None = None,
                          mask: torch.Tensor | None = None) -> torch.Tensor:
        """The attention weights of every head, ``(B, H, T, S)``, without dropout: the pictures of Chapter 3."""
        q, k, _ = self.project(x, kv)
        return attention_weights(q, self._repeat_kv(k), self._mask(q.size(-2), k.size(-2), mask, x.device))

    def forward(self, x: torch.Tensor, kv: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                cache=None):
        q, k, v = self.project(x, kv, start=0 if cache is None else cache.length)
        if cache is not None:
            k, v = cache.update(k, v)  # the cached positions' keys and values, then these
        B, H, T, _ = q.shape
        full_mask = self._mask(T, k.size(-2), mask, x.device, cached=cache is not None)
        dropout_p = self.dropout if self.training else 0.0
        if self.use_sdpa:
            # Causal and nothing else: is_causal lets PyTorch pick its fastest kernel (flash attention on a GPU),
            # which skips the blocked half instead of reading a mask. enable_gqa repeats K/V heads like _repeat_kv.
            plain_causal = self.causal and mask is None and T == k.size(-2) > 1
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=None if plain_causal else full_mask,
                                                 dropout_p=dropout_p, is_causal=plain_causal,
                                                 enable_gqa=self.n_kv_heads != self.n_heads)
        else:
            out = scaled_dot_product_attention(q, self._repeat_kv(k), self._repeat_kv(v), full_mask, dropout_p,
                                               self.training)
        # Merge the heads back: (B, H, T, d_head) -> (B, T, H, d_head) -> (B, T, d_model). After the transpose the
        # numbers are no longer in that order in memory, so they are copied (contiguous) before view joins the axes.
        out = out.transpose(1, 2).contiguous().view(B, T, self.d_model)
        return self.out_proj(out)
