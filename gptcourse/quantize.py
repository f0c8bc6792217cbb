"""4-bit weights, as QLoRA stores the frozen model (Chapter 7).

A float32 weight takes 32 bits. To store it in 4, each block of ``block`` consecutive weights keeps one float scale,
its largest absolute value (``absmax``), and each weight becomes the index of the nearest of 16 levels in
``[-1, 1]``, times that scale. Two choices of levels:

- **absmax int4**: evenly spaced levels ``-7/7 .. 7/7`` (15 of the 16 codes; the grid must be symmetric so that 0 is
  a level).
- **NF4** ("normal float", Dettmers et al. 2023): weights of a trained network are close to normally distributed, so
  most of them lie near 0 and few near the block's maximum. NF4's levels are quantiles of a normal distribution:
  closer together near 0, where the weights are. 8 positive levels, 7 negative ones and an exact 0.

Here the weights are quantized and immediately dequantized ("fake quantization"): the model computes with the
rounded values, so their effect on accuracy and loss can be measured on any machine. Storing the 4-bit codes and
computing with them directly is what libraries such as bitsandbytes add, with GPU kernels.
"""

import torch
from torch import nn


def int4_levels() -> torch.Tensor:
    return torch.arange(-7, 8, dtype=torch.float32) / 7


def nf4_levels() -> torch.Tensor:
    """The 16 NF4 levels: quantiles of N(0, 1), scaled so that the largest is 1.

    The quantiles are taken at evenly spaced probabilities between 0.5 and ``offset``, not up to 1 (the quantile of
    probability 1 is infinite); ``offset`` sits halfway between the last step of a 15- and of a 16-level grid."""
    offset = 1 - (1 / 30 + 1 / 32) / 2
    positive = torch.special.ndtri(torch.linspace(offset, 0.5, 9, dtype=torch.float64)[:-1])
    negative = -torch.special.ndtri(torch.linspace(offset, 0.5, 8, dtype=torch.float64)[:-1])
    levels = torch.cat([negative, torch.zeros(1, dtype=torch.float64), positive]).sort().values
    return (levels / levels.max()).float()


def fake_quantize(weight: torch.Tensor, levels: torch.Tensor, block: int = 64) -> torch.Tensor:
    """``weight`` rounded to the nearest of ``levels`` times its block's absolute maximum, as a new float tensor of
    the same shape and dtype. The blocks are runs of ``block`` consecutive values; ``weight.numel()`` must be a
    multiple of ``block``."""
    if weight.numel() % block:
        raise ValueError(f"{weight.numel()} weights do not split into blocks of {block}")
    blocks = weight.detach().float().reshape(-1, block)
    scale = blocks.abs().amax(dim=1, keepdim=True).clamp(min=torch.finfo(torch.float32).tiny)  # an all-zero block
    levels = levels.to(blocks.device)
    codes = (blocks / scale)[..., None].sub(levels).abs().argmin(dim=-1)  # the 4-bit code: index of the nearest level
    return (levels[codes] * scale).reshape(weight.shape).to(weight.dtype)


@torch.no_grad()
def quantize_linear_layers(model: nn.Module, levels: torch.Tensor, block: int = 64) -> int:
    """Replace the weight of every ``nn.Linear`` in ``model`` by its fake-quantized version, in place; return how
    many weights were quantized. (Embeddings, norms and biases stay in float, as in QLoRA.)"""
    count = 0
    for module in model.modules():
        if isinstance(module, nn.Linear):
            module.weight.copy_(fake_quantize(module.weight, levels, block))
            count += module.weight.numel()
    return count
