"""How much arithmetic training a GPT takes, and how much of the machine a run uses (Chapter 5).

**Counting.** Almost all the work of a transformer is matrix products. Multiplying an ``(m, k)`` matrix by a
``(k, n)`` one takes ``m * n * k`` multiply-adds, ``2 m n k`` floating-point operations (FLOPs). Seen from one token:

* **Weights.** A token passing through a ``(k, n)`` weight matrix costs 2 FLOPs per weight in the forward pass (one
  multiply, one add). The backward pass costs twice that: one product for the gradient of the layer's input (to pass
  on to the layer below) and one for the gradient of the weights. So training takes **6 FLOPs per weight per
  token**: ``6 N``, where ``N`` counts the weights that take part in products. That is every matrix of every block,
  and the output head's ``V x d`` matrix, even when it is tied to the token embedding (the head multiplies by it,
  whoever owns it). The embedding tables do not count: looking up a row is no product.
* **Attention.** Each token's query meets the keys of all ``T`` positions of the window (``2 T d`` FLOPs per layer,
  ``d = d_model``, all heads together), and its weights then mix ``T`` value vectors (``2 T d`` again): ``4 T d``
  forward, twice that backward, ``12 L T d`` per token for ``L`` layers. Counted for all ``T`` keys, although a
  causal model uses only the earlier ones: the usual kernels compute the whole square and mask half of it.

Left out: biases, norms, GELU, softmax, the loss and the optimizer, a handful of FLOPs per number each, which is
little next to the products (for the course model, a few per cent). The count assumes that every product passes a
gradient down, as in a model trained whole; one whose layers below the first product are all frozen skips that
product's input gradient (``tests/test_flops.py`` checks both against PyTorch's own counter). The formula is that
of Kaplan et al. (2020) and of PaLM's "model FLOPs utilisation" (Chowdhery et al. 2022).

**Utilisation.** ``mfu`` = the FLOP/s a run achieves by this count, divided by what the device can do. What it can
do is measured here, with square matrix products timed after a warm-up, not taken from a data sheet: a data
sheet's peak needs ideal sizes, and a CPU's depends on its clock, its vector units and the other work on it.
"""

import math
import statistics
import time
from dataclasses import replace

import torch

from .model import GPT, GPTConfig, gpt2_config, gpt_parameter_count
from .train import TrainConfig, _one_step, check_precision


def matmul_parameters(config: GPTConfig) -> int:
    """``N``: the weights a token is multiplied by, the head's ``V x d`` matrix included even when tied."""
    matrices = gpt_parameter_count(replace(config, bias=False), breakdown=True)  # without biases: matrices only
    return matrices["attention"] + matrices["feed-forward"] + config.vocab_size * config.d_model


def training_flops_per_token(config: GPTConfig, context_length: int | None = None) -> int:
    """FLOPs of one token's forward and backward pass, ``6 N + 12 L T d``: 6 per weight it is multiplied by (2
    forward, 4 backward), and attention's products with the ``T`` keys and values of its window in each of ``L``
    layers. ``context_length`` is that window ``T`` (default: the model's ``context_length``)."""
    T = context_length or config.context_length
    return 6 * matmul_parameters(config) + 12 * config.n_layers * T * config.d_model


def mfu(tokens_per_s: float, config: GPTConfig, peak_flops: float, context_length: int | None = None) -> float:
    """Model FLOPs utilisation: the share of ``peak_flops`` (FLOP/s) that training at ``tokens_per_s`` uses."""
    return tokens_per_s * training_flops_per_token(config, context_length) / peak_flops


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # the GPU works asynchronously: wait for it before reading the clock


def matmul_flops_per_s(size: int, dtype: torch.dtype = torch.float32, device="cpu", min_seconds: float = 0.1,
                       repeats: int = 5) -> float:
    """What this device computes, in FLOP/s, on ``(size, size) @ (size, size)`` products in ``dtype``.

    After a warm-up (first calls pick kernels and allocate), each of ``repeats`` timings runs enough products to
    last about ``min_seconds``; the best one counts, the least disturbed by anything else on the machine.
    """
    device = torch.device(device)
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)

    def seconds(count: int) -> float:
        _synchronize(device)
        start = time.perf_counter()
        for _ in range(count):
            a @ b
        _synchronize(device)
        return time.perf_counter() - start

    seconds(3)  # warm-up
    count = max(1, math.ceil(min_seconds / (seconds(3) / 3)))
    return count * 2 * size**3 / min(seconds(count) for _ in range(repeats))


def matmul_size_like(config: GPTConfig, tokens: int) -> int:
    """The side of a square product as large as the model's feed-forward product (``tokens x d x ffn_dim``),
    rounded to a multiple of 64: the size to measure a device at for this model."""
    side = (tokens * config.d_model * config.ffn_dim) ** (1 / 3)
    return max(64, 64 * round(side / 64))


def measure_training(config: GPTConfig, batch_size: int, steps: int = 5, device="cpu", precision: str = "float32",
                     compile: bool = False, warmup: int = 2) -> float:
    """Training tokens/s of ``GPT(config)`` on random tokens, with the course's training step (``train._one_step``:
    the forward pass under ``precision``, backward, clipping, an AdamW step): the median of ``steps`` timed steps
    after ``warmup`` ones (which also compile, with ``compile``)."""
    device = torch.device(device)
    check_precision(precision, device)
    model = GPT(config).to(device).train()
    stepper = torch.compile(model) if compile else model
    # PyTorch's AdamW, fused into one kernel on CUDA: the course's AdamW, written to be read, runs several small
    # kernels per parameter, and on a GPU launching them would take longer than their arithmetic.
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    ids = torch.randint(0, config.vocab_size, (50 * batch_size * config.context_length,))
    train_config = TrainConfig(batch_size=batch_size, context_length=config.context_length, precision=precision)
    times = []
    for step in range(warmup + steps):
        _synchronize(device)
        start = time.perf_counter()
        _one_step(stepper, optimizer, ids, train_config, step, 1e-4, device)
        _synchronize(device)
        times.append(time.perf_counter() - start)
    return batch_size * config.context_length / statistics.median(times[warmup:])


def training_mfu(config: GPTConfig, batch_size: int, steps: int = 5, device="cpu", precision: str = "float32",
                 compile: bool = False, peak_size: int | None = None) -> dict:
    """Train ``GPT(config)`` for a few steps and compare its FLOP/s with this device's matrix-product FLOP/s.

    ``peak_size``: the side of the square products that measure the device (default: ``matmul_size_like``).
    Returns ``{"tokens_per_s", "flops_per_s", "peak_flops_per_s", "peak_size", "mfu"}``.
    """
    dtype = torch.bfloat16 if precision == "bfloat16" else torch.float32
    tokens_per_s = measure_training(config, batch_size, steps, device, precision, compile)
    size = peak_size or matmul_size_like(config, batch_size * config.context_length)
    peak = matmul_flops_per_s(size, dtype, device)
    flops_per_s = tokens_per_s * training_flops_per_token(config)
    return {"tokens_per_s": tokens_per_s, "flops_per_s": flops_per_s, "peak_flops_per_s": peak, "peak_size": size,
            "mfu": flops_per_s / peak}


def gpu_training_mfu(name: str = "gpt2", batch_size: int = 8, steps: int = 10, compile: bool = False) -> dict:
    """bfloat16 training MFU of a GPT-2-shaped model (``name``: a ``GPT2_SIZES`` key) on this CUDA GPU, with PyTorch's
    fused attention, norm and GELU kernels, against the GPU's bfloat16 products at 8192 x 8192 (near its peak)."""
    if not torch.cuda.is_available():
        raise RuntimeError("gpu_training_mfu needs a CUDA GPU, and there is none here")
    config = gpt2_config(name, use_sdpa=True, use_fused_ops=True)
    return training_mfu(config, batch_size, steps, "cuda", "bfloat16", compile, peak_size=8192)
