"""Where the course's exercise material lives, and the nbgrader settings every command shares.

nbgrader's "source" is ``solutions/`` (instructor notebooks with solutions and hidden tests) and its "release" is
``exercises/`` (the student notebooks generated from them). Each chapter is one nbgrader assignment:
``solutions/<chapter>/<notebook>.ipynb``.

``grading_config()`` is the full configuration used to grade (``python -m autograder.grade``). Several of nbgrader's
defaults are wrong for this course; each one is set on purpose below, with the reason next to it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import warnings
from pathlib import Path

from traitlets import Unicode
from traitlets.config import Config

from nbgrader.preprocessors import DeduplicateIds, NbGraderPreprocessor, OverwriteCells
from nbgrader import utils as nbutils

# The ``ename`` a cell past its timeout gets, and the mark on stderr text shown as stdout: one spelling everywhere.
from autograder.referee.kernel import STDERR_MARK, TIMEOUT_ENAME, marked_stderr  # noqa: F401 (re-exported)

REPO_ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS_DIR = REPO_ROOT / "solutions"
EXERCISES_DIR = REPO_ROOT / "exercises"

#: Seconds one cell may run while grading before it is interrupted (nbgrader's default is 30).
GRADING_CELL_TIMEOUT = 600
#: What a learner finds where a solution was.
CODE_STUB = '# YOUR CODE HERE\nraise NotImplementedError("Replace this line with your code, then run the tests below.")'
#: What replaces the hidden tests in the feedback a learner sees.
HIDDEN_TESTS_PLACEHOLDER = "# hidden tests ran here"
BEGIN_HIDDEN = "BEGIN HIDDEN TESTS"
END_HIDDEN = "END HIDDEN TESTS"


def chapters() -> list[str]:
    """The assignment ids (chapter folders) that have solution notebooks, in order."""
    return sorted(p.name for p in SOLUTIONS_DIR.iterdir() if p.is_dir() and any(p.glob("*.ipynb")))


def base_config(root: Path = REPO_ROOT) -> Config:
    """nbgrader settings with ``root`` as the course directory (the repository, or a grading workspace)."""
    c = Config()
    c.CourseDirectory.root = str(root)
    c.CourseDirectory.source_directory = "solutions"
    c.CourseDirectory.release_directory = "exercises"
    c.CourseDirectory.db_url = f"sqlite:///{Path(root) / 'gradebook.db'}"
    c.ClearSolutions.code_stub = {"python": CODE_STUB}
    return c


@contextlib.contextmanager
def venv_scripts_on_path():
    """nbgrader's gradebook runs the ``alembic`` command, which lives next to this Python (``.venv/bin``) and is not
    on PATH when the virtual environment is used without being activated (as ``make`` does)."""
    old = os.environ.get("PATH", "")
    os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + old
    try:
        yield
    finally:
        os.environ["PATH"] = old


def read_notebook(path: Path):
    """The notebook at ``path``, or raise ValueError saying in plain words what is wrong with it."""
    import nbformat

    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError("the file is not text (UTF-8): it is not a notebook, or it is damaged") from None
    except OSError as exc:
        raise ValueError(f"cannot read the file: {exc.strerror}") from None
    if not text.strip():
        raise ValueError("the file is empty")
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"the file is not valid notebook JSON ({exc.msg} at line {exc.lineno}, "
                         f"column {exc.colno}); it was probably damaged while saving or editing") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nb = nbformat.reads(text, as_version=4)
    except Exception as exc:  # nbformat raises several kinds for "JSON, but not a notebook"
        raise ValueError(f"the file is JSON but not a Jupyter notebook ({type(exc).__name__}: {exc})") from None
    if not isinstance(nb.get("cells"), list):
        raise ValueError("the file is JSON but has no list of cells: it is not a Jupyter notebook")
    return nb


# --------------------------------------------------------------------------------------------------------------------
# Our preprocessors
# --------------------------------------------------------------------------------------------------------------------


def stderr_to_stdout(cell) -> bool:
    """Turn the cell's ``stderr`` stream outputs into ``stdout`` text marked with ``STDERR_MARK``; True if any moved.

    nbgrader's ``determine_grade`` gives 0 points to a test cell with *any* stderr output, and Python warnings
    (``warnings.warn``, a library's DeprecationWarning, a tqdm progress bar) all go to stderr. Errors are recorded
    as ``error`` outputs, never as stderr, so nothing that should fail a test is lost by this; the text stays
    visible, just no longer decides the grade.
    """
    moved = False
    if cell.get("cell_type") != "code":
        return False
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream" and output.get("name") == "stderr":
            output["name"] = "stdout"
            output["text"] = marked_stderr(output.get("text", ""))
            moved = True
    return moved


class StderrToStdout(NbGraderPreprocessor):
    """After ``Execute``: stderr text (warnings) must not cost a correct answer its points. See ``stderr_to_stdout``."""

    def preprocess_cell(self, cell, resources, cell_index):
        if stderr_to_stdout(cell):
            self.log.info("Cell %s: stderr output kept as stdout text so it does not zero the grade", cell_index)
        return cell, resources


def split_hidden_tests(source: str, begin: str = BEGIN_HIDDEN, end: str = END_HIDDEN) -> tuple[str, list[str]]:
    """``source`` with each hidden-test region replaced by ``HIDDEN_TESTS_PLACEHOLDER``, and the hidden lines.

    The placeholder keeps the indentation of the ``### BEGIN HIDDEN TESTS`` line. An unterminated region hides
    everything to the end of the cell (better to hide too much than to leak).
    """
    kept: list[str] = []
    hidden: list[str] = []
    in_hidden = False
    for line in source.split("\n"):
        if begin in line and not in_hidden:
            in_hidden = True
            indent = line[: len(line) - len(line.lstrip())]
            kept.append(indent + HIDDEN_TESTS_PLACEHOLDER)
        elif end in line and in_hidden:
            in_hidden = False
        elif in_hidden:
            hidden.append(line)
        else:
            kept.append(line)
    return "\n".join(kept), hidden


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def _scrub(text: str, secrets: list[str]) -> str:
    """Drop every line of ``text`` that shows one of the (stripped) hidden-test lines ``secrets``."""
    if not secrets:
        return text
    lines = text.splitlines(keepends=True)
    return "".join(line for line in lines if not any(s in strip_ansi(line) for s in secrets))


class HideHiddenTests(NbGraderPreprocessor):
    """For GenerateFeedback: the feedback a learner reads must not reveal hidden tests.

    nbgrader renders the *autograded* notebook, whose test cells were restored from the gradebook with their hidden
    tests. For every cell with a hidden region this preprocessor:

    * replaces the region in the source with ``# hidden tests ran here``;
    * reduces each error output to ``ExceptionName: message`` (our hidden tests' messages are written to be shown)
      and drops the traceback, whose frames would print the failing hidden line and its neighbours;
    * drops any other output line that repeats a hidden line (a warning shows the line that triggered it).
    """

    begin_test_delimeter = Unicode(BEGIN_HIDDEN).tag(config=True)
    end_test_delimeter = Unicode(END_HIDDEN).tag(config=True)

    def preprocess_cell(self, cell, resources, cell_index):
        source = cell.get("source", "")
        if self.begin_test_delimeter not in source:
            return cell, resources
        cell.source, hidden = split_hidden_tests(source, self.begin_test_delimeter, self.end_test_delimeter)
        # Lines short enough to be generic ("pass", ")") are not secrets, and would wipe unrelated output.
        secrets = [line.strip() for line in hidden if len(line.strip()) >= 6]
        for output in cell.get("outputs", []):
            kind = output.get("output_type")
            if kind == "error":
                evalue = _scrub(str(output.get("evalue", "")), secrets)
                output["evalue"] = evalue
                summary = f"{output.get('ename', 'Error')}: {evalue}" if evalue else str(output.get("ename", "Error"))
                output["traceback"] = [summary, "(traceback not shown: this test cell contains hidden tests)"]
            elif kind == "stream":
                output["text"] = _scrub(output.get("text", ""), secrets)
            elif kind in ("execute_result", "display_data"):
                data = output.get("data", {})
                for mime in list(data):
                    if mime.startswith("text/") and isinstance(data[mime], str):
                        data[mime] = _scrub(data[mime], secrets)
                    elif mime.startswith("text/"):
                        data[mime] = _scrub("".join(data[mime]), secrets)
        self.log.info("Cell %s: hidden tests removed from the feedback", cell_index)
        return cell, resources


class DropDuplicateIds(DeduplicateIds):
    """nbgrader's DeduplicateIds, but the earlier copies of a duplicated nbgrader cell lose their nbgrader metadata
    entirely instead of keeping an empty ``{}``, which nbgrader 0.9.6's own CheckCellMetadata then rejects
    ("Outdated schema version: 0"), failing the whole submission. Jupyter's "duplicate cell" copies the metadata, so
    a learner who duplicates a cell to try something out would otherwise lose every point. The last copy keeps the
    grade id (as in nbgrader); the others become ordinary cells."""

    def preprocess_cell(self, cell, resources, cell_index):
        cell, resources = super().preprocess_cell(cell, resources, cell_index)
        if cell.get("metadata", {}).get("nbgrader", None) == {}:
            del cell.metadata["nbgrader"]
        return cell, resources


class RestoreMissingCells(OverwriteCells):
    """nbgrader's OverwriteCells with sturdier ``add_missing_grade_cells`` and ``add_missing_task_cells``.

    nbgrader 0.9.6 puts a missing test cell right after the *previous* nbgrader cell of the source notebook and
    raises ``KeyError`` when that cell is missing too or is not a grade/solution cell (a locked markdown cell, or a
    solution cell whose metadata the learner's editor dropped) - the whole submission then fails to grade. Here the
    cell goes after the nearest earlier source cell still present, else before the nearest later one, else at the end.
    """

    def missing_cell_transform(self, source_cell, max_score, is_solution=False, is_task=False):
        """nbgrader's, but a restored cell keeps exactly the course's source (nbgrader prepends a comment saying it
        was missing): the referee runs only cells whose source is the course's own. The note goes in the metadata."""
        cell = super().missing_cell_transform(source_cell, max_score, is_solution=is_solution, is_task=is_task)
        cell.source = source_cell.source
        cell.metadata["gptcourse_restored"] = True
        return cell

    def add_missing_grade_cells(self, nb, resources):
        source_nb = self.gradebook.find_notebook(self.notebook_id, self.assignment_id)
        source_cells = source_nb.source_cells
        order = [cell.name for cell in source_cells]
        grade_cells = {cell.name: cell for cell in source_nb.grade_cells}
        solution_ids = {cell.name for cell in source_nb.solution_cells}

        def present() -> dict[str, int]:
            found = {}
            for idx, cell in enumerate(nb.cells):
                grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
                if grade_id is not None and grade_id not in found:
                    found[grade_id] = idx
            return found

        for grade_id in order:
            if grade_id not in grade_cells or grade_id in present():
                continue
            self.log.warning("Missing grade cell %s: adding it back to the notebook", grade_id)
            where = present()
            pos = order.index(grade_id)
            new_cell = self.missing_cell_transform(
                source_cells[pos], grade_cells[grade_id].max_score, is_solution=grade_id in solution_ids)
            before = [where[name] for name in order[:pos] if name in where]
            after = [where[name] for name in order[pos + 1:] if name in where]
            if before:
                nb.cells.insert(max(before) + 1, new_cell)
            elif after:
                nb.cells.insert(min(after), new_cell)
            else:
                nb.cells.append(new_cell)
        return nb, resources

    def add_missing_task_cells(self, nb, resources):
        """As nbgrader's, but a cell whose nbgrader metadata has no grade_id is skipped instead of raising KeyError:
        nbgrader's DeduplicateIds leaves exactly that on the copy of a duplicated cell (Jupyter's "duplicate cell"
        copies the metadata), and 0.9.6 would then fail the whole submission."""
        source_nb = self.gradebook.find_notebook(self.notebook_id, self.assignment_id)
        order = [cell.name for cell in source_nb.source_cells]
        present = {cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") for cell in nb.cells}
        for task_cell in source_nb.task_cells:
            if task_cell.name not in present:
                source = source_nb.source_cells[order.index(task_cell.name)]
                nb.cells.append(self.missing_cell_transform(source, task_cell.max_score, is_task=True))
        return nb, resources


# --------------------------------------------------------------------------------------------------------------------
# The grading configuration
# --------------------------------------------------------------------------------------------------------------------


def grading_config(root: Path, timeout: int = GRADING_CELL_TIMEOUT) -> Config:
    """Everything nbgrader needs to generate, autograde and give feedback in the workspace ``root``.

    Execution: nbgrader's own Execute step runs the tests in the learner's kernel, where the learner's code can
    change what they do; and it loses the whole submission when that code kills the kernel (``os._exit``, a
    segfault). The grading worker replaces it (``autograder.worker.RefereeExecute``): the learner's cells run in a
    sandboxed kernel, the tests in the worker (``autograder.referee``), and a cell that kills the kernel costs only
    that cell's tests. The settings below are those of the steps nbgrader still runs.
    """
    c = base_config(root)

    # Cell timeout. nbgrader's default is 30 s per cell, far too short for training a small model on CPU; a cell that
    # runs past it is interrupted and gets a CellTimeoutError *error output*, so its test scores 0. We raise the
    # limit, keep interrupting (rather than killing) the kernel so the following cells still run, and make the
    # message say what happened. autograder.grade looks for TIMEOUT_ENAME in the graded notebooks and reports every
    # timeout as a problem, so a timeout is never a silent zero.
    c.Execute.timeout = int(timeout)
    c.Execute.interrupt_on_timeout = True
    c.Execute.error_on_timeout = {
        "ename": TIMEOUT_ENAME,
        "evalue": f"the cell ran for more than {int(timeout)} s and was interrupted",
        "traceback": [f"{TIMEOUT_ENAME}: the cell ran for more than {int(timeout)} s and was interrupted"],
    }

    # Warnings on stderr. nbgrader's determine_grade gives 0 to a test cell with ANY stderr stream output, so a
    # correct answer that triggers a warning would lose its points. nbgrader's own IgnorePattern can only *delete*
    # stderr text that matches one regular expression: either too narrow (only the warnings we thought of) or
    # too wide (".*" deletes what the learner should see). StderrToStdout, right after Execute, turns all stderr text
    # into stdout text prefixed "[stderr] ": it stays visible in the feedback and no longer zeroes the grade. Real
    # failures are "error" outputs, untouched. IgnorePattern stays in the list but disabled.
    from nbgrader.converters.autograde import Autograde
    from nbgrader.preprocessors import Execute

    autograde_pps = list(Autograde.class_traits()["autograde_preprocessors"].default())
    autograde_pps.insert(autograde_pps.index(Execute) + 1, StderrToStdout)
    c.Autograde.autograde_preprocessors = autograde_pps
    c.IgnorePattern.pattern = ""

    # Deleted test cells: with nbgrader's default (add_missing_cells = False) a test cell the learner deleted never
    # runs: it keeps no score (0 points, or a stale score from an earlier grading run) and the feedback does not
    # show it. Put back, the test runs and scores the learner's code like everyone else's. RestoreMissingCells
    # replaces OverwriteCells to place the restored cells without nbgrader's KeyError (see its docstring).
    # Edited test cells: OverwriteCells (kept, through our subclass) restores every locked cell - all test cells -
    # from the gradebook when its checksum differs, which is also how the hidden tests get into the graded notebook.
    sanitize = list(Autograde.class_traits()["sanitize_preprocessors"].default())
    sanitize[sanitize.index(OverwriteCells)] = RestoreMissingCells
    # Duplicated cells (Jupyter's "duplicate cell" copies nbgrader's metadata): see DropDuplicateIds.
    sanitize[sanitize.index(DeduplicateIds)] = DropDuplicateIds
    c.Autograde.sanitize_preprocessors = sanitize
    c.OverwriteCells.add_missing_cells = True
    c.RestoreMissingCells.add_missing_cells = True

    # Feedback must not reveal hidden tests. nbgrader's generate_feedback renders the autograded notebook, which
    # contains the hidden tests (source and traceback lines). HideHiddenTests removes them first.
    from nbgrader.converters.generate_feedback import GenerateFeedback

    feedback_pps = list(GenerateFeedback.class_traits()["preprocessors"].default())
    c.GenerateFeedback.preprocessors = [HideHiddenTests] + feedback_pps

    # Hidden-test delimiters: the same strings everywhere (nbgrader's ClearHiddenTests and our HideHiddenTests).
    c.ClearHiddenTests.begin_test_delimeter = BEGIN_HIDDEN
    c.ClearHiddenTests.end_test_delimeter = END_HIDDEN
    c.HideHiddenTests.begin_test_delimeter = BEGIN_HIDDEN
    c.HideHiddenTests.end_test_delimeter = END_HIDDEN
    return c


def is_test_cell(cell) -> bool:
    """An nbgrader grade cell that is not also a solution cell: an autograded test."""
    return nbutils.is_grade(cell) and not nbutils.is_solution(cell)
