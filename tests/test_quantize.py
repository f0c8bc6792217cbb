"""gptcourse.quantize: the NF4 levels against the table published with QLoRA, and block-wise fake quantization
checked value by value."""

import pytest
import torch
from torch import nn

from gptcourse.quantize import fake_quantize, int4_levels, nf4_levels, quantize_linear_layers

# The NF4 table of the QLoRA paper (Dettmers et al. 2023, appendix E), to four decimals.
PUBLISHED_NF4 = [-1.0, -0.6962, -0.5251, -0.3949, -0.2844, -0.1848, -0.0911, 0.0, 0.0796, 0.1609, 0.2461, 0.3379,
                 0.4407, 0.5626, 0.7230, 1.0]


def test_nf4_levels_are_the_published_table():
    assert torch.allclose(nf4_levels(), torch.tensor(PUBLISHED_NF4), atol=1e-4)
    assert len(int4_levels()) == 15 and 0.0 in int4_levels().tolist()


@pytest.mark.parametrize("levels", [int4_levels(), nf4_levels()], ids=["int4", "nf4"])
def test_each_weight_becomes_the_nearest_level_times_its_blocks_absmax(levels):
    torch.manual_seed(0)
    weight = torch.randn(8, 32, dtype=torch.float64)
    weight[3] = 0.0  # an all-zero block stays zero
    original = weight.clone()
    quantized = fake_quantize(weight, levels, block=16)
    assert torch.equal(weight, original) and quantized.dtype == torch.float64 and quantized.shape == (8, 32)
    for block, got in zip(weight.reshape(-1, 16), quantized.reshape(-1, 16)):
        scale = block.abs().max()
        candidates = torch.tensor([float(level) * float(scale) for level in levels], dtype=torch.float64)
        for w, q in zip(block.tolist(), got.tolist()):
            assert (candidates - q).abs().min() < 1e-6, "not a level times the scale"
            assert abs(q - w) <= (candidates - w).abs().min() + 1e-6, "not the nearest level"
        if scale > 0:  # the block's largest weight is kept exactly (it is the scale times +-1)
            i = block.abs().argmax()
            assert abs(got[i] - block[i]) < 1e-6
        else:
            assert torch.equal(got, block)
    with pytest.raises(ValueError, match="blocks of 64"):
        fake_quantize(torch.zeros(3, 5), levels)


def test_nf4_is_closer_than_evenly_spaced_levels_on_normal_weights():
    torch.manual_seed(1)
    weight = torch.randn(64, 256)
    error = {name: (fake_quantize(weight, levels) - weight).abs().mean().item()
             for name, levels in [("int4", int4_levels()), ("nf4", nf4_levels())]}
    assert error["nf4"] < 0.9 * error["int4"]


def test_quantize_linear_layers_changes_every_linear_weight_and_nothing_else():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Embedding(10, 64), nn.Linear(64, 128), nn.LayerNorm(128), nn.Linear(128, 64))
    before = {name: p.clone() for name, p in model.named_parameters()}
    assert quantize_linear_layers(model, nf4_levels()) == 64 * 128 * 2
    for name, p in model.named_parameters():
        changed = not torch.equal(p, before[name])
        assert changed == (name in ("1.weight", "3.weight")), name
        if changed:
            assert len(torch.unique(p[0, :64] / p[0, :64].abs().max())) <= 16
