"""How close is close enough: one table of tolerances per dtype and device, used by every test and exercise.

Floating-point results differ with the order of operations, so two correct implementations of the same maths
(a from-scratch attention and PyTorch's fused kernel, say) agree only up to rounding. The rounding depends on the
dtype, and on GPUs also on the kernels used (TF32 matrix products on CUDA are much coarser than float32 on CPU).
"""

import torch

# (atol, rtol) by dtype; CUDA gets its own, looser entries where its kernels round differently.
_TOLERANCES = {
    ("cpu", torch.float64): (1e-10, 1e-8),
    ("cpu", torch.float32): (1e-5, 1e-4),
    ("cpu", torch.bfloat16): (2e-2, 2e-2),
    ("cpu", torch.float16): (2e-3, 2e-3),
    ("cuda", torch.float64): (1e-10, 1e-8),
    ("cuda", torch.float32): (1e-4, 1e-3),
    ("cuda", torch.bfloat16): (3e-2, 3e-2),
    ("cuda", torch.float16): (3e-3, 3e-3),
    ("mps", torch.float32): (1e-4, 1e-3),
    ("mps", torch.float16): (3e-3, 3e-3),
    ("mps", torch.bfloat16): (3e-2, 3e-2),
}


def tolerance(dtype: torch.dtype, device: torch.device | str = "cpu") -> dict[str, float]:
    """``{"atol": ..., "rtol": ...}`` for comparing results of this dtype computed on this device."""
    kind = torch.device(device).type
    try:
        atol, rtol = _TOLERANCES[(kind, dtype)]
    except KeyError:
        raise ValueError(f"No tolerance is defined for {dtype} on {kind}; add one to gptcourse/tolerances.py.") from None
    return {"atol": atol, "rtol": rtol}


def assert_close(actual: torch.Tensor, expected: torch.Tensor, msg: str = "") -> None:
    """``torch.testing.assert_close`` with the course's tolerance for ``expected``'s dtype and device."""
    torch.testing.assert_close(actual, expected, **tolerance(expected.dtype, expected.device),
                               msg=(lambda default: f"{msg}\n{default}" if msg else default))


def check_close(actual: torch.Tensor, expected: torch.Tensor, msg: str) -> None:
    """``assert_close``, but a failure says ``msg`` and nothing else: no numbers from ``expected`` (a hidden test's
    message is shown to the learner, and must not give its expected values away)."""
    torch.testing.assert_close(actual, expected, **tolerance(expected.dtype, expected.device), msg=msg)


def devices_to_test() -> list[torch.device]:
    """The devices numerical tests run on: always the CPU, and CUDA when there is a GPU."""
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    return devices
