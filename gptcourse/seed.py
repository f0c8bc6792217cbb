"""Reproducibility in one place: seed Python, NumPy and PyTorch together, and make GPU maths exact when asked."""

import random

import numpy as np
import torch


def set_seed(seed: int = 0) -> None:
    """Seed every random number generator the course uses, so a run can be repeated exactly."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds CUDA and MPS


def exact_gpu_maths() -> None:
    """Turn off TF32 on NVIDIA GPUs: float32 matrix products then round like on a CPU (slower, comparable)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
