"""Benchmark: one training step of the course GPT vs Hugging Face transformers' GPT-2, same config, same weights.

    python -m benchmarks.gpt_model [--layers 4] [--d-model 256] [--heads 4] [--seq 128] [--batch 8] [--steps 6]

Both models are built from the same configuration, the course model gets the transformers model's weights (so both
compute the same loss, checked), and each runs the same training step on the same batch: forward, cross-entropy,
backward, AdamW update. Steps of the two models alternate, so a slow moment of the machine hits both; the median
step time is reported as tokens per second. Two pairings:

- the course model with ``use_sdpa=True, use_fused_ops=True`` (PyTorch's fused attention, LayerNorm and GELU
  kernels) vs transformers' default (``sdpa`` attention): the fast settings against the fast settings;
- the course model from scratch (every formula written out) vs transformers' ``eager`` attention.

The fused settings are what make the course model competitive: its from-scratch LayerNorm and GELU run several
kernels each and keep every intermediate result for the backward pass.

Memory: the bytes of the tensors autograd saves for the backward pass (counted with
``torch.autograd.graph.saved_tensors_hooks``, each storage once, parameters excluded), plus parameters, gradients
and AdamW's two moment buffers. This is exact and deterministic, unlike the process's resident memory (which the
CPU allocator keeps and reuses) or tracemalloc (which does not see PyTorch's allocations at all). Peak memory also
holds short-lived temporaries, which this count leaves out; on CUDA, ``torch.cuda.max_memory_allocated`` is shown.
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from gptcourse.device import pick_device  # noqa: E402
from gptcourse.gpt2_weights import gpt2_config_from_hf, load_gpt2_state_dict  # noqa: E402
from gptcourse.model import GPT  # noqa: E402


def logits_of(model, ids):
    out = model(ids)
    return out if torch.is_tensor(out) else out.logits  # transformers returns an output object


def training_step(model, optimizer, ids, targets):
    optimizer.zero_grad(set_to_none=True)
    logits = logits_of(model, ids)
    loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
    loss.backward()
    optimizer.step()
    return loss.item()


def saved_activation_bytes(model, ids, targets) -> int:
    """Bytes autograd keeps for the backward pass of one forward + loss (each storage once, parameters excluded)."""
    param_storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in param_storages:
            storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        logits = logits_of(model, ids)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
    del loss, logits
    return sum(storages.values())


def state_bytes(model) -> int:
    """Parameters + gradients + AdamW's exp_avg and exp_avg_sq: four numbers per parameter."""
    return 4 * sum(p.numel() * p.element_size() for p in model.parameters())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=2048, help="the course tokenizer's size")
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per model (after 2 warm-up steps)")
    parser.add_argument("--device", default=None, help="default: gptcourse.device.pick_device()")
    args = parser.parse_args(argv)
    device = pick_device(args.device)

    from transformers import GPT2Config, GPT2LMHeadModel

    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, args.vocab, (args.batch, args.seq + 1), generator=generator).to(device)
    inputs, targets = ids[:, :-1], ids[:, 1:]
    tokens = inputs.numel()
    print(f"device {device}, {torch.get_num_threads()} threads; {args.layers} layers, d_model {args.d_model}, "
          f"{args.heads} heads, vocab {args.vocab}; batch {args.batch} x {args.seq} tokens; AdamW steps\n")

    for attention in ("sdpa", "eager"):
        torch.manual_seed(0)
        hf_config = GPT2Config(vocab_size=args.vocab, n_positions=args.seq, n_embd=args.d_model, n_layer=args.layers,
                               n_head=args.heads, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0,
                               eos_token_id=0, attn_implementation=attention)
        theirs = GPT2LMHeadModel(hf_config).to(device).train()
        config = gpt2_config_from_hf(hf_config)
        config.use_sdpa = config.use_fused_ops = attention == "sdpa"
        ours = load_gpt2_state_dict(GPT(config), theirs.state_dict()).to(device).train()
        models = {"course GPT (" + ("fused kernels" if config.use_sdpa else "from scratch") + ")": ours, f"transformers GPT2 ({attention})": theirs}
        optimizers = {name: torch.optim.AdamW(m.parameters(), lr=1e-4) for name, m in models.items()}

        losses = {name: training_step(m, optimizers[name], inputs, targets) for name, m in models.items()}
        a, b = losses.values()
        assert abs(a - b) < 1e-4, f"the two models disagree before training: {losses}"
        times = {name: [] for name in models}
        for step in range(args.steps + 1):  # the loss check above and step 0 are the warm-up
            for name, m in models.items():
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                training_step(m, optimizers[name], inputs, targets)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                if step:
                    times[name].append(time.perf_counter() - start)

        throughput = {name: tokens / statistics.median(t) for name, t in times.items()}
        for name, m in models.items():
            activations = saved_activation_bytes(m, inputs, targets)
            print(f"{name:34s} {throughput[name]:9,.0f} tokens/s   saved activations {activations / 2**20:6.1f} MiB"
                  f"   params+grads+AdamW {state_bytes(m) / 2**20:6.1f} MiB")
        ours_tps, theirs_tps = throughput.values()
        print(f"{'ratio course / transformers':34s} {ours_tps / theirs_tps:9.2f}x\n")
        if device.type == "cuda":
            print(f"CUDA peak allocated (both models): {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB\n")


if __name__ == "__main__":
    main()
