"""The graded exercises: instructor notebooks (solutions/) and the student notebooks generated from them (exercises/).

Fast checks read the notebooks; the ``slow`` ones run them in a Jupyter kernel ("python3" from this environment).
"""

import re
import sys

import pytest

from notebook_helpers import (
    BEGIN_HIDDEN,
    BEGIN_SOLUTION,
    END_HIDDEN,
    END_SOLUTION,
    chapter_of,
    error_of,
    execute,
    exercise_notebooks,
    exercise_path,
    grade_id,
    hidden_block,
    imported_modules,
    is_solution_cell,
    is_test_cell,
    nbgrader_meta,
    read,
    scores,
    secret_lines,
    short,
    solution_notebooks,
    top_level_definitions,
    unbound_names,
)

from autograder.course import EXERCISES_DIR, chapters
from autograder.generate import generate_to

SOLUTIONS = solution_notebooks()
ALL_NOTEBOOKS = SOLUTIONS + exercise_notebooks()
# The only third-party packages that a chapter's hidden tests may import (the course library, whose implementation
# the exercises re-create, is never the judge). Chapters not listed here are not checked yet.
HIDDEN_TEST_PACKAGES = {"ch00_pytorch": {"torch", "numpy"}, "ch01_tokens": {"tiktoken", "regex"},
                        "ch02_embeddings": {"torch", "numpy"}, "ch03_attention": {"torch", "numpy"}, "ch04_gpt_model": {"torch", "numpy", "transformers"},
                        "ch05_pretraining": {"torch", "numpy"},
                        "ch06_generating": {"torch", "numpy", "transformers"},
                        "ch07_finetuning": {"torch", "peft", "transformers"}}
# The only parts of the course library hidden tests may use: shared test settings, never an implementation to
# compare against (the oracle must be independent of the course's own code).
HIDDEN_TEST_LIBRARY_MODULES = {"gptcourse.tolerances", "gptcourse.seed"}


def test_there_are_exercises():
    assert chapters(), "solutions/ has no chapter with a notebook"


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=lambda p: f"{p.parts[-3]}/{short(p)}")
def test_notebook_is_stored_clean(path):
    assert path.is_file(), f"{path} is missing: run `make exercises` and commit exercises/"
    nb = read(path)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", "the kernelspec must be python3"
    for index, cell in enumerate(nb.cells):
        assert cell.get("id"), f"cell {index} has no id"
        if cell.cell_type == "code":
            assert cell.outputs == [], f"cell {cell.id} has stored outputs: clear them before committing"
            assert cell.execution_count is None, f"cell {cell.id} has an execution count"
    ids = [cell.id for cell in nb.cells]
    assert len(ids) == len(set(ids)), "two cells share an id"


@pytest.mark.parametrize("path", SOLUTIONS, ids=short)
def test_solution_notebook_metadata(path):
    nb = read(path)
    graded = [cell for cell in nb.cells if nbgrader_meta(cell)]
    ids = [grade_id(cell) for cell in graded]
    assert len(ids) == len(set(ids)), f"grade_ids repeat: {sorted(i for i in ids if ids.count(i) > 1)}"
    for cell in graded:
        assert nbgrader_meta(cell).get("schema_version") == 3, f"{grade_id(cell)}: nbgrader schema_version must be 3"
    solutions = [cell for cell in nb.cells if is_solution_cell(cell)]
    tests = [cell for cell in nb.cells if is_test_cell(cell)]
    assert solutions and tests, "a notebook of exercises needs solution cells and test cells"
    test_ids = [grade_id(cell) for cell in tests]
    for cell in solutions:
        assert BEGIN_SOLUTION in cell.source and END_SOLUTION in cell.source, f"{grade_id(cell)}: no solution region"
        assert f"{grade_id(cell)}_tests" in test_ids, f"{grade_id(cell)} has no test cell {grade_id(cell)}_tests"
        position = nb.cells.index(cell)
        tests_position = next(i for i, c in enumerate(nb.cells) if grade_id(c) == f"{grade_id(cell)}_tests")
        assert tests_position > position, f"{grade_id(cell)}_tests must come after {grade_id(cell)}"
    for cell in tests:
        meta = nbgrader_meta(cell)
        assert meta.get("locked"), f"{grade_id(cell)}: test cells are locked"
        assert isinstance(meta.get("points"), (int, float)) and meta["points"] > 0, f"{grade_id(cell)}: no points"
        assert BEGIN_HIDDEN in cell.source and END_HIDDEN in cell.source, f"{grade_id(cell)}: no hidden tests"
        before_hidden = cell.source.split(BEGIN_HIDDEN)[0]
        assert "assert" in before_hidden, f"{grade_id(cell)}: give the learner visible tests before the hidden ones"


@pytest.mark.parametrize("path", SOLUTIONS, ids=short)
def test_hidden_tests_stand_alone(path):
    """Each hidden block needs nothing from the notebook but the learner's functions, and imports only what it may."""
    nb = read(path)
    learner_names = set()
    for cell in nb.cells:
        if is_solution_cell(cell):
            learner_names |= top_level_definitions(cell.source)
    allowed_packages = HIDDEN_TEST_PACKAGES.get(chapter_of(path))
    for cell in nb.cells:
        if not is_test_cell(cell):
            continue
        block = hidden_block(cell.source)
        needed = unbound_names(block)
        assert needed <= learner_names, (
            f"{grade_id(cell)}: the hidden tests use {sorted(needed - learner_names)} from the notebook; they may "
            f"only rely on the learner's functions ({sorted(learner_names)}), so define everything else inside them"
        )
        library = {m for m in imported_modules(block, top_level=False) if m.split(".")[0] == "gptcourse"}
        assert library <= HIDDEN_TEST_LIBRARY_MODULES, (
            f"{grade_id(cell)}: hidden tests may use only {sorted(HIDDEN_TEST_LIBRARY_MODULES)} of the course "
            f"library, not {sorted(library - HIDDEN_TEST_LIBRARY_MODULES)}")
        grader = {m for m in imported_modules(block, top_level=False) if m.split(".")[0] == "autograder"}
        assert grader <= {"autograder.referee"}, (
            f"{grade_id(cell)}: of the grader, tests may use only autograder.referee (learner.gradients, "
            f"learner.seed), not {sorted(grader - {'autograder.referee'})}")
        third_party = imported_modules(block) - set(sys.stdlib_module_names) - {"gptcourse", "autograder"}
        if allowed_packages is not None:
            assert third_party <= allowed_packages, f"{grade_id(cell)}: hidden tests import {sorted(third_party)}"


#: In a hidden test's message, a field that would print what the test expects (the learner sees the message).
EXPECTED_FIELD = re.compile(r"\{(expected|want\w*|reference\w*|theirs|correct\w*)\b[^}]*\}")
#: Comparisons whose failure report prints the expected numbers; hidden tests use gptcourse's check_close.
NUMBER_REPORTS = re.compile(r"(?<![\w.])assert_close\(|torch\.testing\.assert_close\(")


@pytest.mark.parametrize("path", SOLUTIONS, ids=short)
def test_hidden_test_messages_do_not_give_the_expected_values_away(path):
    for cell in read(path).cells:
        if not is_test_cell(cell):
            continue
        block = hidden_block(cell.source)
        fields = EXPECTED_FIELD.findall(block)
        assert not fields, f"{grade_id(cell)}: a hidden test's message prints {fields}; say what is wrong instead"
        calls = NUMBER_REPORTS.findall(block)
        assert not calls, (f"{grade_id(cell)}: {calls[0]} in a hidden test reports the expected numbers when it "
                           "fails; use gptcourse.tolerances.check_close")


@pytest.mark.parametrize("path", SOLUTIONS, ids=short)
def test_student_notebook_leaks_nothing(path):
    student = exercise_path(path)
    assert student.is_file(), f"{student} is missing: run `make exercises`"
    text = "\n".join(cell.source for cell in read(student).cells)
    for marker in (BEGIN_SOLUTION, END_SOLUTION, BEGIN_HIDDEN, END_HIDDEN):
        assert marker not in text, f"the student notebook contains {marker!r}"
    student_lines = {line.strip() for line in text.split("\n")}
    leaked = sorted(secret_lines(read(path)) & student_lines)
    assert not leaked, f"lines of solutions or hidden tests appear in the student notebook: {leaked}"


@pytest.mark.parametrize("chapter", chapters())
def test_exercises_are_up_to_date(chapter, tmp_path):
    """exercises/ is exactly what `make exercises` generates from solutions/ today."""
    generate_to(tmp_path, [chapter])
    fresh = {p.relative_to(tmp_path): p.read_bytes() for p in (tmp_path / chapter).rglob("*") if p.is_file()}
    committed_dir = EXERCISES_DIR / chapter
    committed = {p.relative_to(EXERCISES_DIR): p.read_bytes() for p in committed_dir.rglob("*") if p.is_file()}
    hint = "exercises/ is stale: run `make exercises` (python -m autograder.generate) and commit the result"
    assert sorted(fresh) == sorted(committed), f"{hint}; files differ: {sorted(set(fresh) ^ set(committed))}"
    for name in fresh:
        assert fresh[name] == committed[name], f"{hint}; {name} differs"


def test_no_stray_exercises():
    stray = sorted(p.name for p in EXERCISES_DIR.iterdir() if p.is_dir() and p.name not in chapters())
    assert not stray, f"exercises/ has chapters that solutions/ does not: {stray}"


@pytest.mark.slow
@pytest.mark.parametrize("path", SOLUTIONS, ids=short)
def test_solution_notebook_earns_full_points(path):
    done = execute(read(path), cwd=path.parent)
    errors = {cell.id: error_of(cell) for cell in done.cells if cell.cell_type == "code" and error_of(cell)}
    assert not errors, f"cells failed: {errors}"
    earned = scores(done)
    assert earned, "no test cells"
    lost = {gid: s for gid, s in earned.items() if s[0] != s[1]}
    assert not lost, f"test cells that did not earn full points (earned, possible): {lost}"


@pytest.mark.slow
@pytest.mark.parametrize("path", exercise_notebooks(), ids=short)
def test_student_notebook_fails_every_test(path):
    """As shipped, nothing is implemented, so every test cell fails and the notebook scores 0."""
    done = execute(read(path), cwd=path.parent)
    passing = [grade_id(cell) for cell in done.cells if is_test_cell(cell) and not error_of(cell)]
    assert not passing, f"these test cells pass without any work from the learner: {passing}"
    assert sum(earned for earned, _ in scores(done).values()) == 0
