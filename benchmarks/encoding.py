"""Benchmark: encoding throughput of the from-scratch encoder vs the tiktoken.Encoding of the same merges.

    python -m benchmarks.encoding

Both encode the course's held-out text; the ids must be identical. The from-scratch encoder is measured cold (a fresh
tokenizer, empty chunk cache) and warm (second pass), since its cache of already-seen chunks matters a lot.
"""


from gptcourse import corpus
from gptcourse.course_tokenizer import load_course_tokenizer
from gptcourse.tiktoken_bridge import to_tiktoken

from .timing import best_of


def main() -> None:
    _, heldout = corpus.course_splits()
    megabytes = len(heldout.encode()) / 1e6
    tokenizer = load_course_tokenizer()
    encoding = to_tiktoken(tokenizer)

    cold, ours = best_of(1, tokenizer.encode_ordinary, heldout)
    warm, _ = best_of(3, tokenizer.encode_ordinary, heldout)
    fast, theirs = best_of(5, encoding.encode_ordinary, heldout)
    assert ours == theirs, "the from-scratch encoder and tiktoken disagree"
    print(f"held-out text: {megabytes:.2f} MB, {len(ours):,} tokens, identical ids")
    print(f"  from scratch, cold  {megabytes / cold:8.2f} MB/s")
    print(f"  from scratch, warm  {megabytes / warm:8.2f} MB/s")
    print(f"  tiktoken            {megabytes / fast:8.2f} MB/s   ({cold / fast:.0f}x cold, {warm / fast:.0f}x warm)")


if __name__ == "__main__":
    main()
