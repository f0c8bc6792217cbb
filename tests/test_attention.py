"""gptcourse.attention against independent oracles: PyTorch's scaled_dot_product_attention and nn.MultiheadAttention.

Comparisons run in float64 (so any difference is a bug, not rounding) on every device of ``devices_to_test()``.
"""

import pytest
import torch
import torch.nn.functional as F

from gptcourse.attention import (MultiHeadAttention, attention_weights, causal_mask, padding_mask,
                                 scaled_dot_product_attention)
from gptcourse.tolerances import assert_close, devices_to_test

DEVICES = devices_to_test()
DTYPE = torch.float64


def randn(*shape, device, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=generator, dtype=DTYPE).to(device)


def torch_mha_with_weights_of(ours: MultiHeadAttention) -> torch.nn.MultiheadAttention:
    """A torch.nn.MultiheadAttention holding exactly our weights (its in_proj is our fused qkv, rows q, k, v)."""
    theirs = torch.nn.MultiheadAttention(ours.d_model, ours.n_heads, batch_first=True, dtype=DTYPE,
                                         device=ours.qkv.weight.device)
    with torch.no_grad():
        theirs.in_proj_weight.copy_(ours.qkv.weight)
        theirs.in_proj_bias.copy_(ours.qkv.bias)
        theirs.out_proj.weight.copy_(ours.out_proj.weight)
        theirs.out_proj.bias.copy_(ours.out_proj.bias)
    return theirs.eval()


def test_masks():
    assert causal_mask(3).tolist() == [[True, False, False], [True, True, False], [True, True, True]]
    pad = padding_mask([3, 1], 3)
    assert pad.shape == (2, 1, 1, 3) and pad.dtype == torch.bool
    assert pad[:, 0, 0].tolist() == [[True, True, True], [True, False, False]]
    both = causal_mask(3) & pad
    assert both.shape == (2, 1, 3, 3)
    assert both[1, 0].tolist() == [[True, False, False], [True, False, False], [True, False, False]]


@pytest.mark.parametrize("device", DEVICES, ids=str)
@pytest.mark.parametrize("masking", ["none", "causal", "padding", "random"])
def test_sdpa_matches_torch(device, masking):
    q, k, v = (randn(2, 3, 6, 8, device=device, seed=s) for s in (1, 2, 3))
    mask = {"none": None, "causal": causal_mask(6, device), "padding": padding_mask([6, 2], 6, device),
            "random": randn(2, 3, 6, 6, device=device, seed=4) > 0}[masking]
    if masking == "random":
        mask[..., 0] = True  # a row with nothing to attend to is tested on its own below
    ours = scaled_dot_product_attention(q, k, v, mask)
    theirs = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert_close(ours, theirs)
    weights = attention_weights(q, k, mask)
    assert_close(weights.sum(-1), torch.ones_like(weights.sum(-1)))
    if mask is not None:
        assert (weights.masked_select(~mask.expand_as(weights)) == 0).all()


@pytest.mark.parametrize("device", DEVICES, ids=str)
def test_fully_masked_rows_give_zeros_not_nan(device):
    q, k, v = (randn(1, 1, 4, 8, device=device, seed=s) for s in (1, 2, 3))
    for t in (q, k, v):
        t.requires_grad_(True)
    mask = torch.ones(4, 4, dtype=torch.bool, device=device)
    mask[2] = False  # query 2 may look at nothing (say, left padding)
    out = scaled_dot_product_attention(q, k, v, mask)
    assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
    assert (out[0, 0, 2] == 0).all()
    out.sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v)), "a fully masked row must not give NaN gradients"


@pytest.mark.parametrize("device", DEVICES, ids=str)
@pytest.mark.parametrize("causal", [False, True])
def test_mha_matches_torch_multihead_attention(device, causal):
    torch.manual_seed(0)
    ours = MultiHeadAttention(32, 4, causal=causal).to(device, DTYPE).eval()
    theirs = torch_mha_with_weights_of(ours)
    x = randn(3, 7, 32, device=device)
    blocked = ~causal_mask(7, device) if causal else None  # torch's boolean attn_mask: True = NOT allowed
    expected, _ = theirs(x, x, x, attn_mask=blocked, need_weights=False)
    assert_close(ours(x), expected)
    ours.use_sdpa = True
    assert_close(ours(x), expected)


@pytest.mark.parametrize("device", DEVICES, ids=str)
def test_mha_padding_and_cross_attention_match_torch(device):
    torch.manual_seed(1)
    ours = MultiHeadAttention(24, 3).to(device, DTYPE).eval()
    theirs = torch_mha_with_weights_of(ours)
    x, memory = randn(2, 5, 24, device=device, seed=1), randn(2, 9, 24, device=device, seed=2)
    lengths = [9, 4]
    key_padding = ~padding_mask(lengths, 9, device)[:, 0, 0]  # (B, S), True = padding, torch's convention
    expected, _ = theirs(x, memory, memory, key_padding_mask=key_padding, need_weights=False)
    for use_sdpa in (False, True):
        ours.use_sdpa = use_sdpa
        assert_close(ours(x, kv=memory, mask=padding_mask(lengths, 9, device)), expected)


@pytest.mark.parametrize("device", DEVICES, ids=str)
def test_mha_weights_match_torch(device):
    torch.manual_seed(2)
    ours = MultiHeadAttention(16, 2, causal=True).to(device, DTYPE)
    theirs = torch_mha_with_weights_of(ours)
    x = randn(2, 6, 16, device=device)
    _, expected = theirs(x, x, x, attn_mask=~causal_mask(6, device), need_weights=True, average_attn_weights=False)
    assert_close(ours.attention_weights(x), expected)


@pytest.mark.parametrize("device", DEVICES, ids=str)
@pytest.mark.parametrize("n_kv_heads", [1, 2, 4])
def test_grouped_query_attention(device, n_kv_heads):
    """Each query head h uses K/V head h // (n_heads // n_kv_heads); checked by hand and against SDPA's enable_gqa."""
    torch.manual_seed(3)
    mha = MultiHeadAttention(32, 4, n_kv_heads=n_kv_heads, causal=True).to(device, DTYPE).eval()
    d_head, d_kv = 8, n_kv_heads * 8
    assert mha.qkv.weight.shape == (32 + 2 * d_kv, 32)
    x = randn(2, 5, 32, device=device)
    w_q, w_k, w_v = mha.qkv.weight.split([32, d_kv, d_kv])
    b_q, b_k, b_v = mha.qkv.bias.split([32, d_kv, d_kv])
    q, k, v = F.linear(x, w_q, b_q), F.linear(x, w_k, b_k), F.linear(x, w_v, b_v)
    group = 4 // n_kv_heads
    heads = []
    for h in range(4):  # one head at a time, with plain slicing
        kv_slice = slice((h // group) * d_head, (h // group + 1) * d_head)
        qh, kh, vh = q[..., h * d_head:(h + 1) * d_head], k[..., kv_slice], v[..., kv_slice]
        heads.append(F.scaled_dot_product_attention(qh, kh, vh, is_causal=True))
    expected = mha.out_proj(torch.cat(heads, dim=-1))
    assert_close(mha(x), expected)
    mha.use_sdpa = True
    assert_close(mha(x), expected)


def test_gqa_with_all_heads_is_plain_multi_head_attention():
    torch.manual_seed(4)
    plain = MultiHeadAttention(16, 4).double()
    gqa = MultiHeadAttention(16, 4, n_kv_heads=4).double()
    gqa.load_state_dict(plain.state_dict())
    x = randn(1, 3, 16, device="cpu")
    assert_close(gqa(x), plain(x))


@pytest.mark.parametrize("device", DEVICES, ids=str)
@pytest.mark.parametrize("use_sdpa", [False, True])
def test_causal_outputs_ignore_the_future(device, use_sdpa):
    torch.manual_seed(5)
    mha = MultiHeadAttention(16, 2, causal=True, use_sdpa=use_sdpa).to(device, DTYPE).eval()
    x = randn(2, 8, 16, device=device)
    changed = x.clone()
    changed[:, 5:] = randn(2, 3, 16, device=device, seed=9)
    before, after = mha(x), mha(changed)
    assert_close(after[:, :5], before[:, :5])
    assert not torch.allclose(after[:, 5:], before[:, 5:])


@pytest.mark.parametrize("device", DEVICES, ids=str)
def test_padding_does_not_change_real_tokens(device):
    """A short sequence gives the same outputs alone and padded in a batch (with garbage in the padding)."""
    torch.manual_seed(6)
    mha = MultiHeadAttention(16, 4, causal=True).to(device, DTYPE).eval()
    short = randn(1, 3, 16, device=device)
    batch = randn(2, 6, 16, device=device, seed=7)
    batch[1, :3] = short[0]
    out = mha(batch, mask=padding_mask([6, 3], 6, device))
    assert_close(out[1, :3], mha(short)[0])
    mha.causal = False  # with padding only, the keys beyond the length are ignored all the same
    assert_close(mha(batch, mask=padding_mask([6, 3], 6, device))[1, :3], mha(short)[0])


@pytest.mark.parametrize("device", DEVICES, ids=str)
def test_dropout_only_in_training(device):
    torch.manual_seed(7)
    mha = MultiHeadAttention(16, 2, dropout=0.5).to(device, DTYPE)
    x = randn(2, 10, 16, device=device)
    mha.train()
    assert not torch.allclose(mha(x), mha(x)), "dropout must make two training passes differ"
    mha.eval()
    assert_close(mha(x), mha(x))
    reference = MultiHeadAttention(16, 2, dropout=0.0).to(device, DTYPE).eval()
    reference.load_state_dict(mha.state_dict())
    assert_close(mha(x), reference(x))
    q = randn(1, 1, 4, 8, device=device)
    assert_close(scaled_dot_product_attention(q, q, q, dropout_p=0.5, training=False),
                 scaled_dot_product_attention(q, q, q))


def test_dropout_keeps_the_expected_value():
    """Dropped weights are zero, the others are scaled by 1 / (1 - p): on average the output is unchanged."""
    torch.manual_seed(8)
    q, k = randn(1, 1, 4, 8, device="cpu"), randn(1, 1, 4, 8, device="cpu", seed=1)
    v = torch.eye(4, dtype=DTYPE)[None, None]  # the output then *is* the (dropped) attention weights
    runs = torch.stack([scaled_dot_product_attention(q, k, v, dropout_p=0.25) for _ in range(4000)])
    kept = runs != 0
    assert 0.7 < kept.double().mean() < 0.8
    assert torch.allclose(runs.mean(0), attention_weights(q, k), atol=0.02)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError):
        MultiHeadAttention(30, 4)
    with pytest.raises(ValueError):
        MultiHeadAttention(32, 4, n_kv_heads=3)
    causal = MultiHeadAttention(8, 2, causal=True)
    with pytest.raises(ValueError, match="causal"):
        causal(torch.randn(1, 3, 8), kv=torch.randn(1, 5, 8))
