"""The learner's self-check: run an exercise notebook and say which visible tests pass.

    python -m autograder.check exercises/ch01_tokens/tokens.ipynb      (or: make check NB=...)

Runs every cell of a *copy* of the notebook, in memory, in a fresh Python kernel whose working directory is the
notebook's folder, the way the grader will. Your file is never written. Then, for each test cell:

    ✓ passed    ✗ failed, with the test's message    ⚠ not attempted yet (the exercise raises NotImplementedError)

Exit status: 0 every visible test passes, 1 some do not, 2 the notebook could not be checked (no such file, not a
notebook, damaged JSON). Hidden tests are not in your notebook; they run when the course grades it.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from autograder.course import (SOLUTIONS_DIR, TIMEOUT_ENAME, is_test_cell, read_notebook, stderr_to_stdout,
                               strip_ansi)

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


def run(nb, folder: Path, timeout: int) -> tuple[str | None, int | None]:
    """Execute ``nb`` in place (our in-memory copy). If the kernel died: a message and the index of the cell."""
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError
    from nbformat import NotebookNode

    current = {"index": None}

    def on_cell_execute(cell, cell_index):
        current["index"] = cell_index

    def on_cell_executed(cell, cell_index, execute_reply):
        # A timeout is reported in the reply only; record it as an error output, as the grader does.
        content = (execute_reply or {}).get("content", {})
        if content.get("status") == "error" and not any(
                o.get("output_type") == "error" for o in cell.get("outputs", [])):
            cell.outputs.append(NotebookNode(output_type="error", ename=content.get("ename", "Error"),
                                             evalue=content.get("evalue", ""), traceback=content.get("traceback", [])))

    client = NotebookClient(
        nb, kernel_name="python3", timeout=timeout, allow_errors=True, interrupt_on_timeout=True,
        error_on_timeout={"ename": TIMEOUT_ENAME, "evalue": f"the cell ran for more than {timeout} s",
                          "traceback": []},
        on_cell_execute=on_cell_execute, on_cell_executed=on_cell_executed,
        resources={"metadata": {"path": str(folder)}})
    # The kernel process's own stderr (start-up warnings; a crash report) goes to a file we show only if it died.
    with tempfile.TemporaryFile(mode="w+b") as kernel_stderr:
        try:
            client.execute(stderr=kernel_stderr)
        except DeadKernelError:
            kernel_stderr.seek(0)
            tail = [line for line in kernel_stderr.read().decode("utf-8", "replace").strip().splitlines()
                    if line.strip() and "running over TCP without encryption" not in line][-3:]
            where = current["index"]
            cell = "a cell"
            if where is not None:
                cell = f"cell {where + 1} (starting {first_line(nb.cells[where].source)!r})"
            msg = (f"The Python kernel died while running {cell} (and everything after it did not run).\n"
                   "Usual causes: the code used far too much memory, or called os._exit() / crashed Python.")
            if tail:
                msg += "\nThe kernel's last words:\n" + "\n".join("    " + strip_ansi(t) for t in tail)
            return msg, where
    return None, None


def first_line(source: str) -> str:
    for line in source.splitlines():
        if line.strip() and not line.strip().startswith("#"):
            return line.strip()[:60]
    return ""


def error_of(cell):
    return next((o for o in cell.get("outputs", []) if o.get("output_type") == "error"), None)


def pointed_line(error) -> str:
    """The source line IPython marks with ``---->`` in the deepest frame, if any."""
    marked = ""
    for chunk in error.get("traceback", []):
        for line in strip_ansi(chunk).splitlines():
            m = re.match(r"^-*>\s*\d+\s(.*)$", line)
            if m:
                marked = m.group(1).strip()
    return marked


def describe(error) -> str:
    """One or two lines: the exception and its message, or the line that failed when there is no message."""
    ename, evalue = error.get("ename", "Error"), str(error.get("evalue", "")).strip()
    if ename == TIMEOUT_ENAME:
        return f"took too long: {evalue} and was stopped (an endless loop?)"
    if ename == "SyntaxError" or ename == "IndentationError":
        tb = [strip_ansi(t) for t in error.get("traceback", [])]
        where = next((m.group(1) for t in tb for m in [re.search(r"line (\d+)", t)] if m), None)
        evalue = re.sub(r"\s*\([^()]*\.py, line \d+\)$", "", evalue)
        return f"{ename}: {evalue}" + (f" (line {where} of the cell)" if where else "")
    text = f"{ename}: {evalue}" if evalue else ename
    if not evalue or ename != "AssertionError":
        line = pointed_line(error)
        if line:
            text += f"\n        at: {line}"
    return text


def untouched(cell) -> bool:
    """A solution cell whose source is still the one handed out (nbgrader's checksum matches)."""
    from nbgrader.utils import compute_checksum

    checksum = cell.get("metadata", {}).get("nbgrader", {}).get("checksum")
    return bool(checksum) and compute_checksum(cell) == checksum


def analyse(nb, stop: int | None = None) -> tuple[list[TestResult], list[str], list[str]]:
    """Results of the test cells, errors in other cells, and notes, of an executed notebook.

    ``stop``: the index of the cell during which the kernel died; it and the cells after it did not (fully) run.
    """
    from nbgrader.utils import determine_grade, is_solution

    results: list[TestResult] = []
    problems: list[str] = []
    notes: list[str] = []
    exercise_cells: list = []  # solution cells since the previous test cell
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        number = index + 1
        error = error_of(cell)
        if is_test_cell(cell):
            meta = cell.metadata["nbgrader"]
            stderr_to_stdout(cell)  # as the grader does: a warning is not a failure
            max_points = float(meta.get("points", 0))
            if stop is not None and index >= stop:
                results.append(TestResult(meta["grade_id"], number, 0, max_points, "failed",
                                          "did not run to the end: the kernel died (see below)"))
                continue
            points, _ = determine_grade(cell)
            points = float(points or 0)
            stub = any(is_solution(c) and (untouched(c) or (error_of(c) or {}).get("ename") == "NotImplementedError")
                       for c in exercise_cells)
            if error is None:
                status = "passed" if points >= max_points else "partial"
                message = "" if status == "passed" else f"{points:g} of {max_points:g} points"
                results.append(TestResult(meta["grade_id"], number, points, max_points, status, message))
            elif error.get("ename") == TIMEOUT_ENAME:
                results.append(TestResult(meta["grade_id"], number, 0, max_points, "timeout", describe(error)))
            elif error.get("ename") == "NotImplementedError" or (stub and error.get("ename") == "NameError"):
                results.append(TestResult(meta["grade_id"], number, 0, max_points, "not attempted"))
            else:
                results.append(TestResult(meta["grade_id"], number, 0, max_points, "failed", describe(error)))
            exercise_cells = []
            continue
        if is_solution(cell):
            exercise_cells.append(cell)
        if error is not None:
            if error.get("ename") == "NotImplementedError":
                if not is_solution(cell):  # an ungraded cell that uses an exercise not done yet
                    notes.append(f"cell {number} (not graded) stopped at an exercise you have not done yet")
                continue  # an exercise not done yet: reported with its test
            what = f"solution cell '{cell.metadata['nbgrader']['grade_id']}'" if is_solution(cell) else "a code cell"
            start = first_line(cell.source)
            problems.append(f"cell {number} ({what}{', starting ' + repr(start) if start else ''}):\n"
                            f"        {describe(error)}")
    return results, problems, notes


def missing_tests(path: Path, nb) -> list[str]:
    """Test cells of the course's version of this notebook that this copy lacks (deleted by mistake?)."""
    import nbformat

    reference = SOLUTIONS_DIR / path.resolve().parent.name / path.name
    if not reference.is_file():
        return []
    try:
        ref = nbformat.read(reference, as_version=4)
    except Exception:  # noqa: BLE001 - the reference is only a hint
        return []
    have = {c.metadata["nbgrader"]["grade_id"] for c in nb.cells if is_test_cell(c)}
    return [c.metadata["nbgrader"]["grade_id"] for c in ref.cells if is_test_cell(c)
            and c.metadata["nbgrader"]["grade_id"] not in have]


SYMBOL = {"passed": "✓", "partial": "~", "failed": "✗", "not attempted": "⚠", "timeout": "✗"}


def check(path: Path, timeout: int = DEFAULT_TIMEOUT, out=None) -> int:
    out = out or sys.stdout

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    nb = load(path)
    if not any(is_test_cell(c) for c in nb.cells):
        raise CheckError(f"{path} has no test cells (nbgrader grade cells): is it an exercise notebook from "
                         "exercises/? Check that one, e.g. exercises/ch01_tokens/tokens.ipynb")
    say(f"Checking {path}: running every cell in a fresh kernel (your file is not changed)...")
    died, stop = run(nb, path.resolve().parent, timeout)
    results, problems, notes = analyse(nb, stop)
    absent = missing_tests(path, nb)

    say("")
    width = max(len(r.grade_id) for r in results)
    for r in results:
        points = f"{r.max_points:g} point{'s' if r.max_points != 1 else ''}"
        label = {"passed": "passed", "partial": "partly passed", "failed": "failed",
                 "not attempted": "not attempted yet (still raises NotImplementedError)",
                 "timeout": "failed"}[r.status]
        say(f"  {SYMBOL[r.status]} {r.grade_id:<{width}}  ({points})  {label}")
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
    if absent:
        say("")
        say(f"Test cells missing from your notebook (deleted?): {', '.join(absent)}. "
            "They are put back when the notebook is graded.")
    if died:
        say("")
        say(f"✗ {died}")

    passed = sum(r.status == "passed" for r in results)
    say("")
    say(f"visible tests passed: {passed}/{len(results)} — remember that hidden tests run at grading time.")
    return 0 if passed == len(results) and not died else 1


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
