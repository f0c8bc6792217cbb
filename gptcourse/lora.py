"""LoRA, low-rank adaptation (Hu et al. 2021), from scratch (Chapter 7).

Fine-tuning every weight of a model needs, per weight, a gradient and AdamW's two moments: four copies of the model
in memory. LoRA freezes the pretrained matrix ``W`` (``out x in``) and learns a small correction of rank ``r``::

    y = W x + (alpha / r) * B A x        A: r x in,  B: out x r,  r << min(in, out)

``A`` starts random and ``B`` at zero, so at the start the model is exactly the pretrained one, and only
``r * (in + out)`` numbers per matrix are trained. After training, ``B A`` can be **merged** into ``W``
(``W += (alpha / r) B A``): the fine-tuned model is then as fast as the original, and unmerging gives the original
back. The rules (initialisation, scaling, merging) are those of Hugging Face ``peft``, which the tests use as the
oracle.
"""

import math

import torch
from torch import nn


class LoRALinear(nn.Module):
    """An ``nn.Linear`` whose weight is frozen, plus a trainable low-rank correction ``(alpha / r) * B A``."""

    def __init__(self, base: nn.Linear, r: int = 8, alpha: float = 16.0, dropout: float = 0.0):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"LoRALinear wraps an nn.Linear, got {type(base).__name__}")
        if isinstance(r, bool) or not isinstance(r, int) or r < 1:
            raise ValueError(f"the rank r must be a whole number >= 1, got {r!r}")
        self.base, self.r, self.alpha, self.scaling = base, r, alpha, alpha / r
        for p in base.parameters():
            p.requires_grad_(False)
        self.A = nn.Parameter(torch.empty(r, base.in_features, dtype=base.weight.dtype, device=base.weight.device))
        self.B = nn.Parameter(torch.zeros(base.out_features, r, dtype=base.weight.dtype, device=base.weight.device))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))  # as nn.Linear (and peft) initialise a weight
        self.dropout = nn.Dropout(dropout)  # on the input of the LoRA path only, as in peft
        self.merged = False

    def delta_weight(self) -> torch.Tensor:
        """The correction LoRA adds to the weight: ``(alpha / r) * B @ A``, shaped like ``base.weight``."""
        return self.scaling * (self.B @ self.A)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        if self.merged:  # the correction is inside base.weight already
            return y
        return y + self.scaling * (self.dropout(x) @ self.A.T @ self.B.T)  # never forms the out x in matrix B A

    @torch.no_grad()
    def merge(self) -> None:
        if not self.merged:
            self.base.weight += self.delta_weight()
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            self.base.weight -= self.delta_weight()
            self.merged = False

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha}" + (", merged" if self.merged else "")


def apply_lora(model: nn.Module, targets=("qkv", "out_proj"), r: int = 8, alpha: float = 16.0,
               dropout: float = 0.0) -> list[str]:
    """Freeze every parameter of ``model`` and wrap each ``nn.Linear`` whose name ends with one of ``targets`` in a
    ``LoRALinear``; return the names of the wrapped layers (``count_parameters(model, trainable_only=True)`` then
    counts the adapters). (GPT's attention layers are ``qkv`` and ``out_proj``,
    its feed-forward layers ``fc_in`` and ``fc_out``; ``print(model)`` shows every name.)"""
    for p in model.parameters():
        p.requires_grad_(False)
    wrapped = []
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.Linear) and child_name in targets:
                setattr(module, child_name, LoRALinear(child, r, alpha, dropout))
                wrapped.append(f"{name}.{child_name}" if name else child_name)
    if not wrapped:
        raise ValueError(f"no nn.Linear named {list(targets)} in the model: print(model) shows the layers' names")
    return wrapped


def lora_layers(model: nn.Module) -> list[LoRALinear]:
    return [m for m in model.modules() if isinstance(m, LoRALinear)]


def merge_lora(model: nn.Module) -> None:
    """Add every layer's ``(alpha / r) B A`` into its frozen weight (``unmerge_lora`` takes it out again)."""
    for layer in lora_layers(model):
        layer.merge()


def unmerge_lora(model: nn.Module) -> None:
    for layer in lora_layers(model):
        layer.unmerge()
