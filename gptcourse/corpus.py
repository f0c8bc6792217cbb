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


def course_splits(num_story_chars: int = 250_000, heldout_fraction: float = 0.1) -> tuple[str, str]:
    """The course corpus as (train, heldout) text, about 0.7 MB in all by default.

    Each part mixes Python's documentation (split at a paragraph) with generated stories; the held-out stories come
    from another seed, so nothing held out was seen in training.
    """
    docs_train, docs_heldout = split_text(python_docs_text(), heldout_fraction)
    stories_train = generate_stories(num_story_chars, seed=0)
    stories_heldout = generate_stories(int(num_story_chars * heldout_fraction), seed=1)
    return docs_train + "\n\n" + stories_train, docs_heldout + "\n\n" + stories_heldout


def fingerprint(text: str) -> str:
    """A short SHA-256 of the text, to tell whether two machines trained on the same corpus."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
