"""Fine-tuning data from real English that ships with Python: the standard library's docstrings (Chapter 7).

Two tasks, built from ``gptcourse.docstrings`` (the same text on every machine with the same Python release; record
``fingerprint()`` next to any result):

- **classification**: the first sentence of a docstring -> the area of the library it comes from ("text",
  "numbers and maths", ...). Sentences that occur in two areas are dropped (no answer would be right).
- **instructions**: "What does `textwrap.dedent` do?" -> the first sentence of its docstring. The modules are split
  into training and held-out ones, so the evaluation asks about functions of modules the model never saw answered.

Splits are decided by a hash of each name, not by a random generator: adding or removing one docstring in a new
Python release moves no other example from one split to another.
"""

import hashlib
import re
from collections import Counter
from dataclasses import dataclass

from . import corpus
from .docstrings import AREAS, stdlib_docstrings

LABELS = list(AREAS)  # label i is the area LABELS[i]
_SIGNATURE = re.compile(r"^[\w.]+\(.*\)(\s*->.*)?$", re.S)  # "sqrt(x)" or "dedent(text) -> str": not a sentence


def first_sentence(docstring: str, max_chars: int = 200) -> str:
    """The docstring's first sentence, on one line: its first paragraph (after a signature line, if it starts
    with one), cut after the first '.', '!' or '?' that ends a sentence, and at ``max_chars``."""
    paragraphs = [p for p in docstring.split("\n\n") if p.strip()]
    if paragraphs and _SIGNATURE.match(paragraphs[0].strip()):
        paragraphs = paragraphs[1:]
    if not paragraphs:
        return ""
    return corpus.split_sentences(" ".join(paragraphs[0].split()))[0][:max_chars].strip()


def _bucket(name: str, n: int) -> int:
    """A number in 0..n-1 fixed by ``name`` alone (the same on every machine and in every release)."""
    return int(hashlib.sha256(name.encode()).hexdigest(), 16) % n


@dataclass(frozen=True)
class Example:
    name: str  # "textwrap.dedent"
    module: str  # "textwrap"
    text: str  # the input: a sentence (classification) or a question (instructions)
    target: str  # the area (classification) or the answer (instructions)


def classification_examples() -> list[Example]:
    """First sentences labelled by area, in the docstrings' fixed order; a sentence found in two areas is dropped."""
    rows = [(d, first_sentence(d.text)) for d in stdlib_docstrings()]
    rows = [(d, s) for d, s in rows if len(s.split()) >= 3]  # "Return self." and the like say nothing of the area
    areas_of = {}
    for d, sentence in rows:
        areas_of.setdefault(sentence, set()).add(d.area)
    seen, examples = set(), []
    for d, sentence in rows:
        if len(areas_of[sentence]) == 1 and sentence not in seen:
            seen.add(sentence)
            examples.append(Example(d.name, d.module, sentence, d.area))
    return examples


def split(examples: list[Example], held_out: float = 0.2) -> tuple[list[Example], list[Example], list[Example]]:
    """(train, validation, test) by a hash of each example's name: about ``1 - held_out`` for training, the rest
    halved between validation and test."""
    tenths = round(held_out * 10)
    parts = ([], [], [])
    for example in examples:
        bucket = _bucket(example.name, 10)
        parts[0 if bucket >= tenths else 1 + bucket % 2].append(example)
    return parts


def class_balance(examples: list[Example]) -> dict[str, int]:
    counts = Counter(e.target for e in examples)
    return {label: counts.get(label, 0) for label in LABELS}


def majority_baseline(train: list[Example], test: list[Example]) -> tuple[str, float]:
    """The most frequent training label, and the accuracy on ``test`` of always answering it."""
    label = Counter(e.target for e in train).most_common(1)[0][0]
    return label, sum(e.target == label for e in test) / len(test)


def instruction_examples() -> tuple[list[Example], list[Example]]:
    """(train, held_out) questions "What does `name` do?" -> the first sentence of its docstring, for functions,
    classes and methods. A fifth of the modules, chosen by a hash of their names, are held out entirely."""
    train, held_out = [], []
    for d in stdlib_docstrings():
        answer = first_sentence(d.text)
        if d.name == d.module or len(answer.split()) < 3:
            continue
        example = Example(d.name, d.module, f"What does `{d.name}` do?", answer)
        (held_out if _bucket(d.module, 5) == 0 else train).append(example)
    return train, held_out


def prompt_of(question: str) -> str:
    """The prompt format of instruction tuning: the model learns to write the answer after "Answer:" and then the
    end-of-text token. (Chat models use the same idea with their own markers for each turn.)"""
    return f"Question: {question}\nAnswer:"


def fingerprint() -> str:
    """A short hash of both tasks' examples: it changes when a Python release changes a docstring they use."""
    train, held_out = instruction_examples()
    rows = [f"{e.name}\t{e.text}\t{e.target}" for e in classification_examples() + train + held_out]
    return corpus.fingerprint("\n".join(rows))
