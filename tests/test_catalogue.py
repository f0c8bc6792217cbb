"""The hidden tests against the catalogue of wrong implementations (autograder/catalogue/<chapter>.py).

For each wrong implementation: the instructor notebook with that solution cell replaced and every test cell cut down
to its hidden tests must FAIL the exercise's own test cell; the reference, with hidden tests only, passes them all.
So the hidden tests catch each catalogued mistake on their own, without help from the visible tests. And each
correct alternative (a right answer written differently) must PASS its whole test cell, visible and hidden tests.

Every case runs through the referee, as grading does: the learner's code in a kernel, the test cell in this process,
talking to it with plain values (``autograder.referee``). Speed: all the wrong implementations of a notebook run in
one kernel (the alternatives in another). Each case starts with ``%reset -f`` and re-runs the notebook's code up to
the exercise (setup and the reference answers before it; test cells skipped), so no case sees what another defined;
importing modules is paid once.
"""

import time
from dataclasses import dataclass

import nbformat
import pytest

from notebook_helpers import (
    CELL_TIMEOUT,
    TIMEOUT_ENAME,
    chapter_of,
    error_of,
    execute,
    grade_id,
    hidden_tests_only,
    is_solution_cell,
    is_test_cell,
    read,
    short,
    solution_notebooks,
)

from autograder import catalogue
from autograder.catalogue import CorrectAlternative, WrongImplementation
from autograder.course import chapters

MIN_WRONG_PER_EXERCISE = 3
CASES = [(chapter, entry) for chapter in chapters() for entry in catalogue.load(chapter)]
RIGHT = [(chapter, entry) for chapter in chapters() for entry in catalogue.load_alternatives(chapter)]


def _notebooks(chapter: str) -> list:
    return [path for path in solution_notebooks() if chapter_of(path) == chapter]


def _solution_ids(chapter: str) -> dict[str, object]:
    """grade_id of each solution cell in the chapter -> the notebook path that holds it."""
    return {grade_id(cell): path for path in _notebooks(chapter) for cell in read(path).cells if is_solution_cell(cell)}


# --- The catalogue itself (fast) --------------------------------------------------------------------------------


@pytest.mark.parametrize("chapter", chapters())
def test_every_exercise_has_wrong_implementations(chapter):
    counts = {gid: 0 for gid in _solution_ids(chapter)}
    for entry in catalogue.load(chapter):
        counts[entry.grade_id] = counts.get(entry.grade_id, 0) + 1
    few = {gid: n for gid, n in counts.items() if n < MIN_WRONG_PER_EXERCISE}
    assert not few, (
        f"autograder/catalogue/{chapter}.py needs at least {MIN_WRONG_PER_EXERCISE} wrong implementations per "
        f"exercise; these have fewer: {few}"
    )


@pytest.mark.parametrize("chapter", chapters())
def test_catalogue_entries_are_well_formed(chapter):
    entries = catalogue.load(chapter) + catalogue.load_alternatives(chapter)
    solution_ids = _solution_ids(chapter)
    names = [entry.name for entry in entries]
    assert len(names) == len(set(names)), f"names repeat: {sorted(n for n in names if names.count(n) > 1)}"
    for entry in entries:
        assert isinstance(entry, (WrongImplementation, CorrectAlternative))
        assert entry.grade_id in solution_ids, f"{entry.name}: no solution cell {entry.grade_id!r}"
        line = entry.why if isinstance(entry, WrongImplementation) else entry.how
        assert line.strip() and "\n" not in line, f"{entry.name}: `why`/`how` is one line"
        compile(entry.source, entry.name, "exec")  # a syntax error would "fail" the tests for the wrong reason
        reference = next(c.source for c in read(solution_ids[entry.grade_id]).cells if grade_id(c) == entry.grade_id)
        assert entry.source.strip() != reference.strip(), f"{entry.name} is the reference solution"


# --- Running them (slow) ----------------------------------------------------------------------------------------


@dataclass
class Outcome:
    wrong_error: str | None  # the wrong implementation's own cell (must be None: it has to define its functions)
    test_error: str | None  # the exercise's test cell, hidden tests only (must not be None)
    seconds: float  # how long that test cell ran


RESET = ("%reset -f\nfrom gptcourse.seed import set_seed as _set_seed\n_set_seed(0)\ndel _set_seed"
         "\nimport random as _random\n_random.seed(0)\ndel _random")


def _case_notebook(nb, entry: WrongImplementation | CorrectAlternative):
    """One case as a notebook of its own: reset, the code before the exercise, the wrong answer, code between, its
    test cell (other test cells left out). The cells keep their nbgrader metadata, so the referee gives each its
    role: the setup cells run in the kernel and the referee, the test cell in the referee only."""
    index = {grade_id(cell): i for i, cell in enumerate(nb.cells) if grade_id(cell)}
    start, end = index[entry.grade_id], index[entry.tests_grade_id]
    cells = [nbformat.v4.new_code_cell(RESET, metadata={"role": "reset"})]
    for i, cell in enumerate(nb.cells[: end + 1]):
        if cell.cell_type != "code" or (is_test_cell(cell) and i != end):
            continue
        cell = nbformat.from_dict(dict(cell))
        cell.metadata = {**cell.metadata, "role": "wrong" if i == start else "test" if i == end else "context"}
        if i == start:
            cell.source = entry.source
        cells.append(cell)
    return nbformat.v4.new_notebook(cells=cells, metadata=nb.metadata)


def run_catalogue(chapter: str, alternatives: bool = False) -> dict[str, Outcome]:
    """Run every wrong implementation of the chapter with hidden tests only (or, with ``alternatives``, every
    correct alternative with the whole test cells), through the referee as grading does; one kernel per notebook
    (each case starts with ``%reset -f``, so no case sees what another defined; imports are paid once)."""
    from autograder.referee.kernel import LearnerKernel, LocalKernelProcess
    from autograder.referee.runner import NotebookRun

    outcomes = {}
    for path in _notebooks(chapter):
        nb = read(path) if alternatives else hidden_tests_only(read(path))
        present = {grade_id(cell) for cell in nb.cells}
        everything = catalogue.load_alternatives(chapter) if alternatives else catalogue.load(chapter)
        entries = [e for e in everything if e.grade_id in present]
        if not entries:
            continue

        def new_kernel(seed_torch=True):
            return LearnerKernel(LocalKernelProcess(path.parent), seed_torch=seed_torch)

        kernel = new_kernel()
        kernel.start()
        start = time.perf_counter()
        try:
            for entry in entries:
                runner = NotebookRun(_case_notebook(nb, entry), new_kernel, cell_timeout=CELL_TIMEOUT,
                                     kernel=kernel)
                clock = time.perf_counter()
                done = runner.run()
                kernel = runner.kernel
                mine = {c.metadata.get("role"): c for c in done.cells}
                outcomes[entry.name] = Outcome(error_of(mine["wrong"]), error_of(mine["test"]),
                                               time.perf_counter() - clock)
        finally:
            kernel.shutdown()
        what = "correct alternatives" if alternatives else "wrong implementations"
        print(f"\n{short(path)}: {len(entries)} {what} in {time.perf_counter() - start:.1f} s")
    return outcomes


@pytest.fixture(scope="module")
def outcomes():
    cache: dict[tuple[str, bool], dict[str, Outcome]] = {}

    def get(chapter: str, alternatives: bool = False) -> dict[str, Outcome]:
        if (chapter, alternatives) not in cache:
            cache[(chapter, alternatives)] = run_catalogue(chapter, alternatives)
        return cache[(chapter, alternatives)]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("chapter,entry", CASES, ids=[f"{c}-{e.name}" for c, e in CASES])
def test_hidden_tests_reject_wrong_implementation(chapter, entry, outcomes):
    outcome = outcomes(chapter)[entry.name]
    assert outcome.wrong_error is None, f"{entry.name} does not even run, so it proves nothing: {outcome.wrong_error}"
    assert outcome.test_error is not None, (
        f"The hidden tests of {entry.tests_grade_id} accept the wrong implementation {entry.name!r} "
        f"({entry.why}). Add a hidden test that catches this mistake."
    )
    assert not outcome.test_error.startswith(TIMEOUT_ENAME), (
        f"{entry.name} was only stopped by the cell timeout; the hidden tests should reject it quickly"
    )


@pytest.mark.slow
@pytest.mark.parametrize("chapter,entry", RIGHT, ids=[f"{c}-{e.name}" for c, e in RIGHT])
def test_tests_accept_correct_alternative(chapter, entry, outcomes):
    outcome = outcomes(chapter, alternatives=True)[entry.name]
    assert outcome.wrong_error is None, f"{entry.name} does not run: {outcome.wrong_error}"
    assert outcome.test_error is None, (
        f"{entry.tests_grade_id} rejects the correct alternative {entry.name!r} ({entry.how}): "
        f"{outcome.test_error}. The tests demand more than the spec says."
    )


@pytest.mark.slow
@pytest.mark.parametrize("path", solution_notebooks(), ids=short)
def test_reference_passes_hidden_tests_alone(path):
    """The hidden blocks work without the visible tests above them, and the reference answers pass them."""
    done = execute(hidden_tests_only(read(path)), cwd=path.parent)
    errors = {cell.id: error_of(cell) for cell in done.cells if cell.cell_type == "code" and error_of(cell)}
    assert not errors, f"with hidden tests only, these cells fail for the reference solution: {errors}"
    assert any(is_test_cell(cell) for cell in done.cells)
