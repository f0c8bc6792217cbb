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
"""

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


def batch_generator(seed: int, step: int) -> torch.Generator:
    """The generator of step ``step``'s batches: the same for a resumed run as for an uninterrupted one."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


@torch.no_grad()
def held_out_loss(model, ids: torch.Tensor, config: TrainConfig, device) -> float:
    """Mean loss on ``config.eval_batches`` batches of held-out windows (always the same ones)."""
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(config.seed + 12345)
    losses = []
    for _ in range(config.eval_batches):
        x, y = random_windows(ids, config.batch_size, config.context_length, generator)
        losses.append(cross_entropy(model(x.to(device)), y.to(device)).item())
    model.train(was_training)
    return sum(losses) / len(losses)


def train(model: torch.nn.Module, train_ids: torch.Tensor, val_ids: torch.Tensor, config: TrainConfig,
          resume: bool = False, progress: bool = True) -> History:
    """Train ``model`` (on its device) on random windows of ``train_ids``; see the module's docstring."""
    device = next(model.parameters()).device
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
            loss = _one_step(model, optimizer, train_ids, config, step, lr, device)
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
        loss = cross_entropy(model(x.to(device)), y.to(device)) / config.accumulation
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
