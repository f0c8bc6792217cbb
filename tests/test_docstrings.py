"""gptcourse.docstrings: real English from the standard library, the same text on every run."""

from gptcourse import corpus, docstrings


def test_docstrings_are_real_english_grouped_by_area_in_a_fixed_order():
    found = docstrings.stdlib_docstrings()
    assert {d.area for d in found} == set(docstrings.AREAS)
    assert len({d.text for d in found}) == len(found) > 800  # no text twice
    names = [d.name for d in found]
    assert "textwrap.dedent" in names and "statistics.median" in names and "json.dumps" in names
    dedent = found[names.index("textwrap.dedent")]
    assert dedent.area == "text" and dedent.text.startswith("Remove any common leading whitespace")
    text = docstrings.docstrings_text(found)
    assert len(text) > 200_000 and " the " in text and text == docstrings.docstrings_text()
    assert corpus.fingerprint(text) == corpus.fingerprint(docstrings.docstrings_text())


def test_a_module_contributes_only_what_it_defines():
    found = docstrings.stdlib_docstrings({"text": ["textwrap"]})
    assert all(d.name == "textwrap" or d.name.startswith("textwrap.") for d in found)
    assert not any(d.name == "textwrap.re" for d in found)  # textwrap imports re; re's text is not textwrap's
