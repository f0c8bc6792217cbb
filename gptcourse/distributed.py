"""Training on several GPUs at once: data parallelism with PyTorch's DistributedDataParallel (Chapter 5).

**Data parallelism (DDP).** Every GPU holds a full copy of the model and the optimizer. Each step's batch is cut
into equal shares, one per GPU; each GPU runs forward and backward on its share alone. Then the GPUs *all-reduce*
their gradients: each ends up with the average of all of them, which is the gradient of the whole batch (the loss
is a mean, so the mean of the shares' gradients is the full batch's gradient). With the same gradient, the same
clipping and the same AdamW step, every copy stays identical, and the run is the one-GPU run with a bigger batch,
made faster. ``DistributedDataParallel`` does the averaging during ``backward()``, in buckets of gradients, so the
communication overlaps with the rest of the computation.

DDP needs the whole model, its gradients and AdamW's two moments (about 16 bytes a parameter in float32) on every
GPU. When that does not fit, the model itself is split:

* **Fully sharded data parallel** (FSDP, ``torch.distributed.fsdp.fully_shard``): still data parallel, but each GPU
  keeps only a slice of every parameter, gradient and optimizer moment. Before a layer runs, its parameters are
  gathered from all GPUs and dropped again after; gradients are reduced and kept sliced. Memory per GPU shrinks
  with their number, at the cost of more communication.
* **Tensor parallelism**: one matrix product is split across GPUs (each holds some of a weight's columns or rows
  and computes that part of the output), with a collective to join the parts inside every layer. It needs fast
  links between the GPUs, so it stays inside one machine.
* **Pipeline parallelism**: the layers are split, the first blocks on one GPU, the next on another. The batch is
  cut into micro-batches that flow through the stages one after another, so that all stages are busy at once.

Large runs combine them. Here, DDP: launch one process per GPU (on a CPU, per core) with ``torchrun``::

    torchrun --nproc_per_node 2 -m gptcourse.distributed --size tiny --steps 20 --out ddp.safetensors
    python -m torch.distributed.run --nproc_per_node 2 -m gptcourse.distributed ...   (the same)

``torchrun`` starts the processes and gives each its ``RANK`` (0, 1, ...), the ``WORLD_SIZE`` (how many) and where
to meet (``MASTER_ADDR``, ``MASTER_PORT``). GPUs talk through NCCL, CPUs through gloo.

``train_ddp`` is ``gptcourse.train.train`` split across the processes. Every process draws the step's full batch
from ``batch_generator(seed, step)``, exactly as ``train`` would, and keeps its own rows: the shares together are
the single process's batch, and every process's generator stays in step with the others. So, with dropout off,
the result equals a single process's up to rounding (``compare_with_single_process`` shows it). With dropout, each
process draws its own masks. Process 0 prints and writes the checkpoints, in ``gptcourse.checkpoint``'s format,
so ``train(..., resume=True)`` can go on from one on a single process. A run stopped with Ctrl-C goes back to the
last checkpoint written (every ``checkpoint_every`` steps).
"""

import argparse
import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from .checkpoint import load_checkpoint
from .course_tokenizer import VOCAB_SIZE
from .device import pick_device
from .model import GPT, GPTConfig
from .optim import AdamW, clip_grad_norm, warmup_cosine
from .pretrain import Recipe, course_ids
from .seed import set_seed
from .tolerances import tolerance
from .train import (History, TrainConfig, _one_step, _save, batch_generator, batch_loss, check_precision, held_out_loss,
                    random_windows, train)

LAUNCH = "torchrun --nproc_per_node 2 -m gptcourse.distributed"
_REPO = Path(__file__).resolve().parents[1]


def rank_rows(batch_size: int, rank: int, world_size: int) -> slice:
    """The rows of each batch that process ``rank`` of ``world_size`` trains on: an equal, contiguous share."""
    if batch_size % world_size:
        raise ValueError(f"the batch size ({batch_size}) must divide by the number of processes ({world_size}), so "
                         f"that every process gets an equal share; try a batch size of "
                         f"{math.ceil(batch_size / world_size) * world_size}")
    share = batch_size // world_size
    return slice(rank * share, (rank + 1) * share)


def not_launched() -> str | None:
    """What is wrong if this process was not started by torchrun (which sets these variables), else None."""
    missing = [v for v in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
    if missing:
        return (f"{', '.join(missing)} not set: this is not a torchrun launch. Start one process per GPU (or CPU "
                f"core) with\n    {LAUNCH} [options]\nor python -m torch.distributed.run --nproc_per_node 2 -m "
                "gptcourse.distributed [options]")
    return None


def setup(device: str | None = None) -> torch.device:
    """Join the other processes that torchrun started; return this process's device (``cuda:LOCAL_RANK`` on GPUs)."""
    if problem := not_launched():
        raise RuntimeError(problem)
    local_rank = int(os.environ["LOCAL_RANK"])
    chosen = pick_device(device)
    if chosen.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(f"process {local_rank} has no GPU of its own ({torch.cuda.device_count()} here): "
                               "use --nproc_per_node <number of GPUs>, or --device cpu")
        chosen = torch.device("cuda", local_rank)  # one GPU per process
        torch.cuda.set_device(chosen)
        dist.init_process_group("nccl", device_id=chosen)
    else:  # gloo cannot exchange MPS tensors, so a Mac's processes work on the CPU
        chosen = torch.device("cpu")
        dist.init_process_group("gloo")
    return chosen


def train_ddp(model: torch.nn.Module, train_ids: torch.Tensor, val_ids: torch.Tensor, config: TrainConfig,
              resume: bool = False, progress: bool = True, on_gradients=None) -> History:
    """``gptcourse.train.train`` across the processes of a torchrun launch (after ``setup()``); see the module's
    docstring. ``model`` is on this process's device. Every process returns the same losses.

    ``on_gradients(step, model, local_loss)``, if given, is called once the gradients are averaged, before clipping:
    ``model`` holds the whole batch's gradient; ``local_loss`` is this process's share's loss.
    """
    rank, world = dist.get_rank(), dist.get_world_size()
    rows = rank_rows(config.batch_size, rank, world)
    device = next(model.parameters()).device
    check_precision(config.precision, device)
    if config.compile:
        raise ValueError("compile=True is not supported with DDP here: train with compile=False")
    optimizer = AdamW(model.parameters(), lr=config.max_lr, weight_decay=config.weight_decay)
    history, start = History(), 0
    if resume and config.checkpoint and Path(config.checkpoint).exists():
        saved = load_checkpoint(config.checkpoint, model, optimizer, restore_rng=False)
        start, history = saved["step"], History(**saved["extra"].get("history", {}))
    # Wrapping copies process 0's weights to the others, and from now on backward() averages the gradients.
    ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    model.train()
    tokens = config.batch_size * config.accumulation * config.context_length  # all processes together
    clock = time.perf_counter()
    bar = tqdm(range(start, config.steps), desc=f"training on {world} processes", disable=not progress or rank != 0,
               initial=start, total=config.steps)
    for step in bar:
        lr = warmup_cosine(step, config.max_lr, config.warmup_steps, config.steps, config.min_lr)
        local = _backward(ddp, train_ids, config, step, rows, device)
        loss = _mean_over_processes(local, device)  # the whole batch's loss, the same number everywhere
        if on_gradients is not None:
            on_gradients(step, model, local)
        if not math.isfinite(loss):  # every process sees the same loss, so all of them stop here
            raise FloatingPointError(f"the training loss became {loss} at step {step} (learning rate {lr:.3g}); "
                                     "lower max_lr or grad_clip, or look for a bad batch")
        clip_grad_norm(model.parameters(), config.grad_clip)  # same gradients, so the same clipping everywhere
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.step()
        history.train_loss.append(loss)
        history.lr.append(lr)
        if (step + 1) % config.eval_every == 0 or step + 1 == config.steps:
            history.val_steps.append(step + 1)
            history.val_loss.append(held_out_loss(model, val_ids, config, device))  # same model, same answer
        history.tokens_per_s = (step + 1 - start) * tokens / (time.perf_counter() - clock)
        bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{history.tokens_per_s:,.0f}")
        if rank == 0 and config.checkpoint and ((step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps):
            _save(model, optimizer, step + 1, history, config)
    bar.close()
    return history


def _backward(ddp, ids, config: TrainConfig, step: int, rows: slice, device) -> float:
    """This process's share of one step's forward and backward; returns its loss. The gradients are averaged over
    the processes once, after the last micro-batch (``no_sync`` keeps the earlier ones local)."""
    generator = batch_generator(config.seed, step)
    ddp.zero_grad(set_to_none=True)
    total = 0.0
    for micro in range(config.accumulation):
        x, y = random_windows(ids, config.batch_size, config.context_length, generator)  # the full batch, as train()
        x, y = x[rows], y[rows]  # ... of which this process keeps its share
        last = micro == config.accumulation - 1
        with contextlib.nullcontext() if last else ddp.no_sync():
            loss = batch_loss(ddp, x, y, config.precision, device) / config.accumulation  # as train._one_step
            loss.backward()
        total += loss.detach().item()
    return total


def _mean_over_processes(value: float, device) -> float:
    t = torch.tensor(value, dtype=torch.float64, device=device)
    dist.all_reduce(t)  # sum
    return t.item() / dist.get_world_size()


# ---- The command line ------------------------------------------------------------------------------------------------

def run_settings(size: str = "tiny", steps: int = 20, batch_size: int | None = None, seed: int = 0,
                 accumulation: int = 1) -> tuple[GPTConfig, TrainConfig]:
    """The model and training settings of a run: ``tiny`` (seconds on a CPU, no dropout) or ``course`` (the course
    model of ``gptcourse.pretrain``)."""
    if size == "course":
        model, config = Recipe().model, Recipe().train
    elif size == "tiny":
        model = GPTConfig(vocab_size=VOCAB_SIZE + 1, context_length=32, d_model=32, n_layers=2, n_heads=2, dropout=0.0)
        config = TrainConfig(batch_size=8, context_length=32, warmup_steps=5, eval_batches=2)
    else:
        raise ValueError(f"size must be 'tiny' or 'course', got {size!r}")
    config = replace(config, steps=steps, seed=seed, accumulation=accumulation,
                     warmup_steps=min(config.warmup_steps, steps // 2),  # a short run still gets to decay
                     batch_size=batch_size or config.batch_size)
    return model, config


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=LAUNCH, description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=["tiny", "course"], default="tiny")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, help="windows per step, all processes together")
    parser.add_argument("--accumulation", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", help="cpu or cuda (default: the course's choice, gptcourse.device)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                        help="of the weights; float64 rounds so finely that one process's run is matched to ~1e-13")
    parser.add_argument("--precision", choices=["float32", "bfloat16"], default="float32",
                        help="bfloat16: the forward pass under autocast (TrainConfig.precision)")
    parser.add_argument("--out", help="checkpoint (.safetensors): written by process 0 during the run and at its end")
    parser.add_argument("--resume", action="store_true", help="go on from --out if it exists")
    parser.add_argument("--grads-out", help="write the first step's averaged gradients here (.safetensors)")
    parser.add_argument("--summary", help="write what the run did here (JSON): processes, their rows, losses, time")
    args = parser.parse_args(argv)
    if problem := not_launched():
        parser.error(problem)
    model_config, config = run_settings(args.size, args.steps, args.batch_size, args.seed, args.accumulation)
    config = replace(config, checkpoint=args.out, precision=args.precision)
    try:  # before any work
        rows = rank_rows(config.batch_size, int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]))
    except ValueError as err:
        parser.error(str(err))

    device = setup(args.device)
    try:
        rank, world = dist.get_rank(), dist.get_world_size()
        set_seed(config.seed)  # the same starting weights everywhere (DDP copies process 0's anyway)
        model = GPT(model_config).to(device, getattr(torch, args.dtype))
        torch.manual_seed(config.seed * 1_000 + rank)  # but each process its own dropout masks
        train_ids, val_ids = course_ids()
        first = {}

        def on_gradients(step, model, local_loss):
            if step == 0:
                first["loss"] = local_loss
                if args.grads_out and rank == 0:
                    save_file({n: p.grad.detach().cpu().contiguous() for n, p in model.named_parameters()},
                              args.grads_out)

        start = time.perf_counter()
        history = train_ddp(model, train_ids, val_ids, config, resume=args.resume, progress=rank == 0,
                            on_gradients=on_gradients)
        seconds = time.perf_counter() - start
        me = {"rank": rank, "device": str(device), "rows": [rows.start, rows.stop],
              "batch_shape": [rows.stop - rows.start, config.context_length], "first_step_loss": first.get("loss")}
        everyone = [None] * world
        dist.all_gather_object(everyone, me)
        if rank == 0:
            print(f"{world} processes ({dist.get_backend()}), each {me['batch_shape'][0]} of the {config.batch_size} "
                  f"windows per step: loss {history.train_loss[0]:.3f} -> {history.train_loss[-1]:.3f}, "
                  f"held-out {history.val_loss[-1]:.3f}, {history.tokens_per_s:,.0f} tokens/s"
                  + (f"; saved to {args.out}" if args.out else ""))
            if args.summary:
                Path(args.summary).write_text(json.dumps({
                    "world_size": world, "backend": dist.get_backend(), "processes": everyone,
                    "batch_shape": [config.batch_size, config.context_length], "train_loss": history.train_loss,
                    "val_loss": history.val_loss, "seconds": seconds, "tokens_per_s": history.tokens_per_s}))
    finally:
        dist.destroy_process_group()
    return 0


# ---- From a notebook: launch, compare ----------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args: list[str], nproc: int = 2, timeout: float = 300) -> str:
    """Run ``torchrun --nproc_per_node nproc -m gptcourse.distributed *args`` on this machine; return its output."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
               "--master_addr", "127.0.0.1", "--master_port", str(free_port()), "-m", "gptcourse.distributed", *args]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),  # one thread per process
           "PYTHONPATH": os.pathsep.join(filter(None, [str(_REPO), os.environ.get("PYTHONPATH")]))}
    # A session of its own, so that a run past its time is ended with all its processes, not just torchrun.
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=_REPO,
                            start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        raise RuntimeError(f"{' '.join(command[1:])} took more than {timeout:.0f} s:\n{output}") from None
    if proc.returncode:
        raise RuntimeError(f"{' '.join(command[1:])} failed (exit {proc.returncode}):\n{output}")
    return output


def first_step_gradients(model: torch.nn.Module, ids: torch.Tensor, config: TrainConfig) -> dict:
    """The gradients of ``train``'s first step, before clipping: its own step, run with clipping off and an optimizer
    that does not move (SGD with learning rate 0), so the model is unchanged."""
    device = next(model.parameters()).device
    _one_step(model, torch.optim.SGD(model.parameters(), lr=0.0), ids, replace(config, grad_clip=math.inf), 0, 0.0,
              device)
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    return grads


def compare_with_single_process(steps: int = 3, nproc: int = 2, batch_size: int = 8, device: str = "cpu",
                                seed: int = 0, dtype: str = "float32") -> dict:
    """Train the tiny model with ``nproc`` processes (torchrun) and with one, on the same batches; compare.

    Returns the largest difference of the first step's gradients and of the final weights, what each process trained
    on, both runs' losses and their times (the DDP time includes starting the processes). The two runs add the same
    numbers in another order, so they differ by rounding, which AdamW magnifies where a gradient is close to 0 (it
    divides by the gradient's size): in float32 the weights differ by up to ~1e-5 after a few steps, in float64 by
    ~1e-13.
    """
    model_config, config = run_settings("tiny", steps, batch_size, seed)
    with tempfile.TemporaryDirectory(prefix="gptcourse-ddp-") as tmp:
        out, grads, summary = (str(Path(tmp) / name) for name in ("ddp.safetensors", "grads.safetensors", "run.json"))
        clock = time.perf_counter()
        launch(["--size", "tiny", "--steps", str(steps), "--batch-size", str(batch_size), "--seed", str(seed),
                "--device", device, "--dtype", dtype, "--out", out, "--grads-out", grads, "--summary", summary], nproc)
        ddp_seconds = time.perf_counter() - clock
        run = json.loads(Path(summary).read_text())
        ddp_model = GPT(model_config).to(dtype=getattr(torch, dtype))
        load_checkpoint(out, ddp_model, restore_rng=False)
        ddp_grads = load_file(grads)

    set_seed(seed)
    model = GPT(model_config).to(pick_device(device), getattr(torch, dtype))
    train_ids, val_ids = course_ids()
    grads = first_step_gradients(model, train_ids, config)
    clock = time.perf_counter()
    history = train(model, train_ids, val_ids, config, progress=False)
    single_seconds = time.perf_counter() - clock
    ddp_params = dict(ddp_model.named_parameters())
    return {
        "max_abs_diff": max((p.detach().cpu() - ddp_params[n]).abs().max().item() for n, p in model.named_parameters()),
        "max_grad_diff": max((g.cpu() - ddp_grads[n]).abs().max().item() for n, g in grads.items()),
        "world_size": run["world_size"], "backend": run["backend"], "batch_shape": tuple(run["batch_shape"]),
        "per_process": run["processes"], "train_loss_ddp": run["train_loss"], "train_loss_single": history.train_loss,
        "seconds_ddp": ddp_seconds, "seconds_single": single_seconds,
    }


def gpu_check() -> tuple[bool, str]:
    """For ``make gpu-check``: the DDP run over NCCL, one process per GPU (at most 2), against one process on
    ``cuda:0``, in float64 so that only a real error exceeds the tolerance. Returns (passed, what was found)."""
    nproc = min(2, torch.cuda.device_count())
    result = compare_with_single_process(steps=3, nproc=nproc, batch_size=8, device="cuda", dtype="float64")
    atol = tolerance(torch.float64, "cuda")["atol"]
    ok = result["backend"] == "nccl" and max(result["max_abs_diff"], result["max_grad_diff"]) <= atol
    return ok, (f"{nproc} process(es) over {result['backend']}: weights differ by {result['max_abs_diff']:.1e}, "
                f"first gradients by {result['max_grad_diff']:.1e} (limit {atol:.0e})")


if __name__ == "__main__":
    sys.exit(main())
