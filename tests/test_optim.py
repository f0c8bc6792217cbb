"""Tests of gptcourse.optim against independent oracles: torch.optim.AdamW, clip_grad_norm_, the closed forms."""

import copy
import math

import pytest
import torch
import torch.nn as nn

from gptcourse.optim import AdamW, clip_grad_norm, warmup_cosine


# ---------------------------------------------------------------- AdamW


def _params(dtype, seed=0):
    """Three parameters of different shapes; the third never gets a gradient."""
    g = torch.Generator().manual_seed(seed)
    shapes = [(4, 3), (5,), (2, 2)]
    return [torch.randn(s, generator=g, dtype=dtype).requires_grad_() for s in shapes]


def _groups(ps):
    return [
        {"params": [ps[0]], "lr": 3e-2, "weight_decay": 0.1},
        {"params": [ps[1], ps[2]], "lr": 1e-2, "weight_decay": 0.0, "betas": (0.8, 0.99)},
    ]


def _set_grads(ps, step, dtype):
    g = torch.Generator().manual_seed(1000 + step)
    for p in ps[:2]:  # ps[2] keeps grad None: both optimizers must skip it
        p.grad = torch.randn(p.shape, generator=g, dtype=dtype)


def _run(ours, ref, ps_ours, ps_ref, steps, dtype, first=0):
    for s in range(first, first + steps):
        _set_grads(ps_ours, s, dtype)
        _set_grads(ps_ref, s, dtype)
        ours.step()
        ref.step()


def _pair(dtype):
    ps_ours, ps_ref = _params(dtype), _params(dtype)
    ours = AdamW(_groups(ps_ours), eps=1e-8)
    ref = torch.optim.AdamW(_groups(ps_ref), eps=1e-8, foreach=False)
    return ours, ref, ps_ours, ps_ref


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
def test_adamw_matches_torch_step_for_step(dtype, tol):
    ours, ref, ps_ours, ps_ref = _pair(dtype)
    initial = ps_ours[2].detach().clone()
    for s in range(25):
        _run(ours, ref, ps_ours, ps_ref, 1, dtype, first=s)
        for a, b in zip(ps_ours, ps_ref):
            torch.testing.assert_close(a, b, rtol=0, atol=tol)
    assert torch.equal(ps_ours[2], initial)  # no grad: untouched, and no state created
    assert ps_ours[2] not in ours.state
    assert not torch.equal(ps_ours[0], _params(dtype)[0])  # and the others did move


def test_adamw_float64_is_exact():
    ours, ref, ps_ours, ps_ref = _pair(torch.float64)
    _run(ours, ref, ps_ours, ps_ref, 10, torch.float64)
    for a, b in zip(ps_ours, ps_ref):
        assert torch.equal(a, b)


def test_adamw_first_step_closed_form():
    """Step 1 by hand: m_hat = g and v_hat = g^2, so the step is lr * g / (|g| + eps) after decay."""
    p = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64, requires_grad=True)
    g = torch.tensor([0.3, -0.1, 2.0], dtype=torch.float64)
    lr, wd, eps = 0.1, 0.01, 1e-8
    expected = p.detach() * (1 - lr * wd) - lr * g / (g.abs() + eps)
    p.grad = g.clone()
    AdamW([p], lr=lr, weight_decay=wd, eps=eps).step()
    torch.testing.assert_close(p.detach(), expected, rtol=0, atol=1e-15)


def test_adamw_state_dict_round_trip_continues_identically():
    dtype = torch.float64
    ours, ref, ps_ours, ps_ref = _pair(dtype)
    _run(ours, ref, ps_ours, ps_ref, 5, dtype)

    # A fresh optimizer over copies of the parameters, loaded from the saved state, continues like the original.
    saved = copy.deepcopy(ours.state_dict())
    ps_new = [p.detach().clone().requires_grad_() for p in ps_ours]
    resumed = AdamW(_groups(ps_new))
    resumed.load_state_dict(saved)
    assert resumed.param_groups[0]["lr"] == 3e-2 and resumed.param_groups[1]["betas"] == (0.8, 0.99)
    _run(ours, resumed, ps_ours, ps_new, 5, dtype, first=5)
    for a, b in zip(ps_ours, ps_new):
        assert torch.equal(a, b)
    assert ours.state[ps_ours[0]]["step"].item() == 10

    # The state has PyTorch's layout, so it also loads into torch.optim.AdamW and continues like ours.
    ps_torch = [p.detach().clone().requires_grad_() for p in ps_ours]
    torch_opt = torch.optim.AdamW(_groups(ps_torch), foreach=False)
    torch_opt.load_state_dict(copy.deepcopy(ours.state_dict()))
    _run(ours, torch_opt, ps_ours, ps_torch, 3, dtype, first=10)
    for a, b in zip(ps_ours, ps_torch):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


# ---------------------------------------------------------------- warm-up + cosine


def _closed_form(step, max_lr, W, N, min_lr):
    if step < W:
        return max_lr * (step + 1) / W
    if step > N:
        return min_lr
    return min_lr + 0.5 * (max_lr - min_lr) * (1 + math.cos(math.pi * (step - W) / (N - W)))


@pytest.mark.parametrize("W, N, min_lr", [(10, 100, 0.0), (10, 100, 6e-5), (1, 7, 1e-4), (0, 50, 0.0)])
def test_warmup_cosine_closed_form(W, N, min_lr):
    max_lr = 6e-4
    for step in range(N + 20):
        assert warmup_cosine(step, max_lr, W, N, min_lr) == pytest.approx(
            _closed_form(step, max_lr, W, N, min_lr), rel=1e-12, abs=1e-15
        )


def test_warmup_cosine_boundaries():
    max_lr, W, N, min_lr = 6e-4, 10, 100, 6e-5
    lr = lambda s: warmup_cosine(s, max_lr, W, N, min_lr)  # noqa: E731
    assert lr(0) == pytest.approx(max_lr / W)  # step 0 already trains
    assert lr(W - 1) == pytest.approx(max_lr)  # warm-up ends at max_lr ...
    assert lr(W) == pytest.approx(max_lr)  # ... where the cosine starts
    assert lr((W + N) // 2) == pytest.approx((max_lr + min_lr) / 2)  # halfway down the decay
    assert lr(N) == pytest.approx(min_lr)
    assert lr(N + 1) == lr(10 * N) == min_lr
    assert warmup_cosine(0, max_lr, 0, N) == pytest.approx(max_lr)  # no warm-up


def test_warmup_cosine_monotone():
    max_lr, W, N, min_lr = 1.0, 20, 200, 0.1
    lrs = [warmup_cosine(s, max_lr, W, N, min_lr) for s in range(N + 10)]
    assert all(a < b for a, b in zip(lrs[: W - 1], lrs[1:W]))  # strictly up during warm-up
    assert all(a >= b for a, b in zip(lrs[W - 1 :], lrs[W:]))  # never up afterwards
    assert max(lrs) == pytest.approx(max_lr) and min(lrs[W:]) == pytest.approx(min_lr)  # lrs[0] = 0.05 < min_lr


def test_warmup_cosine_rejects_bad_lengths():
    with pytest.raises(ValueError):
        warmup_cosine(0, 1.0, 10, 10)


# ---------------------------------------------------------------- gradient clipping


def _with_grads(scale, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    ps = [torch.zeros(s, dtype=dtype, requires_grad=True) for s in [(3, 4), (7,), (2, 3, 2), ()]]
    for p in ps:
        p.grad = scale * torch.randn(p.shape, generator=g, dtype=dtype)
    ps.append(torch.zeros(5, dtype=dtype, requires_grad=True))  # grad None: skipped
    return ps


@pytest.mark.parametrize("scale, max_norm", [(10.0, 1.0), (0.01, 1.0), (3.0, 0.5)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_clip_grad_norm_matches_torch(scale, max_norm, dtype):
    ours, ref = _with_grads(scale, dtype=dtype), _with_grads(scale, dtype=dtype)
    norm = clip_grad_norm(ours, max_norm)
    ref_norm = torch.nn.utils.clip_grad_norm_(ref, max_norm)
    assert isinstance(norm, float)
    assert norm == pytest.approx(ref_norm.item(), rel=1e-12 if dtype == torch.float64 else 1e-6)
    for a, b in zip(ours, ref):
        if b.grad is None:
            assert a.grad is None
        else:
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-12 if dtype == torch.float64 else 1e-6, atol=0)


def test_clip_grad_norm_is_global_not_per_tensor():
    ps = _with_grads(10.0)
    before = [p.grad.clone() for p in ps[:4]]
    norm = clip_grad_norm(ps, 1.0)
    assert norm == pytest.approx(torch.cat([b.flatten() for b in before]).norm().item(), rel=1e-12)
    after = torch.cat([p.grad.flatten() for p in ps[:4]])
    assert after.norm().item() == pytest.approx(1.0, rel=1e-5)
    ratios = [(a.grad / b) for a, b in zip(ps[:4], before)]  # one common factor: direction preserved
    for r in ratios:
        torch.testing.assert_close(r, torch.full_like(r, ratios[0].flatten()[0].item()), rtol=1e-12, atol=0)


def test_clip_grad_norm_below_max_leaves_grads_unchanged():
    ps = _with_grads(0.01)
    before = [p.grad.clone() for p in ps[:4]]
    clip_grad_norm(ps, 1.0)
    for p, b in zip(ps[:4], before):
        assert torch.equal(p.grad, b)


# ---------------------------------------------------------------- gradient accumulation


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 3)).double()


def test_gradient_accumulation_equals_one_big_batch():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, 5, generator=g, dtype=torch.float64)
    y = torch.randn(8, 3, generator=g, dtype=torch.float64)
    loss_fn = nn.MSELoss()  # mean over the batch, so 4 micro-batch means / 4 == the mean over all 8

    big, accum = _mlp(), _mlp()
    loss_fn(big(x), y).backward()
    micro = 4
    for xb, yb in zip(x.chunk(micro), y.chunk(micro)):
        (loss_fn(accum(xb), yb) / micro).backward()  # .grad accumulates (+=) across backward() calls

    for a, b in zip(big.parameters(), accum.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=1e-12)

    opt_big, opt_accum = AdamW(big.parameters(), lr=1e-2), AdamW(accum.parameters(), lr=1e-2)
    opt_big.step()
    opt_accum.step()
    for a, b in zip(big.parameters(), accum.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
