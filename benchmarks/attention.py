"""Benchmark: the from-scratch multi-head attention vs PyTorch's fused scaled_dot_product_attention (SDPA).

    python -m benchmarks.attention [--batch 4] [--seq 256] [--d-model 768] [--heads 12] [--device cpu]

One ``gptcourse.attention.MultiHeadAttention`` layer, causal, at the width of GPT-2 small (768, 12 heads) with a
sequence cut to 256 tokens so that it fits a laptop CPU. Both paths share the same weights and must give the same
output; each is timed forward + backward, best of a few repeats. The only difference is the attention core:
``softmax(q k^T / sqrt(d)) v`` written out (which stores the whole (B, H, T, T) weight matrix for the backward pass)
vs one fused kernel. Reference: on a laptop CPU the fused kernel is about 1.5x faster; on a GPU far more.
"""

import argparse

import torch

from gptcourse.attention import MultiHeadAttention
from gptcourse.device import pick_device
from gptcourse.tolerances import assert_close

from .timing import best_of


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--d-model", type=int, default=768)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default=None, help="default: gptcourse.device.pick_device()")
    args = parser.parse_args(argv)
    device = pick_device(args.device)

    torch.manual_seed(0)
    mha = MultiHeadAttention(args.d_model, args.heads, causal=True).to(device)
    x = torch.randn(args.batch, args.seq, args.d_model, device=device, requires_grad=True)

    def step(use_sdpa: bool):
        mha.use_sdpa = use_sdpa
        out = mha(x)
        out.sum().backward()
        return out

    with torch.no_grad():
        mha.use_sdpa = False
        ours = mha(x)
        mha.use_sdpa = True
        assert_close(mha(x), ours, msg="the two attention paths disagree")
    for use_sdpa in (False, True):
        step(use_sdpa)  # warm-up: first-call allocations and kernel selection
    scratch, _ = best_of(args.repeats, step, False, device=device)
    fused, _ = best_of(args.repeats, step, True, device=device)
    print(f"causal multi-head attention, batch {args.batch}, {args.seq} tokens, d_model {args.d_model}, "
          f"{args.heads} heads, on {device} ({torch.get_num_threads()} threads), forward + backward, best of "
          f"{args.repeats}:")
    print(f"  {'from scratch':32}{scratch * 1e3:8.1f} ms")
    print(f"  {'F.scaled_dot_product_attention':32}{fused * 1e3:8.1f} ms   ({scratch / fused:.1f}x faster)")


if __name__ == "__main__":
    main()
