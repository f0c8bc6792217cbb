"""gptcourse.data: sliding windows of next-token pairs, checked against a brute-force list of windows."""

import pytest
import torch

from gptcourse.data import NextTokenDataset, encode_text, make_dataloader


def brute_force_windows(ids: list[int], context_length: int, stride: int) -> list[tuple[list[int], list[int]]]:
    """Every start 0, stride, 2*stride, ... whose shifted window still fits, written out as plain lists."""
    windows, start = [], 0
    while start + context_length + 1 <= len(ids):
        windows.append((ids[start:start + context_length], ids[start + 1:start + context_length + 1]))
        start += stride
    return windows


@pytest.mark.parametrize("n", [5, 6, 7, 11, 12, 13, 40])
@pytest.mark.parametrize("context_length,stride", [(1, 1), (4, 4), (4, 1), (4, 2), (4, 3), (4, 5), (4, 9), (5, 4)])
def test_windows_match_brute_force(n, context_length, stride):
    ids = [100 + 7 * i for i in range(n)]  # distinct values, so any shift or swap shows
    expected = brute_force_windows(ids, context_length, stride)
    if not expected:
        with pytest.raises(ValueError, match="too few"):
            NextTokenDataset(ids, context_length, stride)
        return
    dataset = NextTokenDataset(ids, context_length, stride)
    assert len(dataset) == len(expected)
    got = [(x.tolist(), y.tolist()) for x, y in dataset]  # iteration stops at IndexError
    assert got == expected
    x, y = dataset[0]
    assert x.dtype == y.dtype == torch.long and x.shape == y.shape == (context_length,)


def test_stride_defaults_to_context_length_and_bad_arguments_say_why():
    dataset = NextTokenDataset(torch.arange(20), 4)
    assert dataset.stride == 4 and len(dataset) == 4
    with pytest.raises(ValueError, match="stride"):
        NextTokenDataset(torch.arange(20), 4, stride=0)
    with pytest.raises(ValueError, match="context_length"):
        NextTokenDataset(torch.arange(20), 0)
    with pytest.raises(ValueError, match="1-D"):
        NextTokenDataset(torch.arange(20).reshape(4, 5), 2)
    with pytest.raises(ValueError, match="needs at least 5"):
        NextTokenDataset(torch.arange(4), 4)
    with pytest.raises(IndexError):
        dataset[len(dataset)]


def test_encode_text_uses_the_course_tokenizer():
    from gptcourse.course_tokenizer import load_course_tokenizer

    tok = load_course_tokenizer()
    text = "One day, Mia went to the park.<|endoftext|>Then they went home. 😀"
    ids = encode_text(text)
    assert ids.dtype == torch.long
    assert ids.tolist() == tok.encode(text, allowed_special={"<|endoftext|>"})


def test_dataloader_batches_shuffles_reproducibly_and_drops_the_partial_batch():
    ids = torch.arange(1, 102)  # 101 ids, context 4, stride 4: 25 windows
    loader = make_dataloader(ids, context_length=4, batch_size=8, shuffle=False, drop_last=False)
    batches = list(loader)
    assert [len(x) for x, _ in batches] == [8, 8, 8, 1]  # the last, partial batch holds the 25th window
    x, y = batches[0]
    assert x.shape == y.shape == (8, 4) and torch.equal(y, x + 1)
    assert torch.equal(torch.cat([x for x, _ in batches])[:, 0], torch.arange(1, 101, 4))

    dropped = make_dataloader(ids, context_length=4, batch_size=8, shuffle=False, drop_last=True)
    assert len(dropped) == 3 and [len(x) for x, _ in dropped] == [8, 8, 8]

    def starts(seed):
        loader = make_dataloader(ids, context_length=4, batch_size=8, shuffle=True, drop_last=False, seed=seed)
        return torch.cat([x[:, 0] for x, _ in loader]).tolist()

    assert starts(0) == starts(0) != starts(1)
    assert sorted(starts(0)) == list(range(1, 101, 4))  # a permutation: every window exactly once


def test_dataloader_accepts_text():
    loader = make_dataloader("The cat sat on the mat. " * 20, context_length=8, batch_size=2)
    x, y = next(iter(loader))
    assert x.shape == (2, 8) and torch.equal(x[:, 1:], y[:, :-1])
