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


def test_the_grammar_accepts_every_generated_sentence_and_only_those():
    for seed in (0, 7):
        sentences = corpus.split_sentences(corpus.generate_stories(30_000, seed=seed))
        assert len(sentences) > 500 and all(map(corpus.is_story_sentence, sentences))
    near_misses = [
        "One day, Mia went to the park with an little cat.",  # wrong article
        "Mia had a red ball, but soon the kite was gone.",  # the lost thing changes
        "Leo asked the cat to help, and the dog said yes.",  # the animal changes
        "They counted to 21 and started again.",  # outside the grammar's numbers
        "Then they went home",  # no full stop
        "The cat looked under a box near the moon.",  # a place the stories never visit
    ]
    assert not any(map(corpus.is_story_sentence, near_misses))


def test_grammatical_share_judges_complete_sentences_only():
    assert corpus.grammatical_share("Mia had a red ball, but soon the kite was gone. The end. Mia went") == 0.5
    assert corpus.grammatical_share('"Where is my key?" asked Zoe. Then they went home.') == 1.0
    assert corpus.grammatical_share("") == 0.0 and corpus.grammatical_share(corpus.python_docs_text()[:2000]) == 0.0
