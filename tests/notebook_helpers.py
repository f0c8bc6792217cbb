"""Helpers shared by the tests that read and run the exercise notebooks (``solutions/`` and ``exercises/``).

Conventions the tests rely on (nbgrader metadata, schema version 3):

- a *solution cell* has ``solution: true``; its code sits between ``### BEGIN SOLUTION`` and ``### END SOLUTION``;
- a *test cell* has ``grade: true`` (and ``solution: false``) and points; the tests of the solution cell with
  grade_id ``X`` have grade_id ``X_tests``; hidden tests sit between ``### BEGIN HIDDEN TESTS`` and
  ``### END HIDDEN TESTS`` and must work on their own (with the lines above them removed).
"""

from __future__ import annotations

import ast
import builtins
import copy
import logging
import symtable
import sys
from pathlib import Path

import nbformat
from nbgrader.utils import determine_grade

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # so that `autograder` imports even without the editable install
    sys.path.insert(0, str(REPO_ROOT))

from autograder.course import EXERCISES_DIR, SOLUTIONS_DIR, chapters  # noqa: E402

KERNEL_NAME = "python3"
CELL_TIMEOUT = 180  # seconds; a cell that runs longer counts as failed, with TIMEOUT_ENAME
TIMEOUT_ENAME = "CellTimeoutError"
BEGIN_SOLUTION, END_SOLUTION = "BEGIN SOLUTION", "END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"


# --- Finding notebooks ------------------------------------------------------------------------------------------


def solution_notebooks() -> list[Path]:
    """Every instructor notebook, chapter by chapter."""
    return [nb for chapter in chapters() for nb in sorted((SOLUTIONS_DIR / chapter).glob("*.ipynb"))]


def exercise_notebooks() -> list[Path]:
    """The student notebook of every instructor notebook (which may not exist, if exercises/ is stale)."""
    return [exercise_path(path) for path in solution_notebooks()]


def exercise_path(solution_path: Path) -> Path:
    return EXERCISES_DIR / solution_path.relative_to(SOLUTIONS_DIR)


def chapter_of(path: Path) -> str:
    return path.parent.name


def short(path: Path) -> str:
    """``solutions/ch01_tokens/tokens.ipynb`` -> ``ch01_tokens/tokens``: a readable pytest id."""
    return f"{path.parent.name}/{path.stem}"


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


# --- Reading cells ----------------------------------------------------------------------------------------------


def nbgrader_meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def grade_id(cell) -> str | None:
    return nbgrader_meta(cell).get("grade_id")


def is_solution_cell(cell) -> bool:
    return bool(nbgrader_meta(cell).get("solution"))


def is_test_cell(cell) -> bool:
    meta = nbgrader_meta(cell)
    return bool(meta.get("grade")) and not meta.get("solution") and cell.cell_type == "code"


def cell_by_grade_id(nb, wanted: str):
    matches = [cell for cell in nb.cells if grade_id(cell) == wanted]
    if len(matches) != 1:
        raise KeyError(f"{len(matches)} cells have grade_id {wanted!r}")
    return matches[0]


def split_region(source: str, begin: str, end: str) -> tuple[list[str], list[str]]:
    """(lines outside the regions, lines inside them), the marker lines themselves left out."""
    outside, inside, within = [], [], False
    for line in source.split("\n"):
        if begin in line:
            within = True
        elif end in line:
            within = False
        else:
            (inside if within else outside).append(line)
    return outside, inside


def hidden_block(source: str) -> str:
    """The hidden tests of a test cell, without the marker lines."""
    return "\n".join(split_region(source, BEGIN_HIDDEN, END_HIDDEN)[1]).strip("\n") + "\n"


def secret_lines(nb, min_length: int = 20) -> set[str]:
    """Substantial lines that only the instructor may see: in solution regions or hidden tests, nowhere else.

    A line that also appears in a public part of the notebook (the setup cell, visible tests, the prose) is not a
    secret, so it may appear in the student notebook.
    """
    secret, public = set(), set()
    for cell in nb.cells:
        outside, inside = cell.source, ""
        if cell.cell_type == "code":
            out1, in1 = split_region(cell.source, BEGIN_SOLUTION, END_SOLUTION)
            out2, in2 = split_region("\n".join(out1), BEGIN_HIDDEN, END_HIDDEN)
            outside, inside = "\n".join(out2), "\n".join(in1 + in2)
        secret.update(line.strip() for line in inside.split("\n"))
        public.update(line.strip() for line in outside.split("\n"))
    return {line for line in secret - public if len(line) >= min_length}


def unbound_names(source: str) -> set[str]:
    """The names that ``source`` reads without binding them anywhere itself, builtins excepted.

    For a hidden-test block these are what it takes from the notebook: it should be only the learner's functions.
    """
    top = symtable.symtable(source, "<cell>", "exec")
    bound = {s.get_name() for s in top.get_symbols() if s.is_assigned() or s.is_imported() or s.is_namespace()}
    needed: set[str] = set()

    def walk(table) -> None:
        for symbol in table.get_symbols():
            if not symbol.is_referenced():
                continue
            if table.get_type() == "module" or symbol.is_global():
                needed.add(symbol.get_name())
        for child in table.get_children():
            walk(child)

    walk(top)
    return needed - bound - set(dir(builtins))


def top_level_definitions(source: str) -> set[str]:
    """Names that ``source`` defines at the top level (functions, classes, assignments)."""
    names = set()
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
    return names


def imported_modules(source: str, top_level: bool = True) -> set[str]:
    """The packages that ``source`` imports (top-level names, or full dotted names with ``top_level=False``)."""
    modules = set()
    for node in ast.walk(ast.parse(source)):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        modules.update(name.split(".")[0] if top_level else name for name in names)
    return modules


# --- Changing notebooks -----------------------------------------------------------------------------------------


def with_source(nb, wanted_grade_id: str, source: str):
    """A copy of ``nb`` in which the cell ``wanted_grade_id`` has ``source``."""
    nb = copy.deepcopy(nb)
    cell_by_grade_id(nb, wanted_grade_id).source = source
    return nb


def hidden_tests_only(nb):
    """A copy of ``nb`` in which every test cell keeps only its hidden tests."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if is_test_cell(cell):
            cell.source = hidden_block(cell.source)
    return nb


# --- Running notebooks ------------------------------------------------------------------------------------------


def execute(nb, cwd: Path, timeout: int = CELL_TIMEOUT):
    """Run (a copy of) ``nb`` the way the grader does, without its sandbox: the learner's cells in a fresh kernel,
    the course's setup and test cells in this process through the referee (``autograder.referee``); every locked
    cell of ``nb`` counts as the course's. Returns the executed copy; a cell that runs past ``timeout`` is interrupted
    and gets an error output named ``CellTimeoutError``."""
    from autograder.referee.runner import run_locally

    return run_locally(nb, cwd, cell_timeout=timeout, budget=10 * timeout)[0]


def error_of(cell) -> str | None:
    """``"ExceptionName: message"`` of the cell's first error output, or None if it ran cleanly."""
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return f"{output.get('ename')}: {output.get('evalue')}"
    return None


def stdout_of(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")


def scores(nb) -> dict[str, tuple[float, float]]:
    """grade_id -> (points earned, points possible) of each test cell, as nbgrader's autograder counts them."""
    log = logging.getLogger("notebook_helpers")
    return {grade_id(cell): determine_grade(cell, log) for cell in nb.cells if is_test_cell(cell)}
