"""gptcourse.flops: the 6N + 12LTd count against PyTorch's own FLOP counter, MFU, the matmul measurement."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from gptcourse.flops import (matmul_flops_per_s, matmul_parameters, matmul_size_like, mfu, training_flops_per_token,
                             training_mfu)
from gptcourse.model import GPT, GPTConfig, llama_style
from gptcourse.pretrain import Recipe

# From-scratch attention (use_sdpa=False): its products are matmuls the counter sees. The counter has no formula for
# the CPU's fused attention kernel, so with use_sdpa=True it would miss the 12 L T d part.
CONFIGS = {
    "gpt2, tied head": GPTConfig(vocab_size=97, context_length=16, d_model=32, n_layers=2, n_heads=4),
    "llama, untied, grouped-query": llama_style(vocab_size=97, context_length=16, d_model=32, n_layers=2, n_heads=4,
                                                n_kv_heads=2),
}


def counted_training_flops(model: GPT, batch_size: int) -> int:
    """FLOPs of one forward + backward pass as PyTorch counts them, operation by operation."""
    config = model.config
    ids = torch.randint(0, config.vocab_size, (batch_size, config.context_length + 1))
    with FlopCounterMode(display=False) as counter:
        _, loss = model(ids[:, :-1], ids[:, 1:])
        loss.backward()
    return counter.get_total_flops()


@pytest.mark.parametrize("name", CONFIGS)
def test_the_formula_is_what_pytorch_counts(name):
    config = CONFIGS[name]
    batch_size = 3
    tokens = batch_size * config.context_length
    assert counted_training_flops(GPT(config), batch_size) == training_flops_per_token(config) * tokens


def test_the_count_assumes_every_input_gradient_is_needed():
    """Exact for a model trained whole: the first block's products pass a gradient down even to a frozen embedding,
    because the first norm's scale and shift below them learn. (The embedding's own gradient is a scatter-add of
    rows, no product, in neither count.) Freeze everything below the first product, as fine-tuning may, and its
    input gradient, 2 FLOPs per weight per token, is never computed: then the formula counts too much."""
    config = GPTConfig(vocab_size=97, context_length=16, d_model=32, n_layers=2, n_heads=4, tie_weights=False)
    model = GPT(config)
    tokens = 3 * config.context_length
    model.embed.requires_grad_(False)
    assert counted_training_flops(model, 3) == training_flops_per_token(config) * tokens
    model.blocks[0].norm1.requires_grad_(False)
    first = model.blocks[0].attn.qkv.weight.numel()
    assert counted_training_flops(model, 3) == (training_flops_per_token(config) - 2 * first) * tokens


def test_n_counts_the_matrices_and_the_tied_head_once_more():
    model = GPT(CONFIGS["gpt2, tied head"])
    matrices = sum(p.numel() for name, p in model.named_parameters() if p.dim() == 2 and not name.startswith("embed."))
    assert matmul_parameters(model.config) == matrices + model.config.vocab_size * model.config.d_model


def test_the_course_model_numbers():
    config = Recipe().model
    V = config.vocab_size
    # 4 blocks of d * 3d + d * d + 2 * d * 4d = 12 d^2 weights, and the V x 128 head.
    assert matmul_parameters(config) == 4 * 12 * 128**2 + V * 128
    assert training_flops_per_token(config) == 6 * (4 * 12 * 128**2 + V * 128) + 12 * 4 * 128 * 128
    assert training_flops_per_token(config, context_length=64) < training_flops_per_token(config)
    assert matmul_size_like(config, 16 * 128) == 512  # 2048 x 128 x 512 products: as large as 512^3


def test_mfu_is_achieved_over_peak():
    config = Recipe().model
    per_token = training_flops_per_token(config)
    assert mfu(1000.0, config, peak_flops=4 * 1000.0 * per_token) == pytest.approx(0.25)


def test_matmul_and_training_measurements_are_positive_and_consistent():
    assert matmul_flops_per_s(64, min_seconds=0.01, repeats=2) > 0
    config = GPTConfig(vocab_size=97, context_length=16, d_model=32, n_layers=1, n_heads=4)
    result = training_mfu(config, batch_size=2, steps=2)
    assert result["peak_size"] == matmul_size_like(config, 32) and result["mfu"] > 0
    assert result["flops_per_s"] == pytest.approx(result["tokens_per_s"] * training_flops_per_token(config))
    assert result["mfu"] == pytest.approx(result["flops_per_s"] / result["peak_flops_per_s"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (make gpu-check)")
def test_bfloat16_training_mfu_on_cuda():
    config = GPTConfig(vocab_size=512, context_length=128, d_model=128, n_layers=2, n_heads=4, use_sdpa=True,
                       use_fused_ops=True)
    result = training_mfu(config, batch_size=4, steps=3, device="cuda", precision="bfloat16", peak_size=2048)
    assert 0 < result["mfu"] < 1  # a small model uses little of a GPU, but never more than all of it
