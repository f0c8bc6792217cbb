"""gptcourse.embeddings, against independent oracles: F.one_hot times the table, the sinusoid formula evaluated in
float64 with NumPy, and the sum of two table look-ups written out by hand."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gptcourse.embeddings import TokenAndPositionEmbedding, one_hot_embedding, sinusoidal_positions
from gptcourse.tolerances import assert_close, devices_to_test


@pytest.mark.parametrize("device", devices_to_test(), ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_one_hot_embedding_is_a_table_lookup(device, dtype):
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(11, 5, generator=generator, dtype=dtype).to(device)
    ids = torch.randint(0, 11, (3, 7), generator=generator).to(device)
    got = one_hot_embedding(ids, weight)
    assert got.shape == (3, 7, 5) and got.dtype == dtype
    assert_close(got, F.embedding(ids, weight))
    assert_close(got, torch.nn.Embedding.from_pretrained(weight)(ids))


def test_one_hot_embedding_gradient_matches_nn_embedding():
    ids = torch.tensor([2, 0, 2, 2])  # id 2 three times: its row collects three gradients
    weight = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    one_hot_embedding(ids, weight).pow(2).sum().backward()
    mine, weight.grad = weight.grad, None
    F.embedding(ids, weight).pow(2).sum().backward()
    assert_close(mine, weight.grad)
    assert torch.all(mine[[1, 3]] == 0)  # unused tokens get no gradient at all


def closed_form(context_length: int, d_model: int, base: float = 10_000.0) -> np.ndarray:
    """PE[p, 2i] = sin(p / base^(2i/d)), PE[p, 2i+1] = cos(p / base^(2i/d)), one entry at a time, in float64."""
    table = np.zeros((context_length, d_model))
    for p in range(context_length):
        for i in range(d_model // 2):
            angle = p / math.pow(base, 2 * i / d_model)
            table[p, 2 * i], table[p, 2 * i + 1] = math.sin(angle), math.cos(angle)
    return table


@pytest.mark.parametrize("device", devices_to_test(), ids=str)
@pytest.mark.parametrize("context_length,d_model,base", [(1, 2, 10_000.0), (7, 4, 10_000.0), (50, 16, 10_000.0),
                                                         (1024, 64, 10_000.0), (9, 6, 100.0)])
def test_sinusoidal_positions_match_the_formula(device, context_length, d_model, base):
    got = sinusoidal_positions(context_length, d_model, base, device=device)
    assert got.shape == (context_length, d_model) and got.dtype == torch.float32 and got.device.type == device.type
    expected = torch.from_numpy(closed_form(context_length, d_model, base)).float().to(device)
    assert_close(got, expected)


def test_sinusoidal_positions_need_pairs():
    with pytest.raises(ValueError, match="even"):
        sinusoidal_positions(4, 5)


@pytest.mark.parametrize("device", devices_to_test(), ids=str)
def test_token_and_position_embedding_adds_the_two_rows(device):
    torch.manual_seed(0)
    layer = TokenAndPositionEmbedding(vocab_size=10, d_model=4, context_length=6).to(device)
    ids = torch.tensor([[3, 3, 9], [0, 1, 2]], device=device)
    out = layer(ids)
    assert out.shape == (2, 3, 4)
    tok, pos = layer.token_embedding.weight, layer.position_embedding.weight
    for b in range(2):
        for t in range(3):
            assert_close(out[b, t], tok[ids[b, t]] + pos[t])  # position t, whatever the batch row
    assert not torch.equal(out[0, 0], out[0, 1]), "the same token at two positions gets two different vectors"
    with pytest.raises(ValueError, match="only 6"):
        layer(torch.zeros(1, 7, dtype=torch.long, device=device))


def test_token_and_position_embedding_dropout_only_in_training():
    torch.manual_seed(0)
    layer = TokenAndPositionEmbedding(vocab_size=10, d_model=64, context_length=8, dropout=0.5)
    ids = torch.randint(0, 10, (4, 8))
    layer.eval()
    clean = layer(ids)
    assert torch.equal(clean, layer(ids))
    layer.train()
    noisy = layer(ids)
    zeros = (noisy == 0).float().mean().item()
    assert 0.35 < zeros < 0.65
    kept = noisy != 0
    assert_close(noisy[kept], 2 * clean[kept])  # the survivors are scaled by 1 / (1 - p)
