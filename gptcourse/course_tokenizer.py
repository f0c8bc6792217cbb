"""The course's own tokenizer: byte-level BPE with 2,048 tokens, trained on the course corpus.

Later chapters load it with ``load_course_tokenizer()``. It is produced by a command, never edited by hand:

    python -m gptcourse.course_tokenizer            # retrain and write gptcourse/data/course_bpe.json
    python -m gptcourse.course_tokenizer --check    # retrain and compare with the committed file
"""

import argparse
import json
import platform
import sys
from pathlib import Path

from . import corpus
from .bpe import GPT2_SPLIT_PATTERN, BPETokenizer, train_bpe

VOCAB_SIZE = 2048  # 256 bytes + 1,792 merges; <|endoftext|> comes after them, id 2048
TOKENIZER_PATH = Path(__file__).parent / "data" / "course_bpe.json"


def train_course_tokenizer(progress: bool = False) -> tuple[BPETokenizer, dict]:
    """Train on the course corpus's training split; returns the tokenizer and the facts worth recording with it."""
    train_text, _ = corpus.course_splits()
    merges = train_bpe(train_text, VOCAB_SIZE, GPT2_SPLIT_PATTERN, progress=progress)
    facts = {"vocab_size": VOCAB_SIZE, "corpus_fingerprint": corpus.fingerprint(train_text),
             "corpus_chars": len(train_text), "python": platform.python_version()}
    return BPETokenizer(merges, GPT2_SPLIT_PATTERN), facts


def load_course_tokenizer(path: str | Path = TOKENIZER_PATH) -> BPETokenizer:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing. Recreate it with: python -m gptcourse.course_tokenizer")
    return BPETokenizer.load(path)


def recorded_facts(path: str | Path = TOKENIZER_PATH) -> dict:
    """What the committed tokenizer file says about how it was trained (vocab size, corpus fingerprint, ...)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return {key: value for key, value in data.items() if key not in ("merges", "pattern", "special_tokens")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=TOKENIZER_PATH, help="where to write the tokenizer JSON")
    parser.add_argument("--check", action="store_true", help="retrain and compare with --out instead of writing")
    args = parser.parse_args(argv)

    tokenizer, facts = train_course_tokenizer(progress=True)
    if args.check:
        committed = load_course_tokenizer(args.out)
        same = committed.merges == tokenizer.merges
        print(f"Retrained {len(tokenizer.merges)} merges: {'identical to' if same else 'DIFFERENT from'} {args.out}")
        if not same and recorded_facts(args.out).get("corpus_fingerprint") != facts["corpus_fingerprint"]:
            print("The corpus differs from the one recorded in the file (Python's bundled docs change between "
                  "Python releases); retrain with `make tokenizer` on this Python if you want to switch.")
        return 0 if same else 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(args.out, **facts)
    print(f"Wrote {args.out} ({len(tokenizer.merges)} merges, {args.out.stat().st_size / 1000:.0f} kB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
