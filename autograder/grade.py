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
import csv
import logging
import os
import re
import shutil
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from autograder.course import (
    GRADING_CELL_TIMEOUT, REPO_ROOT, SOLUTIONS_DIR, TIMEOUT_ENAME, grading_config, is_test_cell, read_notebook,
    venv_scripts_on_path,
)

MARKER = ".gptcourse-grading-workspace"
IGNORED_NAMES = {"__MACOSX", "__pycache__", ".ipynb_checkpoints"}


class UsageError(Exception):
    """The command cannot run as asked; the message says what is wrong and what to do."""


@dataclass
class Problem:
    student: str
    chapter: str
    file: str
    problem: str
    what_to_do: str
    blocking: bool = True  # False: a remark on a submission that was graded anyway

    def row(self) -> dict:
        return {"student": self.student, "chapter": self.chapter, "file": self.file, "problem": self.problem,
                "what_to_do": self.what_to_do, "graded": "no" if self.blocking else "yes"}


@dataclass
class Submission:
    student: str
    chapter: str
    notebooks: list[Path] = field(default_factory=list)  # valid notebooks with an expected name, to grade
    status: str = "pending"
    score: float | None = None
    max_score: float | None = None
    cells: dict[str, float] = field(default_factory=dict)  # test cell -> points earned
    remarks: list[str] = field(default_factory=list)


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


def find_solution_notebooks(solutions: Path, chapter: str) -> list[str]:
    return sorted(p.stem for p in (solutions / chapter).glob("*.ipynb"))


def scan_submissions(submissions: Path, solutions: Path, wanted: list[str] | None,
                     known: list[str]) -> tuple[list[Submission], list[Problem], list[str]]:
    """What to grade, what is wrong, and the chapters concerned."""
    problems: list[Problem] = []
    if not submissions.exists():
        raise UsageError(f"The submissions folder {submissions} does not exist.\n"
                         "Expected layout: SUBMISSIONS/<student>/<chapter>/<notebook>.ipynb")
    if not submissions.is_dir():
        raise UsageError(f"{submissions} is a file, not a folder. Pass the folder that holds one folder per student: "
                         "SUBMISSIONS/<student>/<chapter>/<notebook>.ipynb")
    entries = sorted(p for p in submissions.iterdir() if not p.name.startswith(".") and p.name not in IGNORED_NAMES)
    direct_chapters = [p.name for p in entries if p.is_dir() and p.name in known]
    if direct_chapters:
        raise UsageError(
            f"{submissions} holds chapter folders ({', '.join(direct_chapters)}) directly: it looks like ONE\n"
            "student's folder. Pass the folder that holds one folder per student: "
            "SUBMISSIONS/<student>/<chapter>/<notebook>.ipynb")
    students = [p for p in entries if p.is_dir()]
    for p in entries:
        if not p.is_dir():
            problems.append(Problem("", "", str(p.relative_to(submissions)), "a file directly in SUBMISSIONS, ignored",
                                    "if it is a learner's work, put it in SUBMISSIONS/<student>/<chapter>/ and re-run",
                                    blocking=False))
    if not students:
        raise UsageError(f"{submissions} has no student folders. "
                         "Expected layout: SUBMISSIONS/<student>/<chapter>/<notebook>.ipynb")

    present = {s.name: sorted(c.name for c in s.iterdir() if c.is_dir() and not c.name.startswith(".")
                              and c.name not in IGNORED_NAMES) for s in students}
    if wanted:
        chapters = list(wanted)
    else:
        chapters = sorted({c for names in present.values() for c in names if c in known})
        if not chapters:
            raise UsageError(
                f"No student folder in {submissions} has a chapter folder. Known chapters: {', '.join(known)}.\n"
                "Expected layout: SUBMISSIONS/<student>/<chapter>/<notebook>.ipynb")

    notebook_owner = {nb: ch for ch in known for nb in find_solution_notebooks(solutions, ch)}
    result: list[Submission] = []
    for student_dir in students:
        student = student_dir.name
        for name in present[student]:
            if name not in known:
                problems.append(Problem(student, name, f"{student}/{name}/", f"unknown chapter folder '{name}'",
                                        f"chapter folders are named after the chapters: {', '.join(known)}; "
                                        "rename the folder and re-run"))
        for stray in sorted(student_dir.glob("*.ipynb")):
            owner = notebook_owner.get(stray.stem)
            where = f"{student}/{owner}/{stray.name}" if owner else f"{student}/<chapter>/{stray.name}"
            problems.append(Problem(student, owner or "", f"{student}/{stray.name}",
                                    "notebook directly in the student folder, not in a chapter folder",
                                    f"move it to {where} and re-run"))
        for chapter in chapters:
            sub = Submission(student, chapter)
            result.append(sub)
            folder = student_dir / chapter
            expected = find_solution_notebooks(solutions, chapter)
            expected_names = ", ".join(f"{e}.ipynb" for e in expected)
            if not folder.is_dir():
                sub.status = "missing"
                problems.append(Problem(student, chapter, f"{student}/{chapter}/", "no folder for this chapter",
                                        f"if the learner submitted, put their notebook in {student}/{chapter}/ "
                                        f"(named {expected_names}) and re-run"))
                continue
            found = sorted(p for p in folder.glob("*.ipynb"))
            unexpected = [p for p in found if p.stem not in expected]
            malformed = []
            for name in expected:
                path = folder / f"{name}.ipynb"
                if not path.is_file():
                    continue
                try:
                    read_notebook(path)
                except ValueError as exc:
                    malformed.append(path.name)
                    problems.append(Problem(student, chapter, f"{student}/{chapter}/{path.name}",
                                            f"malformed notebook: {exc}",
                                            "ask the learner for a fresh copy (File > Download in Jupyter); "
                                            "this submission was skipped"))
                else:
                    sub.notebooks.append(path)
            missing = [e for e in expected if not (folder / f"{e}.ipynb").is_file()]
            for path in unexpected:
                if missing:
                    problems.append(Problem(
                        student, chapter, f"{student}/{chapter}/{path.name}",
                        f"wrong notebook name '{path.name}' (expected: {expected_names})",
                        f"if it is the learner's work, rename it to {missing[0]}.ipynb and re-run"))
                else:
                    problems.append(Problem(student, chapter, f"{student}/{chapter}/{path.name}",
                                            f"extra notebook '{path.name}' ignored (expected: {expected_names})",
                                            "nothing, unless it is the learner's real answer", blocking=False))
            if sub.notebooks:
                for name in missing:
                    sub.remarks.append(f"{name}.ipynb missing (0 points)")
                    problems.append(Problem(student, chapter, f"{student}/{chapter}/{name}.ipynb",
                                            "notebook missing, its tests score 0",
                                            f"if the learner submitted it, add it as {student}/{chapter}/{name}.ipynb "
                                            "and re-run", blocking=False))
            elif malformed:
                sub.status = "malformed"
            elif unexpected:
                sub.status = "wrong name"
            else:
                sub.status = "missing"
                problems.append(Problem(student, chapter, f"{student}/{chapter}/",
                                        f"no notebook in the chapter folder (expected: {expected_names})",
                                        "add the learner's notebook and re-run"))
    return result, problems, chapters


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


def fmt(points: float | None) -> str:
    if points is None:
        return "-"
    return f"{points:g}"


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
    with venv_scripts_on_path():
        return _grade(submissions, workspace, solutions, wanted, timeout, out)


def _grade(submissions: Path, workspace: Path, solutions: Path, wanted: list[str] | None, timeout: int, out) -> int:
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

    quiet_nbgrader_logging()
    from nbgrader.apps import NbGraderAPI

    workspace.mkdir(parents=True, exist_ok=True)
    (workspace / MARKER).write_text("Made by `python -m autograder.grade`; safe to delete with everything here.\n")
    logs = workspace / "logs"
    logs.mkdir(exist_ok=True)
    stderr_log = logs / "stderr.log"
    config = grading_config(workspace, timeout=timeout)
    api = NbGraderAPI(config=config)

    say(f"Grading {len(subs)} submission(s) of {', '.join(chapters)} from {submissions}")
    say(f"Workspace: {workspace}")

    # 1. The assignments: solutions copied in, generated, known to the gradebook (hidden tests included).
    unusable: dict[str, str] = {}
    cell_order: dict[str, list[tuple[str, str, float]]] = {}
    for chapter in chapters:
        target = workspace / "solutions" / chapter
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(solutions / chapter, target, ignore=shutil.ignore_patterns(*IGNORED_NAMES))
        (logs / chapter).mkdir(parents=True, exist_ok=True)
        (logs / chapter / "generate.log").unlink(missing_ok=True)
        with stderr_into(stderr_log):
            result = api.generate_assignment(chapter, force=True, create=True)
        write_log(logs / chapter / "generate.log", f"generate_assignment {chapter}", result)
        if not result["success"]:
            unusable[chapter] = last_error_line(result)
            say(f"  ✗ could not prepare {chapter}: {unusable[chapter]} (log: {logs / chapter / 'generate.log'})")
        else:
            cell_order[chapter] = test_cell_order(workspace / "solutions", chapter)

    # 2. Each submission: copied (never moved), autograded, feedback generated, score read back.
    todo = [s for s in subs if s.status == "pending"]
    use_bar = len(todo) >= 8 and out.isatty()
    bar = None
    if use_bar:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), unit="submission", file=out, leave=False)

    def line(text: str) -> None:
        if bar is not None:
            bar.write(text, file=out)
        else:
            say(text)

    db_url = config.CourseDirectory.db_url
    for sub in subs:
        if sub.status != "pending":
            forget(workspace, sub, db_url)
            line(f"  ✗ {sub.student:<16} {sub.chapter:<16} not graded: {sub.status} (see problems.csv)")
            continue
        if sub.chapter in unusable:
            sub.status = "chapter could not be prepared"
            problems.append(Problem(sub.student, sub.chapter, "", f"the chapter could not be prepared: "
                                    f"{unusable[sub.chapter]}",
                                    f"fix the solution notebook (see {logs / sub.chapter / 'generate.log'})"))
            forget(workspace, sub, db_url)
            line(f"  ✗ {sub.student:<16} {sub.chapter:<16} not graded: the chapter could not be prepared")
            if bar is not None:
                bar.update()
            continue
        forget(workspace, sub, db_url)
        dest = workspace / "submitted" / sub.student / sub.chapter
        dest.mkdir(parents=True)
        for path in sub.notebooks:
            shutil.copyfile(path, dest / path.name)  # a copy: the original is never touched
        log_path = logs / sub.chapter / f"{sub.student}.log"
        log_path.unlink(missing_ok=True)
        with stderr_into(stderr_log):
            result = api.autograde(sub.chapter, sub.student, force=True, create=True)
        write_log(log_path, f"autograde {sub.student} {sub.chapter}", result)
        if not result["success"]:
            sub.status = "autograde failed"
            reason = last_error_line(result)
            problems.append(Problem(
                sub.student, sub.chapter, f"{sub.student}/{sub.chapter}/",
                f"autograde failed: {reason}",
                f"read {log_path} and {stderr_log}; run the learner's notebook to find the cell that crashes, "
                "then re-run (the other submissions were graded)"))
            forget(workspace, sub, db_url)
            line(f"  ✗ {sub.student:<16} {sub.chapter:<16} autograde failed: {reason}")
            if bar is not None:
                bar.update()
            continue
        for where in timed_out_cells(workspace / "autograded" / sub.student / sub.chapter):
            sub.remarks.append(f"timeout in {where}")
            problems.append(Problem(sub.student, sub.chapter, f"{sub.student}/{sub.chapter}/",
                                    f"{where} ran for more than {timeout} s and was interrupted "
                                    "(its tests scored 0)",
                                    "look at the learner's code for an endless loop, or re-run with a longer "
                                    "--timeout if the work is legitimately slow", blocking=False))
        with stderr_into(stderr_log):
            result = api.generate_feedback(sub.chapter, sub.student, force=True)
        write_log(log_path, f"generate_feedback {sub.student} {sub.chapter}", result)
        if not result["success"]:
            reason = last_error_line(result)
            sub.remarks.append("no feedback")
            problems.append(Problem(sub.student, sub.chapter, f"{sub.student}/{sub.chapter}/",
                                    f"graded, but the feedback could not be made: {reason}",
                                    f"read {log_path}", blocking=False))
        read_scores(sub, find_solution_notebooks(workspace / "solutions", sub.chapter), db_url)
        sub.status = "graded"
        mark = "✓" if sub.score == sub.max_score else "•"
        extra = f"  ({'; '.join(sub.remarks)})" if sub.remarks else ""
        line(f"  {mark} {sub.student:<16} {sub.chapter:<16} {fmt(sub.score):>6} / {fmt(sub.max_score)}{extra}")
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.close()

    write_grades(workspace / "grades.csv", subs, chapters, cell_order)
    write_problems(workspace / "problems.csv", problems)
    return summary(say, subs, problems, workspace)


def cell_column(chapter: str, notebook: str, grade_id: str, cell_order) -> str:
    notebooks = {n for n, _, _ in cell_order.get(chapter, [])}
    return f"{chapter}/{grade_id}" if len(notebooks) <= 1 else f"{chapter}/{notebook}/{grade_id}"


def write_grades(path: Path, subs: list[Submission], chapters: list[str], cell_order) -> None:
    columns = []
    for chapter in chapters:
        for notebook, grade_id, _ in cell_order.get(chapter, []):
            columns.append((chapter, notebook, grade_id, cell_column(chapter, notebook, grade_id, cell_order)))
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["student", "chapter", "score", "max_score", "status", "remarks"] + [c[3] for c in columns])
        for sub in subs:
            row = [sub.student, sub.chapter, fmt(sub.score) if sub.score is not None else "",
                   fmt(sub.max_score) if sub.max_score is not None else
                   fmt(sum(p for _, _, p in cell_order.get(sub.chapter, []))) if sub.chapter in cell_order else "",
                   sub.status, "; ".join(sub.remarks)]
            for chapter, notebook, grade_id, _ in columns:
                value = sub.cells.get(f"{notebook}/{grade_id}") if chapter == sub.chapter else None
                row.append(fmt(value) if value is not None else "")
            writer.writerow(row)


def write_problems(path: Path, problems: list[Problem]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["student", "chapter", "file", "problem", "what_to_do", "graded"])
        writer.writeheader()
        for problem in problems:
            writer.writerow(problem.row())


def summary(say, subs: list[Submission], problems: list[Problem], workspace: Path) -> int:
    say("")
    say("Summary")
    width = max([len("student")] + [len(s.student) for s in subs])
    cwidth = max([len("chapter")] + [len(s.chapter) for s in subs])
    say(f"  {'student':<{width}}  {'chapter':<{cwidth}}  {'score':>9}  status")
    for sub in subs:
        score = f"{fmt(sub.score)}/{fmt(sub.max_score)}" if sub.status == "graded" else "-"
        remarks = f" ({'; '.join(sub.remarks)})" if sub.remarks else ""
        say(f"  {sub.student:<{width}}  {sub.chapter:<{cwidth}}  {score:>9}  {sub.status}{remarks}")
    graded = sum(s.status == "graded" for s in subs)
    blocking = [p for p in problems if p.blocking]
    say("")
    say(f"{len(subs)} submission(s): {graded} graded, {len(subs) - graded} not graded.")
    if problems:
        say(f"{len(problems)} problem(s) and remark(s), with what to do, in {workspace / 'problems.csv'}:")
        for p in problems:
            who = "/".join(x for x in (p.student, p.chapter) if x) or p.file
            say(f"  {'✗' if p.blocking else '!'} {who}: {p.problem}")
    say(f"Grades: {workspace / 'grades.csv'}")
    say(f"Feedback for each learner: {workspace / 'feedback'}/<student>/<chapter>/<notebook>.html")
    return 1 if blocking or graded < len(subs) else 0


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
