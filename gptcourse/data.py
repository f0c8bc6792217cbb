"""Next-token training pairs: one long stream of token ids cut into windows (Chapter 2).

A language model learns one thing: given some tokens, predict the next. So a training example is a window of
``context_length`` ids, ``x``, and the same window moved one token to the right, ``y``: ``y[t]`` is the token that
follows ``x[0..t]``. One window therefore holds ``context_length`` predictions, one per position.

Windows start every ``stride`` tokens. ``stride == context_length`` tiles the stream without overlap (every token is
a target exactly once per epoch); a smaller stride makes overlapping windows, more examples from the same text.
"""

from functools import lru_cache

import torch
from torch.utils.data import DataLoader, Dataset

from .bpe import ENDOFTEXT
from .course_tokenizer import load_course_tokenizer
from .tiktoken_bridge import to_tiktoken


class NextTokenDataset(Dataset):
    """Sliding windows over a 1-D sequence of token ids: item ``i`` is ``(x, y)``, two LongTensors of length
    ``context_length`` with ``x = ids[i*stride : i*stride + context_length]`` and ``y`` the same shifted by one.

    Only whole windows are made: a tail too short to fill one more (x, y) pair is left out.
    """

    def __init__(self, ids, context_length: int, stride: int | None = None):
        ids = torch.as_tensor(ids, dtype=torch.long)
        stride = context_length if stride is None else stride
        if ids.ndim != 1:
            raise ValueError(f"ids must be a 1-D sequence of token ids, got shape {tuple(ids.shape)}.")
        if context_length < 1:
            raise ValueError(f"context_length must be at least 1, got {context_length}.")
        if stride < 1:
            raise ValueError(f"stride must be at least 1 (the step from one window to the next), got {stride}.")
        if len(ids) < context_length + 1:  # y reaches one token further than x
            raise ValueError(f"{len(ids)} token ids are too few for one window: context_length={context_length} "
                             f"needs at least {context_length + 1} (the targets are shifted by one).")
        self.ids, self.context_length, self.stride = ids, context_length, stride

    def __len__(self) -> int:
        # The last window starts at s with s + context_length + 1 <= len(ids); starts are 0, stride, 2*stride, ...
        return (len(self.ids) - self.context_length - 1) // self.stride + 1

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= i < len(self):  # IndexError also ends a plain `for x, y in dataset` loop
            raise IndexError(f"window {i} does not exist; this dataset has {len(self)}.")
        start = i * self.stride
        chunk = self.ids[start:start + self.context_length + 1]  # slices are views: no copy of the stream
        return chunk[:-1], chunk[1:]


@lru_cache(maxsize=1)
def _course_encoding():
    """The course tokenizer as a tiktoken encoding (same ids, much faster), built once."""
    return to_tiktoken(load_course_tokenizer())


def encode_text(text: str) -> torch.Tensor:
    """``text`` as a LongTensor of course-tokenizer ids; ``<|endoftext|>`` in training text is the special token."""
    return torch.tensor(_course_encoding().encode(text, allowed_special={ENDOFTEXT}), dtype=torch.long)


def make_dataloader(ids_or_text, context_length: int, stride: int | None = None, batch_size: int = 8,
                    shuffle: bool = True, drop_last: bool = True, seed: int = 0) -> DataLoader:
    """Batches of next-token pairs, ``x`` and ``y`` of shape ``(batch_size, context_length)``.

    ``ids_or_text`` is a string (encoded with the course tokenizer) or a 1-D sequence of token ids. ``seed`` fixes
    the shuffled order, so a run can be repeated; each pass over the loader draws a new order from it.
    ``drop_last=True`` leaves out a last, smaller batch, so every batch has the same shape.
    """
    ids = encode_text(ids_or_text) if isinstance(ids_or_text, str) else ids_or_text
    dataset = NextTokenDataset(ids, context_length, stride)
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, generator=generator)
