"""Benchmark: BPE training speed. Prints times and ratios measured side by side in one run; asserts nothing.

    python -m benchmarks.bpe_training

1. The course trainer (incremental pair counts) on 1 MB of course text to a 2,000-token vocabulary (target <= 15 s on
   a 2-core machine).
2. On a smaller slice, the same trainer against the naive re-count-everything trainer and against tiktoken's
   educational trainer (``tiktoken._educational.bpe_train``, which re-counts every pair of the raw text), same slice,
   same vocabulary size.
"""

import argparse
import contextlib
import io

import regex
from tiktoken import _educational

from gptcourse import corpus
from gptcourse.bpe import GPT2_SPLIT_PATTERN, train_bpe, train_bpe_naive

from .timing import best_of


def one_megabyte() -> str:
    train, _ = corpus.course_splits()
    return (train + "\n\n" + corpus.generate_stories(1_000_000 - len(train), seed=2))[:1_000_000]


def educational_trainer(text: str, vocab_size: int):
    with contextlib.redirect_stdout(io.StringIO()):  # it prints every merge
        return _educational.bpe_train(text, vocab_size, GPT2_SPLIT_PATTERN)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slice-chars", type=int, default=50_000, help="slice size for the slow references")
    parser.add_argument("--slice-vocab", type=int, default=512)
    parser.add_argument("--full-naive", action="store_true", help="also time the naive trainer on the full 1 MB")
    args = parser.parse_args()

    text = one_megabyte()
    seconds, merges = best_of(1, train_bpe, text, 2000)
    chunks = len(set(regex.findall(GPT2_SPLIT_PATTERN, text)))
    print(f"course trainer, {len(text.encode()) / 1e6:.2f} MB ({chunks:,} distinct chunks) -> 2,000 tokens: "
          f"{seconds:.2f} s ({len(merges)} merges; target <= 15 s)")
    if args.full_naive:
        naive, naive_merges = best_of(1, train_bpe_naive, text, 2000)
        print(f"naive re-count on the same 1 MB: {naive:.1f} s ({naive / seconds:.0f}x slower, "
              f"{'identical' if naive_merges == merges else 'DIFFERENT'} merges)")

    part = text[: args.slice_chars]
    fast, fast_merges = best_of(1, train_bpe, part, args.slice_vocab)
    naive, naive_merges = best_of(1, train_bpe_naive, part, args.slice_vocab)
    educational, _ = best_of(1, educational_trainer, part, args.slice_vocab)
    assert fast_merges == naive_merges, "the two course trainers disagree"
    print(f"slice of {len(part):,} chars -> {args.slice_vocab} tokens:")
    print(f"  incremental        {fast:8.2f} s")
    print(f"  naive re-count     {naive:8.2f} s   ({naive / fast:6.1f}x slower, identical merges)")
    print(f"  tiktoken educational {educational:6.2f} s   ({educational / fast:6.1f}x slower)")


if __name__ == "__main__":
    main()
