import socket

import pytest

from gptcourse.bpe import BPETokenizer
from gptcourse.tiktoken_bridge import cached_openai_encoding, to_tiktoken


def test_missing_openai_encoding_returns_none_without_touching_the_network(tmp_path, monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))

    def no_network(*args, **kwargs):
        raise AssertionError("tried to open a network connection")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    assert cached_openai_encoding("gpt2") is None
    assert cached_openai_encoding("cl100k_base") is None


def test_unknown_encoding_name_is_an_error():
    with pytest.raises(ValueError):
        cached_openai_encoding("no_such_encoding")


def test_tiktoken_twin_has_the_same_vocabulary():
    tokenizer = BPETokenizer.train("low lower lowest newer newest " * 20, 270)
    encoding = to_tiktoken(tokenizer, name="tiny")
    assert encoding.name == "tiny" and encoding.n_vocab == tokenizer.n_vocab
    assert all(encoding.decode_single_token_bytes(i) == tokenizer.vocab[i] for i in range(len(tokenizer.vocab)))
