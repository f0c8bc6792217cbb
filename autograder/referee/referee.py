"""The referee: runs the course's trusted cells (setup and tests) in the grader's own process.

A test cell is compiled and executed here, in a namespace of the referee's own that holds what the setup cells and
earlier test cells defined. Every other name the cell uses is looked up in the learner's kernel through the link and
bound, for this cell only, to the learner's value or stand-in (``link.LearnerObject``). Names the course defines win
over the learner's: a learner who redefines a setup helper (or ``len``) changes nothing here. The cell's verdict is
whatever this process's own Python decides: an exception is a failure, nothing else is.

What a test cell shows (its outputs, for nbgrader and the feedback): what the learner's code printed while the test
called it, what the test printed, and, when it failed, the exception's kind and message. A traceback line is shown
only when it is a visible line of the test; from hidden tests, nothing but the message.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import symtable
import traceback
import types
from dataclasses import dataclass, field

from autograder.course import BEGIN_HIDDEN, END_HIDDEN
from autograder.referee import link as link_mod
from autograder.referee.kernel import TIMEOUT_ENAME, error_output, mark_stderr
BUILTIN_NAMES = frozenset(dir(builtins))


def hidden_line_numbers(source: str) -> set[int]:
    """1-based numbers of the lines inside hidden-test regions (markers included)."""
    hidden, inside = set(), False
    for number, line in enumerate(source.split("\n"), start=1):
        if BEGIN_HIDDEN in line:
            inside = True
        if inside:
            hidden.add(number)
        if END_HIDDEN in line:
            inside = False
    return hidden


def names_used(code: types.CodeType) -> set[str]:
    """Every name the code (and the functions and classes it defines) may read as a global: a superset, since
    attribute names are in it too; that is harmless, as only names the learner defines are bound."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= names_used(const)
    return names


def names_bound(source: str, label: str) -> set[str]:
    """Names the cell itself binds at its top level (assignments, imports, definitions): never the learner's."""
    table = symtable.symtable(source, label, "exec")
    return {s.get_name() for s in table.get_symbols() if s.is_assigned() or s.is_imported() or s.is_namespace()}


@dataclass
class TestOutcome:
    outputs: list = field(default_factory=list)  # nbformat outputs of the test cell
    error: dict | None = None                    # its error output, when it failed
    broken: link_mod.LinkBroken | None = None    # the kernel died or stopped answering during the test


class _Printed(io.TextIOBase):
    """Collects what trusted code prints, stdout and stderr apart, in order."""

    def __init__(self, name: str, sink: list):
        self.name, self.sink = name, sink

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if self.sink and self.sink[-1][0] == self.name:
            self.sink[-1][1].append(text)
        else:
            self.sink.append((self.name, [text]))
        return len(text)


def printed_outputs(sink: list) -> list[dict]:
    """What trusted code printed, as stream outputs (stderr marked, see ``kernel.marked_stderr``)."""
    return mark_stderr([{"output_type": "stream", "name": name, "text": "".join(parts)[:200_000]}
                        for name, parts in sink if "".join(parts)])


def seed(torch_too: bool) -> None:
    """The referee's generators as the kernel's start (a test that draws its inputs from the global generators
    gets the same ones every run); with torch, no TF32 either, so that a test's references on a GPU round like
    float32 on a CPU."""
    import random

    random.seed(0)
    if torch_too:
        from gptcourse.seed import exact_gpu_maths, set_seed

        set_seed(0)
        exact_gpu_maths()


class Referee:
    """The trusted side of one notebook run: its namespace, and how a setup or test cell runs in it."""

    def __init__(self, seed_torch: bool = False):
        self.namespace: dict = {"__name__": "__main__", "__builtins__": builtins}
        self.learner_errors: list[str] = []  # "cell 4 (ex1): SyntaxError: ..." for each learner cell that failed
        seed(seed_torch)

    def run_setup(self, source: str, label: str) -> None:
        """A setup cell (the course's): runs here as well as in the kernel. Raises whatever it raises."""
        sink: list = []
        with contextlib.redirect_stdout(_Printed("stdout", sink)), contextlib.redirect_stderr(_Printed("stderr", sink)):
            exec(compile(source, f"<setup cell {label}>", "exec"), self.namespace)

    def run_test(self, source: str, label: str, kernel, timeout: float) -> TestOutcome:
        """Run the test cell ``source`` here, against the learner's code in ``kernel``, for at most ``timeout`` s."""
        import time

        filename = f"<test cell {label}>"
        code = compile(source, filename, "exec")
        wanted = (names_used(code) - names_bound(source, filename) - BUILTIN_NAMES
                  - {n for n in names_used(code) if n.startswith("__")})
        sink: list = []
        error, broken, bound = None, None, {}
        try:
            link = kernel.begin_session(time.monotonic() + timeout)
            link_mod.LearnerSide.link = link
            try:
                with contextlib.redirect_stdout(_Printed("stdout", sink)), \
                        contextlib.redirect_stderr(_Printed("stderr", sink)):
                    missing = sorted(n for n in wanted if n not in self.namespace)
                    bound = link.lookup(missing) if missing else {}
                    self.namespace.update(bound)
                    try:
                        exec(code, self.namespace)
                    finally:
                        for name, value in bound.items():
                            if self.namespace.get(name) is value:
                                del self.namespace[name]
            except link_mod.LinkBroken:
                raise
            except link_mod.CellTimeout:
                error = error_output(TIMEOUT_ENAME, f"the cell ran for more than {timeout:g} s and was interrupted")
            except Exception as exc:  # noqa: BLE001 - a failing test is any exception
                error = self.error_output(exc, source, filename)
            finally:
                link_mod.LearnerSide.link = None
            learner_printed = kernel.end_session()
        except link_mod.LinkBroken as exc:
            broken = exc
            learner_printed = kernel.session_outputs()
        outputs = learner_printed + printed_outputs(sink) + ([error] if error else [])
        return TestOutcome(outputs, error, broken)

    def error_output(self, exc: BaseException, source: str, filename: str) -> dict:
        """The test's failure as the learner may see it: kind and message, and the failing line if it is visible."""
        ename = type(exc).__name__
        try:
            evalue = str(exc)
        except Exception:  # noqa: BLE001
            evalue = "(the message could not be shown)"
        if isinstance(exc, NameError) and not isinstance(exc, link_mod.LearnerError) and self.learner_errors:
            evalue += ("; it should come from your notebook, where these cells failed: "
                       + "; ".join(self.learner_errors[:3]))
        hidden = hidden_line_numbers(source)
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == filename]
        lines = source.split("\n")
        shown = [f"{ename}: {evalue}"]
        if frames and frames[-1].lineno not in hidden and 0 < (frames[-1].lineno or 0) <= len(lines):
            shown.insert(0, f"in the test, line {frames[-1].lineno}: {lines[frames[-1].lineno - 1].strip()}")
        return error_output(ename, evalue, shown)
