"""The learner's self-check: run an exercise notebook and say which visible tests pass.

    python -m autograder.check exercises/ch01_tokens/tokens.ipynb      (or: make check NB=...)

Runs a *copy* of the notebook, in memory, the way the grader will (``autograder.referee``): your cells in a fresh
Python kernel whose working directory is the notebook's folder, the course's test cells in this process, calling
your code. Test cells you edited or deleted are checked as the course wrote them, as the grader will. Your file is
never written. Then, for each exercise (named as its heading numbers it, with the functions it asks for; an exercise
that fails while using an earlier one that fails says to fix that one first):

    ✓ passed    ✗ failed, with the test's message    ⚠ not attempted yet (the exercise raises NotImplementedError)

Exit status: 0 every visible test passes, 1 some do not, 2 the notebook could not be checked (no such file, not a
notebook, damaged JSON). Hidden tests are not in your notebook; they run when the course grades it.
"""

from __future__ import annotations

import argparse
import ast
import copy
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from autograder.course import (HIDDEN_TESTS_PLACEHOLDER, SOLUTIONS_DIR, TIMEOUT_ENAME, is_test_cell, read_notebook,
                               split_hidden_tests, strip_ansi)
from autograder.referee.kernel import KernelStartError
from autograder.referee.runner import error_line, nbgrader_meta, run_locally

DEFAULT_TIMEOUT = 600


class CheckError(Exception):
    """The notebook cannot be checked; the message says why and what to do."""


@dataclass
class TestResult:
    grade_id: str
    cell_number: int
    points: float
    max_points: float
    status: str  # "passed", "partial", "failed", "not attempted", "timeout"
    message: str = ""
    title: str = ""  # how the learner knows the exercise: "Exercise 3: split_heads, merge_heads"
    follows: str = ""  # when it uses an earlier exercise that does not pass: which one, and what it uses
    exercise: Exercise | None = field(default=None, repr=False)


@dataclass
class Exercise:
    """One exercise as the notebook presents it: its number (from its heading) and the cells that answer it."""

    number: str = ""
    defines: list[str] = field(default_factory=list)  # the functions and classes its solution cells define
    uses: set[str] = field(default_factory=set)  # every name its solution cells read

    def title(self, grade_id: str) -> str:
        if not self.number:
            return grade_id
        return f"Exercise {self.number}" + (f": {', '.join(self.defines)}" if self.defines else "")


EXERCISE_HEADING = re.compile(r"^#+\s*Exercise\s+(\w+)", re.M | re.I)


def definitions_and_uses(source: str) -> tuple[list[str], set[str]]:
    """The top-level functions and classes a cell defines, and the names it reads."""
    try:
        tree = ast.parse(source)
    except SyntaxError:  # still name the exercise by what it means to define
        return re.findall(r"^(?:async\s+)?(?:def|class)\s+(\w+)", source, flags=re.M), set()
    defines = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    return defines, {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def load(path: Path):
    """Read the notebook at ``path`` (a fresh in-memory copy) or raise CheckError in plain words."""
    if not path.exists():
        hint = ""
        if path.suffix != ".ipynb" and path.with_suffix(".ipynb").exists():
            hint = f" Did you mean {path.with_suffix('.ipynb')}?"
        raise CheckError(f"There is no file {path}.{hint}\n"
                         "Give the path of an exercise notebook, for example: "
                         "python -m autograder.check exercises/ch01_tokens/tokens.ipynb")
    if path.is_dir():
        inside = sorted(p.name for p in path.glob("*.ipynb"))
        hint = f" It holds: {', '.join(inside)}." if inside else ""
        raise CheckError(f"{path} is a folder; give the notebook inside it.{hint}")
    if path.suffix != ".ipynb":
        raise CheckError(f"{path} is not a Jupyter notebook (a notebook's name ends in .ipynb).")
    try:
        return read_notebook(path)
    except ValueError as exc:
        raise CheckError(
            f"{path} cannot be checked: {exc}.\nIf Jupyter still has it open, save it again from there; otherwise "
            "start again from a fresh copy of the exercise notebook (keep yours to copy your code from).") from None


def course_version(path: Path, reference: Path | None, hidden: bool):
    """The course's own version of this notebook (to restore its tests from), or None: ``reference`` if given, else
    ``solutions/<folder>/<name>.ipynb`` when the course has it; hidden tests are left out unless ``hidden``."""
    import nbformat

    if reference is None:
        reference = SOLUTIONS_DIR / path.resolve().parent.name / path.name
    if not reference.is_file():
        return None
    try:
        ref = nbformat.read(reference, as_version=4)
    except Exception:  # noqa: BLE001 - the course's copy is only a help
        return None
    if not hidden:
        for cell in ref.cells:
            if is_test_cell(cell):
                cell.source = visible_part(cell.source)
    return ref


def visible_part(source: str) -> str:
    return split_hidden_tests(source)[0].replace(HIDDEN_TESTS_PLACEHOLDER, "").strip()


def restore_course_cells(nb, ref) -> tuple[dict[str, str], list[str], list[str]]:
    """Put the course's locked cells (setup, tests) back as ``ref`` has them, as the grader does: edited ones get
    their source back, deleted test cells are added after the cell before them. Returns the trusted sources, and
    the grade_ids that were edited and deleted."""
    locked = {nbgrader_meta(c)["grade_id"]: c for c in ref.cells if c.cell_type == "code"
              and nbgrader_meta(c).get("locked") and not nbgrader_meta(c).get("solution")}
    trusted = {gid: c.source for gid, c in locked.items()}
    edited, deleted = [], []
    present = {}
    for cell in nb.cells:
        gid = nbgrader_meta(cell).get("grade_id")
        if gid in locked and cell.cell_type == "code" and gid not in present:
            present[gid] = cell
            if visible_part(cell.source) != visible_part(trusted[gid]):
                edited.append(gid)
            cell.source = trusted[gid]
    order = [nbgrader_meta(c).get("grade_id") for c in ref.cells]
    for gid, cell in locked.items():
        if gid in present or not is_test_cell(cell):
            continue
        deleted.append(gid)
        ids = [nbgrader_meta(c).get("grade_id") for c in nb.cells]
        before = [ids.index(g) for g in order[:order.index(gid)] if g in ids]
        nb.cells.insert(max(before) + 1 if before else len(nb.cells), copy.deepcopy(cell))
    return trusted, edited, deleted


def first_line(source: str) -> str:
    for line in source.splitlines():
        if line.strip() and not line.strip().startswith("#"):
            return line.strip()[:60]
    return ""


def error_of(cell):
    return next((o for o in cell.get("outputs", []) if o.get("output_type") == "error"), None)


def describe(error) -> str:
    """One or two lines: the exception and its message, and the test's line when the grader shows one."""
    ename, evalue = error.get("ename", "Error"), strip_ansi(str(error.get("evalue", ""))).strip()
    if ename == TIMEOUT_ENAME:
        return f"took too long: {evalue} (an endless loop?)"
    if ename in ("SyntaxError", "IndentationError", "TabError"):
        return error_line(error)
    text = f"{ename}: {evalue}" if evalue else ename
    where = [t for t in error.get("traceback", []) if str(t).startswith("in the test, line ")]
    if where and ename != "AssertionError":
        text += f"\n        {where[0]}"
    return text


def untouched(cell) -> bool:
    """A solution cell whose source is still the one handed out (nbgrader's checksum matches)."""
    from nbgrader.utils import compute_checksum

    checksum = cell.get("metadata", {}).get("nbgrader", {}).get("checksum")
    return bool(checksum) and compute_checksum(cell) == checksum


def analyse(nb) -> tuple[list[TestResult], list[str], list[str]]:
    """Results of the test cells, errors in other cells, and notes, of a notebook run by ``run``."""
    from nbgrader.utils import determine_grade, is_solution

    results: list[TestResult] = []
    problems: list[str] = []
    notes: list[str] = []
    exercise_cells: list = []  # solution cells since the previous test cell
    exercise = Exercise()
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown" and (heading := EXERCISE_HEADING.search(cell.source)):
            exercise = Exercise(heading.group(1))
        if cell.cell_type != "code":
            continue
        number = index + 1
        error = error_of(cell)
        if is_test_cell(cell):
            meta = cell.metadata["nbgrader"]
            max_points = float(meta.get("points", 0))
            points, _ = determine_grade(cell)
            points = float(points or 0)
            stub = any(is_solution(c) and (untouched(c) or (error_of(c) or {}).get("ename") == "NotImplementedError")
                       for c in exercise_cells)
            name = meta["grade_id"]
            if error is None:
                status = "passed" if points >= max_points else "partial"
                message = "" if status == "passed" else f"{points:g} of {max_points:g} points"
                result = TestResult(name, number, points, max_points, status, message)
            elif error.get("ename") == TIMEOUT_ENAME:
                result = TestResult(name, number, 0, max_points, "timeout", describe(error))
            elif error.get("ename") == "NotImplementedError" or (stub and error.get("ename") == "NameError"):
                result = TestResult(name, number, 0, max_points, "not attempted")
            else:
                result = TestResult(name, number, 0, max_points, "failed", describe(error))
            result.title = exercise.title(name)
            result.exercise = exercise
            results.append(result)
            exercise_cells, exercise = [], Exercise(exercise.number)
            continue
        if is_solution(cell):
            exercise_cells.append(cell)
            defines, uses = definitions_and_uses(cell.source)
            exercise.defines += defines
            exercise.uses |= uses
        if error is not None:
            if error.get("ename") == "NotImplementedError":
                if not is_solution(cell):  # an ungraded cell that uses an exercise not done yet
                    notes.append(f"cell {number} (not graded) stopped at an exercise you have not done yet")
                continue  # an exercise not done yet: reported with its test
            gid = cell.metadata.get("nbgrader", {}).get("grade_id")
            what = ("a code cell" if not is_solution(cell) else f"your answer to Exercise {exercise.number}"
                    if exercise.number else f"solution cell '{gid}'")
            start = first_line(cell.source)
            problems.append(f"cell {number} ({what}{', starting ' + repr(start) if start else ''}):\n"
                            f"        {describe(error)}")
    mark_follow_on_failures(results)
    return results, problems, notes


def mark_follow_on_failures(results: list[TestResult]) -> None:
    """A failing exercise that uses what an earlier, failing exercise defines may only fail because of it: say so,
    so that the learner fixes the earlier one first."""
    for i, result in enumerate(results):
        if result.status in ("passed", "not attempted") or result.exercise is None:
            continue
        for earlier in (r for r in results[:i] if r.exercise is not None):
            used = [name for name in earlier.exercise.defines if name in result.exercise.uses]
            if earlier.status != "passed" and used:
                result.follows = (f"It uses {', '.join(used)} from {earlier.title.split(':')[0]}, which does not pass "
                                  "yet: fix that one first, then check again.")
                break


SYMBOL = {"passed": "✓", "partial": "~", "failed": "✗", "not attempted": "⚠", "timeout": "✗"}


@dataclass
class Checked:
    """Everything one check found (see ``checked``)."""

    results: list[TestResult]
    problems: list[str]
    notes: list[str]
    report: object  # the runner's RunReport
    executed: object  # the executed notebook
    edited: list[str]
    deleted: list[str]


def checked(path: Path, timeout: int = DEFAULT_TIMEOUT, reference: Path | None = None, hidden_tests: bool = False,
            on_start=None) -> Checked:
    """Run the notebook at ``path`` as the grader does. ``reference``: the course's notebook to take the tests from
    (default: ``solutions/<folder>/<name>.ipynb`` when there is one); ``hidden_tests``: run its hidden tests too
    (the grader's verdicts, for the course's own tests of the grader). ``on_start()`` runs just before."""
    nb = load(path)
    ref = course_version(path, reference, hidden_tests)
    trusted, edited, deleted = restore_course_cells(nb, ref) if ref is not None else (None, [], [])
    if not any(is_test_cell(c) for c in nb.cells):
        raise CheckError(f"{path} has no test cells (nbgrader grade cells): is it an exercise notebook from "
                         "exercises/? Check that one, e.g. exercises/ch01_tokens/tokens.ipynb")
    if on_start is not None:
        on_start()
    try:
        done, report = run_locally(nb, path.resolve().parent, trusted, cell_timeout=timeout)
    except KernelStartError as exc:
        raise CheckError(f"Python could not start a Jupyter kernel to run your notebook: {exc}\n"
                         "Is the course's environment installed? Run `make install` (or `make check` from the "
                         "course folder).") from None
    return Checked(*analyse(done), report, done, edited, deleted)


def verdicts(path: Path, **options) -> dict[str, bool]:
    """grade_id -> whether that test cell passed (all its points), as ``checked`` runs it."""
    return {r.grade_id: r.status == "passed" for r in checked(path, **options).results}


def check(path: Path, timeout: int = DEFAULT_TIMEOUT, out=None, reference: Path | None = None,
          hidden_tests: bool = False) -> int:
    """Check the notebook at ``path`` and say what was found (see ``checked``); the exit status."""
    out = out or sys.stdout

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    found = checked(path, timeout, reference, hidden_tests, on_start=lambda: say(
        f"Checking {path}: running every cell in a fresh kernel, the tests as the grader runs them "
        "(your file is not changed)..."))
    results, problems, notes, report, done = found.results, found.problems, found.notes, found.report, found.executed
    edited, deleted = found.edited, found.deleted

    say("")
    width = max(len(r.title) for r in results)
    for r in results:
        points = f"{r.max_points:g} point{'s' if r.max_points != 1 else ''}"
        label = {"passed": "passed", "partial": "partly passed", "failed": "failed",
                 "not attempted": "not attempted yet (still raises NotImplementedError)",
                 "timeout": "failed"}[r.status]
        say(f"  {SYMBOL[r.status]} {r.title:<{width}}  ({points})  {label}")
        if r.follows:
            say(f"        {r.follows}")
        if r.message and r.status != "passed":
            say(f"        {r.message}")
    if problems:
        say("")
        say("Errors outside the test cells (fix these first: the cells after them may fail because of them):")
        for p in problems:
            say(f"  ✗ {p}")
    if notes:
        say("")
        for note in notes:
            say(f"  ⚠ {note}")
    if edited or deleted:
        say("")
        title = {r.grade_id: r.title for r in results}
        if edited:
            say(f"Test cells you changed were checked as the course wrote them (as the grader will): "
                f"{', '.join(title.get(gid, gid) for gid in edited)}.")
        if deleted:
            say(f"Test cells missing from your notebook were put back and checked (as the grader will): "
                f"{', '.join(title.get(gid, gid) for gid in deleted)}.")
    for index, reason in sorted(report.killed.items()):
        cell = done.cells[index]
        say("")
        say(f"✗ The Python kernel {'died' if reason in ('kernel', 'memory') else 'had to be stopped'} while running "
            f"cell {index + 1} (starting {first_line(cell.source)!r}); the cells after it ran in a new kernel.")
        say("  Usual causes: far too much memory, os._exit(), a crash in a library, or a loop that ignores Ctrl-C.")
        if report.last_words.get(index):
            say("  The kernel's last words:\n" + "\n".join("    " + strip_ansi(t)
                                                           for t in report.last_words[index].splitlines()))

    passed = sum(r.status == "passed" for r in results)
    say("")
    which = "tests" if hidden_tests else "visible tests"
    say(f"{which} passed: {passed}/{len(results)}"
        + ("" if hidden_tests else " — remember that hidden tests run at grading time."))
    return 0 if passed == len(results) and not report.killed else 1


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="replace")
        except AttributeError:  # pragma: no cover - a replaced stream
            pass
    parser = argparse.ArgumentParser(prog="python -m autograder.check",
                                     description="Run a copy of an exercise notebook and report its visible tests.")
    parser.add_argument("notebook", type=Path, help="e.g. exercises/ch01_tokens/tokens.ipynb")
    parser.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT,
                        help=f"seconds one cell may run before it is stopped (default {DEFAULT_TIMEOUT})")
    args = parser.parse_args(argv)
    try:
        return check(args.notebook, args.timeout)
    except CheckError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nInterrupted.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
