"""Run a whole notebook the referee's way: the learner's cells in the kernel, the course's cells in the referee.

Each code cell gets a role:

* ``setup``: a locked cell of the course that is not a test (imports, helpers): runs in the kernel, for the learner's
  code, and in the referee, for the tests;
* ``test``: a test cell of the course: runs in the referee only (``referee.Referee.run_test``);
* ``learner``: everything else (solutions, the learner's own cells): runs in the kernel only.

A cell is the course's only if its grade_id is in ``trusted`` with exactly that source (the grader takes them from
nbgrader's gradebook, after nbgrader restored edited or deleted cells); a graded cell that is not is not run.

Budgets: each cell has ``cell_timeout`` seconds; the whole notebook has ``budget`` seconds, counted once whatever
happens, restarts included. When the budget runs out, the cell running is interrupted and the cells not reached say
so. When the learner's code kills the kernel or ignores an interrupt, that cell is marked (``CellKilledByGrader``), a
new kernel starts, the learner's cells before it run again (their outputs are kept from the first run; tests already
decided are not run again), and the notebook goes on after it. A kernel that does not start is the grader's
problem: it is retried, then ``KernelStartError`` goes to the caller.
"""

from __future__ import annotations

import copy
import re
import time
from dataclasses import dataclass, field

import nbformat

from autograder.referee.kernel import (KernelStartError, LearnerKernel, LocalKernelProcess, error_output,
                                       uses_torch)
from autograder.referee.referee import Referee

KILLED_ENAME = "CellKilledByGrader"
NOT_RUN_ENAME = "CellNotRun"
KILLED_MESSAGES = {
    "kernel": "this cell crashed the Python kernel (os._exit, a segfault, or an abort in a library)",
    "stuck": "this cell ran past its time limit and did not stop when interrupted",
    "protocol": "during this cell the learner's kernel stopped answering the grader as it should",
    "memory": "this cell used more memory than the grader allows",
}
SKIPPED_NOTE = "; it was skipped so that the rest of the notebook could be graded"
START_ATTEMPTS = 3
START_BACKOFF_S = (2, 5)


def nbgrader_meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def roles(nb, trusted: dict[str, str] | None) -> list[str]:
    """The role of each cell (``setup``, ``test``, ``learner``, ``untrusted`` or ``text``); see the module."""
    out = []
    for cell in nb.cells:
        meta = nbgrader_meta(cell)
        if cell.get("cell_type") != "code":
            out.append("text")
            continue
        grade_id = meta.get("grade_id")
        ours = grade_id is not None and (trusted is None or trusted.get(grade_id) == cell.source)
        if meta.get("grade") and not meta.get("solution"):
            out.append("test" if ours else "untrusted")
        elif meta.get("locked") and not meta.get("solution") and ours:
            out.append("setup")
        else:
            out.append("learner")
    return out


def error_line(error: dict) -> str:
    """``Kind: message`` of an error output, on one line; a syntax error says where in the cell it is."""
    ename, evalue = str(error.get("ename", "Error")), str(error.get("evalue", "")).strip()
    if ename in ("SyntaxError", "IndentationError", "TabError"):
        evalue = re.sub(r"\s*\((?:[^()]*\.py|<[^>]*>), line (\d+)\)$", r" (line \1 of the cell)", evalue)
    first = evalue.splitlines()[0][:200] if evalue else ""
    return f"{ename}: {first}" if first else ename


@dataclass
class RunReport:
    """What happened besides the outputs: for the worker's result and problems."""

    killed: dict[int, str] = field(default_factory=dict)     # cell index -> reason (see KILLED_MESSAGES)
    timeouts: list[int] = field(default_factory=list)        # cells interrupted at their time limit
    not_reached: list[int] = field(default_factory=list)     # cells the budget did not reach
    learner_errors: list[str] = field(default_factory=list)  # learner cells that failed, one line each
    syntax_errors: dict[int, str] = field(default_factory=dict)  # learner cells that did not even parse -> the error
    restarts: list[str] = field(default_factory=list)        # why each new kernel was started
    last_words: dict[int, str] = field(default_factory=dict) # what a kernel that died wrote last, per cell
    isolation: dict = field(default_factory=dict)
    seconds: float = 0.0


class NotebookRun:
    """Run ``nb`` (a copy is executed; ``run()`` returns it) with kernels from ``new_kernel(seed_torch)``: the
    kernel and the referee both start seeded (torch too where the notebook uses it), the same way every run.

    ``kernel``: an already started kernel to run in, and to leave running (the catalogue's tests run many short
    notebooks in one); if it dies, ``self.kernel`` is the one that replaced it."""

    def __init__(self, nb, new_kernel, trusted: dict[str, str] | None = None, cell_timeout: float = 600,
                 budget: float | None = None, max_restarts: int = 4, log=None, kernel: LearnerKernel | None = None):
        self.nb = copy.deepcopy(nb)
        self.new_kernel = new_kernel
        self.roles = roles(self.nb, trusted)
        self.seed_torch = uses_torch(cell.get("source", "") for cell in self.nb.cells)
        self.cell_timeout = cell_timeout
        self.budget = budget if budget is not None else 3 * cell_timeout + 60
        self.max_restarts = max_restarts
        self.log = log or (lambda message: None)
        self.report = RunReport()
        self.referee = Referee(self.seed_torch)
        self.kernel: LearnerKernel | None = kernel  # a started kernel to use (and leave running) instead of a new one
        self.keep_kernel = kernel is not None
        self.end = 0.0

    # --- the loop -----------------------------------------------------------------------------------------------

    def run(self):
        start = time.monotonic()
        self.end = start + self.budget
        try:
            self.kernel = self.kernel or self.start_kernel()
            self.report.isolation = dict(self.kernel.process.isolation)
            index = 0
            while index < len(self.nb.cells):
                role = self.roles[index]
                if role != "text":
                    if self.left() <= 0:
                        self.not_reached(index)
                    else:
                        self.run_cell(index, role)
                index += 1
        finally:
            if self.kernel is not None and not self.keep_kernel:
                self.kernel.shutdown()
            self.report.seconds = time.monotonic() - start
        for cell in self.nb.cells:  # nbformat's own nodes, as nbgrader expects them
            if cell.get("cell_type") == "code":
                cell.outputs = [nbformat.from_dict(o) for o in cell.get("outputs", [])]
        return self.nb

    def left(self) -> float:
        return self.end - time.monotonic()

    def run_cell(self, index: int, role: str) -> None:
        cell = self.nb.cells[index]
        label = nbgrader_meta(cell).get("grade_id") or f"cell {index + 1}"
        timeout = min(self.cell_timeout, self.left())
        if role == "untrusted":
            cell.outputs = [error_output(NOT_RUN_ENAME, "this graded cell is not one of the course's cells")]
            return
        if role == "test":
            outcome = self.referee.run_test(cell.source, label, self.kernel, timeout)
            cell.outputs = outcome.outputs
            if outcome.broken is not None:
                self.killed(index, outcome.broken.reason)
            elif outcome.error is not None and outcome.error["ename"] == "CellTimeoutError":
                self.timed_out(index, timeout)
            return
        run = self.kernel.run_cell(cell.source, timeout)
        cell.outputs, cell.execution_count = run.outputs, run.execution_count
        if run.status in ("stuck", "died"):
            self.killed(index, "stuck" if run.status == "stuck" else "kernel")
            return
        if run.status == "timeout":
            self.timed_out(index, timeout)
        elif run.status == "error":
            self.report.learner_errors.append(f"cell {index + 1} ({label}): {error_line(run.error)}")
            if run.error["ename"] in ("SyntaxError", "IndentationError", "TabError"):
                self.report.syntax_errors[index] = error_line(run.error)
            self.referee.learner_errors = self.report.learner_errors
        if role == "setup":
            self.run_setup_in_referee(cell.source, label)

    def run_setup_in_referee(self, source: str, label: str) -> None:
        try:
            self.referee.run_setup(source, label)
        except Exception as exc:  # noqa: BLE001 - the course's own cell fails: the grader's problem
            raise KernelStartError(f"the course's setup cell {label} fails in the grader: "
                                   f"{type(exc).__name__}: {exc}") from exc

    def timed_out(self, index: int, timeout: float) -> None:
        self.report.timeouts.append(index)
        if timeout < self.cell_timeout:  # the budget, not the cell's own limit, cut it short
            cell = self.nb.cells[index]
            message = (f"the submission's time budget ({self.budget:g} s) ran out during this cell and it was "
                       "interrupted")
            cell.outputs = [o for o in cell.outputs if o.get("output_type") != "error"] + [
                error_output("CellTimeoutError", message)]

    def not_reached(self, index: int) -> None:
        self.report.not_reached.append(index)
        self.nb.cells[index].outputs = [error_output(
            NOT_RUN_ENAME, f"not run: the submission's time budget ({self.budget:g} s) was used up by earlier cells")]

    # --- crashes --------------------------------------------------------------------------------------------------

    def killed(self, index: int, reason: str) -> None:
        """The kernel is gone (or unusable) after cell ``index``: mark it, start another, replay what came before."""
        words = self.kernel.process.last_words()
        if words.strip():
            self.report.last_words[index] = "\n".join(words.strip().splitlines()[-3:])
        from autograder.sandbox import MEMORY_ERROR  # here: the sandbox is for Linux, the self-check runs anywhere

        if reason == "kernel" and MEMORY_ERROR.search(words):
            reason = "memory"
        self.report.killed[index] = reason
        message = KILLED_MESSAGES.get(reason, KILLED_MESSAGES["protocol"])
        cell = self.nb.cells[index]
        cell.outputs = [o for o in cell.outputs if o.get("output_type") != "error"] + [
            error_output(KILLED_ENAME, message, [f"{KILLED_ENAME}: {message}{SKIPPED_NOTE}."])]
        self.log(f"cell {index + 1}: {reason}; starting a new kernel")
        self.kernel.shutdown()
        self.kernel = None
        if len(self.report.restarts) >= self.max_restarts:
            for later in range(index + 1, len(self.nb.cells)):
                if self.roles[later] not in ("text",):
                    self.nb.cells[later].outputs = [error_output(
                        NOT_RUN_ENAME, f"not run: the learner's code ended the kernel {len(self.report.restarts) + 1} "
                                       "times, which is as often as the grader restarts it")]
            self.roles[index + 1:] = ["text"] * (len(self.roles) - index - 1)
            return
        self.report.restarts.append(reason)
        self.kernel = self.start_kernel()
        self.replay(index)

    def replay(self, upto: int) -> None:
        """Run the kernel's cells before ``upto`` again in the new kernel (outputs dropped: the first run's stay)."""
        for index in range(upto):
            role = self.roles[index]
            if role not in ("learner", "setup") or index in self.report.killed:
                continue
            if self.left() <= 0:
                return
            run = self.kernel.run_cell(self.nb.cells[index].source, min(self.cell_timeout, self.left()))
            if run.status in ("stuck", "died"):  # it did not do that the first time: mark it, start again
                self.killed(index, "stuck" if run.status == "stuck" else "kernel")
                return

    def start_kernel(self) -> LearnerKernel:
        """A started kernel; a start that fails is retried (a busy machine), then KernelStartError is raised."""
        problems = []
        for attempt in range(START_ATTEMPTS):
            kernel = self.new_kernel(self.seed_torch)
            try:
                kernel.start()
                return kernel
            except KernelStartError as exc:
                problems.append(str(exc))
                self.log(f"kernel start failed ({exc}); attempt {attempt + 1} of {START_ATTEMPTS}")
                if attempt < len(START_BACKOFF_S):
                    time.sleep(START_BACKOFF_S[attempt])
        raise KernelStartError(f"the learner's kernel did not start ({START_ATTEMPTS} attempts): {problems[-1]}")


def run_locally(nb, folder, trusted: dict[str, str] | None = None, cell_timeout: float = 600,
                budget: float | None = None):
    """Run ``nb`` in an ordinary kernel started in ``folder`` (the self-check and the course's tests: no sandbox);
    (the executed copy, its report)."""
    runner = NotebookRun(nb, lambda seed_torch: LearnerKernel(LocalKernelProcess(folder), seed_torch=seed_torch),
                         trusted, cell_timeout=cell_timeout, budget=budget)
    return runner.run(), runner.report
