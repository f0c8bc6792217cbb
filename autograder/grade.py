"""Grade learners' notebooks with nbgrader, in a workspace outside the repository.

    python -m autograder.grade SUBMISSIONS --workspace DIR [--chapter ch01_tokens ...] [--timeout SECONDS]

``SUBMISSIONS`` holds ``<student>/<chapter>/<notebook>.ipynb``; it is only read, never changed. The workspace gets:

* ``solutions/`` (a copy of the course's), ``exercises/`` (generated from it) and ``gradebook.db`` (nbgrader's
  SQLite gradebook, which knows every test cell, hidden tests included);
* ``submitted/``, ``autograded/``: nbgrader's copies of the submissions, before and after grading;
* ``feedback/<student>/<chapter>/<notebook>.html``: what each learner may read (hidden tests removed);
* ``grades.csv`` (one row per student and chapter, points per test cell) and ``problems.csv`` (every submission
  that could not be graded, or was graded with a remark, and what to do about it); ``logs/`` (nbgrader's logs).

Re-running into the same workspace is safe: each run re-grades everything it is given, from the originals.
Exit status: 0 all graded, 1 some submissions have problems (see problems.csv), 2 the command could not run.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import shutil
import sys
import warnings
from pathlib import Path

from autograder.course import (GRADING_CELL_TIMEOUT, REPO_ROOT, SOLUTIONS_DIR, TIMEOUT_ENAME, grading_config,
                               is_test_cell, venv_scripts_on_path)
from autograder.report import fmt, summary, write_grades, write_problems
from autograder.submissions import (IGNORED_NAMES, Problem, Submission, UsageError, find_solution_notebooks,
                                    scan_submissions)

MARKER = ".gptcourse-grading-workspace"


# --------------------------------------------------------------------------------------------------------------------
# Checking the input
# --------------------------------------------------------------------------------------------------------------------


def _inside(path: Path, other: Path) -> bool:
    return path == other or path.is_relative_to(other)


def check_workspace(workspace: Path, submissions: Path, solutions: Path) -> None:
    """Refuse a workspace that would mix grading files with the course, the submissions, or someone's files."""
    if _inside(workspace, REPO_ROOT):
        raise UsageError(
            f"The workspace {workspace} is inside the course repository ({REPO_ROOT}).\n"
            "Grading files (learners' notebooks, the gradebook, the hidden tests' results) must not end up in the\n"
            "repository. Choose a folder outside it, for example: --workspace ~/grading/ch01")
    if _inside(REPO_ROOT, workspace):
        raise UsageError(f"The workspace {workspace} contains the course repository ({REPO_ROOT}). "
                         "Choose a dedicated folder outside the repository, for example ~/grading/ch01.")
    if _inside(workspace, submissions) or _inside(submissions, workspace):
        raise UsageError(
            f"The workspace {workspace} and the submissions folder {submissions} overlap.\n"
            "The submissions are only read; the workspace must be a separate folder, e.g. next to them: "
            f"--workspace {submissions.parent / (submissions.name + '-grading')}")
    if _inside(workspace, solutions) or _inside(solutions, workspace):
        raise UsageError(f"The workspace {workspace} and the solutions folder {solutions} overlap; choose another.")
    if workspace.exists():
        if not workspace.is_dir():
            raise UsageError(f"The workspace {workspace} exists and is not a folder. Choose a folder path.")
        if any(workspace.iterdir()) and not (workspace / MARKER).exists():
            raise UsageError(
                f"The workspace {workspace} already exists, is not empty, and was not made by this command.\n"
                "Grading deletes and re-creates folders inside the workspace, so it only uses a new or empty folder\n"
                "(or one it made before). Choose another path.")


# --------------------------------------------------------------------------------------------------------------------
# Running nbgrader
# --------------------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def stderr_into(path: Path):
    """Send file descriptor 2 (this process's and the kernels' stderr) to ``path`` while grading.

    The kernels nbgrader starts write their own stderr (ipykernel's start-up warnings, a crashing learner's fatal
    error) straight to ours; in the log they help, on the console they bury the progress lines.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "ab") as target:
        os.dup2(target.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def quiet_nbgrader_logging() -> None:
    from traitlets.log import get_logger

    logger = get_logger()
    logger.propagate = False
    if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
        logger.addHandler(logging.NullHandler())
    try:
        from sqlalchemy.exc import SAWarning

        warnings.filterwarnings("ignore", category=SAWarning)  # nbgrader 0.9.6's own session warnings
    except ImportError:  # pragma: no cover
        pass


_EXCEPTION_LINE = re.compile(r"^ {0,4}([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)\b(?::.*)?)$")


def last_error_line(result: dict) -> str:
    """The informative line of a failed nbgrader step: the last exception line of the logged traceback."""
    lines = (result.get("log") or "").splitlines() + (result.get("error") or "").splitlines()
    exceptions = [m.group(1).strip() for line in lines for m in [_EXCEPTION_LINE.match(line)] if m]
    # nbgrader ends with its own NbGraderException ("see above"); the one before it is the real cause.
    causes = [e for e in exceptions if "NbGraderException" not in e]
    detail = causes[-1] if causes else (exceptions[-1] if exceptions else "")
    if any("DeadKernelError" in e for e in exceptions):
        return ("the kernel died while running the notebook (the learner's code crashed Python, called os._exit(), "
                "or ran out of memory)")
    if not detail:
        errors = [line[len("[ERROR] "):] for line in lines if line.startswith("[ERROR] ")]
        detail = errors[0] if errors else ""
    return detail or "unknown error"


def write_log(path: Path, title: str, result: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(f"===== {title}: {'ok' if result.get('success') else 'FAILED'}\n")
        fh.write(result.get("log") or "")
        if result.get("error"):
            fh.write(result["error"])
        fh.write("\n")


def test_cell_order(solutions_ws: Path, chapter: str) -> list[tuple[str, str, float]]:
    """(notebook, grade_id, points) of the chapter's test cells, in notebook order."""
    import nbformat

    cells = []
    for name in find_solution_notebooks(solutions_ws, chapter):
        nb = nbformat.read(solutions_ws / chapter / f"{name}.ipynb", as_version=4)
        for cell in nb.cells:
            if is_test_cell(cell):
                meta = cell.metadata["nbgrader"]
                cells.append((name, meta["grade_id"], float(meta.get("points", 0))))
    return cells


def timed_out_cells(autograded: Path) -> list[str]:
    import nbformat

    found = []
    for path in sorted(autograded.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for index, cell in enumerate(nb.cells):
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error" and output.get("ename") == TIMEOUT_ENAME:
                    grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
                    found.append(f"{path.name} cell {index + 1}" + (f" ({grade_id})" if grade_id else ""))
    return found


def forget(workspace: Path, sub: Submission, db_url: str) -> None:
    """Remove what an earlier run left for a submission that this run does not grade (no stale results)."""
    from nbgrader.api import Gradebook, MissingEntry

    for step in ("submitted", "autograded", "feedback"):
        shutil.rmtree(workspace / step / sub.student / sub.chapter, ignore_errors=True)
    with Gradebook(db_url) as gb:
        try:
            gb.remove_submission(sub.chapter, sub.student)
        except MissingEntry:
            pass


def read_scores(sub: Submission, notebooks: list[str], db_url: str) -> None:
    """The submission's score, max score and points per grade cell, from the gradebook."""
    from nbgrader.api import Gradebook, MissingEntry

    sub.score, sub.max_score = 0.0, 0.0
    with Gradebook(db_url) as gb:
        for name in notebooks:
            try:
                nb = gb.find_submission_notebook(name, sub.chapter, sub.student)
            except MissingEntry:
                continue
            sub.score += float(nb.score)
            sub.max_score += float(nb.max_score)
            if nb.needs_manual_grade:
                sub.remarks.append(f"{name}: needs manual grading")
            for g in nb.grades:
                sub.cells[f"{name}/{g.name}"] = float(g.score)


def grade(submissions: Path, workspace: Path, solutions: Path = SOLUTIONS_DIR, wanted: list[str] | None = None,
          timeout: int = GRADING_CELL_TIMEOUT, out=None) -> int:
    """Grade every submission under ``submissions`` into ``workspace``; returns the exit status (see the module)."""
    out = out or sys.stdout

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    submissions = submissions.expanduser().resolve()
    workspace = workspace.expanduser().resolve()
    solutions = solutions.expanduser().resolve()
    if not solutions.is_dir():
        raise UsageError(f"The solutions folder {solutions} does not exist.")
    known = sorted(p.name for p in solutions.iterdir() if p.is_dir() and any(p.glob("*.ipynb")))
    if not known:
        raise UsageError(f"The solutions folder {solutions} has no chapter (no <chapter>/<notebook>.ipynb).")
    for chapter in wanted or []:
        if chapter not in known:
            raise UsageError(f"Unknown chapter '{chapter}'. Chapters with solutions: {', '.join(known)}.")
    check_workspace(workspace, submissions, solutions)
    subs, problems, chapters = scan_submissions(submissions, solutions, wanted, known)

    say(f"Grading {len(subs)} submission(s) of {', '.join(chapters)} from {submissions}")
    say(f"Workspace: {workspace}")
    with venv_scripts_on_path():
        grader = Grader(workspace, timeout, problems)
        unusable = {chapter: reason for chapter in chapters
                    if (reason := grader.prepare(chapter, solutions / chapter, say))}
        bar = None
        if len(subs) >= 8 and out.isatty():
            from tqdm import tqdm

            bar = tqdm(total=len(subs), unit="submission", file=out, leave=False)
        for sub in subs:
            if sub.chapter in unusable and sub.status == "pending":
                sub.status = "chapter could not be prepared"
                problems.append(Problem(sub.student, sub.chapter, "",
                                        f"the chapter could not be prepared: {unusable[sub.chapter]}",
                                        f"fix the solution notebook (see {grader.logs / sub.chapter / 'generate.log'})"))
            text = grader.grade(sub) if sub.status == "pending" else grader.skip(sub)
            if bar is not None:
                bar.write(text, file=out)
                bar.update()
            else:
                say(text)
        if bar is not None:
            bar.close()

    write_grades(workspace / "grades.csv", subs, chapters, grader.cell_order)
    write_problems(workspace / "problems.csv", problems)
    return summary(say, subs, problems, workspace)


class Grader:
    """Runs nbgrader in one workspace: prepares each chapter, then grades submissions one at a time."""

    def __init__(self, workspace: Path, timeout: int, problems: list[Problem]):
        from nbgrader.apps import NbGraderAPI

        quiet_nbgrader_logging()
        workspace.mkdir(parents=True, exist_ok=True)
        (workspace / MARKER).write_text("Made by `python -m autograder.grade`; safe to delete with everything here.\n")
        self.workspace, self.timeout, self.problems = workspace, timeout, problems
        self.logs = workspace / "logs"
        self.logs.mkdir(exist_ok=True)
        self.stderr_log = self.logs / "stderr.log"
        config = grading_config(workspace, timeout=timeout)
        self.db_url = config.CourseDirectory.db_url
        self.api = NbGraderAPI(config=config)
        self.cell_order: dict[str, list[tuple[str, str, float]]] = {}

    def prepare(self, chapter: str, source: Path, say) -> str | None:
        """Copy the chapter's solutions in and generate it, so the gradebook knows its tests (hidden ones too).

        Returns None when ready, else why the chapter cannot be graded."""
        target = self.workspace / "solutions" / chapter
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target, ignore=shutil.ignore_patterns(*IGNORED_NAMES))
        log = self.logs / chapter / "generate.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.unlink(missing_ok=True)
        with stderr_into(self.stderr_log):
            result = self.api.generate_assignment(chapter, force=True, create=True)
        write_log(log, f"generate_assignment {chapter}", result)
        if not result["success"]:
            reason = last_error_line(result)
            say(f"  ✗ could not prepare {chapter}: {reason} (log: {log})")
            return reason
        self.cell_order[chapter] = test_cell_order(self.workspace / "solutions", chapter)
        return None

    def skip(self, sub: Submission) -> str:
        """A submission that cannot be graded: clear what an earlier run left for it, and say why."""
        forget(self.workspace, sub, self.db_url)
        return f"  ✗ {sub.student:<16} {sub.chapter:<16} not graded: {sub.status} (see problems.csv)"

    def grade(self, sub: Submission) -> str:
        """Copy (never move) the submission in, autograde it, make its feedback, read its score back."""
        forget(self.workspace, sub, self.db_url)
        dest = self.workspace / "submitted" / sub.student / sub.chapter
        dest.mkdir(parents=True)
        for path in sub.notebooks:
            shutil.copyfile(path, dest / path.name)
        log = self.logs / sub.chapter / f"{sub.student}.log"
        log.unlink(missing_ok=True)
        with stderr_into(self.stderr_log):
            result = self.api.autograde(sub.chapter, sub.student, force=True, create=True)
        write_log(log, f"autograde {sub.student} {sub.chapter}", result)
        if not result["success"]:
            sub.status = "autograde failed"
            reason = last_error_line(result)
            self.problems.append(Problem(
                sub.student, sub.chapter, f"{sub.student}/{sub.chapter}/", f"autograde failed: {reason}",
                f"read {log} and {self.stderr_log}; run the learner's notebook to find the cell that crashes, "
                "then re-run (the other submissions were graded)"))
            forget(self.workspace, sub, self.db_url)
            return f"  ✗ {sub.student:<16} {sub.chapter:<16} autograde failed: {reason}"
        for where in timed_out_cells(self.workspace / "autograded" / sub.student / sub.chapter):
            sub.remarks.append(f"timeout in {where}")
            self.problems.append(Problem(
                sub.student, sub.chapter, f"{sub.student}/{sub.chapter}/",
                f"{where} ran for more than {self.timeout} s and was interrupted (its tests scored 0)",
                "look at the learner's code for an endless loop, or re-run with a longer --timeout if the work is "
                "legitimately slow", blocking=False))
        with stderr_into(self.stderr_log):
            result = self.api.generate_feedback(sub.chapter, sub.student, force=True)
        write_log(log, f"generate_feedback {sub.student} {sub.chapter}", result)
        if not result["success"]:
            sub.remarks.append("no feedback")
            self.problems.append(Problem(sub.student, sub.chapter, f"{sub.student}/{sub.chapter}/",
                                         f"graded, but the feedback could not be made: {last_error_line(result)}",
                                         f"read {log}", blocking=False))
        read_scores(sub, find_solution_notebooks(self.workspace / "solutions", sub.chapter), self.db_url)
        sub.status = "graded"
        mark = "✓" if sub.score == sub.max_score else "•"
        extra = f"  ({'; '.join(sub.remarks)})" if sub.remarks else ""
        return f"  {mark} {sub.student:<16} {sub.chapter:<16} {fmt(sub.score):>6} / {fmt(sub.max_score)}{extra}"


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="replace")  # a terminal that cannot show ✓ gets "?" rather than a crash
        except AttributeError:  # pragma: no cover - a replaced stream
            pass
    parser = argparse.ArgumentParser(
        prog="python -m autograder.grade",
        description="Grade SUBMISSIONS/<student>/<chapter>/<notebook>.ipynb with nbgrader, in a workspace outside "
                    "the repository. The submissions are only read.")
    parser.add_argument("submissions", type=Path, help="folder with one folder per student")
    parser.add_argument("--workspace", type=Path, required=True,
                        help="where grading happens (outside the repository; created if missing; re-usable)")
    parser.add_argument("--chapter", action="append", dest="chapters", metavar="CHAPTER",
                        help="grade only this chapter (repeat for several); default: every chapter submitted")
    parser.add_argument("--timeout", type=int, default=GRADING_CELL_TIMEOUT,
                        help=f"seconds one cell may run before it is interrupted (default {GRADING_CELL_TIMEOUT})")
    parser.add_argument("--solutions", type=Path, default=SOLUTIONS_DIR, help=argparse.SUPPRESS)  # for the tests
    args = parser.parse_args(argv)
    try:
        return grade(args.submissions, args.workspace, args.solutions, args.chapters, args.timeout)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nInterrupted. Re-run the same command to grade everything again.", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the output was piped into `head` or similar
        sys.stdout = None
        return 1


if __name__ == "__main__":
    sys.exit(main())
