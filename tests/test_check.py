"""The learner's self-check, autograder/check.py, on the toy assignment and on every chapter's student notebook."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from grading_support import (
    REPO_ROOT, TOY_CHAPTER, TOY_SOLUTIONS, fill, make_release, read, run_module, set_source, solution_sources, write,
)
from autograder import check


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def toy_release(tmp_path_factory) -> Path:
    return make_release(TOY_SOLUTIONS, TOY_CHAPTER, tmp_path_factory.mktemp("toy_course"))


@pytest.fixture
def learner(toy_release, tmp_path):
    """Write a learner's notebook (the student version with some solution cells filled in) into a fresh folder."""
    release = read(toy_release)
    sources = solution_sources(read(TOY_SOLUTIONS / TOY_CHAPTER / "toy.ipynb"))

    def make(name="toy.ipynb", **answers) -> Path:
        nb = fill(release, {k: (sources[k] if v is True else v) for k, v in answers.items()})
        return write(nb, tmp_path / "learner" / name)

    return make


def run_check(capsys, path) -> tuple[int, str]:
    code = check.main([str(path)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


# --------------------------------------------------------------------------------------------------------------------
# Fast: what cannot be checked is said clearly, with exit status 2
# --------------------------------------------------------------------------------------------------------------------


def test_missing_file(tmp_path, capsys):
    code, out = run_check(capsys, tmp_path / "tokens.ipynb")
    assert code == 2 and "There is no file" in out and "exercises/ch01_tokens/tokens.ipynb" in out


def test_not_a_notebook(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    code, out = run_check(capsys, tmp_path / "notes.txt")
    assert code == 2 and "not a Jupyter notebook" in out


def test_a_folder(tmp_path, capsys):
    (tmp_path / "toy.ipynb").write_text("{}")
    code, out = run_check(capsys, tmp_path)
    assert code == 2 and "is a folder" in out and "toy.ipynb" in out


def test_malformed_json_is_a_clear_error_and_the_file_is_untouched(tmp_path, capsys):
    path = tmp_path / "toy.ipynb"
    path.write_text('{"cells": [{"cell_type": "code", "source": "x = ')
    before = sha(path)
    code, out = run_check(capsys, path)
    assert code == 2
    assert "damaged" in out and "not valid notebook JSON" in out and "line 1" in out
    assert "Traceback" not in out
    assert sha(path) == before


def test_json_that_is_not_a_notebook(tmp_path, capsys):
    path = tmp_path / "toy.ipynb"
    path.write_text('{"hello": "world"}')
    code, out = run_check(capsys, path)
    assert code == 2 and "not a Jupyter notebook" in out


# --------------------------------------------------------------------------------------------------------------------
# Slow: running the notebook
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_untouched_notebook_is_not_attempted(learner, capsys):
    path = learner()
    before = sha(path)
    code, out = run_check(capsys, path)
    assert code == 1
    assert out.count("not attempted") == 2 and "⚠ Exercise 1: double" in out and "⚠ Exercise 2: mean" in out
    assert "visible tests passed: 0/2" in out and "hidden tests run at grading time" in out
    assert "Errors outside the test cells" not in out  # a stub is not an error
    assert sha(path) == before  # the learner's file is byte-identical


@pytest.mark.slow
def test_completed_notebook_passes_even_with_a_warning(learner, capsys):
    path = learner(double=True, mean=True)  # the reference `mean([])` warns on stderr
    before = sha(path)
    code, out = run_check(capsys, path)
    assert code == 0, out
    assert "✓ Exercise 1: double" in out and "✓ Exercise 2: mean" in out and "visible tests passed: 2/2" in out
    assert sha(path) == before


@pytest.mark.slow
def test_failure_shows_the_message_not_the_traceback(learner, capsys):
    path = learner(double="def double(x):\n    return x * 3", mean=True)
    code, out = run_check(capsys, path)
    assert code == 1
    assert "✗ Exercise 1: double" in out and "AssertionError: double(2) should be 4" in out
    assert "✓ Exercise 2: mean" in out and "visible tests passed: 1/2" in out
    assert "Traceback" not in out and "\x1b[" not in out


@pytest.mark.slow
def test_error_outside_the_tests_names_the_cell(learner, capsys):
    path = learner(double=True, mean="def mean(xs:\n    return 0")
    code, out = run_check(capsys, path)
    assert code == 1
    assert "Errors outside the test cells" in out
    assert "your answer to Exercise 2" in out and "SyntaxError" in out and "cell 7" in out
    assert "✓ Exercise 1: double" in out and "✗ Exercise 2: mean" in out


@pytest.mark.slow
def test_kernel_death_is_explained(learner, capsys):
    path = learner(double=True, mean="import os\ndef mean(xs):\n    os._exit(1)")
    code, out = run_check(capsys, path)
    assert code == 1
    assert "kernel died" in out and "✓ Exercise 1: double" in out and "✗ Exercise 2: mean" in out


@pytest.mark.slow
def test_runs_in_the_notebooks_folder(learner, capsys):
    path = learner(double="import pathlib\nassert pathlib.Path('toy.ipynb').exists(), 'wrong folder'\n"
                          "def double(x):\n    return 2 * x", mean=True)
    code, out = run_check(capsys, path)
    assert code == 0, out


@pytest.mark.slow
def test_edited_test_still_counts_as_the_learners_own(learner, tmp_path, capsys):
    """The self-check runs what is in the notebook; the grader restores the original test (see test_grading)."""
    path = learner(double=True, mean=True)
    write(set_source(read(path), "test_double", "assert False, 'my own test'"), path)
    code, out = run_check(capsys, path)
    assert code == 1 and "my own test" in out


@pytest.mark.slow
def test_command_line(learner):
    path = learner(double=True, mean=True)
    proc = run_module("autograder.check", path, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "visible tests passed: 2/2" in proc.stdout


STUDENT_NOTEBOOKS = sorted((REPO_ROOT / "exercises").glob("*/*.ipynb"))


@pytest.mark.slow
@pytest.mark.parametrize("release", STUDENT_NOTEBOOKS, ids=lambda p: p.parent.name)
def test_every_student_notebook_checks_as_not_attempted_then_passes_when_completed(release, tmp_path, capsys):
    before = sha(release)
    code, out = run_check(capsys, release)
    assert code == 1 and "visible tests passed: 0/" in out, out
    assert "passed" not in out.replace("visible tests passed", "") and "not attempted" in out, out
    assert sha(release) == before

    solution = read(REPO_ROOT / "solutions" / release.parent.name / release.name)
    completed = write(fill(read(release), solution_sources(solution)), tmp_path / release.name)
    code, out = run_check(capsys, completed)
    n_tests = out.count("✓")
    assert code == 0 and n_tests > 0 and f"visible tests passed: {n_tests}/{n_tests}" in out, out


# --------------------------------------------------------------------------------------------------------------------
# The report names exercises as the learner sees them, and points at the exercise to fix first
# --------------------------------------------------------------------------------------------------------------------


def _executed(cells):
    """A notebook as the runner returns it, from (kind, grade_id or heading, source, error name or None)."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    for kind, name, source, ename in cells:
        if kind == "markdown":
            nb.cells.append(nbformat.v4.new_markdown_cell(name))
            continue
        meta = {"grade_id": name, "solution": kind == "solution", "grade": kind == "test", "locked": kind == "test",
                "points": 2 if kind == "test" else None, "schema_version": 3}
        cell = nbformat.v4.new_code_cell(source, metadata={"nbgrader": meta})
        if ename:
            cell.outputs = [nbformat.v4.new_output("error", ename=ename, evalue="wrong", traceback=[])]
        nb.cells.append(cell)
    return nb


def test_results_name_exercises_and_trace_follow_on_failures():
    nb = _executed([
        ("markdown", "## Exercise 1: masks (2 points)", "", None),
        ("solution", "ex1_mask", "def causal_mask(T):\n    return T", None),
        ("test", "ex1_mask_tests", "assert causal_mask(2)", "AssertionError"),
        ("markdown", "## Exercise 2: split (2 points)", "", None),
        ("solution", "ex2_split", "def split(x):\n    return x", None),
        ("test", "ex2_split_tests", "assert split(1)", None),
        ("markdown", "## Exercise 3: attention (2 points)", "", None),
        ("solution", "ex3_attend", "def attend(x):\n    return split(causal_mask(x))", None),
        ("test", "ex3_attend_tests", "assert attend(1)", "AssertionError"),
    ])
    results, problems, _ = check.analyse(nb)
    assert [r.title for r in results] == ["Exercise 1: causal_mask", "Exercise 2: split", "Exercise 3: attend"]
    assert [r.status for r in results] == ["failed", "passed", "failed"] and not problems
    assert results[2].follows.startswith("It uses causal_mask from Exercise 1,") and "first" in results[2].follows
    assert results[0].follows == "" and results[1].follows == ""


def test_make_check_fails_quietly(tmp_path):
    """`make check` keeps a non-zero status after a failed check, without make's own "*** Error" line."""
    import subprocess

    proc = subprocess.run(["make", "-s", "check", f"NB={tmp_path / 'missing.ipynb'}"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "There is no file" in proc.stderr
    assert "***" not in proc.stdout + proc.stderr
