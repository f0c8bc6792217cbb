"""The three families of transformers: encoder-only, decoder-only and encoder-decoder (Chapter 4).

All three are built from the same parts (embeddings, attention blocks, a final norm, a head); they differ in *who may
attend to whom* and in what they are trained to predict:

- **encoder-only** (BERT): every position sees every other one (bidirectional attention); trained to fill in masked
  tokens (masked language modelling); its vectors are read out for classification and search.
- **decoder-only** (GPT): each position sees only itself and the past (causal attention); trained to predict the next
  token. That is ``gptcourse.model.GPT``; it is not repeated here.
- **encoder-decoder** (the original transformer of 2017): an encoder reads the source bidirectionally; a decoder
  writes the target causally and looks at the encoder's output through **cross-attention**.

This module adds the first and the third family, built from the blocks of ``gptcourse.model`` and the attention of
``gptcourse.attention``, and a toy translation task (reverse a sequence of letters) that a small encoder-decoder
learns in well under a minute on a laptop CPU.

Masks follow ``gptcourse.attention``: boolean, True = may attend.
"""

import torch
import torch.nn.functional as F
from torch import nn

from gptcourse.attention import MultiHeadAttention
from gptcourse.embeddings import TokenAndPositionEmbedding
from gptcourse.model import GPT, Block, FeedForward, GPTConfig, TokenEmbedding, make_norm

IGNORE_INDEX = -100  # the label that F.cross_entropy skips (its default ignore_index): "no prediction here"


def padding_mask_of(ids: torch.Tensor, pad_id: int) -> torch.Tensor:
    """``(B, 1, 1, T)`` boolean mask, True at the real (non-padding) tokens of ``ids`` ``(B, T)``.

    Used as a *key* mask: no query may attend to a padding token. It broadcasts over heads and queries, like
    ``gptcourse.attention.padding_mask``, which builds the same mask from the sequences' lengths.
    """
    return (ids != pad_id)[:, None, None, :]


def input_layer(config: GPTConfig) -> nn.Module:
    """The embedding layer GPT uses for this configuration: token + learned position vectors, or (RoPE) tokens only."""
    embedding = TokenAndPositionEmbedding if config.position == "learned" else TokenEmbedding
    return embedding(config.vocab_size, config.d_model, config.context_length, config.dropout)


# ----------------------------------------------------------------------------------------------------------------
# Encoder-only (BERT-style)
# ----------------------------------------------------------------------------------------------------------------

class Encoder(nn.Module):
    """Token ids ``(B, T)`` -> one vector per position ``(B, T, d_model)``, every position seeing all the others.

    A GPT without its causal mask and without its output head: embeddings, ``n_layers`` non-causal ``Block``s, a
    final norm. ``mask`` (e.g. ``padding_mask_of(ids, pad_id)``) keeps padding tokens out of every attention.
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.embed = input_layer(config)
        self.blocks = nn.ModuleList(Block(config, causal=False) for _ in range(config.n_layers))
        self.final_norm = make_norm(config)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.embed(ids)
        for block in self.blocks:
            x = block(x, mask=mask)
        return self.final_norm(x)


class EncoderOnly(nn.Module):
    """A BERT-style model: an ``Encoder`` with two heads.

    - ``mlm_logits(ids)``: ``(B, T, vocab_size)``, the masked-LM head: at each position, which token belongs there?
      (Tied to the token embedding when ``config.tie_weights``, like GPT-2's output layer.)
    - ``classify(ids)``: ``(B, n_classes)``, read from the vector of the first position, where the input carries a
      ``[CLS]`` token. After the encoder that vector has looked at the whole input, so it can summarise it.
    """

    def __init__(self, config: GPTConfig, n_classes: int = 2):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.mlm_head = nn.Linear(config.d_model, config.vocab_size)
        if config.tie_weights:
            self.mlm_head.weight = self.encoder.embed.token_embedding.weight
        self.cls_head = nn.Linear(config.d_model, n_classes)
        self.apply(GPT._init_weights)  # GPT-2's initialisation: normal(0, 0.02), zero biases

    def forward(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.encoder(ids, mask)  # (B, T, d_model)

    def mlm_logits(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.mlm_head(self(ids, mask))

    def classify(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.cls_head(self(ids, mask)[:, 0])  # the [CLS] position


def mask_tokens(ids: torch.Tensor, mask_id: int, vocab_size: int, p: float = 0.15, special_ids=(),
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masked-LM corruption: returns ``(inputs, labels)``, both shaped like ``ids``.

    Every token that is not in ``special_ids`` is *chosen* with probability ``p`` (15 %). A chosen token is

    - replaced by ``mask_id`` with probability 80 %,
    - replaced by a random token id from ``0 .. vocab_size - 1`` with probability 10 %,
    - left as it is with probability 10 %.

    ``labels`` holds the original id at the chosen positions and ``IGNORE_INDEX`` everywhere else, so the loss is
    computed only where the model has something to predict. Why not always ``[MASK]``? That token never occurs when
    the model is used later, so the model must also learn good vectors for tokens it can see, and it must not trust
    its input blindly.
    """
    cpu = dict(generator=generator, device="cpu")  # a CPU generator gives the same draws on every device
    chosen = torch.rand(ids.shape, **cpu) < p
    for special in special_ids:
        chosen &= ids.cpu() != special
    how = torch.rand(ids.shape, **cpu)  # < 0.8: [MASK]; 0.8 .. 0.9: random token; >= 0.9: unchanged
    random_ids = torch.randint(vocab_size, ids.shape, **cpu)
    chosen, how, random_ids = chosen.to(ids.device), how.to(ids.device), random_ids.to(ids.device)

    inputs = torch.where(chosen & (how < 0.8), mask_id, ids)
    inputs = torch.where(chosen & (how >= 0.8) & (how < 0.9), random_ids, inputs)
    labels = torch.where(chosen, ids, IGNORE_INDEX)
    return inputs, labels


# ----------------------------------------------------------------------------------------------------------------
# Encoder-decoder (the original transformer)
# ----------------------------------------------------------------------------------------------------------------

class DecoderBlock(nn.Module):
    """A decoder block of the original transformer, pre-norm like GPT's ``Block``, with a third sub-layer::

        x = x + self_attn(norm1(x))            # causal: look at the target written so far
        x = x + cross_attn(norm2(x), memory)   # look at the whole source, i.e. the encoder's output
        x = x + ffn(norm3(x))

    In cross-attention the queries come from the target, the keys and values from ``memory`` ``(B, S, d_model)``:
    each target position asks "which source positions do I need now?". ``memory_mask`` (``(B, 1, 1, S)``) hides the
    source's padding.
    """

    def __init__(self, config: GPTConfig):
        super().__init__()

        def attention(causal: bool, rope: bool) -> MultiHeadAttention:
            return MultiHeadAttention(config.d_model, config.n_heads, config.n_kv_heads, config.dropout, config.bias,
                                      causal=causal, use_sdpa=config.use_sdpa, rope=rope, rope_base=config.rope_base)

        # With RoPE, self-attention rotates queries and keys by their positions; cross-attention compares positions
        # of two different sequences, where relative distance means nothing, so it never rotates.
        self.norm1, self.self_attn = make_norm(config), attention(causal=True, rope=config.position == "rope")
        self.norm2, self.cross_attn = make_norm(config), attention(causal=False, rope=False)
        self.norm3, self.ffn = make_norm(config), FeedForward(config)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor | None = None):
        x = x + self.dropout(self.self_attn(self.norm1(x)))
        x = x + self.dropout(self.cross_attn(self.norm2(x), kv=memory, mask=memory_mask))
        return x + self.dropout(self.ffn(self.norm3(x)))


class EncoderDecoder(nn.Module):
    """The original transformer: ``forward(src, tgt_in) -> logits`` ``(B, T, vocab_size)``.

    The encoder reads the source ``src`` ``(B, S)`` once; the decoder reads the target so far, ``tgt_in`` ``(B, T)``
    (it starts with a BOS token), and predicts at each position the next target token. Source and target share one
    vocabulary here but have their own embedding tables; the output layer is tied to the target embedding when
    ``config.tie_weights``.
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.embed = input_layer(config)  # the target's embeddings
        self.blocks = nn.ModuleList(DecoderBlock(config) for _ in range(config.n_layers))
        self.final_norm = make_norm(config)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_weights:
            self.lm_head.weight = self.embed.token_embedding.weight
        self.apply(GPT._init_weights)  # GPT-2's initialisation: normal(0, 0.02), zero biases

    def encode(self, src: torch.Tensor, src_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.encoder(src, src_mask)  # the "memory", (B, S, d_model)

    def decode(self, tgt_in: torch.Tensor, memory: torch.Tensor, src_mask: torch.Tensor | None = None):
        x = self.embed(tgt_in)
        for block in self.blocks:
            x = block(x, memory, src_mask)
        return self.lm_head(self.final_norm(x))

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor, src_mask: torch.Tensor | None = None):
        return self.decode(tgt_in, self.encode(src, src_mask), src_mask)

    @torch.no_grad()
    def cross_attention_weights(self, src: torch.Tensor, tgt_in: torch.Tensor,
                                src_mask: torch.Tensor | None = None) -> list[torch.Tensor]:
        """The cross-attention weights of every decoder layer, each ``(B, H, T, S)``: where each target position
        looks in the source. (Call it in ``model.eval()``: the weights are shown without dropout.)"""
        memory, x, weights = self.encode(src, src_mask), self.embed(tgt_in), []
        for block in self.blocks:
            after_self = x + block.self_attn(block.norm1(x))
            weights.append(block.cross_attn.attention_weights(block.norm2(after_self), kv=memory, mask=src_mask))
            x = block(x, memory, src_mask)
        return weights


@torch.no_grad()
def translate(model: EncoderDecoder, src: torch.Tensor, bos: int, max_len: int, eos: int | None = None,
              src_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Greedy decoding: encode ``src`` once, then write the target one token at a time, always the most likely one.

    Returns the generated ids ``(B, n)``, without the leading ``bos``; ``n`` is ``max_len``, or less if every
    sequence has produced ``eos``. Each step runs the decoder over the whole target so far (no key-value cache).
    """
    was_training = model.training
    model.eval()
    memory = model.encode(src, src_mask)
    out = torch.full((src.size(0), 1), bos, dtype=torch.long, device=src.device)
    for _ in range(max_len):
        logits = model.decode(out, memory, src_mask)[:, -1]  # (B, vocab_size): the next token's scores
        out = torch.cat([out, logits.argmax(dim=-1, keepdim=True)], dim=1)
        if eos is not None and (out[:, 1:] == eos).any(dim=1).all():
            break
    model.train(was_training)
    return out[:, 1:]


# ----------------------------------------------------------------------------------------------------------------
# A toy translation task: reverse a sequence
# ----------------------------------------------------------------------------------------------------------------

PAD, BOS = 0, 1  # the toy task's special ids; ids 2 .. vocab_size - 1 are the letters
TOY_ALPHABET = "_^abcdefghijklmnopqrstuvwxyz"  # how ids are shown: PAD "_", BOS "^", then letters


def toy_config(**overrides) -> GPTConfig:
    """The small encoder-decoder of the toy task: 16 ids (14 letters), 2 + 2 layers of width 64, ~0.2 M weights."""
    settings = dict(vocab_size=16, context_length=16, d_model=64, n_layers=2, n_heads=4, d_ff=256, dropout=0.0)
    return GPTConfig(**(settings | overrides))


def reverse_task(n: int, length: int = 8, vocab_size: int = 16, generator: torch.Generator | None = None):
    """``n`` random letter sequences and their reversals, as ``(src, tgt_in, tgt_out)``, each ``(n, length)``.

    ``tgt_out`` is ``src`` reversed: what the decoder must write. ``tgt_in`` is ``tgt_out`` shifted right by one,
    starting with ``BOS``: what the decoder reads while training (teacher forcing), so that position ``t`` predicts
    ``tgt_out[:, t]`` from the true tokens before it.
    """
    src = torch.randint(BOS + 1, vocab_size, (n, length), generator=generator)
    tgt_out = src.flip(dims=[1])
    tgt_in = torch.cat([torch.full((n, 1), BOS), tgt_out[:, :-1]], dim=1)
    return src, tgt_in, tgt_out


def to_text(ids) -> str:
    """Show toy ids as letters: ``[2, 3, 4]`` -> ``"abc"``."""
    return "".join(TOY_ALPHABET[i] for i in torch.as_tensor(ids).tolist())


def train_reverse(model: EncoderDecoder, steps: int = 400, batch_size: int = 64, lr: float = 3e-3,
                  length: int = 8, seed: int = 0) -> list[float]:
    """Train ``model`` on fresh random batches of the reversal task with AdamW; returns the loss of every step.

    Every batch is new (the data is generated, not read), so there is no overfitting to worry about. The learning
    rate falls linearly to 0, which helps the last steps settle. Runs on the device the model is on.
    """
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / steps)
    model.train()
    losses = []
    for _ in range(steps):
        src, tgt_in, tgt_out = (t.to(device) for t in
                                reverse_task(batch_size, length, model.config.vocab_size, generator))
        logits = model(src, tgt_in)
        loss = F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    return losses


def exact_match(model: EncoderDecoder, src: torch.Tensor, tgt_out: torch.Tensor) -> float:
    """The fraction of sequences that greedy decoding gets entirely right (every token)."""
    predicted = translate(model, src, BOS, tgt_out.size(1))
    return (predicted == tgt_out).all(dim=1).float().mean().item()
