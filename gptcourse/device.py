"""Pick the device the course runs on, in one place: CUDA, then Apple MPS, then CPU.

Set the environment variable ``GPTCOURSE_DEVICE`` (``cpu``, ``cuda``, ``cuda:1``, ``mps``) to override the choice,
for example to compare speeds or to keep a busy GPU free.
"""

import os

import torch

ENV_VAR = "GPTCOURSE_DEVICE"


def _available(device: torch.device) -> bool:
    if device.type == "cpu":
        return True
    if device.type == "cuda":
        index = device.index or 0
        return torch.cuda.is_available() and index < torch.cuda.device_count()
    if device.type == "mps":
        return torch.backends.mps.is_available()
    return False


def pick_device(name: str | None = None) -> torch.device:
    """Return the device to use: ``name`` if given, else $GPTCOURSE_DEVICE, else the best one available."""
    name = name or os.environ.get(ENV_VAR, "").strip() or None
    if name is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"{ENV_VAR}={name!r} is not a device name; use cpu, cuda, cuda:N or mps.") from err
    if not _available(device):
        raise RuntimeError(
            f"Device {name!r} was asked for (argument or ${ENV_VAR}) but is not available on this machine. "
            f"Unset {ENV_VAR} to let the course pick automatically, or set it to 'cpu'."
        )
    return device
