"""Published-weights loading against the oracle: Hugging Face transformers' GPT-2 (and LLaMA), randomly initialised
from a config (offline), its weights copied into the course GPT: the logits must be the same.

The real GPT-2 checkpoint is tested only when it is already on disk (it is never downloaded).
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from gptcourse.gpt2_weights import (find_local_checkpoint, from_pretrained_local, from_safetensors,  # noqa: E402
                                    gpt2_config_from_hf, load_gpt2_state_dict)
from gptcourse.model import GPT, llama_style  # noqa: E402
from gptcourse.tolerances import assert_close, devices_to_test  # noqa: E402

transformers = pytest.importorskip("transformers")
DEVICES = devices_to_test()
DTYPE = torch.float64


def hf_gpt2(seed: int = 0, **sizes):
    """A transformers GPT-2 with every parameter random (LayerNorm scales and biases too, not just 1 and 0)."""
    settings = dict(vocab_size=300, n_positions=32, n_embd=256, n_layer=2, n_head=4, bos_token_id=0,
                    eos_token_id=0, attn_implementation="eager") | sizes
    config = transformers.GPT2Config(**settings)
    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def course_from(hf_model, **overrides) -> GPT:
    config = gpt2_config_from_hf(hf_model.config)
    for key, value in overrides.items():
        setattr(config, key, value)
    return load_gpt2_state_dict(GPT(config), hf_model.state_dict()).eval()


def ids_for(config, device, batch=2, T=20, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, config.vocab_size, (batch, T), generator=generator).to(device)


def test_config_from_hf():
    hf = hf_gpt2().config
    config = gpt2_config_from_hf(hf)
    assert (config.vocab_size, config.context_length, config.d_model, config.n_layers, config.n_heads) == \
        (300, 32, 256, 2, 4)
    assert config.norm_eps == hf.layer_norm_epsilon and config.tie_weights and config.dropout == 0.0
    assert gpt2_config_from_hf(hf.to_dict()) == config
    with pytest.raises(ValueError, match="gelu_new"):
        gpt2_config_from_hf(hf.to_dict() | {"activation_function": "relu"})


@pytest.mark.parametrize("device", DEVICES, ids=str)
@pytest.mark.parametrize("use_sdpa", [False, True])
def test_same_logits_as_transformers_gpt2(device, use_sdpa):
    """THE test of Chapter 4: the course GPT with GPT-2's weights computes exactly what GPT-2 computes."""
    hf = hf_gpt2().to(device, DTYPE)
    ours = course_from(hf, use_sdpa=use_sdpa).to(device, DTYPE)
    ids = ids_for(ours.config, device)
    with torch.no_grad():
        expected = hf(ids).logits
        assert_close(ours(ids), expected)
        # and the loss: transformers shifts the targets inside, the course model takes them shifted
        loss_ours = ours(ids[:, :-1], ids[:, 1:])[1]
        assert_close(loss_ours.float(), hf(ids, labels=ids).loss)  # transformers computes its loss in float32


@pytest.mark.parametrize("device", DEVICES, ids=str)
def test_same_logits_in_float32(device):
    hf = hf_gpt2(seed=1).to(device)
    ours = course_from(hf, use_sdpa=True).to(device)
    ids = ids_for(ours.config, device, T=32)
    with torch.no_grad():
        assert_close(ours(ids), hf(ids).logits)


def test_untied_checkpoint_keeps_its_own_head():
    hf = hf_gpt2(tie_word_embeddings=False).double()
    assert hf.lm_head.weight is not hf.transformer.wte.weight
    ours = course_from(hf)
    assert not ours.config.tie_weights and ours.lm_head.weight is not ours.embed.token_embedding.weight
    ids = ids_for(ours.config, "cpu")
    with torch.no_grad():
        assert_close(ours.double()(ids), hf(ids).logits)


def test_loading_is_strict():
    hf = hf_gpt2()
    state = hf.state_dict()
    model = GPT(gpt2_config_from_hf(hf.config))
    missing = {k: v for k, v in state.items() if "h.1.mlp.c_fc.bias" not in k}
    with pytest.raises(RuntimeError, match="blocks.1.ffn.fc_in.bias"):
        load_gpt2_state_dict(model, missing)
    with pytest.raises(KeyError, match="h.0.attn.rotary"):
        load_gpt2_state_dict(model, state | {"transformer.h.0.attn.rotary.weight": torch.zeros(1)})
    wrong_size = GPT(gpt2_config_from_hf(hf.config.to_dict() | {"n_embd": 128}))
    with pytest.raises(RuntimeError, match="size mismatch"):
        load_gpt2_state_dict(wrong_size, state)
    with pytest.raises(ValueError, match="GPT-2 style"):
        load_gpt2_state_dict(GPT(llama_style(vocab_size=300, context_length=32, d_model=256, n_layers=2,
                                             n_heads=4)), state)


def save_like_a_published_checkpoint(hf, folder, with_config=True):
    """Write model.safetensors as the Hub stores GPT-2: no "transformer." prefix, no lm_head (it is tied)."""
    from safetensors.torch import save_file
    folder.mkdir(exist_ok=True)
    tensors = {k.removeprefix("transformer."): v.clone().contiguous() for k, v in hf.state_dict().items()
               if k != "lm_head.weight"}
    save_file(tensors, folder / "model.safetensors")
    if with_config:
        hf.config.to_json_file(folder / "config.json")
    return folder / "model.safetensors"


@pytest.mark.parametrize("with_config", [True, False])
def test_safetensors_round_trip(tmp_path, with_config):
    hf = hf_gpt2(seed=2)
    path = save_like_a_published_checkpoint(hf, tmp_path / "gpt2-tiny", with_config)
    ours = from_safetensors(path)  # without config.json: sizes from the shapes, 64 numbers per head
    assert ours.config.n_heads == 4 and not ours.training
    ids = ids_for(ours.config, "cpu")
    with torch.no_grad():
        assert_close(ours.double()(ids), hf.double()(ids).logits)


def test_from_pretrained_local_finds_a_folder_and_never_downloads(tmp_path, monkeypatch):
    import huggingface_hub
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *args, **kwargs: None)
    monkeypatch.delenv("GPTCOURSE_GPT2_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match="hf download openai-community/gpt2"):
        from_pretrained_local("gpt2")
    hf = hf_gpt2(seed=3)
    save_like_a_published_checkpoint(hf, tmp_path / "gpt2")
    ours = from_pretrained_local(tmp_path / "gpt2")  # a folder
    monkeypatch.setenv("GPTCOURSE_GPT2_DIR", str(tmp_path))
    assert find_local_checkpoint("gpt2") == tmp_path / "gpt2" / "model.safetensors"  # a name, via the variable
    ids = ids_for(ours.config, "cpu")
    with torch.no_grad():
        assert_close(from_pretrained_local("gpt2").double()(ids), hf.double()(ids).logits)
        assert_close(ours.double()(ids), hf(ids).logits)


@pytest.mark.skipif(find_local_checkpoint("gpt2") is None, reason="the real GPT-2 checkpoint is not on this machine")
def test_real_gpt2_if_available():
    path = find_local_checkpoint("gpt2")
    ours = from_pretrained_local("gpt2")
    theirs = transformers.GPT2LMHeadModel.from_pretrained(path.parent, attn_implementation="eager").eval()
    ids = torch.tensor([[15496, 11, 616, 3290, 318]])  # "Hello, my dog is"
    with torch.no_grad():
        assert_close(ours(ids), theirs(ids).logits)
        assert (ours(ids)[0, -1].argmax() == theirs(ids).logits[0, -1].argmax())


# ---------------------------------------------------------------------------------------------------------------
# LLaMA style: RMSNorm, SwiGLU, RoPE, grouped-query attention, no biases, untied head


LLAMA_NAMES = [("embed_tokens", "embed.token_embedding"), ("layers.", "blocks."), ("self_attn.q_proj", "attn.qkv"),
               ("self_attn.o_proj", "attn.out_proj"), ("mlp.gate_proj", "ffn.gate"), ("mlp.up_proj", "ffn.up"),
               ("mlp.down_proj", "ffn.down"), ("input_layernorm", "norm1"), ("post_attention_layernorm", "norm2")]


def llama_to_course(hf_state_dict: dict) -> dict:
    """transformers' Llama names -> the course's; q, k, v are concatenated into the fused qkv (rows q, k, v)."""
    out = {}
    for name, t in hf_state_dict.items():
        name = name.removeprefix("model.")
        if name.endswith(("k_proj.weight", "v_proj.weight")):
            continue  # joined with q below
        if name.endswith("q_proj.weight"):
            layer = name.removesuffix("q_proj.weight")
            t = torch.cat([t, hf_state_dict[f"model.{layer}k_proj.weight"], hf_state_dict[f"model.{layer}v_proj.weight"]])
        if name == "norm.weight":
            name = "final_norm.weight"
        for old, new in LLAMA_NAMES:
            name = name.replace(old, new)
        out[name] = t
    return out


@pytest.mark.parametrize("device", DEVICES, ids=str)
@pytest.mark.parametrize("n_kv_heads", [4, 2, 1])
def test_same_logits_as_transformers_llama(device, n_kv_heads):
    config = llama_style(vocab_size=300, context_length=64, d_model=128, n_layers=2, n_heads=4, n_kv_heads=n_kv_heads,
                         d_ff=200, use_sdpa=n_kv_heads == 2)
    hf_config = transformers.LlamaConfig(
        vocab_size=300, hidden_size=128, intermediate_size=200, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=n_kv_heads, max_position_embeddings=64, rms_norm_eps=1e-6, rope_theta=10_000.0,
        tie_word_embeddings=False, attention_bias=False, mlp_bias=False, bos_token_id=0, eos_token_id=0,
        pad_token_id=0, attn_implementation="eager")
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(hf_config)
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    hf = hf.eval().to(device)
    ours = GPT(config)
    ours.load_state_dict(llama_to_course(hf.state_dict()), strict=True)
    ours = ours.eval().to(device)
    ids = ids_for(config, device, T=48)
    # float32: transformers computes the rotation angles in float32 whatever the model's dtype
    with torch.no_grad():
        assert_close(ours(ids), hf(ids).logits)
