"""Catalogues of realistic wrong implementations, one module per chapter (``autograder/catalogue/<chapter>.py``).

Each module defines ``WRONG``: a list of :class:`WrongImplementation`. An entry replaces the source of one solution
cell (by its nbgrader ``grade_id``) with a plausible learner mistake. CI (``tests/test_catalogue.py``) runs the
instructor notebook with that replacement and only the *hidden* part of every test cell, and checks that the
exercise's own test cell fails: a hidden test that no wrong implementation fails is not testing anything.

A module may also define ``ALTERNATIVES``: correct answers written differently from the reference (another
algorithm, another return type the spec allows). CI checks that the full test cell (visible and hidden tests) accepts
each of them, so the tests do not demand the reference's way of doing things.

To add a mistake you have seen in real submissions, append an entry to the chapter's ``WRONG`` list; the tests pick
it up by itself.

What hidden tests check, for every exercise (the rule for new chapters too), wherever the spec makes the promise,
and only then (a docstring's promise is tested; nothing is tested that it does not promise):

* the inputs are unchanged after the call (tensors, lists, dicts, a module's parameters);
* results are fresh: not an argument, not a view of one, not one object or one cached table shared between calls
  (``learner.memory`` sees shared tensor memory, which copies cannot show);
* repeated, interleaved calls with other arguments (shape, length, base, ``d_model``, seed, another list of the same
  length) give the right answers, so caching on a partial key fails;
* the default arguments are the specified ones, tested on inputs where the default changes the answer;
* numerically hard inputs: a large offset with a small spread, large scores or logits, float32 as well as float64;
* the promised types and dtypes (a Python ``int`` and not a 0-d tensor, ``torch.long``), also for inputs of other
  integer dtypes where the spec accepts them; results on the input's device (tests loop over
  ``gptcourse.tolerances`` devices, so a grading run on a GPU checks that too);
* randomness where specified: dropout where it belongs, masks independent across batch entries and heads, two
  training-mode calls differ, a seed reproduces, the global generators untouched where promised
  (``learner.rng_state``);
* ties and duplicates, empty and length-1 inputs, small sizes that could take another code path;
* streams and stateful helpers independent of each other when two are interleaved.

Each class that applies has at least one catalogued mistake here, written as a learner would write it.
"""

import importlib
import pkgutil
from dataclasses import dataclass, field
from textwrap import dedent


@dataclass(frozen=True)
class WrongImplementation:
    grade_id: str  # the nbgrader grade_id of the solution cell this source replaces
    name: str  # short and unique within the chapter; used as the pytest id
    why: str  # one line: the learner's mistake
    source: str  # the complete replacement source of that cell

    @property
    def tests_grade_id(self) -> str:
        """The grade_id of the exercise's own test cell (by convention, the solution's grade_id + "_tests")."""
        return self.grade_id + "_tests"


@dataclass(frozen=True)
class CorrectAlternative:
    grade_id: str  # the nbgrader grade_id of the solution cell this source replaces
    name: str  # short and unique within the chapter; used as the pytest id
    how: str  # one line: how it differs from the reference solution
    source: str  # the complete replacement source of that cell

    @property
    def tests_grade_id(self) -> str:
        return self.grade_id + "_tests"


@dataclass
class Catalogue:
    """One chapter's lists, filled by ``wrong(...)`` and ``right(...)`` with sources written indented in the module."""

    wrong_implementations: list[WrongImplementation] = field(default_factory=list)
    alternatives: list[CorrectAlternative] = field(default_factory=list)

    def wrong(self, grade_id: str, name: str, why: str, source: str) -> None:
        self.wrong_implementations.append(WrongImplementation(grade_id, name, why, dedent(source).strip() + "\n"))

    def right(self, grade_id: str, name: str, how: str, source: str) -> None:
        self.alternatives.append(CorrectAlternative(grade_id, name, how, dedent(source).strip() + "\n"))


def template(source: str, **defaults: str):
    """A learner's answer with ``{slots}``: returns ``fill(**change)``, the answer with every slot at its default (the
    correct line) except the changed ones. One mistake per entry, each written as the one line it changes."""
    def fill(**change: str) -> str:
        return dedent(source).format(**{**defaults, **change})
    return fill


def chapters_with_catalogue() -> list[str]:
    """The chapters that have a catalogue module."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def load(chapter: str) -> list[WrongImplementation]:
    """The wrong implementations of one chapter (an empty list if it has no catalogue yet)."""
    if chapter not in chapters_with_catalogue():
        return []
    return list(importlib.import_module(f"{__name__}.{chapter}").WRONG)


def load_alternatives(chapter: str) -> list[CorrectAlternative]:
    """The correct alternative answers of one chapter (an empty list if there are none)."""
    if chapter not in chapters_with_catalogue():
        return []
    return list(getattr(importlib.import_module(f"{__name__}.{chapter}"), "ALTERNATIVES", []))
