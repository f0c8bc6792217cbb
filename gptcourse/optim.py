"""Optimisation for pretraining: AdamW, the warm-up + cosine learning-rate schedule, gradient clipping (Chapter 5).

Each piece is written out so that every line of the update can be read, and each matches its PyTorch counterpart:
``AdamW`` steps like ``torch.optim.AdamW(..., foreach=False)``, ``clip_grad_norm`` clips like
``torch.nn.utils.clip_grad_norm_``. One training step is then::

    loss.backward()                                  # (or several micro-batches, each loss divided by their number)
    clip_grad_norm(model.parameters(), 1.0)
    for group in opt.param_groups:
        group["lr"] = warmup_cosine(step, max_lr, warmup_steps, total_steps)
    opt.step()
    opt.zero_grad()
"""

import math

import torch


class AdamW(torch.optim.Optimizer):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019), one parameter at a time.

    For a parameter ``p`` with gradient ``g``, at step ``t = 1, 2, ...``::

        p   <- p * (1 - lr * weight_decay)       # decay shrinks the weight itself, not the gradient
        m   <- beta1 * m + (1 - beta1) * g        # first moment: running mean of the gradient
        v   <- beta2 * v + (1 - beta2) * g * g    # second moment: running mean of its square
        p   <- p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    ``m`` and ``v`` start at 0, so early on they are too small; dividing by ``1 - beta**t`` (bias correction)
    undoes that. The per-parameter state is ``step`` (a float32 scalar tensor, as in PyTorch, so a saved
    ``state_dict`` loads into either optimizer), ``exp_avg`` (``m``) and ``exp_avg_sq`` (``v``).
    """

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 1e-2):
        if lr < 0.0 or eps < 0.0 or weight_decay < 0.0:
            raise ValueError(f"lr, eps and weight_decay must be >= 0, got {lr}, {eps}, {weight_decay}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"betas must be in [0, 1), got {betas}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns ``closure()``'s loss if one is given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:  # frozen or unused this step: no update, no decay, no step count
                    continue
                self._update(p, p.grad, self.state[p], lr, beta1, beta2, eps, wd)
        return loss

    @staticmethod
    def _update(p, g, state, lr, beta1, beta2, eps, wd):
        if not state:  # first step of this parameter
            state["step"] = torch.tensor(0.0)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        m, v = state["exp_avg"], state["exp_avg_sq"]
        state["step"] += 1
        t = state["step"].item()

        p.mul_(1 - lr * wd)  # decoupled: applied before, and independently of, the Adam step
        m.lerp_(g, 1 - beta1)  # m + (1 - beta1) * (g - m), i.e. beta1 * m + (1 - beta1) * g
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)

        step_size = lr / (1 - beta1**t)
        denom = (v.sqrt() / math.sqrt(1 - beta2**t)).add_(eps)
        p.addcdiv_(m, denom, value=-step_size)


def warmup_cosine(step: int, max_lr: float, warmup_steps: int, total_steps: int, min_lr: float = 0.0) -> float:
    """Learning rate at ``step`` (counted from 0): linear warm-up, then cosine decay to ``min_lr``.

    With ``W = warmup_steps`` and ``N = total_steps``::

        step <  W:       lr = max_lr * (step + 1) / W                      # max_lr/W, 2*max_lr/W, ..., max_lr
        W <= step <= N:  lr = min_lr + (max_lr - min_lr) * (1 + cos(pi * (step - W) / (N - W))) / 2
        step >  N:       lr = min_lr

    So step 0 already trains (at ``max_lr / W``, not 0), the last warm-up step ``W - 1`` and step ``W`` both use
    ``max_lr``, and step ``N`` reaches ``min_lr``. ``W = 0`` means no warm-up. Requires ``0 <= W < N``.
    """
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(f"need 0 <= warmup_steps < total_steps, got {warmup_steps}, {total_steps}")
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step > total_steps:
        return min_lr
    progress = (step - warmup_steps) / (total_steps - warmup_steps)  # 0 -> 1 over the decay
    return min_lr + (max_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


@torch.no_grad()
def clip_grad_norm(parameters, max_norm: float) -> float:
    """Scale all gradients together so their *global* L2 norm is at most ``max_norm``; return the norm before.

    The norm is taken over every gradient as if they were one long vector, so clipping keeps the direction of the
    whole update and only shortens it (clipping each tensor on its own would change the direction). Parameters
    without a gradient are skipped. As in ``torch.nn.utils.clip_grad_norm_``, the scale is
    ``min(1, max_norm / (norm + 1e-6))``: the 1e-6 avoids dividing by zero, and gradients already within the limit
    are left as they are.
    """
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return 0.0
    # Norm of the per-tensor norms == norm of all entries concatenated, without building the concatenation.
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    scale = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for g in grads:
        g.mul_(scale.to(g.dtype))
    return total.item()
