"""The pretraining loop (Chapter 5): random windows of the corpus, AdamW with warm-up and cosine decay, clipping,
gradient accumulation, evaluation, checkpoints, and the safety a long run needs.

One step: draw ``batch_size * accumulation`` random windows, run them as ``accumulation`` micro-batches (each loss
divided by their number, so the gradients add up to the big batch's), clip the gradients' global norm, set the
learning rate for this step, take an AdamW step. Every ``eval_every`` steps, the mean loss on held-out windows.

What a real run needs besides:

* **Resume.** A checkpoint holds model, optimizer, step and the generators' states, and the batches of step ``s``
  are drawn from a generator seeded with ``(seed, s)``, so a resumed run draws the batches the uninterrupted run
  would have: on a CPU it continues bit for bit.
* **A loss that is not a number** (nan or inf: a too-high learning rate, a bad batch) stops the run with a message;
  the last checkpoint written, from before it, stays as it was.
* **Ctrl-C** saves a checkpoint of the last finished step and returns what was learned so far.

Two switches make a step faster without changing what is learned (much):

* ``precision="bfloat16"`` runs the forward pass under ``torch.autocast``: matrix products in bfloat16 (half the
  bytes, and the fast units of recent GPUs and CPUs), while the parameters, their gradients and AdamW's moments stay
  float32, so that small updates are not rounded away. The loss is taken from the logits in float32.
* ``compile=True`` runs the steps through ``torch.compile(model)``, which fuses the many small operations of a
  block into a few kernels. The first step waits for the compilation; checkpoints still hold the plain module.
"""

import contextlib
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .checkpoint import load_checkpoint, save_checkpoint
from .loss import cross_entropy
from .optim import AdamW, clip_grad_norm, warmup_cosine


@dataclass
class TrainConfig:
    steps: int = 200
    batch_size: int = 16
    context_length: int = 64
    accumulation: int = 1  # micro-batches per step: a batch of batch_size * accumulation windows, in pieces
    max_lr: float = 3e-3
    min_lr: float = 3e-4
    warmup_steps: int = 20
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_every: int = 50
    eval_batches: int = 4
    seed: int = 0
    checkpoint: str | None = None  # a .safetensors path: written every checkpoint_every steps and at the end
    checkpoint_every: int = 100
    precision: str = "float32"  # "bfloat16": the forward pass under autocast; weights and AdamW state stay float32
    compile: bool = False  # run the steps through torch.compile(model)


@dataclass
class History:
    """What a run measured: the training loss of every step, held-out losses, learning rates, speed."""

    train_loss: list[float] = field(default_factory=list)
    val_steps: list[int] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    tokens_per_s: float = 0.0
    interrupted: bool = False


def random_windows(ids: torch.Tensor, batch_size: int, context_length: int, generator: torch.Generator):
    """``batch_size`` windows at random offsets of the 1-D ``ids``: inputs ``x`` and next-token targets ``y``,
    both ``(batch_size, context_length)``."""
    if len(ids) < context_length + 1:
        raise ValueError(f"{len(ids)} token ids are too few for windows of {context_length} (+1 for the targets)")
    starts = torch.randint(0, len(ids) - context_length, (batch_size,), generator=generator)
    offsets = torch.arange(context_length + 1)
    windows = ids[starts[:, None] + offsets]  # (batch_size, context_length + 1)
    return windows[:, :-1], windows[:, 1:]


def bf16_supported(device: torch.device) -> bool:
    """Whether ``device`` computes in bfloat16: CUDA from Ampere on (older GPUs would only emulate it, slowly),
    any CPU (natively where it has AVX512-BF16 or AMX, else converted), Apple GPUs from macOS 14."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    try:
        a = torch.ones(2, 2, dtype=torch.bfloat16, device=device)
        (a @ a).cpu()
        return True
    except (RuntimeError, TypeError):
        return False


def check_precision(precision: str, device: torch.device) -> None:
    """Fail early, with a way out, on a precision that is unknown or that ``device`` cannot compute in."""
    if precision not in ("float32", "bfloat16"):
        raise ValueError(f"precision must be 'float32' or 'bfloat16', got {precision!r}")
    if precision == "bfloat16" and not bf16_supported(device):
        raise RuntimeError(f"precision='bfloat16' needs a device with bfloat16 arithmetic, and {device} has none "
                           "(NVIDIA GPUs have it from compute capability 8.0, Ampere; Apple GPUs from macOS 14). "
                           "Use precision='float32'.")


def autocast(precision: str, device: torch.device):
    """The context the forward pass runs in: nothing for float32, bfloat16 autocast for bfloat16."""
    if precision == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def batch_generator(seed: int, step: int) -> torch.Generator:
    """The generator of step ``step``'s batches: the same for a resumed run as for an uninterrupted one."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def batch_loss(model, x: torch.Tensor, y: torch.Tensor, precision: str, device) -> torch.Tensor:
    """The loss of one batch: the forward pass in ``precision``, the loss itself at least in float32 (a bfloat16
    logsumexp over the vocabulary would lose the small differences it measures). ``gptcourse.distributed`` uses it
    too, so one process and many compute the same thing."""
    with autocast(precision, device):
        logits = model(x.to(device))
    if logits.dtype in (torch.bfloat16, torch.float16):
        logits = logits.float()
    return cross_entropy(logits, y.to(device))


@torch.no_grad()
def held_out_loss(model, ids: torch.Tensor, config: TrainConfig, device) -> float:
    """Mean loss on ``config.eval_batches`` batches of held-out windows (always the same ones)."""
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(config.seed + 12345)
    losses = []
    for _ in range(config.eval_batches):
        x, y = random_windows(ids, config.batch_size, config.context_length, generator)
        losses.append(batch_loss(model, x, y, config.precision, device).item())
    model.train(was_training)
    return sum(losses) / len(losses)


def train(model: torch.nn.Module, train_ids: torch.Tensor, val_ids: torch.Tensor, config: TrainConfig,
          resume: bool = False, progress: bool = True) -> History:
    """Train ``model`` (on its device) on random windows of ``train_ids``; see the module's docstring."""
    device = next(model.parameters()).device
    check_precision(config.precision, device)
    # The compiled module shares the parameters; it runs the training steps, the plain one is evaluated and saved
    # (evaluation is rare and would only add a second compilation, for eval mode).
    stepper = torch.compile(model) if config.compile else model
    optimizer = AdamW(model.parameters(), lr=config.max_lr, weight_decay=config.weight_decay)
    history, start = History(), 0
    if resume and config.checkpoint and Path(config.checkpoint).exists():
        saved = load_checkpoint(config.checkpoint, model, optimizer)
        start = saved["step"]
        history = History(**{k: v for k, v in saved["extra"].get("history", {}).items()})
    model.train()
    tokens = config.batch_size * config.accumulation * config.context_length
    clock, done = time.perf_counter(), 0
    bar = tqdm(range(start, config.steps), desc="training", disable=not progress, initial=start, total=config.steps)
    try:
        for step in bar:
            lr = warmup_cosine(step, config.max_lr, config.warmup_steps, config.steps, config.min_lr)
            loss = _one_step(stepper, optimizer, train_ids, config, step, lr, device)
            if not math.isfinite(loss):
                raise FloatingPointError(
                    f"the training loss became {loss} at step {step} (learning rate {lr:.3g}): the run stops here. "
                    "Lower max_lr or grad_clip, or look for a bad batch; "
                    + (f"the last good checkpoint, {config.checkpoint}, is kept." if config.checkpoint else
                       "set config.checkpoint to keep the last good state next time."))
            history.train_loss.append(loss)
            history.lr.append(lr)
            done += 1
            if (step + 1) % config.eval_every == 0 or step + 1 == config.steps:
                history.val_steps.append(step + 1)
                history.val_loss.append(held_out_loss(model, val_ids, config, device))
            history.tokens_per_s = done * tokens / (time.perf_counter() - clock)
            bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{history.tokens_per_s:,.0f}")
            if config.checkpoint and ((step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps):
                _save(model, optimizer, step + 1, history, config)
    except KeyboardInterrupt:
        history.interrupted = True
        finished = start + done
        if config.checkpoint:
            _save(model, optimizer, finished, history, config)
        print(f"\nInterrupted after step {finished}"
              + (f"; saved to {config.checkpoint} (train(..., resume=True) goes on from there)."
                 if config.checkpoint else "."))
    finally:
        bar.close()
    return history


def _one_step(model, optimizer, ids, config: TrainConfig, step: int, lr: float, device) -> float:
    generator = batch_generator(config.seed, step)
    optimizer.zero_grad(set_to_none=True)
    total = 0.0
    for _ in range(config.accumulation):
        x, y = random_windows(ids, config.batch_size, config.context_length, generator)
        loss = batch_loss(model, x, y, config.precision, device) / config.accumulation
        loss.backward()
        total += loss.detach().item()
    if not math.isfinite(total):
        return total  # no step on a bad loss: the model stays as it was
    clip_grad_norm(model.parameters(), config.grad_clip)
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.step()
    return total


def _save(model, optimizer, step: int, history: History, config: TrainConfig) -> None:
    save_checkpoint(config.checkpoint, model, optimizer, step=step,
                    extra={"history": asdict(history), "config": asdict(config)})
