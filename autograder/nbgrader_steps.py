"""Running nbgrader's own steps for the grader: its logs and errors, and preparing a chapter (a course directory
whose gradebook knows the chapter's tests, hidden ones included)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import sys
import warnings
from pathlib import Path

from autograder.course import grading_config, is_test_cell
from autograder.results import assignment_version
from autograder.submissions import IGNORED_NAMES, find_solution_notebooks

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


# --------------------------------------------------------------------------------------------------------------------
# Preparing a chapter: nbgrader learns its tests (hidden ones too) in a course directory of ours
# --------------------------------------------------------------------------------------------------------------------

VERSIONS_FILE = "assignment_versions.json"


def prepare_chapter(course: Path, chapter: str, solutions: Path, logs: Path) -> str | None:
    """Make ``course`` (a course directory with its own gradebook) know ``chapter`` as in ``solutions``.

    Skipped when it already knows this version of the chapter. Returns None when ready, else why it cannot be."""
    from nbgrader.apps import NbGraderAPI

    version = assignment_version(solutions, chapter)
    stamps_path = course / VERSIONS_FILE
    stamps = json.loads(stamps_path.read_text()) if stamps_path.exists() else {}
    if stamps.get(chapter) == version and (course / "gradebook.db").exists():
        return None
    target = course / "solutions" / chapter
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(solutions / chapter, target, ignore=shutil.ignore_patterns(*IGNORED_NAMES))
    log = logs / chapter / "generate.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.unlink(missing_ok=True)
    with stderr_into(logs / "stderr.log"):
        result = NbGraderAPI(config=grading_config(course)).generate_assignment(chapter, force=True, create=True)
    write_log(log, f"generate_assignment {chapter}", result)
    if not result["success"]:
        return f"{last_error_line(result)} (log: {log})"
    stamps[chapter] = version
    stamps_path.write_text(json.dumps(stamps, indent=1, sort_keys=True))
    return None
