"""The course's byte-level BPE against independent oracles: tiktoken for encoding, brute-force counts for training."""

import random
from collections import Counter

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from gptcourse import corpus
from gptcourse.bpe import (ENDOFTEXT, GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN, BPETokenizer, merge, pair_counts,
                           train_bpe, train_bpe_naive)
from gptcourse.tiktoken_bridge import to_tiktoken


@pytest.fixture(scope="module")
def texts():
    train, heldout = corpus.course_splits(num_story_chars=40_000)
    return train[:150_000] + train[-40_000:], heldout


@pytest.fixture(scope="module")
def tokenizer(texts):
    return BPETokenizer.train(texts[0], 700)


def random_unicode(rng: random.Random, length: int) -> str:
    """Text mixing ASCII, accents, combining marks, CJK, emoji, whitespace runs and code points from every plane."""
    pools = ["abc XYZ 019 .,;!?'\"-", "éèüñçß", "\u0301\u0308", "漢字かなカナ한국어", "😀🚀👩‍💻🇬🇧", "\n\t   \r\n"]
    out = []
    for _ in range(length):
        if rng.random() < 0.1:
            code = rng.randrange(0x110000)
            out.append(chr(code) if not 0xD800 <= code <= 0xDFFF else "?")
        else:
            out.append(rng.choice(rng.choice(pools)))
    return "".join(out)


def test_pair_counts_counts_overlapping_pairs():
    assert pair_counts([1, 1, 1]) == {(1, 1): 2}
    assert pair_counts([1, 2, 3, 1, 2]) == {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    assert pair_counts([]) == {} and pair_counts([7]) == {}


def test_merge_goes_left_to_right_without_overlap():
    assert merge([1, 1, 1], (1, 1), 9) == [9, 1]
    assert merge([1, 1, 1, 1], (1, 1), 9) == [9, 9]
    assert merge([5, 1, 2, 1, 2, 1], (1, 2), 9) == [5, 9, 9, 1]
    assert merge([1, 2], (2, 1), 9) == [1, 2]


@pytest.mark.parametrize("pattern", [GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN])
def test_incremental_training_matches_naive_recount(texts, pattern):
    text = texts[0][:30_000] + random_unicode(random.Random(0), 2_000)
    assert train_bpe(text, 600, pattern) == train_bpe_naive(text, 600, pattern)


def test_each_merge_is_the_most_frequent_pair_by_an_independent_count(texts):
    """Recount pairs from tiktoken's encoding of every chunk with the merges so far: the next merge must be the
    most frequent pair, ties going to the smallest pair."""
    text = texts[0][:60_000]
    merges = train_bpe(text, 512)
    chunks = Counter(regex.findall(GPT2_SPLIT_PATTERN, text))
    for step in [0, 1, 10, 100, 255]:
        encoding = to_tiktoken(BPETokenizer(merges[:step]))
        counts = Counter()
        for chunk, freq in chunks.items():
            ids = encoding.encode_ordinary(chunk)
            for pair in zip(ids, ids[1:]):
                counts[pair] += freq
        best = max(counts.values())
        assert merges[step] == min(pair for pair, count in counts.items() if count == best)


def test_training_stops_when_nothing_is_left_to_merge():
    assert train_bpe("ab ab", 1000) == [(97, 98), (32, 256)]
    with pytest.raises(ValueError, match="at least 256"):
        train_bpe("abc", 100)


def test_encoding_matches_tiktoken_on_heldout_text(texts, tokenizer):
    encoding = to_tiktoken(tokenizer)
    heldout = texts[1] + random_unicode(random.Random(1), 3_000)
    assert tokenizer.encode_ordinary(heldout) == encoding.encode_ordinary(heldout)
    assert tokenizer.encode_ordinary("unhappiness") == encoding.encode_ordinary("unhappiness")


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_decode_inverts_encode_for_any_text(tokenizer, text):
    assert tokenizer.decode(tokenizer.encode_ordinary(text)) == text
    assert tokenizer.decode_bytes(tokenizer.encode_ordinary(text)) == text.encode("utf-8")


def test_special_tokens_are_refused_by_default_and_honoured_when_allowed(tokenizer):
    text = f"first story{ENDOFTEXT}second story"
    with pytest.raises(ValueError, match="allowed_special"):
        tokenizer.encode(text)
    ids = tokenizer.encode(text, allowed_special={ENDOFTEXT})
    eot = tokenizer.special_tokens[ENDOFTEXT]
    assert eot == len(tokenizer.vocab) and ids.count(eot) == 1
    assert ids == to_tiktoken(tokenizer).encode(text, allowed_special={ENDOFTEXT})
    assert eot not in tokenizer.encode_ordinary(text)
    assert tokenizer.decode(ids) == text
    assert tokenizer.encode(text, allowed_special="all") == ids


def test_cut_off_utf8_decodes_to_replacement_character(tokenizer):
    ids = tokenizer.encode_ordinary("🚀")
    assert len(ids) >= 2  # a rare emoji is several byte tokens
    assert tokenizer.decode(ids[:-1]).endswith("\ufffd")
    with pytest.raises(UnicodeDecodeError):
        tokenizer.decode(ids[:-1], errors="strict")


def test_unknown_token_id_is_a_clear_error(tokenizer):
    with pytest.raises(ValueError, match="not in this tokenizer"):
        tokenizer.decode([tokenizer.n_vocab])


def test_save_and_load_round_trip(tmp_path, tokenizer):
    path = tmp_path / "tok.json"
    tokenizer.save(path, note="test")
    loaded = BPETokenizer.load(path)
    assert loaded.merges == tokenizer.merges
    assert loaded.special_tokens == tokenizer.special_tokens
    assert loaded.pattern == tokenizer.pattern
