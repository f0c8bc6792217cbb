"""tiktoken, the production BPE engine, fed with the course's own merges; and OpenAI's encodings when cached.

tiktoken does not know "merges": it knows ``mergeable_ranks``, a map from each token's bytes to its id, and at encode
time it repeatedly joins the adjacent pair whose *joined bytes* have the lowest rank. For a vocabulary trained by BPE
that is the same rule as "apply the earliest-learned merge", so the ids come out identical, only much faster.
"""

from unittest import mock

import tiktoken
import tiktoken.load

from .bpe import BPETokenizer


def to_tiktoken(tokenizer: BPETokenizer, name: str = "course_bpe") -> tiktoken.Encoding:
    """A ``tiktoken.Encoding`` with the same pattern, tokens and special tokens as ``tokenizer``."""
    mergeable_ranks = {token: rank for rank, token in enumerate(tokenizer.vocab)}
    if len(mergeable_ranks) != len(tokenizer.vocab):
        raise ValueError("Two merges produce the same bytes, so the vocabulary cannot be expressed as tiktoken ranks.")
    return tiktoken.Encoding(
        name=name,
        pat_str=tokenizer.pattern,
        mergeable_ranks=mergeable_ranks,
        special_tokens=tokenizer.special_tokens,
    )


class _Offline(Exception):
    pass


def _refuse_download(blobpath: str) -> bytes:
    raise _Offline(blobpath)


def cached_openai_encoding(name: str) -> tiktoken.Encoding | None:
    """``tiktoken.get_encoding(name)`` if its files are already in tiktoken's cache, else ``None``; never downloads.

    tiktoken fetches OpenAI's vocabularies (gpt2, cl100k_base, o200k_base, ...) on first use and caches them (see
    $TIKTOKEN_CACHE_DIR). Offline, that first use would fail, so here the download is refused instead of attempted.
    """
    try:
        with mock.patch.object(tiktoken.load, "read_file", _refuse_download):
            return tiktoken.get_encoding(name)
    except _Offline:
        return None
