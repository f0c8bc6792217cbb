"""gptcourse.lora against the oracle, Hugging Face ``peft``: the same A and B injected into both, the same outputs,
the same merged weights; on the course GPT (``nn.Linear``) and on transformers' GPT-2 (``Conv1D``, whose weight is
stored in x out: peft's ``fan_in_fan_out``)."""

import copy

import pytest
import torch

from gptcourse.gpt2_weights import gpt2_config_from_hf, load_gpt2_state_dict
from gptcourse.lora import LoRALinear, apply_lora, merge_lora, unmerge_lora
from gptcourse.model import GPT, GPTConfig, count_parameters
from gptcourse.tolerances import assert_close

peft = pytest.importorskip("peft")

CONFIG = GPTConfig(vocab_size=64, context_length=16, d_model=32, n_layers=2, n_heads=4)


def peft_layers(model):
    return {name: m for name, m in model.named_modules() if isinstance(m, peft.tuners.lora.LoraLayer)}


def randomise_b(model, seed=0):
    """peft starts B at zero (so does LoRA); give it values, or every comparison would be of the base model."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in peft_layers(model).values():
            b = layer.lora_B["default"].weight
            b.copy_(torch.randn(b.shape, generator=generator, dtype=b.dtype) * 0.1)


def copy_adapters(peft_model, ours, rename=lambda name: name):
    """Put peft's A and B into our LoRALinear layers of the same (or renamed) name."""
    layers = dict(ours.named_modules())
    for name, layer in peft_layers(peft_model).items():
        target = layers[rename(name)]
        assert isinstance(target, LoRALinear)
        with torch.no_grad():
            target.A.copy_(layer.lora_A["default"].weight)
            target.B.copy_(layer.lora_B["default"].weight)


def test_lora_equals_peft_on_the_course_gpt():
    torch.manual_seed(0)
    base = GPT(CONFIG).double().eval()
    theirs, ours = copy.deepcopy(base), copy.deepcopy(base)
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["qkv", "out_proj"], lora_dropout=0.0)
    peft.inject_adapter_in_model(config, theirs)
    wrapped = apply_lora(ours, targets=("qkv", "out_proj"), r=4, alpha=8)
    assert sorted(wrapped) == sorted(peft_layers(theirs))
    ids = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert_close(ours(ids), base(ids))  # B = 0: the adapted model starts as the pretrained one
        randomise_b(theirs)
        copy_adapters(theirs, ours)
        assert_close(ours(ids), theirs(ids))
        assert (ours(ids) - base(ids)).abs().max() > 1e-3, "the adapters must change the output"
        merge_lora(ours)
        for layer in peft_layers(theirs).values():
            layer.merge()
        for name, layer in peft_layers(theirs).items():
            assert_close(dict(ours.named_modules())[name].base.weight, layer.base_layer.weight)
        assert_close(ours(ids), theirs(ids))
        unmerge_lora(ours)
        for name, module in base.named_modules():
            if name in wrapped:
                assert_close(dict(ours.named_modules())[name].base.weight, module.weight)
        assert_close(ours(ids), theirs(ids))


def test_lora_equals_peft_on_gpt2_conv1d():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(2)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=80, n_positions=16, n_embd=32, n_layer=2, n_head=4, attn_implementation="eager")).double().eval()
    ours = load_gpt2_state_dict(GPT(gpt2_config_from_hf(hf.config)).double(), hf.state_dict()).eval()
    config = peft.LoraConfig(r=2, lora_alpha=6, target_modules=["c_attn"], fan_in_fan_out=True, lora_dropout=0.0)
    peft.inject_adapter_in_model(config, hf)
    apply_lora(ours, targets=("qkv",), r=2, alpha=6)
    randomise_b(hf, seed=3)
    # transformer.h.0.attn.c_attn (in x out) is blocks.0.attn.qkv (out x in) in the course model
    copy_adapters(hf, ours, rename=lambda name: name.replace("transformer.h.", "blocks.").replace("c_attn", "qkv"))
    ids = torch.randint(0, 80, (1, 10), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert_close(ours(ids), hf(ids).logits)
        merge_lora(ours)
        for name, layer in peft_layers(hf).items():
            layer.merge()
            ours_layer = dict(ours.named_modules())[name.replace("transformer.h.", "blocks.").replace("c_attn", "qkv")]
            assert_close(ours_layer.base.weight, layer.base_layer.weight.T)  # Conv1D keeps the transpose
        assert_close(ours(ids), hf(ids).logits)


def test_only_the_adapters_train():
    torch.manual_seed(5)
    model = GPT(CONFIG)
    apply_lora(model, targets=("qkv", "out_proj", "fc_in", "fc_out"), r=3, alpha=3)
    d, hidden = CONFIG.d_model, CONFIG.ffn_dim
    per_block = 3 * (d + 3 * d) + 3 * (d + d) + 3 * (d + hidden) + 3 * (hidden + d)  # r * (in + out) per matrix
    assert count_parameters(model, trainable_only=True) == CONFIG.n_layers * per_block
    ids = torch.randint(0, 64, (2, 8))
    model(ids, targets=ids)[1].backward()
    for name, p in model.named_parameters():
        if name.endswith((".A", ".B")):
            assert p.grad is not None, name
        else:
            assert p.grad is None and not p.requires_grad, name
    layer = model.blocks[0].attn.qkv
    assert not layer.B.any() and layer.A.abs().min() > 0, "B starts at zero, A random"
    # With B = 0 the first gradient reaches B only: dL/dA goes through B and is zero (as in the paper and peft).
    assert layer.B.grad.abs().max() > 0 and not layer.A.grad.any()
    assert layer.scaling == 1.0 and "r=3, alpha=3" in repr(layer)


def test_clear_errors():
    with pytest.raises(ValueError, match="no nn.Linear named"):
        apply_lora(GPT(CONFIG), targets=("c_attn",))
    with pytest.raises(ValueError, match="rank r"):
        LoRALinear(torch.nn.Linear(4, 4), r=0)
    with pytest.raises(TypeError, match="wraps an nn.Linear"):
        LoRALinear(torch.nn.Conv1d(4, 4, 1))
