"""gptcourse.finetune_data: Chapter 7's tasks from the standard library's docstrings, fixed and reproducible."""

from gptcourse import finetune_data as fd


def test_first_sentence():
    assert fd.first_sentence("sqrt(x)\n\nReturn the square root of x.") == "Return the square root of x."
    assert fd.first_sentence("Remove any common\nleading whitespace. More text.") == (
        "Remove any common leading whitespace.")
    assert fd.first_sentence("Version 3.2 of e.g.the thing") == "Version 3.2 of e.g.the thing"
    assert fd.first_sentence("") == "" and len(fd.first_sentence("word " * 100)) <= 200


def test_classification_set_is_labelled_balanced_as_reported_and_split_without_overlap():
    examples = fd.classification_examples()
    assert examples == fd.classification_examples(), "the same examples, in the same order, every time"
    assert {e.target for e in examples} == set(fd.LABELS) and len(examples) > 800
    sentences = [e.text for e in examples]
    assert len(sentences) == len(set(sentences)), "a sentence appears once, with one label"
    train, validation, test = fd.split(examples)
    assert len(train) + len(validation) + len(test) == len(examples)
    assert not {e.name for e in train} & {e.name for e in test} and len(test) > 50 and len(validation) > 50
    balance = fd.class_balance(examples)
    assert sum(balance.values()) == len(examples) and min(balance.values()) > 50
    label, accuracy = fd.majority_baseline(train, test)
    assert label == max(fd.class_balance(train), key=fd.class_balance(train).get)
    assert accuracy == sum(e.target == label for e in test) / len(test) < 0.5


def test_instructions_hold_out_whole_modules():
    train, held_out = fd.instruction_examples()
    assert len(train) > 400 and len(held_out) > 100
    assert not {e.module for e in train} & {e.module for e in held_out}
    dedent = [e for e in train + held_out if e.name == "textwrap.dedent"]
    assert dedent and dedent[0].text == "What does `textwrap.dedent` do?"
    assert dedent[0].target.startswith("Remove any common leading whitespace")
    assert len(fd.fingerprint()) == 16 and fd.fingerprint() == fd.fingerprint()
