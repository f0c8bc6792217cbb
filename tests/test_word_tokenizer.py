from gptcourse.word_tokenizer import ENDOFTEXT, PAD, UNK, WordTokenizer, split_words


def test_split_keeps_words_and_punctuation_and_special_tokens():
    assert split_words("Hello, world!") == ["Hello", ",", "world", "!"]
    assert split_words(f"end.{ENDOFTEXT}Next") == ["end", ".", ENDOFTEXT, "Next"]


def test_round_trip_for_known_words_and_unk_for_unknown_ones():
    tok = WordTokenizer.from_text("The cat sat on the mat. The dog ran!")
    assert tok.decode(tok.encode("The dog sat on the mat.")) == "The dog sat on the mat."
    ids = tok.encode("The zebra sat.")
    assert ids[1] == tok.token_to_id[UNK]
    assert tok.decode(ids) == f"The {UNK} sat."


def test_special_tokens_come_first_and_vocabulary_can_be_capped():
    tok = WordTokenizer.from_text("a a a b b c", max_size=5)
    assert tok.id_to_token[:3] == [PAD, UNK, ENDOFTEXT]
    assert tok.id_to_token[3:] == ["a", "b"] and len(tok) == 5
    assert tok.encode(f"a{ENDOFTEXT}c") == [3, 2, 1]
