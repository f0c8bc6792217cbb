"""The KV cache: keep every layer's keys and values so that each new token costs one position, not all (Chapter 6).

Without a cache, writing token ``t + 1`` runs the model on all ``t`` tokens again, although the keys and values of
the first ``t`` positions are exactly those of the step before: in a causal model a position never sees what comes
after it. So generation stores them. The prompt goes through the model once (the **prefill**), filling the cache;
after that each step feeds **one** token, whose query attends to the cached keys and values plus its own.

Per token the cache holds, in every layer, one key and one value vector per key/value head::

    bytes per token = 2 (K and V) * n_layers * n_kv_heads * d_head * bytes per number

Grouped-query attention (fewer key/value heads than query heads) shrinks it by ``n_heads / n_kv_heads``: that is
why LLaMA-style models use it. The buffers are allocated once, for ``max_length`` positions, as inference engines
do, so a step writes into place instead of copying the whole cache to grow it.
"""

import torch

from .model import GPTConfig


def cache_bytes_per_token(config: GPTConfig, dtype: torch.dtype = torch.float32) -> int:
    """Bytes the cache needs for one more token of one sequence: ``2 * n_layers * n_kv_heads * d_head * size``."""
    return 2 * config.n_layers * config.kv_heads * config.d_head * torch.tensor([], dtype=dtype).element_size()


class LayerCache:
    """One layer's keys and values, ``(B, n_kv_heads, max_length, d_head)`` each, of which the first ``length``
    positions are filled. Allocated on the first ``update``, with that call's batch size, dtype and device."""

    def __init__(self, max_length: int):
        self.max_length, self.length = max_length, 0
        self.keys = self.values = None

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the new positions' ``k`` and ``v`` ``(B, n_kv_heads, T, d_head)``; return all keys and values so
        far (views of the buffers, ``length + T`` positions)."""
        T = k.shape[-2]
        if self.length + T > self.max_length:
            raise ValueError(f"the KV cache holds {self.max_length} positions: {self.length} are filled and "
                             f"{T} more do not fit. Start a new cache (or generate fewer tokens).")
        if self.keys is None:
            shape = (*k.shape[:2], self.max_length, k.shape[-1])
            self.keys = torch.empty(shape, dtype=k.dtype, device=k.device)
            self.values = torch.empty(shape, dtype=v.dtype, device=v.device)
        self.keys[:, :, self.length:self.length + T] = k
        self.values[:, :, self.length:self.length + T] = v
        self.length += T
        return self.keys[:, :, :self.length], self.values[:, :, :self.length]


class KVCache:
    """The keys and values of every layer of a model, for the positions it has seen so far.

    Pass it to the model: ``model(ids, cache=cache)`` treats ``ids`` as the positions that come after the
    ``cache.length`` cached ones (position numbers and the causal mask continue from there) and appends them.
    ``crop`` forgets positions (speculative decoding rejects guessed tokens); ``reorder`` picks which sequence of the
    batch each row continues (beam search keeps its best beams).
    """

    def __init__(self, config: GPTConfig, max_length: int | None = None):
        self.config = config
        self.max_length = config.context_length if max_length is None else max_length
        self.layers = [LayerCache(self.max_length) for _ in range(config.n_layers)]

    @property
    def length(self) -> int:
        """How many positions are cached (the position number the next token gets)."""
        return self.layers[0].length

    def crop(self, length: int) -> None:
        """Keep only the first ``length`` positions (the rest is overwritten by the next update)."""
        if not 0 <= length <= self.length:
            raise ValueError(f"can crop the cache to 0..{self.length} positions, not {length}")
        for layer in self.layers:
            layer.length = length

    def reorder(self, rows: torch.Tensor) -> None:
        """Row ``i`` of the batch becomes what row ``rows[i]`` was (rows may repeat: two beams share a parent)."""
        for layer in self.layers:
            if layer.keys is not None:
                layer.keys = layer.keys.index_select(0, rows.to(layer.keys.device))
                layer.values = layer.values.index_select(0, rows.to(layer.values.device))

    def nbytes(self, filled_only: bool = True) -> int:
        """Bytes of the cached keys and values: of the filled positions, or of the whole allocated buffers."""
        total = 0
        for layer in self.layers:
            if layer.keys is not None:
                n = layer.length if filled_only else self.max_length
                total += layer.keys[:, :, :n].nbytes + layer.values[:, :, :n].nbytes
        return total
