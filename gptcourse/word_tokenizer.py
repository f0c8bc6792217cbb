"""A word-level tokenizer: the simplest way from text to ids, and the problems that lead to BPE.

Text is cut into words and punctuation marks; each distinct piece seen in training gets an id. Words never seen
become ``<|unk|>``, so information is lost: the reason real models tokenize into subwords and bytes instead.
"""

import re
from collections import Counter

UNK, ENDOFTEXT, PAD = "<|unk|>", "<|endoftext|>", "<|pad|>"
SPECIAL_TOKENS = [PAD, UNK, ENDOFTEXT]  # ids 0, 1, 2
_SPECIAL_RE = "|".join(re.escape(token) for token in SPECIAL_TOKENS)
_PIECES = re.compile(rf"{_SPECIAL_RE}|\w+|[^\w\s]")  # special tokens, words, or single punctuation marks
_NO_SPACE_BEFORE = re.compile(r" ([.,;:!?)\]}'])")


def split_words(text: str) -> list[str]:
    """Cut text into words and punctuation; whitespace is dropped ("Hello, world!" -> Hello , world !)."""
    return _PIECES.findall(text)


class WordTokenizer:
    """Maps words to ids with a fixed vocabulary; the special tokens come first."""

    def __init__(self, words: list[str]):
        self.id_to_token = SPECIAL_TOKENS + [w for w in words if w not in SPECIAL_TOKENS]
        self.token_to_id = {token: i for i, token in enumerate(self.id_to_token)}

    @classmethod
    def from_text(cls, text: str, max_size: int | None = None) -> "WordTokenizer":
        """Build the vocabulary from ``text``: the most frequent words first, at most ``max_size`` tokens in all."""
        counts = Counter(split_words(text))
        keep = None if max_size is None else max(0, max_size - len(SPECIAL_TOKENS))
        return cls([word for word, _ in counts.most_common(keep)])

    def __len__(self) -> int:
        return len(self.id_to_token)

    def encode(self, text: str) -> list[int]:
        unk = self.token_to_id[UNK]
        return [self.token_to_id.get(word, unk) for word in split_words(text)]

    def decode(self, ids: list[int]) -> str:
        """Join the words with spaces, then pull punctuation back against the word before it."""
        text = " ".join(self.id_to_token[i] for i in ids)
        return _NO_SPACE_BEFORE.sub(r"\1", text)
