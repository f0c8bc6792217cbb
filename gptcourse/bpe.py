"""Byte-level byte-pair encoding (BPE), the tokenizer family of GPT-2, GPT-4 and most LLMs since.

Text becomes UTF-8 bytes, so the 256 byte values are the first 256 tokens and *any* string can be encoded. Training
then repeatedly finds the most frequent adjacent pair of tokens and gives it a new id (a "merge"). Encoding replays
the merges in the order they were learned; decoding concatenates the bytes of the tokens.

Before counting, a regular expression cuts the text into chunks (words with their leading space, numbers,
punctuation, whitespace) and pairs never cross a chunk boundary, so " the" can become one token but "e." never does.
"""

import heapq
import json
from collections import Counter, defaultdict
from pathlib import Path

import regex
from tqdm.auto import tqdm

# GPT-2's pre-tokenization pattern: contractions, words, numbers, punctuation runs, whitespace.
GPT2_SPLIT_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# GPT-4's (cl100k_base): case-insensitive contractions, numbers in groups of at most three digits, newlines apart.
GPT4_SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|"""
    r"""\s+(?!\S)|\s"""
)
ENDOFTEXT = "<|endoftext|>"

Pair = tuple[int, int]


def pair_counts(ids: list[int], counts: dict[Pair, int] | None = None, weight: int = 1) -> dict[Pair, int]:
    """Count every adjacent pair in ``ids`` (overlapping: "aaa" holds the pair (a, a) twice), adding to ``counts``."""
    counts = {} if counts is None else counts
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + weight
    return counts


def merge(ids: list[int], pair: Pair, new_id: int) -> list[int]:
    """Replace each occurrence of ``pair`` in ``ids`` by ``new_id``, scanning left to right ("aaa" -> [aa, a])."""
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def _best_pair(counts: dict[Pair, int]) -> Pair:
    """The most frequent pair; ties go to the smallest pair, so training is deterministic."""
    return min(counts, key=lambda pair: (-counts[pair], pair))


def _chunks(text: str, pattern: str) -> Counter:
    """How often each pre-tokenized chunk occurs, as UTF-8 byte strings."""
    return Counter(chunk.encode("utf-8") for chunk in regex.findall(pattern, text))


def train_bpe_naive(text: str, vocab_size: int, pattern: str = GPT2_SPLIT_PATTERN) -> list[Pair]:
    """Learn ``vocab_size - 256`` merges the obvious way: re-count every pair after every merge.

    Clear but slow (each merge re-reads the whole corpus); ``train_bpe`` gives the same merges much faster.
    """
    chunk_counts = _chunks(text, pattern)
    words = [list(chunk) for chunk in chunk_counts]
    freqs = list(chunk_counts.values())
    merges = []
    for new_id in range(256, vocab_size):
        counts: dict[Pair, int] = {}
        for word, freq in zip(words, freqs):
            pair_counts(word, counts, freq)
        if not counts:
            break  # every chunk is a single token: nothing left to merge
        pair = _best_pair(counts)
        merges.append(pair)
        words = [merge(word, pair, new_id) for word in words]
    return merges


def train_bpe(text: str, vocab_size: int, pattern: str = GPT2_SPLIT_PATTERN, progress: bool = False) -> list[Pair]:
    """Learn ``vocab_size - 256`` merges from ``text``, updating pair counts incrementally.

    After a merge only the chunks that contained the merged pair change, so only their pairs are re-counted; an index
    from pair to chunks finds them, and a heap finds the most frequent pair without scanning every count.
    """
    if vocab_size < 256:
        raise ValueError(f"vocab_size must be at least 256 (one token per byte value), got {vocab_size}.")
    chunk_counts = _chunks(text, pattern)
    words = [list(chunk) for chunk in chunk_counts]
    freqs = list(chunk_counts.values())
    counts: dict[Pair, int] = {}
    where: dict[Pair, set[int]] = defaultdict(set)  # pair -> chunks that contain (or once contained) it
    for i, word in enumerate(words):
        pair_counts(word, counts, freqs[i])
        for pair in zip(word, word[1:]):
            where[pair].add(i)
    heap = [(-count, pair) for pair, count in counts.items()]  # entries go stale; checked when popped
    heapq.heapify(heap)

    merges = []
    for new_id in tqdm(range(256, vocab_size), desc="BPE merges", disable=not progress):
        while heap and counts.get(heap[0][1], 0) != -heap[0][0]:
            heapq.heappop(heap)  # a stale entry: that pair's count has changed since it was pushed
        if not heap:
            break
        pair = heapq.heappop(heap)[1]
        merges.append(pair)
        touched = set()
        for i in where.pop(pair):
            old = words[i]
            new = merge(old, pair, new_id)
            if len(new) == len(old):
                continue  # this chunk lost the pair in an earlier merge
            pair_counts(old, counts, -freqs[i])
            pair_counts(new, counts, freqs[i])
            touched.update(zip(old, old[1:]))
            for p in zip(new, new[1:]):
                where[p].add(i)
                touched.add(p)
            words[i] = new
        for p in touched:
            if counts.get(p, 0) > 0:
                heapq.heappush(heap, (-counts[p], p))
            else:
                counts.pop(p, None)
    return merges


class BPETokenizer:
    """A byte-level BPE tokenizer: ``merges`` learned by ``train_bpe`` plus optional special tokens.

    Ids 0-255 are the raw bytes, ids 256.. the merges in the order learned, then the special tokens.
    """

    def __init__(self, merges: list[Pair], pattern: str = GPT2_SPLIT_PATTERN,
                 special_tokens: dict[str, int] | None = None):
        self.merges = [tuple(pair) for pair in merges]
        self.pattern = pattern
        self._splitter = regex.compile(pattern)
        self.ranks = {pair: 256 + i for i, pair in enumerate(self.merges)}  # pair -> id; lower id = learned earlier
        self.vocab = [bytes([b]) for b in range(256)]  # id -> the bytes it stands for
        for a, b in self.merges:
            self.vocab.append(self.vocab[a] + self.vocab[b])
        if special_tokens is None:
            special_tokens = {ENDOFTEXT: len(self.vocab)}
        self.special_tokens = dict(special_tokens)
        self._special_splitter = (
            regex.compile("(" + "|".join(regex.escape(s) for s in sorted(special_tokens, key=len, reverse=True)) + ")")
            if special_tokens else None
        )
        self._cache: dict[bytes, list[int]] = {}

    @classmethod
    def train(cls, text: str, vocab_size: int, pattern: str = GPT2_SPLIT_PATTERN, progress: bool = False):
        """Train on ``text``; ``<|endoftext|>`` gets the id after the last merge."""
        return cls(train_bpe(text, vocab_size, pattern, progress), pattern)

    @property
    def n_vocab(self) -> int:
        return len(self.vocab) + len(self.special_tokens)

    def _encode_chunk(self, chunk: bytes) -> list[int]:
        """Apply the merges to one chunk: always the earliest-learned pair present, until none applies."""
        if chunk in self._cache:
            return self._cache[chunk]
        ids = list(chunk)
        while len(ids) >= 2:
            pair = min(zip(ids, ids[1:]), key=lambda p: self.ranks.get(p, float("inf")))
            if pair not in self.ranks:
                break
            ids = merge(ids, pair, self.ranks[pair])
        self._cache[chunk] = ids
        return ids

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode ``text`` treating special-token strings as ordinary text."""
        ids = []
        for chunk in self._splitter.findall(text):
            ids.extend(self._encode_chunk(chunk.encode("utf-8")))
        return ids

    def encode(self, text: str, allowed_special: str | set[str] = "none") -> list[int]:
        """Encode ``text``. Special tokens are honoured only if listed in ``allowed_special`` (or it is "all").

        By default a special-token string in the text is an error, as in tiktoken: text from users must not be able
        to inject an <|endoftext|> that the model would read as "document over".
        """
        if allowed_special == "all":
            allowed = set(self.special_tokens)
        elif allowed_special == "none":
            allowed = set()
        else:
            allowed = set(allowed_special)
        if self._special_splitter is None:
            return self.encode_ordinary(text)
        ids = []
        for part in self._special_splitter.split(text):
            if part in self.special_tokens:
                if part not in allowed:
                    raise ValueError(
                        f"The text contains the special token {part!r}. Pass allowed_special={{{part!r}}} (or 'all') "
                        f"to encode it as one special token, or encode_ordinary() to treat it as plain text."
                    )
                ids.append(self.special_tokens[part])
            elif part:
                ids.extend(self.encode_ordinary(part))
        return ids

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes of one token (a special token's are its UTF-8 spelling)."""
        if 0 <= token_id < len(self.vocab):
            return self.vocab[token_id]
        for text, special_id in self.special_tokens.items():
            if special_id == token_id:
                return text.encode("utf-8")
        raise ValueError(f"Token id {token_id} is not in this tokenizer (ids run from 0 to {self.n_vocab - 1}).")

    def decode_bytes(self, ids: list[int]) -> bytes:
        return b"".join(self.token_bytes(i) for i in ids)

    def decode(self, ids: list[int], errors: str = "replace") -> str:
        """Join the tokens' bytes and read them as UTF-8; a cut-off character becomes '\\ufffd' (the default)."""
        return self.decode_bytes(ids).decode("utf-8", errors=errors)

    def save(self, path: str | Path, **metadata) -> None:
        """Write the tokenizer as small, readable JSON (merges as pairs of ids), with any extra ``metadata``."""
        data = {"pattern": self.pattern, "special_tokens": self.special_tokens,
                "merges": [list(pair) for pair in self.merges], **metadata}
        Path(path).write_text(json.dumps(data, indent=None, separators=(",", ":")) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "BPETokenizer":
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(data["merges"], data["pattern"], data["special_tokens"])
