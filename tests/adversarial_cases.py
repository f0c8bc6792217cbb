"""Adversarial and broken submissions of the toy assignment, each with the outcome the grader must produce.

Used by ``tests/test_adversarial.py``, which grades every case in ONE run (``autograder.grade --jobs 2 --timeout 5``)
and checks each outcome. A case is a builder, registered with ``@case(probe, expect)``:

* the builder gets a ``Toy`` (the toy release and solution, and the paths of the run, which an attacker is assumed
  to know) and returns what the student submits: a notebook (written as ``toy.ipynb``), or a dict
  ``{file name: notebook or raw text}`` for the chapter folder (``{}``: an empty folder);
* ``expect`` says what a correct grader does with it (see ``EXPECT_KEYS``); scores are exact, from the toy's points
  (test_double 2, test_mean 3);
* ``hole``: the grader does NOT do that today. The case's test is then ``xfail(strict=True)`` with this text as the
  reason, so the suite stays green, documents the hole, and fails the day the hole is closed (update it then).
  ``hole_when="root_fallback"``: only when learner code runs as the grader's own user (root with no capabilities:
  see ``autograder.grade.learner_uid_works``), not when it runs as a uid of its own.

Learner code that probes something (secrets, network, files outside the sandbox) turns what it achieved into a wrong
return value: the score proves what it could or could not do, and its printed output (in the autograded notebook)
says what it found.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import socket
import textwrap
import uuid
from pathlib import Path
from typing import Callable

import nbformat

from grading_support import fill, meta, set_source

DOUBLE, MEAN = 2.0, 3.0  # points of test_double and test_mean (the test checks them against the notebook)
FULL = DOUBLE + MEAN
CHAPTER, NOTEBOOK = "toy", "toy.ipynb"

#: Unique in this session: the fork bomb's children run ``sleep FORK_MARKER``; afterwards none may be left.
FORK_MARKER = f"{86_400 + uuid.uuid4().int % 900_000}.{os.getpid()}"
#: How learner code recognises the toy's hidden tests, built at run time so that its own source never matches.
SECRET_MARKERS_CODE = '("hidden_" + "mean_values", "hidden_" + "double_cases")'

WRONG_DOUBLE = "def double(x):\n    return 3 * x"
WRONG_MEAN = "def mean(xs):\n    return 0.0"


def guarded(grade_id: str, failed_if: str) -> str:
    """The reference function ``grade_id``, but wrong (-1) when ``failed_if`` is true: the score proves it false."""
    body = {"double": "    return 2 * x",
            "mean": "    if not xs:\n        warnings.warn(\"mean of an empty list: returning 0.0\", stacklevel=2)\n"
                    "        return 0.0\n    return sum(xs) / len(xs)"}[grade_id]
    arg = "x" if grade_id == "double" else "xs"
    return f"def {grade_id}({arg}):\n    if {failed_if}:\n        return -1\n{body}"


@dataclasses.dataclass
class Toy:
    """What builders work from: the toy notebooks, and the run's paths (an attacker may know or guess them all)."""

    release: nbformat.NotebookNode
    solution: nbformat.NotebookNode
    sources: dict[str, str]  # solution grade_id -> reference source
    workspace: Path
    submissions: Path
    solutions: Path          # the toy's solutions folder (under tests/, which the sandbox hides)
    temp_dir: str            # where the grader's workers make their throwaway folders
    canary: Path             # a file of the grading host's user, mode 0600, in a folder of mode 0700
    canary_text: str
    listener: socket.socket  # listening on the host's loopback: no learner may connect to it

    def answer(self, **sources: str) -> nbformat.NotebookNode:
        """The release with every solution cell filled: the reference code, except the cells given here."""
        return fill(self.release, {**self.sources, **sources})


@dataclasses.dataclass
class Outcome:
    """What the grading run produced for one student (filled in by the test)."""

    student: str
    result: dict | None   # results/<student>/toy.json
    row: dict | None      # grades.csv row
    problems: list[dict]  # problems.csv rows of this student
    workspace: Path
    toy: Toy

    def test(self, name: str) -> dict:
        return next(t for t in self.result["tests"] if t["name"] == name)

    def feedback(self) -> str:
        return (self.workspace / "feedback" / self.student / CHAPTER / "toy.html").read_text(encoding="utf-8")

    def autograded(self) -> nbformat.NotebookNode:
        return nbformat.read(self.workspace / "autograded" / self.student / CHAPTER / NOTEBOOK, as_version=4)

    def printed(self, grade_id: str) -> str:
        """What the cell ``grade_id`` printed when graded (the learner's own diagnostics)."""
        cell = next(c for c in self.autograded().cells if meta(c).get("grade_id") == grade_id)
        return "".join(str(o.get("text", "")) for o in cell.get("outputs", []))


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    probe: str
    build: Callable[[Toy], object]
    expect: dict
    hole: str | None = None
    hole_when: str = "always"  # or "root_fallback"
    needs_isolation: bool = False  # meaningful only where the sandbox has its namespaces (root)

    def files(self, toy: Toy) -> dict[str, object]:
        built = self.build(toy)
        return {NOTEBOOK: built} if isinstance(built, nbformat.NotebookNode) else built


#: What ``expect`` may say. status: the result's status. score: exact points (None: not graded). passed/failed:
#: test cells. remarks/problems: substrings, one per remark of the result / row of problems.csv for this student (the
#: count must match too: nothing unexpected is reported). blocking: whether a problem says "not graded".
#: output: test -> substring of its learner-facing error. check: extra assertions on the Outcome.
EXPECT_KEYS = {"status", "score", "passed", "failed", "remarks", "problems", "blocking", "output", "check"}

CASES: list[Case] = []


def case(probe: str, hole: str | None = None, hole_when: str = "always", needs_isolation: bool = False, **expect):
    assert set(expect) <= EXPECT_KEYS, set(expect) - EXPECT_KEYS

    def register(build):
        CASES.append(Case(build.__name__, probe, build, expect, hole, hole_when, needs_isolation))
        return build

    return register


def code(text: str) -> str:
    return textwrap.dedent(text).strip("\n")


def duplicate(nb, grade_id: str, source: str | None = None):
    """A copy of ``nb`` where the cell ``grade_id`` appears twice (Jupyter's "duplicate cell": metadata included);
    the copy, right after the original, gets ``source`` if given."""
    nb = copy.deepcopy(nb)
    index = next(i for i, c in enumerate(nb.cells) if meta(c).get("grade_id") == grade_id)
    twin = copy.deepcopy(nb.cells[index])
    if "id" in twin:
        twin.id = uuid.uuid4().hex[:8]
    if source is not None:
        twin.source = source
    nb.cells.insert(index + 1, twin)
    return nb


# --------------------------------------------------------------------------------------------------------------------
# Ordinary submissions
# --------------------------------------------------------------------------------------------------------------------


@case("the reference answer: full marks, nothing reported", score=FULL, passed=["test_double", "test_mean"])
def correct(toy):
    return toy.answer()


@case("mean passes the visible tests but fails the hidden ones", score=DOUBLE, failed=["test_mean"],
      output={"test_mean": "mean of an uneven list is wrong"})
def partial(toy):
    return toy.answer(mean="def mean(xs):\n    return (xs[0] + xs[-1]) / 2 if xs else 0.0")


@case("the untouched release: NotImplementedError everywhere", score=0.0, failed=["test_double", "test_mean"],
      output={"test_double": "NotImplementedError"})
def stub(toy):
    return toy.release


@case("correct code that warns and writes to stderr while the tests run", score=FULL,
      check=lambda o: ("[stderr]" in o.printed("test_double") and "careful" in o.printed("test_double")))
def warnings_stderr(toy):
    return toy.answer(double=code("""
        import sys, warnings
        def double(x):
            warnings.warn("careful: doubling", UserWarning)
            print("debug: doubling", x, file=sys.stderr)
            return 2 * x
    """))


# --------------------------------------------------------------------------------------------------------------------
# Notebooks that are changed, broken, misnamed or missing
# --------------------------------------------------------------------------------------------------------------------


@case("a deleted test cell is restored from the gradebook and graded", score=FULL,
      passed=["test_double", "test_mean"])
def deleted_test(toy):
    nb = toy.answer()
    nb.cells = [c for c in nb.cells if meta(c).get("grade_id") != "test_mean"]
    return nb


@case("a test cell replaced by `assert True` is graded with the original test", score=MEAN, failed=["test_double"],
      output={"test_double": "double(2) should be 4"})
def edited_test(toy):
    return set_source(toy.answer(double=WRONG_DOUBLE), "test_double", "assert True  # I made the test pass")


DUPLICATE_HOLE = ("a duplicated nbgrader cell (Jupyter's 'duplicate cell' copies the metadata) makes the whole "
                  "submission 'autograde failed: KeyError: grade_id': nbgrader's DeduplicateIds empties the copy's "
                  "metadata.nbgrader, then OverwriteCells.add_missing_task_cells (add_missing_cells=True in "
                  "autograder/course.py) indexes ['grade_id'] of every cell that has an nbgrader key")


@case("the solution cell duplicated, the copy (run last) corrected: graded as it runs", score=FULL,
      passed=["test_double", "test_mean"], hole=DUPLICATE_HOLE)
def duplicated_solution(toy):
    return duplicate(toy.answer(double=WRONG_DOUBLE), "double", toy.sources["double"])


@case("a test cell duplicated: graded once, with its points (not twice)", score=DOUBLE, failed=["test_mean"],
      hole=DUPLICATE_HOLE)
def duplicated_test(toy):
    return duplicate(toy.answer(mean=WRONG_MEAN), "test_mean")


@case("the notebook renamed (a browser's download copy): not graded, the expected name given", status="wrong name",
      score=None, blocking=True, problems=["wrong notebook name 'toy (1).ipynb' (expected: toy.ipynb)"])
def renamed(toy):
    return {"toy (1).ipynb": toy.answer()}


@case("an empty chapter folder: not graded, reported", status="missing", score=None, blocking=True,
      problems=["no notebook in the chapter folder (expected: toy.ipynb)"])
def missing(toy):
    return {}


@case("a truncated notebook file: not graded, reported", status="malformed", score=None, blocking=True,
      problems=["malformed notebook: the file is not valid notebook JSON"])
def malformed(toy):
    return {NOTEBOOK: '{"cells": [{"cell_type": "code", "sour'}


@case("the notebook saved in the old nbformat 3: converted and graded", score=FULL,
      passed=["test_double", "test_mean"], check=lambda o: o.autograded().nbformat == 4)
def nbformat3(toy):
    return {NOTEBOOK: nbformat.writes(nbformat.convert(toy.answer(), 3))}


# --------------------------------------------------------------------------------------------------------------------
# Code that hangs, crashes, or exhausts a resource: only its own cell's tests lose their points
# --------------------------------------------------------------------------------------------------------------------


@case("`while True: pass` in double: the cell timeout interrupts it, test_mean keeps its points", score=MEAN,
      failed=["test_double"], output={"test_double": "CellTimeoutError"},
      remarks=["timeout in toy.ipynb cell 5 (test_double)"], problems=["cell 5 (test_double): the cell ran for more"])
def infinite_loop(toy):
    return toy.answer(double="def double(x):\n    while True:\n        pass")


@case("a loop that ignores SIGINT (the interrupt): its cell times out, later cells still get their points",
      score=MEAN, failed=["test_double"], remarks=["timeout in toy.ipynb cell 5 (test_double)"],
      problems=["cell 5 (test_double)"],
      hole="a cell that ignores the interrupt (signal.signal(SIGINT, SIG_IGN); while True) keeps the kernel busy: "
           "nbclient records the timeout and sends the next cells to the still-busy kernel, so EVERY later cell "
           "times out too and their tests score 0 (the worker restarts nothing: the sandbox did not die)")
def loop_ignoring_interrupt(toy):
    return toy.answer(double=code("""
        import signal
        def double(x):
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            while True:
                pass
    """))


@case("os._exit(1) inside mean, called by test_mean: that cell is neutralised, the rest graded", score=DOUBLE,
      failed=["test_mean"], output={"test_mean": "CellKilledByGrader"},
      remarks=["kernel crash in toy.ipynb cell 8 (test_mean)"], problems=["cell 8 (test_mean): this cell crashed"])
def crash_exit(toy):
    return toy.answer(mean="import os\n\ndef mean(xs):\n    os._exit(1)")


@case("a segfault (ctypes.string_at(0)) at the top of the double cell: neutralised, test_mean keeps its points",
      score=MEAN, failed=["test_double"], output={"test_double": "NameError"},
      remarks=["kernel crash in toy.ipynb cell 4 (double)"], problems=["cell 4 (double): this cell crashed"])
def crash_segfault(toy):
    return toy.answer(double="import ctypes\nctypes.string_at(0)\n\n" + toy.sources["double"])


@case("double allocates 100 GB: MemoryError in test_double only, the kernel and test_mean survive", score=MEAN,
      failed=["test_double"], output={"test_double": "MemoryError"})
def memory_huge_allocation(toy):
    return toy.answer(double="def double(x):\n    hog = bytearray(10**11)\n    return 2 * x")


@case("mean grows a list until memory runs out: MemoryError in test_mean only", score=DOUBLE, failed=["test_mean"],
      output={"test_mean": "MemoryError"})
def memory_growing_list(toy):
    return toy.answer(mean=code("""
        def mean(xs):
            hog = []
            while True:
                hog.append(bytes(10**8))  # zeroed pages are mapped lazily: fast, and the address space still grows
    """))


def no_fork_bomb_left(outcome: Outcome) -> bool:
    left = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and FORK_MARKER.encode() in (entry / "cmdline").read_bytes():
                left.append(entry.name)
        except OSError:
            pass
    assert not left, f"fork-bomb processes (sleep {FORK_MARKER}) still alive after grading: {left}"
    return True


@case("200 forked children (half leave the process group with setsid) that sleep: contained, none left after",
      score=FULL, check=no_fork_bomb_left)
def fork_bomb(toy):
    return toy.answer(double=code(f"""
        import os
        children = 0
        for i in range(200):
            try:
                pid = os.fork()
            except OSError:
                break
            if pid == 0:
                try:
                    if i % 2:
                        os.setsid()
                    os.execvp("sleep", ["sleep", "{FORK_MARKER}"])
                finally:
                    os._exit(0)
            children += 1
        print("children:", children)

        def double(x):
            return 2 * x if children >= 100 else -1  # full marks prove that the bomb went off
    """))


@case("50 MB printed by a solution cell: capped, graded, small feedback", score=FULL,
      check=lambda o: (len(o.feedback()) < 2 * 2**20 and "output cut by the grader" in o.feedback()
                       and (o.workspace / "results" / o.student / "toy.json").stat().st_size < 100_000))
def huge_output(toy):
    return toy.answer(double="for _ in range(50):\n    print('x' * 2**20)\n\n" + toy.sources["double"])


@case("kill -9 of the grader's executor (the kernel's parent): the grading survives", score=FULL,
      needs_isolation=True)
def kill_executor(toy):
    return toy.answer(mean="import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n\n" + toy.sources["mean"])


# --------------------------------------------------------------------------------------------------------------------
# Looking for secrets, writing where it must not, the network
# --------------------------------------------------------------------------------------------------------------------

SNOOP_FILES = """
import glob, os
from pathlib import Path
import gptcourse

MARKERS = {markers}
found, tried = [], 0

def look(path):
    global tried
    tried += 1
    try:
        with open(path, "rb") as fh:
            data = fh.read(20_000_000)
    except Exception:
        return
    if any(m.encode() in data for m in MARKERS):
        found.append(str(path))

def walk(top, limit=20_000):
    for n, (root, dirs, files) in enumerate(os.walk(top)):
        dirs[:] = [d for d in dirs if d != ".venv"]
        for name in files:
            look(os.path.join(root, name))
        if n > limit:
            return

repo = Path(gptcourse.__file__).resolve().parent.parent  # the course repository, read-only
workspace = Path({workspace!r})
for top in [repo, workspace, {submissions!r}, {solutions!r}, os.path.expanduser("~"), os.getcwd(), "/dev/shm"]:
    walk(top)
for path in [*glob.glob(str(repo / "**" / "solutions" / "**" / "*.ipynb"), recursive=True),
             repo / "tests" / "fixtures" / "toy_course" / "solutions" / "toy" / "toy.ipynb",
             workspace / "prepared" / "gradebook.db", workspace / "gradebook.db"]:
    look(path)
here = Path.cwd()
for folder in [here, *here.parents]:  # walk up, reading the files of each folder
    for entry in folder.iterdir():
        if entry.is_file():
            look(entry)
for pid in [p for p in os.listdir("/proc") if p.isdigit()]:  # the grader's executor is pid 1 here
    look(f"/proc/{{pid}}/cmdline")
    look(f"/proc/{{pid}}/environ")
    for fd in glob.glob(f"/proc/{{pid}}/fd/*"):
        if os.path.isfile(fd):  # regular files only: a pipe would block
            look(fd)
    walk(f"/proc/{{pid}}/cwd", limit=50)
for value in os.environ.values():
    if os.path.isdir(value):
        walk(value, limit=50)
print("tried", tried, "found", found)
"""


@case("solution code hunts for the hidden tests: repo via gptcourse.__file__, workspace, submissions, gradebooks, "
      "cwd and its parents, /proc/*/cwd|fd|environ, $HOME: finds nothing", score=FULL, needs_isolation=True)
def snoop_files(toy):
    return toy.answer(mean=SNOOP_FILES.format(markers=SECRET_MARKERS_CODE, workspace=str(toy.workspace),
                                              submissions=str(toy.submissions), solutions=str(toy.solutions))
                      + "\n" + guarded("mean", "found"))


@case("solution code reads the memory of its parent (the grader's executor, /proc/1/mem) for the hidden tests",
      score=FULL, needs_isolation=True,
      hole="the kernel runs as the same uid as autograder.execute, its parent, which holds the whole notebook, "
           "hidden tests included, in memory: /proc/<ppid>/mem is readable (no Yama, same uid, both dumpable), so "
           "learner code reads the hidden tests before they run")
def snoop_memory(toy):
    return toy.answer(double=code(f"""
        import os
        MARKERS = {SECRET_MARKERS_CODE}
        found = []
        for pid in [p for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]:
            try:
                maps = open(f"/proc/{{pid}}/maps").read().splitlines()
                mem = open(f"/proc/{{pid}}/mem", "rb", 0)
            except OSError as exc:
                print(pid, type(exc).__name__)
                continue
            for line in maps:
                span, perms = line.split()[:2]
                start, end = (int(x, 16) for x in span.split("-"))
                if "r" not in perms or end - start > 2**28:
                    continue
                try:
                    mem.seek(start)
                    data = mem.read(end - start)
                except (OSError, OverflowError, ValueError):
                    continue
                if any(m.encode() in data for m in MARKERS):
                    found.append(pid)
                    break
        print("found hidden tests in the memory of pid", found)
    """) + "\n\n" + guarded("double", "found"))


@case("solution code polls the other worker's throwaway folders (/tmp/gptcourse-grade-*: its gradebook has the "
      "hidden tests; gptcourse-run-*) while --jobs 2 grades someone else: finds nothing", score=FULL,
      needs_isolation=True, hole_when="root_fallback",
      hole="learner code that runs as the grader's own user (root without capabilities, the fallback when the "
           "Python is not readable by another uid) passes the owner check on every root-owned file: it reads the "
           "OTHER workers' course folders in /tmp (gradebook.db with the hidden tests, other learners' notebooks) "
           "and could rewrite their gradebook; only the paths of its own job are hidden")
def snoop_workers(toy):
    return toy.answer(mean=code(f"""
        import glob, os, time
        MARKERS = {SECRET_MARKERS_CODE}
        found = set()
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and not found:
            for path in glob.glob({toy.temp_dir!r} + "/gptcourse-*/**", recursive=True):
                try:
                    with open(path, "rb") as fh:
                        if any(m.encode() in fh.read() for m in MARKERS):
                            found.add(path)
                except OSError:
                    pass
            time.sleep(0.1)
        print("found:", sorted(found))
    """) + "\n\n" + guarded("mean", "found"))


@case("solution code overwrites its result JSON, the gradebooks, grades.csv and its own submission (exact paths): "
      "nothing changes, the result is the grader's", score=FULL, needs_isolation=True,
      check=lambda o: (o.result["tests"] and sum(t["score"] for t in o.result["tests"]) == o.result["score"]
                       and sorted(p.name for p in (o.workspace / "results" / o.student).iterdir()) == ["toy.json"]
                       and not (o.workspace / "pwned.txt").exists()))
def write_results(toy):
    me = "write_results"  # the student is named after the case
    fake = '{"status": "graded", "score": 100, "max_score": 5}'
    return toy.answer(double=code(f"""
        import os, sqlite3
        done = []
        for path, text in [({str(toy.workspace / "results" / me / "toy.json")!r}, {fake!r}),
                           ({str(toy.workspace / "grades.csv")!r}, "{me},toy,100,5,graded,\\n"),
                           ({str(toy.submissions / me / CHAPTER / NOTEBOOK)!r}, "{{}}"),
                           ({str(toy.workspace / "pwned.txt")!r}, "pwned")]:
            try:
                with open(path, "a") as fh:
                    fh.write(text)
                done.append(path)
            except OSError:
                pass
        for db in [{str(toy.workspace / "gradebook.db")!r}, {str(toy.workspace / "prepared" / "gradebook.db")!r}]:
            try:
                with sqlite3.connect(db) as con:
                    con.execute("UPDATE grade_cells SET max_score = 0")
                    con.execute("CREATE TABLE IF NOT EXISTS pwned (x)")
                done.append(db)
            except sqlite3.Error:
                pass
        print("written:", done)
    """) + "\n\n" + guarded("double", "done"))


@case("solution code reads and appends to a private file of the grading host's user (mode 0600): it cannot",
      score=FULL, needs_isolation=True, hole_when="root_fallback",
      check=lambda o: o.toy.canary.read_text() == o.toy.canary_text,
      hole="learner code that runs as the grader's own user (root without capabilities: the fallback) reads and "
           "writes every file that user owns outside the few hidden paths (here a mode-0600 file in a mode-0700 "
           "folder): ~/.ssh, the grader's other files, /etc when root owns it")
def write_host(toy):
    return toy.answer(double=code(f"""
        read = wrote = False
        try:
            read = open({str(toy.canary)!r}).read() == {toy.canary_text!r}
        except OSError:
            pass
        try:
            with open({str(toy.canary)!r}, "a") as fh:
                fh.write("learner was here")
            wrote = True
        except OSError:
            pass
        print("read:", read, "wrote:", wrote)
    """) + "\n\n" + guarded("double", "read or wrote"))


def nobody_knocked(outcome: Outcome) -> bool:
    """No connection waits on the host's listener (a completed connect stays queued even after the client closed)."""
    outcome.toy.listener.setblocking(False)
    try:
        conn, peer = outcome.toy.listener.accept()
    except BlockingIOError:
        return True
    conn.close()
    raise AssertionError(f"learner code connected to the host's loopback listener from {peer}")


@case("the network: 1.1.1.1:53, https://pypi.org and a port listening on the host's loopback are all unreachable",
      score=FULL, needs_isolation=True, check=nobody_knocked)
def network(toy):
    return toy.answer(mean=code(f"""
        import socket, urllib.request
        reached = []
        for host, port in [("1.1.1.1", 53), ("127.0.0.1", {toy.listener.getsockname()[1]})]:
            try:
                socket.create_connection((host, port), timeout=2).close()
                reached.append(f"{{host}}:{{port}}")
            except OSError:
                pass
        try:
            urllib.request.urlopen("https://pypi.org/simple/", timeout=2).close()
            reached.append("pypi.org")
        except OSError:
            pass
        print("reached:", reached)
    """) + "\n\n" + guarded("mean", "reached"))


# --------------------------------------------------------------------------------------------------------------------
# Wrong solutions that try to make the tests pass anyway (installed in the first solution cell, before any test)
# --------------------------------------------------------------------------------------------------------------------


@case("wrong answers + every trick to hide a failure from outside the kernel's loop: builtins.AssertionError "
      "replaced, builtins.__import__ wrapped, sys.modules['math'] faked, sys.excepthook silenced, IPython's "
      "showtraceback silenced, a custom handler swallowing every exception: still 0", score=0.0,
      failed=["test_double", "test_mean"], output={"test_double": "AssertionError: double(2) should be 4"})
def hide_failures(toy):
    return toy.answer(mean=WRONG_MEAN, double=code("""
        import builtins, sys, types
        class NotAnAssertion(Exception):
            pass
        builtins.AssertionError = NotAnAssertion
        _import = builtins.__import__
        builtins.__import__ = lambda name, *args, **kwargs: _import(name, *args, **kwargs)
        sys.modules["math"] = types.ModuleType("math")
        sys.excepthook = lambda *args: None
        ip = get_ipython()
        ip.showtraceback = lambda *args, **kwargs: None
        ip._showtraceback = lambda *args, **kwargs: None
        ip.set_custom_exc((BaseException,), lambda *args, **kwargs: None)
    """) + "\n\n" + WRONG_DOUBLE)


KERNEL_HOLE = ("the hidden tests run in the learner's own kernel, after the learner's code, so that code decides what "
               "a test cell executes and reports; nothing in the grader checks it (nbgrader's own model)")


@case("wrong answers + an IPython input transformer that turns every cell with an `assert` into `pass`: 0",
      score=0.0, failed=["test_double", "test_mean"], hole=KERNEL_HOLE + ": input_transformers_cleanup empties "
      "the test cells -> full marks")
def rig_input_transformer(toy):
    return toy.answer(mean=WRONG_MEAN, double=code("""
        get_ipython().input_transformers_cleanup.append(
            lambda lines: ["pass\\n"] if any("assert" in line for line in lines) else lines)
    """) + "\n\n" + WRONG_DOUBLE)


@case("wrong answers + a post_run_cell hook that clears the outputs and the error of every failed cell: 0",
      score=0.0, failed=["test_double", "test_mean"], hole=KERNEL_HOLE + ": a post_run_cell hook sets "
      "result.error_in_exec = None (reply status 'ok') and calls clear_output() -> full marks")
def rig_post_run_hook(toy):
    return toy.answer(mean=WRONG_MEAN, double=code("""
        from IPython.display import clear_output
        def forget_failure(result):
            if result.error_in_exec is not None:
                result.error_in_exec = None
                clear_output()
        get_ipython().events.register("post_run_cell", forget_failure)
    """) + "\n\n" + WRONG_DOUBLE)


@case("wrong answers returning an object equal to everything: 0", score=0.0, failed=["test_double", "test_mean"],
      hole="the toy's tests compare with ==, so a float subclass whose __eq__ is always True passes every test "
           "(a weakness of the tests, not the grader: real tests should check the type, e.g. "
           "torch.testing.assert_close)")
def always_equal(toy):
    return toy.answer(double=code("""
        class Anything(float):
            def __eq__(self, other):
                return True
        def double(x):
            return Anything()
    """), mean="def mean(xs):\n    return Anything()")


def rot13_leaks(outcome: Outcome) -> bool:
    import codecs

    from grading_support import hidden_lines, html_text

    shown = codecs.encode(html_text(outcome.feedback()), "rot13")
    leaked = [line for line in hidden_lines(outcome.toy.solution) if line in shown]
    assert not leaked, f"the feedback shows, rot13-encoded, the hidden lines {leaked}"
    return True


@case("correct code whose pre_run_cell hook prints every cell's source rot13-encoded: the feedback must not "
      "carry the hidden tests out", score=FULL, check=rot13_leaks,
      hole="HideHiddenTests only drops output lines that contain a hidden line verbatim: learner code sees every "
           "test cell's source (pre_run_cell) and prints it encoded (rot13) into the test cell's output, which "
           "the feedback shows -> the learner reads the hidden tests")
def exfiltrate_hidden_tests(toy):
    return toy.answer(double=code("""
        import codecs
        get_ipython().events.register("pre_run_cell", lambda info: print(codecs.encode(info.raw_cell, "rot13")))
    """) + "\n\n" + toy.sources["double"])
