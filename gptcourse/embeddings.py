"""From token ids to vectors: token embeddings and position information (Chapter 2).

An embedding layer is a table with one learned row of ``d_model`` numbers per token id; looking a row up is the same
as multiplying a one-hot vector by the table, only without the multiplications. Attention (Chapter 3) treats its
input as a *set*, so the position of each token must be written into its vector as well: GPT-2 learns one vector per
position and adds it; the original transformer adds fixed sine and cosine waves instead.
"""

import torch
import torch.nn.functional as F
from torch import nn


def one_hot_embedding(ids: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``weight[ids]`` computed the slow way, as one-hot rows times the table: shows what ``nn.Embedding`` does.

    ``ids`` has any shape ``(...)``, ``weight`` is ``(vocab_size, d_model)``; the result is ``(..., d_model)``.
    """
    one_hot = F.one_hot(ids, num_classes=weight.shape[0]).to(weight.dtype)  # (..., vocab_size), a single 1 per row
    return one_hot @ weight


def sinusoidal_positions(context_length: int, d_model: int, base: float = 10_000.0,
                         device: torch.device | str | None = None) -> torch.Tensor:
    """The fixed position encodings of "Attention Is All You Need", shape ``(context_length, d_model)``.

    Column pair ``(2i, 2i+1)`` is ``sin(p * w_i)``, ``cos(p * w_i)`` for position ``p``, with the frequency
    ``w_i = base ** (-2i / d_model)``: the first pairs change quickly from one position to the next, the last ones
    slowly, like the hands of a clock.
    """
    if d_model % 2:
        raise ValueError(f"d_model must be even (sines and cosines come in pairs), got {d_model}.")
    position = torch.arange(context_length, dtype=torch.float64, device=device)[:, None]  # (T, 1)
    frequency = base ** (-torch.arange(0, d_model, 2, dtype=torch.float64, device=device) / d_model)  # (d/2,)
    angle = position * frequency  # (T, d/2); float64 so that large positions keep their precision
    encoding = torch.stack([angle.sin(), angle.cos()], dim=-1)  # (T, d/2, 2): sin, cos side by side ...
    return encoding.flatten(-2).to(torch.get_default_dtype())  # ... interleaved: sin, cos, sin, cos, ...


class TokenAndPositionEmbedding(nn.Module):
    """GPT-2's input layer: token embedding + learned absolute position embedding, then dropout.

    ``forward(ids)`` maps ids of shape ``(batch, T)``, with ``T <= context_length``, to vectors of shape
    ``(batch, T, d_model)``. Positions count from 0 at the first token of each sequence, or from ``start`` when the
    ids continue a sequence whose first ``start`` tokens were seen before (generation with a KV cache, Chapter 6).
    """

    def __init__(self, vocab_size: int, d_model: int, context_length: int, dropout: float = 0.0):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, d_model)  # what each token means (GPT-2: wte)
        self.position_embedding = nn.Embedding(context_length, d_model)  # where it stands (GPT-2: wpe)
        self.dropout = nn.Dropout(dropout)  # active in model.train(), a no-op in model.eval()
        self.context_length = context_length

    def forward(self, ids: torch.Tensor, start: int = 0) -> torch.Tensor:
        T = ids.shape[-1]
        if start + T > self.context_length:
            raise ValueError(f"The sequence has {start + T} tokens but the model has position vectors for only "
                             f"{self.context_length}; cut it to the last {self.context_length} tokens.")
        # start, ..., start+T-1 (usually 0, 1, ..., T-1): the same for every sequence of the batch
        positions = torch.arange(start, start + T, device=ids.device)
        # (batch, T, d) + (T, d): the position vectors broadcast over the batch dimension.
        return self.dropout(self.token_embedding(ids) + self.position_embedding(positions))
