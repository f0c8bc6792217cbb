"""Timing for the benchmarks: the best of a few runs (the least disturbed by a busy, shared machine)."""

import time

import torch


def best_of(repeats: int, fn, *args, device: torch.device | None = None) -> tuple[float, object]:
    """Run ``fn(*args)`` ``repeats`` times; return the fastest time in seconds and the last result.

    On CUDA, work is queued asynchronously, so the clock is read only after the GPU has finished.
    """
    sync = torch.cuda.synchronize if device is not None and device.type == "cuda" else (lambda: None)
    best, result = float("inf"), None
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        result = fn(*args)
        sync()
        best = min(best, time.perf_counter() - start)
    return best, result
