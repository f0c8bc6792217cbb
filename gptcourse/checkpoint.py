"""Checkpoints: everything a training run needs to continue exactly where it stopped, in one safetensors file.

A run that is interrupted (a crash, Ctrl-C, a time limit) should go on as if nothing had happened. That needs more
than the model's weights: the optimizer's moments, the step count (the learning-rate schedule depends on it) and
the random generators' states (the next batch and the next dropout mask depend on them). With all of them restored,
resuming on a CPU continues bit for bit like the uninterrupted run (``tests/test_checkpoint.py`` checks it).

Format: one ``.safetensors`` file. Its tensors are the model's (``model.<name>``; a tied weight once, its second
name an alias in the metadata), the optimizer's per-parameter
state (``optimizer.<index>.<name>``) and PyTorch's generator state; everything else (step, learning rates, the
Python and NumPy generator states, your own ``extra`` values) is JSON in the file's metadata. Nothing is pickled, so
loading a checkpoint cannot run code. The file is written next to its final name and renamed into place, so a crash
while saving leaves the previous checkpoint whole.
"""

import json
import os
import random
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

FORMAT = "gptcourse-checkpoint-1"


def save_checkpoint(path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None, step: int = 0,
                    extra: dict | None = None) -> Path:
    """Write model, optimizer, ``step``, the generators' states and ``extra`` (JSON values) to ``path``."""
    path = Path(path)
    tensors, aliases = _model_tensors(model)
    state = {"format": FORMAT, "step": int(step), "extra": extra or {}, "aliases": aliases,
             "rng": _rng_state(tensors)}
    if optimizer is not None:
        saved = optimizer.state_dict()
        state["optimizer"] = {"param_groups": saved["param_groups"], "scalars": {}}
        for index, per_param in saved["state"].items():
            for name, value in per_param.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"optimizer.{index}.{name}"] = value.detach().contiguous().cpu()
                else:
                    state["optimizer"]["scalars"][f"{index}.{name}"] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        save_file(tensors, str(partial), metadata={"gptcourse": json.dumps(state)})
        with open(partial, "rb") as f:
            os.fsync(f.fileno())  # on disk before it takes the checkpoint's name
        os.replace(partial, path)  # atomic: readers see the old file or the new one, never half of one
    finally:
        partial.unlink(missing_ok=True)
    return path


def load_checkpoint(path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    restore_rng: bool = True) -> dict:
    """Load what ``save_checkpoint`` wrote into ``model`` (and ``optimizer``); returns ``{"step", "extra"}``.
    With ``restore_rng``, the Python, NumPy and PyTorch generators continue where the saved run left them."""
    path = Path(path)
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
        if "gptcourse" not in metadata:
            raise ValueError(f"{path} is not a course checkpoint (no gptcourse metadata); was it written by "
                             "gptcourse.checkpoint.save_checkpoint?")
        state = json.loads(metadata["gptcourse"])
        tensors = {key: f.get_tensor(key) for key in f.keys()}
    device = next(iter(model.state_dict().values()), torch.empty(0)).device
    weights = {key[len("model."):]: t.to(device) for key, t in tensors.items() if key.startswith("model.")}
    weights.update({name: weights[same] for name, same in state.get("aliases", {}).items()})
    model.load_state_dict(weights)
    if optimizer is not None:
        if "optimizer" not in state:
            raise ValueError(f"{path} holds no optimizer state; save it with save_checkpoint(..., optimizer=...)")
        per_param: dict[int, dict] = {}
        for key, value in tensors.items():
            if key.startswith("optimizer."):
                _, index, name = key.split(".", 2)
                per_param.setdefault(int(index), {})[name] = value
        for key, value in state["optimizer"]["scalars"].items():
            index, name = key.split(".", 1)
            per_param.setdefault(int(index), {})[name] = value
        optimizer.load_state_dict({"state": per_param, "param_groups": state["optimizer"]["param_groups"]})
    if restore_rng:
        _restore_rng(state["rng"], tensors)
    return {"step": state["step"], "extra": state["extra"]}


def _model_tensors(model) -> tuple[dict, dict]:
    """The model's tensors by name, each stored once: a tied weight (the output head reusing the token embedding)
    is one tensor under two names, so the second name is recorded as an alias of the first."""
    tensors, aliases, first_name = {}, {}, {}
    for name, t in model.state_dict().items():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()))
        if t.numel() and key in first_name:
            aliases[name] = first_name[key]
            continue
        first_name[key] = name
        tensors[f"model.{name}"] = t.detach().contiguous().cpu()
    return tensors, aliases


def _rng_state(tensors: dict) -> dict:
    """The generators' states: PyTorch's go among the tensors, Python's and NumPy's into the JSON."""
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, cuda_state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = cuda_state
    version, internal, gauss = random.getstate()
    state = {"python": [version, list(internal), gauss]}
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy comes with torch's usual installs
        return state
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state["numpy"] = [kind, keys.tolist(), pos, has_gauss, cached]
    return state


def _restore_rng(state: dict, tensors: dict) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = sorted((k for k in tensors if k.startswith("rng.cuda.")), key=lambda k: int(k.rsplit(".", 1)[1]))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "numpy" in state:
        import numpy as np

        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
