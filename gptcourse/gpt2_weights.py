"""Load published GPT-2 weights (the Hugging Face layout) into the course's ``GPT`` (Chapter 4). Never downloads.

OpenAI's GPT-2 checkpoints, as Hugging Face publishes them (``openai-community/gpt2`` ... ``gpt2-xl``), name their
tensors ``wte``, ``wpe``, ``h.{i}.ln_1``, ``h.{i}.attn.c_attn`` ... (with a ``transformer.`` prefix inside
``transformers.GPT2LMHeadModel``). Two things differ from the course model besides the names:

- GPT-2 was written with a ``Conv1D`` layer that stores its matrix as ``(in, out)``; ``nn.Linear`` stores
  ``(out, in)``. Every such matrix is transposed on the way in.
- Nothing else: GPT-2's fused ``c_attn`` holds queries, keys and values in that order, exactly like the course's
  fused ``qkv``, so it is copied whole; its LayerNorm eps is 1e-5 and its GELU is the tanh approximation.

To use the real weights, download once, while online, a checkpoint folder with ``config.json`` and
``model.safetensors``, then call ``from_pretrained_local`` (see ``DOWNLOAD_HINT``).
"""

import json
import os
from pathlib import Path

import torch

from gptcourse.model import GPT, GPTConfig

# GPT-2 layer name (without "transformer." and "h.{i}.") -> course layer name. Conv1D layers are transposed.
_BLOCK_NAMES = {
    "ln_1": "norm1",
    "attn.c_attn": "attn.qkv",
    "attn.c_proj": "attn.out_proj",
    "ln_2": "norm2",
    "mlp.c_fc": "ffn.fc_in",
    "mlp.c_proj": "ffn.fc_out",
}
_CONV1D = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
_TOP_NAMES = {"wte": "embed.token_embedding", "wpe": "embed.position_embedding", "ln_f": "final_norm"}

DOWNLOAD_HINT = (
    "Download a GPT-2 checkpoint once, while online, into a folder with config.json and model.safetensors:\n"
    "    hf download openai-community/gpt2 config.json model.safetensors --local-dir checkpoints/gpt2\n"
    "(or gpt2-medium, gpt2-large, gpt2-xl), then call from_pretrained_local('checkpoints/gpt2').\n"
    "A copy in the Hugging Face cache (from an earlier from_pretrained('gpt2') online) is found too."
)


def gpt2_config_from_hf(hf_config, dropout: float = 0.0) -> GPTConfig:
    """A ``GPTConfig`` from a Hugging Face ``GPT2Config`` (or the dict of its ``config.json``).

    ``dropout`` is not taken from the checkpoint (GPT-2's 0.1 was for pretraining): 0 for inference, your choice for
    fine-tuning.
    """
    get = hf_config.get if isinstance(hf_config, dict) else (lambda key, default=None: getattr(hf_config, key, default))
    activation = get("activation_function", "gelu_new")
    if activation not in ("gelu_new", "gelu_pytorch_tanh"):
        raise ValueError(f"GPT-2 uses the tanh approximation of GELU ('gelu_new'); this config has {activation!r}")
    return GPTConfig(
        vocab_size=get("vocab_size"),
        context_length=get("n_positions"),
        d_model=get("n_embd"),
        n_layers=get("n_layer"),
        n_heads=get("n_head"),
        d_ff=get("n_inner"),  # None in the published configs: 4 * d_model
        dropout=dropout,
        norm_eps=get("layer_norm_epsilon", 1e-5),
        tie_weights=get("tie_word_embeddings", True),
    )


def convert_gpt2_state_dict(hf_state_dict: dict[str, torch.Tensor], tie_weights: bool = True) -> dict:
    """Rename (and transpose where needed) the tensors of a GPT-2 checkpoint into the course's ``GPT`` names."""
    converted = {}
    for name, tensor in hf_state_dict.items():
        name = name.removeprefix("transformer.")
        if name.endswith((".attn.bias", ".attn.masked_bias")):
            continue  # old checkpoints store the causal mask as a buffer; the course model builds its own
        if name == "lm_head.weight":
            converted["lm_head.weight"] = tensor  # untied checkpoints only; a tied head is set below
            continue
        layer, _, param = name.rpartition(".")  # "h.3.attn.c_attn", "weight"
        if layer in _TOP_NAMES:
            converted[f"{_TOP_NAMES[layer]}.{param}"] = tensor
            continue
        prefix, index, rest = layer.split(".", 2)  # "h", "3", "attn.c_attn"
        if prefix != "h" or rest not in _BLOCK_NAMES:
            raise KeyError(f"{name!r} is not a GPT-2 tensor name")
        if rest in _CONV1D and param == "weight":
            tensor = tensor.t()  # Conv1D (in, out) -> Linear (out, in)
        converted[f"blocks.{index}.{_BLOCK_NAMES[rest]}.{param}"] = tensor
    if tie_weights or "lm_head.weight" not in converted:
        converted["lm_head.weight"] = converted["embed.token_embedding.weight"]
    return converted


def load_gpt2_state_dict(model: GPT, hf_state_dict: dict[str, torch.Tensor]) -> GPT:
    """Copy a GPT-2 checkpoint (Hugging Face names) into ``model``, in place; returns the model.

    Strict: a missing, extra or wrongly shaped tensor raises, naming it (a silently half-loaded model would only
    show up later as bad text). The tensors are copied into the model's own dtype and device.
    """
    c = model.config
    if (c.norm, c.mlp, c.position, c.bias, c.n_kv_heads) != ("layernorm", "gelu", "learned", True, None):
        raise ValueError("GPT-2 weights need a GPT-2 style config: layernorm, gelu, learned positions, biases, "
                         "no grouped-query attention")
    converted = convert_gpt2_state_dict(hf_state_dict, tie_weights=c.tie_weights)
    with torch.no_grad():
        model.load_state_dict(converted, strict=True)
    return model


def from_safetensors(path: str | os.PathLike, config: GPTConfig | None = None) -> GPT:
    """A course ``GPT`` holding the weights of a GPT-2 ``.safetensors`` file.

    Without ``config``, it is read from the ``config.json`` next to the file, or, failing that, inferred from the
    tensor shapes with 64 numbers per head (true of all four GPT-2 sizes; the shapes alone cannot tell heads apart).
    """
    from safetensors.torch import load_file

    path = Path(path)
    state_dict = load_file(path)
    if config is None:
        config_file = path.with_name("config.json")
        if config_file.exists():
            config = gpt2_config_from_hf(json.loads(config_file.read_text()))
        else:
            config = _config_from_shapes(state_dict)
    return load_gpt2_state_dict(GPT(config), state_dict).eval()


def _config_from_shapes(state_dict: dict[str, torch.Tensor]) -> GPTConfig:
    names = {name.removeprefix("transformer."): t for name, t in state_dict.items()}
    vocab_size, d_model = names["wte.weight"].shape
    n_layers = 1 + max(int(name.split(".")[1]) for name in names if name.startswith("h."))
    return GPTConfig(vocab_size=vocab_size, context_length=names["wpe.weight"].shape[0], d_model=d_model,
                     n_layers=n_layers, n_heads=d_model // 64, d_ff=names["h.0.mlp.c_fc.weight"].shape[1])


def find_local_checkpoint(name_or_dir: str | os.PathLike = "gpt2") -> Path | None:
    """The ``model.safetensors`` of a GPT-2 checkpoint on this machine, or None. Looks, without any network, in:

    1. ``name_or_dir`` itself, if it is a folder (or a ``.safetensors`` file);
    2. the folder named by the environment variable ``GPTCOURSE_GPT2_DIR``, plus ``/<name>`` if that exists;
    3. the Hugging Face cache, for ``openai-community/<name>`` (and the old id ``<name>``).
    """
    path = Path(name_or_dir)
    if path.is_file():
        return path
    if path.is_dir() and (path / "model.safetensors").exists():
        return path / "model.safetensors"
    if env := os.environ.get("GPTCOURSE_GPT2_DIR"):
        for folder in (Path(env) / str(name_or_dir), Path(env)):
            if (folder / "model.safetensors").exists():
                return folder / "model.safetensors"
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for repo_id in (f"openai-community/{name_or_dir}", str(name_or_dir)):
        try:
            cached = try_to_load_from_cache(repo_id, "model.safetensors")
        except ValueError:  # not a valid repository id (e.g. a folder path that does not exist)
            continue
        if isinstance(cached, str):
            return Path(cached)
    return None


def from_pretrained_local(name_or_dir: str | os.PathLike = "gpt2") -> GPT:
    """The real GPT-2 (``"gpt2"``, ``"gpt2-medium"``, ... or a checkpoint folder) in the course model, from disk only.

    Raises ``FileNotFoundError`` with the command to run once online if no local copy is found.
    """
    found = find_local_checkpoint(name_or_dir)
    if found is None:
        raise FileNotFoundError(f"No local GPT-2 checkpoint found for {str(name_or_dir)!r}; nothing is downloaded.\n"
                                + DOWNLOAD_HINT)
    return from_safetensors(found)
