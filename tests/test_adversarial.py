"""The grader against adversarial and broken submissions (the catalogue: tests/adversarial_cases.py).

ONE grading run per chapter over all its cases (``autograder.grade --jobs 2 --timeout 5 --budget 40``, module-
scoped), with the CPU oversubscribed by busy processes beside it the whole time (a grader must not fail learners,
or itself, on a busy machine; ``GPTCOURSE_NO_CPU_HOG=1`` turns that off). Then one test per case checking its
declared outcome in the results JSON, grades.csv and problems.csv; checks over the whole run: nothing dropped
silently, the originals untouched, no hidden-test line in anything a learner or the results file can show (also
encoded), the master gradebook written by the grader alone, the isolation reported as it was; and the learner's
self-check on every case that does not depend on the sandbox, which must give the grader's verdicts.

A case the grader gets wrong today is declared with its ``hole``: its test runs as ``xfail(strict=True)`` (the suite
stays green and documents it; the day the hole is closed it XPASSes and fails, so that the catalogue is updated), and
``test_hole_as_observed`` pins what the grader does instead (the reproduction). Holes of the root fallback (learner
code as the grader's own user) apply only when the run says it graded that way; ``GPTCOURSE_ADVERSARIAL_AS_GRADER=1``
forces that mode, to check them on a host where learner code gets a uid of its own.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import nbformat
import pytest

from adversarial_cases import (CASES, CHAPTER, DOUBLE, FULL, LINEAR, MAX_SCORES, MEAN, NOTEBOOK, NOTEBOOKS, Case,
                               Outcome, Toy)
from grading_support import (REPO_ROOT, TOY_CHAPTER, TOY_NOTEBOOK, TOY_SOLUTIONS, hidden_lines, make_release, meta,
                             points_of_tests, read, run_module, solution_sources, tree_hashes)
from autograder import sandbox
from autograder.course import venv_scripts_on_path

pytestmark = pytest.mark.slow

TIMEOUT = 5        # seconds per cell: the toy's cells take milliseconds; the loops never end
BUDGET = 40        # seconds per submission, restarts included
JOBS = 2           # two workers at once: what one learner's code can see of another's grading is probed too
MEMORY_MB = {"toy": 3000, "toytorch": 8192}  # the toy (no torch) runs in well under 1 GB; importing torch maps ~2 GB
#: Set to 1 to grade without the busy processes that oversubscribe the CPU.
NO_HOG = "GPTCOURSE_NO_CPU_HOG"
#: Set this variable to grade as if learner_uid_works() said no (learner code then runs as the grader's own user,
#: root without capabilities): checks the root-fallback holes on a host where separate uids work.
AS_GRADER = "GPTCOURSE_ADVERSARIAL_AS_GRADER"
AS_GRADER_RUN = ("import sys; from autograder import grade; grade.learner_uid_works = lambda uid: False; "
                 "sys.exit(grade.main(sys.argv[1:]))")


@functools.cache
def isolation_available() -> bool:
    """Whether the sandbox gets its network, mount and PID namespaces here (root, unshare permitted)."""
    return sandbox.network_isolation_available()


def case_params(holes_only: bool = False):
    """One param per case (``holes_only``: per case with a hole). Cases that probe the sandbox are skipped where it
    has no namespaces; whether a hole applies is decided in the test, from what the run says it did."""
    for case in CASES:
        if holes_only and not case.hole:
            continue
        marks = [pytest.mark.skipif("not isolation_available()", reason="no namespaces here (not root): the "
                                    "grader reports it")] if case.needs_isolation else []
        yield pytest.param(case, id=case.name, marks=marks)


def hole_applies(run, case: Case) -> bool:
    """Whether ``case.hole`` applies to this run: always, or when learner code ran as the grader's own user (the
    results say which, per submission)."""
    if case.hole is None:
        return False
    if case.hole_when == "always":
        return True
    return not run["results"][case.name]["isolation"]["separate_user"]


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def submissions_of(toy: Toy, chapter: str) -> Path:
    return toy.submissions if chapter == CHAPTER else toy.submissions.with_name("submissions-" + chapter)


def workspace_of(toy: Toy, chapter: str) -> Path:
    return toy.workspace if chapter == CHAPTER else toy.workspace.with_name("workspace-" + chapter)


def write_case(case: Case, toy: Toy) -> None:
    folder = submissions_of(toy, case.chapter) / case.name / case.chapter
    folder.mkdir(parents=True)
    for name, content in case.files(toy).items():
        if isinstance(content, str):
            (folder / name).write_text(content, encoding="utf-8")
        else:
            nbformat.write(content, str(folder / name))


@contextlib.contextmanager
def cpu_hog():
    """One busy process per core, for as long as the block runs (unless $GPTCOURSE_NO_CPU_HOG is set)."""
    if os.environ.get(NO_HOG):
        yield 0
        return
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
    try:
        yield len(hogs)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def grade_chapter(toy: Toy, chapter: str):
    args = (submissions_of(toy, chapter), "--workspace", workspace_of(toy, chapter), "--solutions", TOY_SOLUTIONS,
            "--timeout", TIMEOUT, "--budget", BUDGET, "--jobs", JOBS, "--memory-mb", MEMORY_MB[chapter])
    if os.environ.get(AS_GRADER):  # the grader as it runs when learner_uid_works() says no
        return subprocess.run([sys.executable, "-c", AS_GRADER_RUN, *map(str, args)], cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=900)
    return run_module("autograder.grade", *args, timeout=900)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    # The releases are made in a folder deleted before grading: no copy of the hidden tests is left lying around
    # outside what the grader hides (a grading host has none either).
    scratch = tmp_path_factory.mktemp("adversarial_release")
    release = read(make_release(TOY_SOLUTIONS, TOY_CHAPTER, scratch / "toy"))
    torch_release = read(make_release(TOY_SOLUTIONS, "toytorch", scratch / "toytorch"))
    shutil.rmtree(scratch)
    solution, torch_solution = read(TOY_NOTEBOOK), read(TOY_SOLUTIONS / "toytorch" / NOTEBOOKS["toytorch"])

    private = tmp_path_factory.mktemp("host_private")
    private.chmod(0o700)
    canary_text = f"canary {uuid.uuid4()}"
    canary = private / "secret.txt"
    canary.write_text(canary_text)
    canary.chmod(0o600)

    base = tmp_path_factory.mktemp("adversarial")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    toy = Toy(release=release, solution=solution, sources=solution_sources(solution), workspace=base / "workspace",
              submissions=base / "submissions", solutions=TOY_SOLUTIONS, temp_dir=tempfile.gettempdir(),
              canary=canary, canary_text=canary_text, listener=listener, torch_release=torch_release,
              torch_solution=torch_solution, torch_sources=solution_sources(torch_solution))
    chapters = sorted({case.chapter for case in CASES})
    for case in CASES:
        write_case(case, toy)
    before = {ch: tree_hashes(submissions_of(toy, ch)) for ch in chapters}

    start = time.perf_counter()
    with cpu_hog() as hogs:
        procs = {ch: grade_chapter(toy, ch) for ch in chapters}
    seconds = time.perf_counter() - start
    print(f"\ngraded {len(CASES)} adversarial submissions in {seconds:.1f} s beside {hogs} busy process(es)")
    results, grades, problems = {}, {}, []
    for ch in chapters:
        ws = workspace_of(toy, ch)
        results.update({p.parent.name: json.loads(p.read_text()) for p in (ws / "results").glob(f"*/{ch}.json")})
        if (ws / "grades.csv").exists():
            grades.update({row["student"]: row for row in read_csv(ws / "grades.csv")})
        if (ws / "problems.csv").exists():
            problems += [{**row, "chapter_run": ch} for row in read_csv(ws / "problems.csv")]
    yield {"procs": procs, "seconds": seconds, "toy": toy, "before": before, "results": results, "grades": grades,
           "problems": problems, "chapters": chapters}
    listener.close()


def case_named(name: str) -> Case:
    return next(c for c in CASES if c.name == name)


def outcome(run, student: str) -> Outcome:
    chapter = case_named(student).chapter
    return Outcome(student=student, result=run["results"].get(student), row=run["grades"].get(student),
                   problems=[p for p in run["problems"] if p["student"] == student],
                   workspace=workspace_of(run["toy"], chapter), toy=run["toy"], chapter=chapter)


def describe(o: Outcome) -> str:
    """What the grader did with one submission, for assertion messages."""
    r = o.result or {}
    lines = [f"status={r.get('status')} score={r.get('score')}/{r.get('max_score')} remarks={r.get('remarks')}",
             f"tests={[(t['name'], t['score'], t['output'][:120]) for t in r.get('tests', [])]}",
             f"problems={[p['problem'][:160] for p in o.problems]}"]
    if (o.workspace / "autograded" / o.student / o.chapter / NOTEBOOKS[o.chapter]).exists():
        for grade_id in {"toy": ("double", "mean", "test_double", "test_mean"), "toytorch": ("linear", "test_linear")}[
                o.chapter]:
            printed = o.printed(grade_id).strip()
            if printed:
                lines.append(f"{grade_id} printed: {printed[:400]}")
    return "\n  ".join(lines)


# --------------------------------------------------------------------------------------------------------------------
# The run as a whole
# --------------------------------------------------------------------------------------------------------------------


def test_the_toy_points_are_what_the_catalogue_assumes():
    assert points_of_tests(read(TOY_NOTEBOOK)) == {"test_double": DOUBLE, "test_mean": MEAN}
    assert points_of_tests(read(TOY_SOLUTIONS / "toytorch" / NOTEBOOKS["toytorch"])) == {"test_linear": LINEAR}
    assert FULL == DOUBLE + MEAN
    assert len({c.name for c in CASES}) == len(CASES)


def test_the_run_finishes_and_reports(run):
    for chapter, proc in run["procs"].items():
        # 1: some submissions have problems (toy); 0 or 1 for toytorch, whose submissions may all grade cleanly.
        assert proc.returncode in (0, 1), chapter + proc.stdout[-3000:] + proc.stderr[-3000:]
        assert "Summary" in proc.stdout and "Traceback" not in proc.stdout + proc.stderr


def test_every_submission_ends_graded_or_with_a_blocking_problem(run):
    students = {c.name for c in CASES}
    assert set(run["results"]) == students and set(run["grades"]) == students
    blocked = {p["student"] for p in run["problems"] if p["graded"] == "no"}
    for student in students:
        status = run["results"][student]["status"]
        assert run["grades"][student]["status"] == status
        assert status == "graded" or student in blocked, f"{student}: {status}, but no blocking problem says why"


def test_the_originals_are_byte_identical(run):
    for chapter in run["chapters"]:
        assert tree_hashes(submissions_of(run["toy"], chapter)) == run["before"][chapter]


def test_no_hidden_test_line_reaches_feedback_results_or_problems(run):
    toy = run["toy"]
    for case in CASES:
        solution = toy.solution_of(case.chapter)
        assert len(hidden_lines(solution)) >= 4
        workspace = workspace_of(toy, case.chapter)
        problems_text = (workspace / "problems.csv").read_text(encoding="utf-8")
        submitted = submissions_of(toy, case.chapter) / case.name / case.chapter / NOTEBOOKS[case.chapter]
        try:
            secrets = hidden_lines(solution, read(submitted))  # the learner's own lines are no secret
        except Exception:  # missing, malformed
            secrets = hidden_lines(solution)
        places = {"results": json.dumps(run["results"][case.name]), "problems.csv": problems_text}
        for page in sorted((workspace / "feedback" / case.name).rglob("*.html")):
            places[str(page)] = page.read_text(encoding="utf-8")
        for where, text in places.items():
            leaked = [s for s in secrets if s in text]
            assert not leaked, f"{case.name}: {where} shows hidden test lines {leaked}"


def test_the_master_gradebook_holds_what_the_grader_computed(run):
    """Scores as in the results, the tests (hidden ones included) and points as in the solution, nothing added."""
    from nbgrader.api import Gradebook, MissingEntry

    toy = run["toy"]
    solution_tests = {meta(c)["grade_id"]: c.source for c in toy.solution.cells if meta(c).get("grade")
                      and not meta(c).get("solution")}
    db = toy.workspace / "gradebook.db"
    assert db.is_file()
    with venv_scripts_on_path(), Gradebook(f"sqlite:///{db}") as gb:
        notebook = gb.find_notebook(TOY_NOTEBOOK.stem, TOY_CHAPTER)
        assert {c.name: c.source for c in notebook.source_cells if c.name in solution_tests} == solution_tests
        assert {c.name: c.max_score for c in notebook.grade_cells} == {"test_double": DOUBLE, "test_mean": MEAN}
        results = {n: r for n, r in run["results"].items() if r["chapter"] == TOY_CHAPTER}
        assert {s.id for s in gb.students} == {n for n, r in results.items() if r["status"] == "graded"}
        for student, result in results.items():
            try:
                sub = gb.find_submission_notebook(TOY_NOTEBOOK.stem, TOY_CHAPTER, student)
            except MissingEntry:
                assert result["status"] != "graded", f"{student}: graded, but not in the gradebook"
                continue
            assert result["status"] == "graded", f"{student}: not graded, but in the gradebook"
            assert {g.name: g.score for g in sub.grades} == {t["name"]: t["score"] for t in result["tests"]}, student
    with contextlib.closing(sqlite3.connect(db)) as con:
        tables = {name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "pwned" not in tables


def test_isolation_is_reported_as_it_was(run):
    """Every graded result says which protections applied, the same for all; running learner code as the grader's
    own user is reported to the instructor."""
    facts = {json.dumps(r["isolation"], sort_keys=True) for r in run["results"].values() if r["status"] == "graded"}
    assert len(facts) == 1, facts
    iso = json.loads(facts.pop())
    assert iso["process_group"]
    assert iso["network_isolated"] == iso["paths_hidden"] == isolation_available(), iso
    fallback_reported = any(p["student"] == "" and "grader's own user" in p["problem"] for p in run["problems"])
    assert fallback_reported == (not iso["separate_user"]), iso


# --------------------------------------------------------------------------------------------------------------------
# One test per case: the outcome its catalogue entry declares
# --------------------------------------------------------------------------------------------------------------------


def check_outcome(o: Outcome, expect: dict, why: str) -> None:
    """Assert that the grader did with the submission what ``expect`` says (keys: adversarial_cases.EXPECT_KEYS)."""
    assert o.result is not None and o.row is not None, f"{why}: no result at all"
    why = f"{why}:\n  {describe(o)}"
    status = expect.get("status", "graded")
    assert o.result["status"] == o.row["status"] == status, why
    if expect.get("score") is None:
        assert o.row["score"] == "", why
    else:
        assert o.result["max_score"] == MAX_SCORES[o.chapter], why
        assert o.result["score"] == float(o.row["score"]) == expect["score"], why
    tests = {t["name"]: t for t in o.result["tests"]}
    for name in expect.get("passed", []):
        assert tests[name]["status"] == "passed", why
    for name in expect.get("failed", []):
        assert tests[name]["status"] == "failed", why
    for name, text in expect.get("output", {}).items():
        assert text in tests[name]["output"], why
    remarks = expect.get("remarks", [])
    assert len(o.result["remarks"]) == len(remarks) or expect.get("loose"), why
    for text in remarks:
        assert any(text in r for r in o.result["remarks"]) and text in o.row["remarks"], why
    problems = expect.get("problems", [])
    assert len(o.problems) == len(problems) or expect.get("loose"), why
    for text in problems:
        assert any(text in p["problem"] for p in o.problems), why
    assert any(p["graded"] == "no" for p in o.problems) == expect.get("blocking", False), why
    assert o.result["kernel_restarts"] == expect.get("restarts", 0), why
    if status == "graded":
        page = Path(NOTEBOOKS[o.chapter]).with_suffix(".html").name
        assert (o.workspace / "feedback" / o.student / o.chapter / page).is_file(), why
    if "check" in expect:
        assert expect["check"](o) is not False, why


@pytest.mark.parametrize("case", list(case_params()))
def test_case(run, case: Case, request):
    """The outcome a correct grader gives (xfail, strict, where the catalogue documents a hole that applies)."""
    if hole_applies(run, case):
        request.node.add_marker(pytest.mark.xfail(strict=True, raises=AssertionError, reason=f"HOLE: {case.hole}"))
    check_outcome(outcome(run, case.name), case.expect, f"{case.name} ({case.probe})")


@pytest.mark.parametrize("case", list(case_params(holes_only=True)))
def test_hole_as_observed(run, case: Case):
    """What the grader does instead, while the hole is open: the reproduction, pinned."""
    if not hole_applies(run, case):
        pytest.skip("this hole applies only when learner code runs as the grader's own user")
    check_outcome(outcome(run, case.name), case.observed, f"{case.name} (HOLE: {case.hole})")


# --------------------------------------------------------------------------------------------------------------------
# The learner's self-check gives the grader's verdicts
# --------------------------------------------------------------------------------------------------------------------


def parity_params():
    for case in CASES:
        if case.parity and not case.expect.get("status") and not case.hole:
            yield pytest.param(case, id=case.name)


@pytest.mark.parametrize("case", list(parity_params()))
def test_the_self_check_gives_the_graders_verdicts(run, case: Case, tmp_path):
    """``python -m autograder.check`` runs the same referee without the sandbox: on the same notebook, with the
    course's tests (hidden ones included), every test cell must pass or fail as it did when graded."""
    from autograder import check

    toy = run["toy"]
    source = submissions_of(toy, case.chapter) / case.name / case.chapter
    folder = tmp_path / case.chapter
    shutil.copytree(source, folder)
    notebook = folder / NOTEBOOKS[case.chapter]
    reference = TOY_SOLUTIONS / case.chapter / NOTEBOOKS[case.chapter]
    checked = check.verdicts(notebook, timeout=TIMEOUT, reference=reference, hidden_tests=True)
    graded = {t["name"]: t["status"] == "passed" for t in run["results"][case.name]["tests"]}
    assert checked == graded, f"{case.name}: the self-check says {checked}, the grader said {graded}"
