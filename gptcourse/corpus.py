"""The course corpus: text that needs no download and no third-party prose in the repository.

Two sources, both available offline on every machine:

- ``python_docs_text()``: the help topics that ship with every Python installation (``pydoc_data.topics``), about
  half a megabyte of real English written about Python.
- ``generate_stories()``: short stories the course writes itself from a small seeded grammar, so any amount of
  simple, regular English can be made on demand and is identical on every machine.

Python's documentation changes a little between Python releases, so anything trained on it records
``fingerprint(text)`` to tell which text it saw.
"""

import hashlib
import random
import re

from pydoc_data.topics import topics as _PYDOC_TOPICS

# The story grammar: our own tiny world. Names, places, things and what happens to them.
_NAMES = ["Mia", "Leo", "Ada", "Sam", "Nora", "Ben", "Iris", "Tom", "Zoe", "Omar", "Lily", "Max", "Ravi", "Eva"]
_ANIMALS = ["cat", "dog", "fox", "owl", "rabbit", "turtle", "bird", "mouse", "bear", "frog"]
_ADJECTIVES = ["little", "old", "brave", "sleepy", "happy", "tiny", "clever", "shy", "curious", "kind", "quiet"]
_COLOURS = ["red", "blue", "green", "yellow", "purple", "orange", "silver", "golden", "white", "brown"]
_THINGS = ["ball", "key", "kite", "book", "hat", "box", "map", "cup", "shell", "lamp", "boat", "flower", "stone"]
_PLACES = ["the park", "the forest", "the garden", "the river", "the beach", "the hill", "the kitchen",
           "the library", "the market", "the old barn", "the school", "the lake"]
_FEELINGS = ["happy", "sad", "surprised", "tired", "proud", "scared", "excited", "calm", "hungry"]
_WEATHER = ["the sun was warm", "it was raining", "the wind was cold", "the sky was grey", "snow was falling",
            "the stars were bright"]
_TIMES = ["One morning", "One day", "Last summer", "On a rainy afternoon", "Early in the evening", "Once upon a time"]


def _pick(rng: random.Random, words: list[str]) -> str:
    return words[rng.randrange(len(words))]


def _a(word: str) -> str:
    """'a cat', 'an owl': the article that goes before ``word``."""
    return ("an " if word[0] in "aeiou" else "a ") + word


def _story(rng: random.Random) -> str:
    """One story of five to nine sentences about a child, an animal and a lost thing."""
    name, animal, thing = _pick(rng, _NAMES), _pick(rng, _ANIMALS), _pick(rng, _THINGS)
    adjective, colour = _pick(rng, _ADJECTIVES), _pick(rng, _COLOURS)
    place, other_place = _pick(rng, _PLACES), _pick(rng, _PLACES)
    sentences = [
        f"{_pick(rng, _TIMES)}, {name} went to {place} with {_a(adjective)} {animal}.",
        f"{_pick(rng, _WEATHER).capitalize()}, and {name} felt {_pick(rng, _FEELINGS)}.",
        f"{name} had {_a(colour)} {thing}, but soon the {thing} was gone.",
        f'"Where is my {thing}?" asked {name}.',
    ]
    for _ in range(rng.randint(1, 4)):
        sentences.append(_pick(rng, [
            f"The {animal} looked under {_a(_pick(rng, _THINGS))} near {other_place}.",
            f"They walked to {other_place} and looked everywhere.",
            f"{_a(_pick(rng, _ADJECTIVES)).capitalize()} {_pick(rng, _ANIMALS)} said it had seen {_a(colour)} {thing}.",
            f"{name} asked the {animal} to help, and the {animal} said yes.",
            f"They counted to {rng.randint(2, 20)} and started again.",
            f"{name} was {_pick(rng, _FEELINGS)}, but did not stop looking.",
        ]))
    sentences.append(_pick(rng, [
        f"At last the {animal} found the {thing} in {other_place}, and {name} laughed.",
        f"In the end the {thing} was in {name}'s pocket all along.",
        f"The {thing} was never found, so {name} made a new one with the {animal}.",
    ]))
    sentences.append(_pick(rng, ["The end.", "From that day on, they were best friends.", "Then they went home."]))
    return " ".join(sentences)


def generate_stories(num_chars: int, seed: int = 0) -> str:
    """About ``num_chars`` characters of seeded stories, separated by blank lines; the same seed gives the same text."""
    rng = random.Random(seed)
    stories, length = [], 0
    while length < num_chars:
        stories.append(_story(rng))
        length += len(stories[-1]) + 2
    return "\n\n".join(stories)


def python_docs_text() -> str:
    """The help topics that ship with Python (``pydoc_data.topics``), in a fixed order."""
    return "\n\n".join(_PYDOC_TOPICS[key].strip() for key in sorted(_PYDOC_TOPICS))


def split_text(text: str, heldout_fraction: float = 0.1) -> tuple[str, str]:
    """Split ``text`` into (train, heldout) at a blank line near the cut, so no paragraph is torn apart."""
    if not 0 < heldout_fraction < 1:
        raise ValueError(f"heldout_fraction must be between 0 and 1, got {heldout_fraction}.")
    cut = int(len(text) * (1 - heldout_fraction))
    boundary = text.find("\n\n", cut)
    cut = boundary if boundary != -1 else cut
    return text[:cut], text[cut:].lstrip("\n")


def course_documents(num_story_chars: int = 250_000, heldout_fraction: float = 0.1) -> tuple[list[str], list[str]]:
    """The course corpus as (train, heldout) lists of documents: Python's help pages (split at a paragraph, one
    document each side), then one document per story. The held-out stories come from another seed, so nothing held
    out was seen in training."""
    docs_train, docs_heldout = split_text(python_docs_text(), heldout_fraction)
    stories_train = generate_stories(num_story_chars, seed=0).split("\n\n")
    stories_heldout = generate_stories(int(num_story_chars * heldout_fraction), seed=1).split("\n\n")
    return [docs_train] + stories_train, [docs_heldout] + stories_heldout


def course_splits(num_story_chars: int = 250_000, heldout_fraction: float = 0.1) -> tuple[str, str]:
    """The course corpus as (train, heldout) text, about 0.7 MB in all by default: the documents of
    ``course_documents`` separated by blank lines."""
    train, heldout = course_documents(num_story_chars, heldout_fraction)
    return "\n\n".join(train), "\n\n".join(heldout)


def fingerprint(text: str) -> str:
    """A short SHA-256 of the text, to tell whether two machines trained on the same corpus."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


# --- Does a sentence belong to the story grammar? (Chapter 5 measures samples with it) ---
# The grammar is ours, so we can tell for certain whether a sampled sentence is one the story generator could have
# written: every sentence of _story() as a pattern over the same word lists. A sentence that repeats a word (the
# lost thing, the animal) must repeat the same one.

def _any(words: list[str]) -> str:
    return "(?:" + "|".join(re.escape(word) for word in words) + ")"


def _with_article(words: list[str], capital: bool = False) -> str:
    phrases = [_a(word) for word in words]
    return _any([p[0].upper() + p[1:] for p in phrases] if capital else phrases)


_N, _AN, _TH = _any(_NAMES), _any(_ANIMALS), _any(_THINGS)
_PL, _FE = _any(_PLACES), _any(_FEELINGS)
_STORY_SENTENCES = [
    rf"{_any(_TIMES)}, {_N} went to {_PL} with {_with_article(_ADJECTIVES)} {_AN}\.",
    rf"{_any([w.capitalize() for w in _WEATHER])}, and {_N} felt {_FE}\.",
    rf"{_N} had {_with_article(_COLOURS)} (?P<thing>{_TH}), but soon the (?P=thing) was gone\.",
    rf'"Where is my {_TH}\?" asked {_N}\.',
    rf"The {_AN} looked under {_with_article(_THINGS)} near {_PL}\.",
    rf"They walked to {_PL} and looked everywhere\.",
    rf"{_with_article(_ADJECTIVES, capital=True)} {_AN} said it had seen {_with_article(_COLOURS)} {_TH}\.",
    rf"{_N} asked the (?P<animal>{_AN}) to help, and the (?P=animal) said yes\.",
    r"They counted to (?:[2-9]|1[0-9]|20) and started again\.",
    rf"{_N} was {_FE}, but did not stop looking\.",
    rf"At last the {_AN} found the {_TH} in {_PL}, and {_N} laughed\.",
    rf"In the end the {_TH} was in {_N}'s pocket all along\.",
    rf"The {_TH} was never found, so {_N} made a new one with the {_AN}\.",
    r"The end\.|From that day on, they were best friends\.|Then they went home\.",
]
_SENTENCE_PATTERNS = [re.compile(pattern) for pattern in _STORY_SENTENCES]


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text``: cut after '.', '!' or '?' followed by white space (a '?' inside quotes stays)."""
    return [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]


def is_story_sentence(sentence: str) -> bool:
    """Whether the story grammar can produce ``sentence`` exactly (words, articles, punctuation and repeats)."""
    return any(pattern.fullmatch(sentence) for pattern in _SENTENCE_PATTERNS)


def grammatical_share(text: str) -> float:
    """The share of the complete sentences of ``text`` that the story grammar can produce (0.0 for none)."""
    sentences = split_sentences(text)
    if sentences and not sentences[-1].endswith((".", "!", "?")):
        sentences = sentences[:-1]  # an unfinished last sentence is not judged
    return sum(map(is_story_sentence, sentences)) / len(sentences) if sentences else 0.0
