"""Benchmark: how fast Chapter 5's training step runs, as ratios measured side by side in one run.

    python -m benchmarks.pretraining [--steps 15] [--no-compile]
    python -m benchmarks.pretraining --gpu [--gpu-compile]

Everything runs on the course model's shape and batch (``gptcourse.pretrain.Recipe``: 4 layers, d_model 128, 4 heads,
context 128, vocabulary 2049, PyTorch's fused kernels, no dropout; batches of 16 windows). Every contestant runs the
course's own training step, ``gptcourse.train._one_step``: the same random windows of the same token stream, the
forward pass, the course's cross-entropy, backward, gradient clipping, the course's AdamW. Within each comparison the
contestants' steps alternate, so that a busy moment of the (shared) machine hits them all alike; the median step
time counts.

(a) The course GPT against ``transformers``' ``GPT2LMHeadModel`` built from the same configuration, with the same
    weights (their losses are checked equal first): the course model as the Recipe trains it, with PyTorch's fused
    kernels (``use_sdpa``, ``use_fused_ops``), and with Chapter 4's formulas written out (the same computation).
    Target: the fused course model at least 1.1x transformers.
(b) The FLOP/s of training (``gptcourse.flops``: 6 N + 12 L T d per token) as a share of this CPU's float32
    matrix-product FLOP/s, measured in this run on square products as large as the model's (MFU). Target: 60 %.
    To show where the rest goes, the same model with dropout 0.1, and the course's cross-entropy timed alone.
(c) ``TrainConfig(precision="bfloat16")``: the forward pass under bfloat16 autocast, against float32.
(d) ``TrainConfig(compile=True)``: the step through ``torch.compile(model)``, against eager. The compilations
    (tens of seconds each on two cores) come first and are reported apart from the timing.

``--gpu``: on a CUDA GPU, the bfloat16 training MFU of GPT-2 small (124M) against the GPU's measured bfloat16
matrix-product FLOP/s (``gptcourse.flops.gpu_training_mfu``); where there is no GPU it says so and exits 0.
"""

import argparse
import os
import statistics
import sys
import time
from dataclasses import replace

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from torch import nn  # noqa: E402

from gptcourse.flops import (gpu_training_mfu, matmul_flops_per_s, matmul_size_like,  # noqa: E402
                             training_flops_per_token)
from gptcourse.gpt2_weights import load_gpt2_state_dict  # noqa: E402
from gptcourse.loss import cross_entropy  # noqa: E402
from gptcourse.model import GPT, GPTConfig  # noqa: E402
from gptcourse.optim import AdamW  # noqa: E402
from gptcourse.pretrain import Recipe  # noqa: E402
from gptcourse.train import TrainConfig, _one_step  # noqa: E402

DEVICE = torch.device("cpu")


class LogitsOnly(nn.Module):
    """A ``transformers`` causal LM that returns its logits tensor, as the course's GPT does."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model(ids).logits


def transformers_gpt2(config: GPTConfig) -> nn.Module:
    """``GPT2LMHeadModel`` with the course configuration's sizes and dropout, and no key/value cache (training)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    p = config.dropout
    hf_config = GPT2Config(vocab_size=config.vocab_size, n_positions=config.context_length, n_embd=config.d_model,
                           n_layer=config.n_layers, n_head=config.n_heads, resid_pdrop=p, embd_pdrop=p, attn_pdrop=p,
                           layer_norm_epsilon=config.norm_eps, use_cache=False, bos_token_id=0, eos_token_id=0)
    return GPT2LMHeadModel(hf_config)


def twins(config: GPTConfig) -> tuple[GPT, GPT]:
    """Two course GPTs with the same starting weights."""
    torch.manual_seed(0)
    a, b = GPT(config).train(), GPT(config).train()
    b.load_state_dict(a.state_dict())
    return a, b


def race(contestants: dict[str, tuple[nn.Module, TrainConfig]], ids: torch.Tensor, steps: int,
         warmup: int = 2) -> dict[str, float]:
    """Training tokens/s of each ``name: (module, train config)``, each with its own course AdamW, their steps taken
    in turn; the median of ``steps`` steps after ``warmup`` ones."""
    optimizers = {name: AdamW(model.parameters(), lr=1e-4) for name, (model, _) in contestants.items()}
    times = {name: [] for name in contestants}
    for step in range(warmup + steps):
        for name, (model, config) in contestants.items():
            start = time.perf_counter()
            _one_step(model, optimizers[name], ids, config, step, 1e-4, DEVICE)
            if step >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: config.batch_size * config.context_length / statistics.median(times[name])
            for name, (_, config) in contestants.items()}


def show(throughput: dict[str, float], per_token: int | None = None, peak: float | None = None) -> None:
    for name, tokens_per_s in throughput.items():
        line = f"  {name:48s} {tokens_per_s:9,.0f} tokens/s"
        if per_token:
            line += f"  {tokens_per_s * per_token / 1e9:6.1f} GFLOP/s  MFU {tokens_per_s * per_token / peak:4.0%}"
        print(line)


def ratio(name: str, value: float, target: str = "") -> None:
    print(f"  {name:48s} {value:9.2f}x" + (f"   (target {target})" if target else ""))


def against_transformers(config: GPTConfig, ids, train_config, steps) -> None:
    """(a): the course GPT, from scratch and fused, against transformers' GPT-2 with the same weights."""
    torch.manual_seed(0)
    theirs = transformers_gpt2(config).train()
    scratch = load_gpt2_state_dict(GPT(from_scratch(config)), theirs.state_dict()).train()
    fused = load_gpt2_state_dict(GPT(replace(config, use_sdpa=True, use_fused_ops=True)), theirs.state_dict()).train()
    models = {"course GPT, from scratch (Chapter 4's formulas)": scratch,
              "course GPT, fused kernels (as the Recipe trains it)": fused,
              f"transformers GPT2LMHeadModel ({theirs.config._attn_implementation} attention)": LogitsOnly(theirs)}
    x, y = ids[None, : config.context_length], ids[None, 1: config.context_length + 1]
    with torch.no_grad():
        losses = [cross_entropy(model.eval()(x), y).item() for model in models.values()]
    assert max(losses) - min(losses) < 1e-4, f"the models disagree: {losses}"
    throughput = race({name: (model.train(), train_config) for name, model in models.items()}, ids, steps)
    show(throughput)
    scratch_speed, fused_speed, their_speed = throughput.values()
    ratio("fused course GPT / transformers", fused_speed / their_speed, ">= 1.1x")
    ratio("from-scratch course GPT / transformers", scratch_speed / their_speed)


def utilisation(config: GPTConfig, ids, train_config, steps) -> None:
    """(b): MFU of the fused course model as the Recipe trains it, and with dropout; the loss's share of a step."""
    tokens = train_config.batch_size * train_config.context_length
    size = matmul_size_like(config, tokens)
    peak = matmul_flops_per_s(size, torch.float32)
    per_token = training_flops_per_token(config)
    print(f"  {per_token / 1e6:.2f} MFLOP per token (6 N + 12 L T d); this CPU's {size} x {size} float32 products: "
          f"{peak / 1e9:.0f} GFLOP/s")
    fused = replace(config, use_sdpa=True, use_fused_ops=True)
    contestants = {"course GPT, fused kernels": (GPT(fused).train(), train_config),
                   "the same with dropout 0.1": (GPT(replace(fused, dropout=0.1)).train(), train_config)}
    throughput = race(contestants, ids, steps)
    show(throughput, per_token, peak)
    speed = throughput["course GPT, fused kernels"]
    print(f"  {'MFU, the Recipe with fused kernels':48s} {speed * per_token / peak:9.0%}   (target >= 60%)")
    logits = torch.randn(train_config.batch_size, train_config.context_length, config.vocab_size, requires_grad=True)
    targets = ids[:tokens].view(train_config.batch_size, -1)
    seconds = statistics.median(_timed(lambda: cross_entropy(logits, targets).backward()) for _ in range(7))
    print(f"  the course's cross-entropy alone, forward + backward: {seconds * 1e3:.0f} ms of the "
          f"{tokens / speed * 1e3:.0f} ms step")


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def variants(config: GPTConfig) -> dict[str, GPTConfig]:
    """The course model with Chapter 4's formulas and with fused kernels (as the Recipe trains it): (c) and (d)
    measure both."""
    return {"from scratch": from_scratch(config), "fused kernels": replace(config, use_sdpa=True, use_fused_ops=True)}


def from_scratch(config: GPTConfig) -> GPTConfig:
    """``config`` with every formula of Chapter 4 written out (no fused attention, norm or GELU kernels)."""
    return replace(config, use_sdpa=False, use_fused_ops=False)


def pairs_race(contestants: dict, ids, steps: int, label: str) -> None:
    """Race contestants given in pairs (baseline, then the variant) and print each pair's ratio."""
    speeds = race(contestants, ids, steps)
    show(speeds)
    names = list(speeds)
    for base, other in zip(names[::2], names[1::2]):
        ratio(f"{label}, {base.split(',')[0]}", speeds[other] / speeds[base])


def bfloat16_vs_float32(config: GPTConfig, ids, train_config, steps) -> None:
    """(c): the same step with the forward pass under bfloat16 autocast."""
    bf16_config = replace(train_config, precision="bfloat16")
    contestants = {}
    for name, variant in variants(config).items():
        f32, bf16 = twins(variant)
        contestants |= {f"{name}, float32": (f32, train_config), f"{name}, bfloat16 autocast": (bf16, bf16_config)}
    pairs_race(contestants, ids, steps, "bfloat16 / float32")


def compiled_vs_eager(config: GPTConfig, ids, train_config, steps) -> None:
    """(d): the same step through torch.compile; each compilation happens before the race, with lr 0 (no change)."""
    contestants = {}
    for name, variant in variants(config).items():
        eager, plain = twins(variant)
        compiled = torch.compile(plain)
        seconds = _timed(lambda: _one_step(compiled, AdamW(plain.parameters()), ids, train_config, 0, 0.0, DEVICE))
        print(f"  compiling the {name} model (and its first step): {seconds:.0f} s, not timed below")
        contestants |= {f"{name}, eager": (eager, train_config), f"{name}, torch.compile": (compiled, train_config)}
    pairs_race(contestants, ids, steps, "compiled / eager")


def gpu_section(compile: bool) -> int:
    if not torch.cuda.is_available():
        print("No CUDA GPU here: the GPU section (bf16 training MFU of GPT-2 small) is skipped.")
        return 0
    result = gpu_training_mfu("gpt2", compile=compile)
    size = result["peak_size"]
    print(f"GPU {torch.cuda.get_device_name(0)}: GPT-2 small (124M), bf16 autocast, fused kernels, batch 8 x 1024"
          f"{', torch.compile' if compile else ''}\n"
          f"  training: {result['tokens_per_s']:,.0f} tokens/s = {result['flops_per_s'] / 1e12:.1f} TFLOP/s\n"
          f"  bf16 {size} x {size} products: {result['peak_flops_per_s'] / 1e12:.1f} TFLOP/s\n"
          f"  bf16 training MFU {result['mfu']:.0%}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=15, help="timed steps per contestant (after 2 warm-up steps)")
    parser.add_argument("--no-compile", action="store_true", help="skip (d), the slowest part")
    parser.add_argument("--gpu", action="store_true", help="only the CUDA section: bf16 training MFU of GPT-2 small")
    parser.add_argument("--gpu-compile", action="store_true", help="with --gpu: through torch.compile")
    args = parser.parse_args(argv)
    if args.gpu:
        return gpu_section(args.gpu_compile)

    recipe = Recipe()
    config, train_config = recipe.model, replace(recipe.train, checkpoint=None)
    ids = torch.randint(0, config.vocab_size, (200_000,), generator=torch.Generator().manual_seed(0))
    print(f"CPU, {torch.get_num_threads()} threads, torch {torch.__version__}. The course model: {config.n_layers} "
          f"layers, d_model {config.d_model}, {config.n_heads} heads, context {config.context_length}, vocabulary "
          f"{config.vocab_size}, dropout {config.dropout}; batch {train_config.batch_size} x "
          f"{train_config.context_length} tokens; the course's training step; median of {args.steps} steps\n")
    print("(a) training tokens/s, course GPT vs transformers GPT-2 (same config, weights, batches and optimizer)")
    against_transformers(config, ids, train_config, args.steps)
    print("\n(b) training FLOP/s as a share of this CPU's float32 matrix-product FLOP/s (MFU)")
    utilisation(config, ids, train_config, args.steps)
    print("\n(c) bfloat16 autocast vs float32")
    bfloat16_vs_float32(config, ids, train_config, args.steps)
    if not args.no_compile:
        print("\n(d) torch.compile vs eager")
        compiled_vs_eager(config, ids, train_config, args.steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
