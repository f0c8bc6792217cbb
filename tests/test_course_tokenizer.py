"""The committed course tokenizer is reproducible: retraining on the course corpus gives identical merges."""

import pytest

from gptcourse import corpus
from gptcourse.course_tokenizer import (TOKENIZER_PATH, VOCAB_SIZE, load_course_tokenizer, recorded_facts,
                                        train_course_tokenizer)
from gptcourse.tiktoken_bridge import to_tiktoken


@pytest.fixture(scope="module")
def retrained():
    return train_course_tokenizer()


def test_committed_tokenizer_is_small_and_complete():
    tokenizer = load_course_tokenizer()
    assert TOKENIZER_PATH.stat().st_size < 1_000_000
    assert len(tokenizer.vocab) == VOCAB_SIZE == recorded_facts()["vocab_size"]
    assert tokenizer.special_tokens == {"<|endoftext|>": VOCAB_SIZE}


def test_training_is_deterministic(retrained):
    again, _ = train_course_tokenizer()
    assert again.merges == retrained[0].merges


def test_retraining_reproduces_the_committed_merges(retrained):
    tokenizer, facts = retrained
    recorded = recorded_facts()
    if facts["corpus_fingerprint"] != recorded["corpus_fingerprint"]:
        pytest.skip(f"This Python ({facts['python']}) ships different documentation text than the one the tokenizer "
                    f"was trained on (Python {recorded['python']}), so the corpus differs; run `make tokenizer` to "
                    f"retrain for this Python.")
    assert tokenizer.merges == load_course_tokenizer().merges


def test_course_tokenizer_agrees_with_its_tiktoken_twin_on_heldout_text():
    tokenizer = load_course_tokenizer()
    _, heldout = corpus.course_splits()
    assert tokenizer.encode_ordinary(heldout) == to_tiktoken(tokenizer).encode_ordinary(heldout)


def test_missing_file_gives_the_command_to_recreate_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m gptcourse.course_tokenizer"):
        load_course_tokenizer(tmp_path / "nope.json")
