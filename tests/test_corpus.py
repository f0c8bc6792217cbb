from gptcourse import corpus


def test_stories_are_seeded_and_sized():
    a, b = corpus.generate_stories(5_000, seed=3), corpus.generate_stories(5_000, seed=3)
    assert a == b and a != corpus.generate_stories(5_000, seed=4)
    assert 5_000 <= len(a) < 6_000
    assert " a o" not in a and " a e" not in a  # articles agree: "an owl", never "a owl"


def test_python_docs_are_real_english_of_useful_size():
    text = corpus.python_docs_text()
    assert len(text) > 300_000 and " the " in text


def test_splits_are_disjoint_and_cut_at_paragraphs():
    train, heldout = corpus.course_splits(num_story_chars=20_000)
    docs = corpus.python_docs_text()
    cut = docs.find(heldout.split("\n\n")[0])
    assert cut > 0.8 * len(docs) and docs[cut - 2:cut] == "\n\n"
    assert heldout.split("\n\n")[0] not in train


def test_fingerprint_tells_texts_apart():
    assert corpus.fingerprint("a") == corpus.fingerprint("a") != corpus.fingerprint("b")
