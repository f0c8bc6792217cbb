"""gptcourse.model against independent oracles: torch.nn.functional's norms and GELU, torch.nn.RMSNorm, and the
parameter counts of Hugging Face transformers' GPT-2 and LLaMA built from a config (on the meta device: no memory,
no download). The whole-model equivalence with transformers is in test_gpt2_weights.py.
"""

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from gptcourse.attention import MultiHeadAttention, RotaryEmbedding, rotate_half
from gptcourse.model import (GPT, GPT2_SIZES, GELU, Block, FeedForward, GPTConfig, LayerNorm, RMSNorm,
                             count_parameters, gelu_tanh, generate_greedy, gpt2_config, gpt_parameter_count,
                             llama_style, make_norm, parameter_breakdown, parameter_memory_bytes)
from gptcourse.tolerances import assert_close, devices_to_test

DEVICES = devices_to_test()
DTYPE = torch.float64

TINY = GPTConfig(vocab_size=97, context_length=16, d_model=32, n_layers=2, n_heads=4)
TINY_LLAMA = llama_style(vocab_size=97, context_length=16, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2)


def randn(*shape, device="cpu", seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=generator, dtype=DTYPE).to(device)


def randomise_(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Overwrite every parameter with noise, so that no scale is 1 and no bias is 0 by accident."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=generator, dtype=p.dtype) * 0.3 + (1.0 if p.dim() == 1 else 0.0))
    return module


# ---------------------------------------------------------------------------------------------------------------
# Norms and activations


@pytest.mark.parametrize("device", DEVICES, ids=str)
@pytest.mark.parametrize("bias", [True, False])
def test_layernorm_matches_torch(device, bias):
    norm = randomise_(LayerNorm(24, eps=1e-5, bias=bias)).to(device, DTYPE)
    x = randn(3, 5, 24, device=device) * 4 + 2  # far from mean 0 / variance 1, so normalising changes something
    expected = F.layer_norm(x, (24,), norm.weight, norm.bias, eps=1e-5)
    assert_close(norm(x), expected)
    plain = LayerNorm(24).to(device, DTYPE)(x)  # fresh: scale 1, shift 0
    assert_close(plain.mean(-1), torch.zeros_like(plain.mean(-1)))
    assert torch.allclose(plain.var(-1, unbiased=False), torch.ones_like(plain[..., 0]), atol=1e-4)


def test_layernorm_uses_the_biased_variance():
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0]], dtype=DTYPE)
    out = LayerNorm(4, eps=0.0).double()(x)
    var = 1.25  # mean((x - 2.5)^2), divided by 4 not 3
    assert_close(out, (x - 2.5) / math.sqrt(var))


@pytest.mark.parametrize("device", DEVICES, ids=str)
def test_rmsnorm_matches_torch(device):
    ours = randomise_(RMSNorm(24, eps=1e-6)).to(device, DTYPE)
    theirs = torch.nn.RMSNorm(24, eps=1e-6, device=device, dtype=DTYPE)
    with torch.no_grad():
        theirs.weight.copy_(ours.weight)
    x = randn(3, 5, 24, device=device) * 3 + 1
    assert_close(ours(x), theirs(x))


def test_make_norm_follows_the_config():
    assert isinstance(make_norm(TINY), LayerNorm) and make_norm(TINY).bias is not None
    assert isinstance(make_norm(TINY_LLAMA), RMSNorm) and make_norm(TINY_LLAMA).eps == 1e-6
    assert make_norm(replace(TINY, bias=False)).bias is None


@pytest.mark.parametrize("device", DEVICES, ids=str)
def test_gelu_is_the_tanh_approximation(device):
    x = torch.linspace(-6, 6, 1001, dtype=DTYPE, device=device)
    assert_close(gelu_tanh(x), F.gelu(x, approximate="tanh"))
    assert_close(GELU()(x), F.gelu(x, approximate="tanh"))
    assert_close(GELU(fused=True)(x), gelu_tanh(x))
    assert not torch.allclose(gelu_tanh(x), F.gelu(x), atol=1e-6), "the tanh form differs (slightly) from exact GELU"


@pytest.mark.parametrize("device", DEVICES, ids=str)
def test_feed_forward_by_hand(device):
    x = randn(2, 3, 32, device=device)
    gelu_ffn = randomise_(FeedForward(TINY)).to(device, DTYPE)
    assert gelu_ffn.fc_in.weight.shape == (128, 32) and gelu_ffn.fc_out.weight.shape == (32, 128)
    h = F.gelu(x @ gelu_ffn.fc_in.weight.T + gelu_ffn.fc_in.bias, approximate="tanh")
    assert_close(gelu_ffn(x), h @ gelu_ffn.fc_out.weight.T + gelu_ffn.fc_out.bias)
    swiglu = randomise_(FeedForward(TINY_LLAMA)).to(device, DTYPE)
    gate, up = x @ swiglu.gate.weight.T, x @ swiglu.up.weight.T
    assert_close(swiglu(x), (gate * torch.sigmoid(gate) * up) @ swiglu.down.weight.T)
    x0 = x.clone()
    x0[:, 1] = 7.0  # position-wise: changing one position changes only that position's output
    assert_close(gelu_ffn(x0)[:, [0, 2]], gelu_ffn(x)[:, [0, 2]])


def test_swiglu_width_keeps_the_parameter_count():
    for d in (64, 768, 4096):
        gelu, swiglu = GPTConfig(d_model=d, n_heads=1), GPTConfig(d_model=d, n_heads=1, mlp="swiglu")
        assert swiglu.ffn_dim % 8 == 0
        assert abs(3 * swiglu.ffn_dim - 2 * gelu.ffn_dim) <= 3 * 8
    assert GPTConfig(mlp="swiglu", d_ff=11008).ffn_dim == 11008


def test_config_rejects_unknown_choices():
    for bad in (dict(norm="batchnorm"), dict(mlp="relu"), dict(position="sinusoidal"), dict(n_heads=5),
                dict(n_kv_heads=5)):
        with pytest.raises(ValueError):
            GPTConfig(**bad)


# ---------------------------------------------------------------------------------------------------------------
# Blocks and the model


@pytest.mark.parametrize("device", DEVICES, ids=str)
def test_block_is_pre_norm_residual(device):
    block = randomise_(Block(TINY)).to(device, DTYPE).eval()
    x = randn(2, 6, 32, device=device)
    h = x + block.attn(F.layer_norm(x, (32,), block.norm1.weight, block.norm1.bias))
    expected = h + block.ffn(F.layer_norm(h, (32,), block.norm2.weight, block.norm2.bias))
    assert_close(block(x), expected)


@pytest.mark.parametrize("device", DEVICES, ids=str)
def test_encoder_block_sees_the_future(device):
    x = randn(1, 6, 32, device=device)
    changed = x.clone()
    changed[:, 4:] = randn(1, 2, 32, device=device, seed=5)  # (adding a constant would vanish in LayerNorm)
    for causal in (True, False):
        torch.manual_seed(0)
        block = Block(TINY, causal=causal).to(device, DTYPE).eval()
        assert block.attn.causal == causal
        same_past = torch.allclose(block(x)[:, :4], block(changed)[:, :4])
        assert same_past == causal


@pytest.mark.parametrize("device", DEVICES, ids=str)
@pytest.mark.parametrize("config", [TINY, TINY_LLAMA, replace(TINY, use_sdpa=True), replace(TINY_LLAMA, use_sdpa=True)],
                         ids=["gpt2", "llama", "gpt2-sdpa", "llama-sdpa"])
def test_gpt_is_causal(device, config):
    torch.manual_seed(0)
    model = randomise_(GPT(config), seed=1).to(device, DTYPE).eval()
    ids = torch.randint(0, config.vocab_size, (2, 12), device=device)
    changed = ids.clone()
    changed[:, 7] = (changed[:, 7] + 1) % config.vocab_size
    before, after = model(ids), model(changed)
    assert before.shape == (2, 12, config.vocab_size)
    assert_close(after[:, :7], before[:, :7])
    assert not torch.allclose(after[:, 7:], before[:, 7:])


@pytest.mark.parametrize("device", DEVICES, ids=str)
def test_fused_kernels_and_from_scratch_agree(device):
    """use_sdpa / use_fused_ops swap formulas for PyTorch's kernels: same weights, same logits and gradients."""
    torch.manual_seed(0)
    for config in (TINY, TINY_LLAMA):
        slow = randomise_(GPT(config)).to(device, DTYPE).eval()
        ids = torch.randint(0, config.vocab_size, (2, 10), device=device)
        slow(ids, ids)[1].backward()
        for fast_config in (replace(config, use_sdpa=True), replace(config, use_sdpa=True, use_fused_ops=True)):
            fast = GPT(fast_config).to(device, DTYPE).eval()
            fast.load_state_dict(slow.state_dict())
            assert_close(fast(ids), slow(ids))
            fast(ids, ids)[1].backward()
            assert_close(fast.blocks[0].norm1.weight.grad, slow.blocks[0].norm1.weight.grad)


def test_weight_tying():
    tied, untied = GPT(TINY), GPT(replace(TINY, tie_weights=False))
    assert tied.lm_head.weight is tied.embed.token_embedding.weight
    assert untied.lm_head.weight is not untied.embed.token_embedding.weight
    assert count_parameters(untied) - count_parameters(tied) == TINY.vocab_size * TINY.d_model
    assert parameter_breakdown(tied)["head"] == 0
    # one tensor, so one gradient made of both uses
    ids = torch.randint(0, TINY.vocab_size, (1, 5))
    tied(ids).sum().backward()
    assert tied.embed.token_embedding.weight.grad is tied.lm_head.weight.grad
    # the tie survives a round trip through the state dict
    copy = GPT(TINY)
    copy.load_state_dict(tied.state_dict())
    assert copy.lm_head.weight is copy.embed.token_embedding.weight


def test_loss_and_initialisation():
    torch.manual_seed(0)
    model = GPT(replace(TINY, vocab_size=500, context_length=32))
    ids = torch.randint(0, 500, (4, 32))
    targets = torch.randint(0, 500, (4, 32))
    logits, loss = model(ids, targets)
    assert_close(loss, F.cross_entropy(logits.reshape(-1, 500), targets.reshape(-1)))
    # GPT-2's small initialisation: an untrained model is close to uniform, loss ~ ln(V)
    assert abs(loss.item() - math.log(500)) < 0.1
    std = 0.02 / math.sqrt(2 * TINY.n_layers)
    assert abs(model.blocks[0].attn.out_proj.weight.std().item() - std) < std * 0.3
    assert model.blocks[0].attn.qkv.bias.abs().sum() == 0


def test_context_length_is_enforced():
    for config in (TINY, TINY_LLAMA):
        with pytest.raises(ValueError, match="cut it"):
            GPT(config)(torch.zeros(1, config.context_length + 1, dtype=torch.long))


@pytest.mark.parametrize("config", [TINY, TINY_LLAMA], ids=["gpt2", "llama"])
def test_generate_greedy(config):
    torch.manual_seed(0)
    model = GPT(config).eval()
    prompt = torch.randint(0, config.vocab_size, (2, 14))
    out = generate_greedy(model, prompt, 6)  # 14 + 6 > context_length 16: the input must be cropped
    assert out.shape == (2, 20) and torch.equal(out[:, :14], prompt)
    ids = prompt
    for _ in range(6):  # by hand
        with torch.no_grad():
            nxt = model(ids[:, -16:])[:, -1].argmax(-1, keepdim=True)
        ids = torch.cat([ids, nxt], 1)
    assert torch.equal(out, ids)
    assert torch.equal(generate_greedy(model, prompt[0], 6), out[0])  # a 1-D prompt gives a 1-D answer
    assert torch.equal(generate_greedy(model, prompt, 6), out)  # greedy is deterministic


# ---------------------------------------------------------------------------------------------------------------
# Counting


COUNT_CONFIGS = {
    "tiny": TINY,
    "untied": replace(TINY, tie_weights=False),
    "no-bias": replace(TINY, bias=False),
    "rmsnorm-swiglu": replace(TINY, norm="rmsnorm", mlp="swiglu"),
    "rope-gqa": replace(TINY, position="rope", n_kv_heads=1),
    "d_ff": replace(TINY, d_ff=40),
    "llama": TINY_LLAMA,
}


@pytest.mark.parametrize("config", COUNT_CONFIGS.values(), ids=COUNT_CONFIGS.keys())
def test_formula_counts_match_the_model(config):
    model = GPT(config)
    assert gpt_parameter_count(config) == count_parameters(model)
    assert gpt_parameter_count(config, breakdown=True) == parameter_breakdown(model)
    assert sum(parameter_breakdown(model).values()) == count_parameters(model)


def test_count_trainable_only():
    model = GPT(TINY)
    model.embed.requires_grad_(False)
    frozen = TINY.vocab_size * TINY.d_model + TINY.context_length * TINY.d_model
    assert count_parameters(model, trainable_only=True) == count_parameters(model) - frozen


def hf_gpt2_config(config: GPTConfig):
    from transformers import GPT2Config
    return GPT2Config(vocab_size=config.vocab_size, n_positions=config.context_length, n_embd=config.d_model,
                      n_layer=config.n_layers, n_head=config.n_heads, bos_token_id=0, eos_token_id=0)


@pytest.mark.parametrize("name", GPT2_SIZES)
def test_gpt2_sizes_match_transformers(name):
    from transformers import GPT2LMHeadModel
    config = GPT2_SIZES[name]
    with torch.device("meta"):  # shapes only: even GPT-2 XL costs no memory
        theirs = GPT2LMHeadModel(hf_gpt2_config(config))
        ours = GPT(config)
    expected = sum(p.numel() for p in theirs.parameters())
    assert gpt_parameter_count(config) == count_parameters(ours) == expected
    assert round(expected / 1e6) == {"gpt2": 124, "gpt2-medium": 355, "gpt2-large": 774, "gpt2-xl": 1558}[name]


def test_gpt2_small_numbers():
    assert gpt_parameter_count(GPT2_SIZES["gpt2"]) == 124_439_808
    assert parameter_memory_bytes(GPT2_SIZES["gpt2"]) == 4 * 124_439_808
    assert parameter_memory_bytes(GPT2_SIZES["gpt2"], torch.bfloat16) == 2 * 124_439_808
    assert gpt2_config("gpt2", n_layers=2).n_layers == 2 and GPT2_SIZES["gpt2"].n_layers == 12


def test_llama_count_matches_transformers():
    """LLaMA-2 7B's shapes, and a grouped-query variant, against transformers' LlamaForCausalLM on the meta device."""
    from transformers import LlamaConfig, LlamaForCausalLM
    for n_kv_heads in (32, 8):
        config = llama_style(vocab_size=32000, context_length=4096, d_model=4096, n_layers=32, n_heads=32,
                             n_kv_heads=n_kv_heads, d_ff=11008)
        hf = LlamaConfig(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                         num_attention_heads=32, num_key_value_heads=n_kv_heads, max_position_embeddings=4096)
        with torch.device("meta"):
            theirs = LlamaForCausalLM(hf)
        assert gpt_parameter_count(config) == sum(p.numel() for p in theirs.parameters())
    assert gpt_parameter_count(replace(config, n_kv_heads=32)) == 6_738_415_616  # "7B"


# ---------------------------------------------------------------------------------------------------------------
# Rotary position embeddings


def test_rotate_half():
    x = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert rotate_half(x).tolist() == [-3.0, -4.0, 1.0, 2.0]


def test_rope_properties():
    rope = RotaryEmbedding(16).double()
    q, k = randn(1, 16, seed=1), randn(1, 16, seed=2)
    at = lambda x, p: rope(x, torch.tensor([p]))  # noqa: E731
    assert_close(at(q, 0), q)  # position 0: no rotation
    assert_close(at(q, 37).norm(), q.norm())  # a rotation keeps lengths
    # the score depends only on the distance between the positions
    scores = [(at(q, m) @ at(k, n).T).item() for m, n in ((5, 2), (13, 10), (103, 100))]
    assert scores[0] == pytest.approx(scores[1], abs=1e-9) and scores[0] == pytest.approx(scores[2], abs=1e-9)
    assert (at(q, 5) @ at(k, 2).T).item() != pytest.approx((at(q, 5) @ at(k, 4).T).item(), abs=1e-6)
    # default positions 0..T-1, any leading shape
    seq = randn(2, 3, 8, 16)
    assert_close(rope(seq)[:, :, 4], at(seq[:, :, 4], 4))


def test_rope_pairs_are_2d_rotations():
    """Pair i = (x_i, x_{i+d/2}) turns by angle p * base^(-2i/d): checked with an explicit 2x2 rotation matrix."""
    d, p = 8, 3
    rope = RotaryEmbedding(d).double()
    x = randn(d)
    out = rope(x[None], torch.tensor([p]))[0]
    for i in range(d // 2):
        angle = p * 10_000 ** (-2 * i / d)
        rotation = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]], dtype=DTYPE)
        assert_close(out[[i, i + d // 2]], rotation @ x[[i, i + d // 2]])


def test_attention_with_rope_has_no_extra_parameters():
    plain, rotary = MultiHeadAttention(32, 4, causal=True), MultiHeadAttention(32, 4, causal=True, rope=True)
    assert plain.state_dict().keys() == rotary.state_dict().keys()
    rotary.load_state_dict(plain.state_dict())
    x = torch.randn(1, 5, 32)
    assert_close(rotary(x)[:, 0], plain(x)[:, 0])  # position 0 is not rotated, and sees only itself
    assert not torch.allclose(rotary(x)[:, 1:], plain(x)[:, 1:])
