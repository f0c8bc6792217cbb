"""Submissions made from the course's own notebooks: the reference answer, the untouched stub, catalogued mistakes.

For the grading benchmark and the GPU check: a class whose scores are known in advance, without any learner."""

from __future__ import annotations

import copy
from pathlib import Path

import nbformat

from autograder import catalogue
from autograder.course import EXERCISES_DIR, SOLUTIONS_DIR


def solution_sources(nb) -> dict[str, str]:
    """grade_id -> source of every solution cell of an instructor notebook."""
    return {c.metadata["nbgrader"]["grade_id"]: c.source for c in nb.cells
            if c.get("metadata", {}).get("nbgrader", {}).get("solution")}


def filled(release, sources: dict[str, str]):
    """A copy of the student notebook with the solution cells named in ``sources`` given those sources."""
    nb = copy.deepcopy(release)
    for cell in nb.cells:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if cell.get("metadata", {}).get("nbgrader", {}).get("solution") and grade_id in sources:
            cell.source = sources[grade_id]
    return nb


def variants(chapter: str, notebook: str) -> tuple[dict[str, str], list[dict[str, str]]]:
    """The reference sources of a chapter's notebook, and one set of sources per catalogued mistake."""
    solution = nbformat.read(SOLUTIONS_DIR / chapter / notebook, as_version=4)
    right = solution_sources(solution)
    mistakes = [{**right, w.grade_id: w.source} for w in catalogue.load(chapter) if w.grade_id in right]
    return right, mistakes


def make_class(chapter: str, students: int, folder: Path) -> Path:
    """``students`` submissions of ``chapter`` in ``folder``: correct, stub, then one catalogued mistake each."""
    (name,) = [p.name for p in (SOLUTIONS_DIR / chapter).glob("*.ipynb")]
    release = nbformat.read(EXERCISES_DIR / chapter / name, as_version=4)
    right, mistakes = variants(chapter, name)
    kinds = [right, {}] + mistakes
    for i in range(students):
        target = folder / f"learner{i:03d}" / chapter / name
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(filled(release, kinds[i % len(kinds)]), target)
    return folder
