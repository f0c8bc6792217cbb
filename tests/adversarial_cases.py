"""Adversarial and broken submissions of the toy assignment, each with the outcome the grader must produce.

Used by ``tests/test_adversarial.py``, which grades every case in ONE run (``autograder.grade --jobs 2 --timeout 5``)
and checks each outcome. A case is a builder registered with ``@case(probe, **expect)``; the student is named after
the builder:

* the builder gets a ``Toy`` (the toy release and solution, and the paths of the run, which an attacker is assumed
  to know) and returns what the student submits: a notebook (written as ``toy.ipynb``), or a dict
  ``{file name: notebook or raw text}`` for the chapter folder (``{}``: an empty folder);
* ``expect`` (the keyword arguments, see ``EXPECT_KEYS``) says what a correct grader does with it; scores are
  exact, from the toy's points (test_double 2, test_mean 3);
* ``hole``: the grader does NOT do that today. The case's test is then ``xfail(strict=True)`` with this text as the
  reason: the suite stays green, documents the hole, and fails the day the hole is closed (then update the case).
  ``observed`` pins what the grader does instead (checked by its own, passing test: the reproduction).
  ``hole_when="root_fallback"``: only when learner code ran as the grader's own user (root without capabilities:
  the run's results say ``isolation.separate_user: false``), not when it ran as a uid of its own.

Learner code that probes something (secrets, network, files outside the sandbox) turns what it achieved into a wrong
return value: the score proves what it could or could not do, and what it printed (kept in the autograded notebook,
shown when a test fails) says what it found.
"""

from __future__ import annotations

import codecs
import copy
import dataclasses
import os
import socket
import textwrap
import uuid
from pathlib import Path
from typing import Callable

import nbformat

from grading_support import fill, hidden_lines, html_text, meta, set_source

DOUBLE, MEAN = 2.0, 3.0  # points of test_double and test_mean (test_adversarial checks them against the notebook)
FULL = DOUBLE + MEAN
CHAPTER, NOTEBOOK = "toy", "toy.ipynb"

#: Unique to this session: the fork bomb's children run ``sleep FORK_MARKER``; afterwards none may be left.
FORK_MARKER = f"{86_400 + uuid.uuid4().int % 900_000}.{os.getpid()}"
#: How learner code recognises the toy's hidden tests: built at run time, so that its own source never matches.
SECRET_MARKERS = '("hidden_" + "mean_values", "hidden_" + "double_cases")'

WRONG_DOUBLE = "def double(x):\n    return 3 * x"
WRONG_MEAN = "def mean(xs):\n    return 0.0"


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

    def feedback(self) -> str:
        return (self.workspace / "feedback" / self.student / CHAPTER / "toy.html").read_text(encoding="utf-8")

    def autograded(self) -> nbformat.NotebookNode:
        return nbformat.read(self.workspace / "autograded" / self.student / CHAPTER / NOTEBOOK, as_version=4)

    def printed(self, grade_id: str) -> str:
        """What the cell ``grade_id`` printed when graded (the learner's own diagnostics)."""
        cell = next(c for c in self.autograded().cells if meta(c).get("grade_id") == grade_id)
        return "".join(str(o.get("text", "")) for o in cell.get("outputs", []))


#: What an expectation may say. status: the result's status ("graded" unless said). score: exact points, None when
#: not graded. passed/failed: test cells. output: test -> substring of its learner-facing error. remarks/problems:
#: substrings, one per remark of the result / row of problems.csv for this student (the counts must match: nothing
#: else is reported). blocking: whether a problem says "not graded". restarts: kernel restarts (0 unless said).
#: check: extra assertions on the Outcome (returns False or raises when they fail).
EXPECT_KEYS = {"status", "score", "passed", "failed", "output", "remarks", "problems", "blocking", "restarts", "check"}


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    probe: str
    build: Callable[[Toy], object]
    expect: dict
    hole: str | None = None
    hole_when: str = "always"       # or "root_fallback"
    observed: dict | None = None    # what the grader does instead, while the hole is open
    needs_isolation: bool = False   # meaningful only where the sandbox gets its namespaces (root)

    def files(self, toy: Toy) -> dict[str, object]:
        built = self.build(toy)
        return {NOTEBOOK: built} if isinstance(built, nbformat.NotebookNode) else built


CASES: list[Case] = []


def case(probe: str, *, hole: str | None = None, hole_when: str = "always", observed: dict | None = None,
         needs_isolation: bool = False, **expect):
    assert set(expect) <= EXPECT_KEYS and set(observed or {}) <= EXPECT_KEYS
    assert (hole is None) == (observed is None), "a hole says what is observed instead"

    def register(build):
        CASES.append(Case(build.__name__, probe, build, expect, hole, hole_when, observed, needs_isolation))
        return build

    return register


# --------------------------------------------------------------------------------------------------------------------
# Helpers for builders
# --------------------------------------------------------------------------------------------------------------------


def code(text: str) -> str:
    return textwrap.dedent(text).strip("\n")


def guarded(grade_id: str, failed_if: str) -> str:
    """The reference ``double`` or ``mean``, but returning -1 when ``failed_if`` holds: the score proves it did not."""
    if grade_id == "double":
        return f"def double(x):\n    if {failed_if}:\n        return -1\n    return 2 * x"
    return (f"def mean(xs):\n    if {failed_if}:\n        return -1\n    if not xs:\n"
            f"        warnings.warn('mean of an empty list: returning 0.0', stacklevel=2)\n        return 0.0\n"
            f"    return sum(xs) / len(xs)")


def duplicate(nb, grade_id: str, source: str | None = None):
    """A copy of ``nb`` where the cell ``grade_id`` appears twice, as Jupyter's "duplicate cell" makes it (metadata
    included, new cell id); the copy, right after the original, gets ``source`` if given."""
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


@case("mean passes the visible tests but fails the hidden ones (whose message is shown)", score=DOUBLE,
      failed=["test_mean"], output={"test_mean": "mean of an uneven list is wrong"})
def partial(toy):
    return toy.answer(mean="def mean(xs):\n    return (xs[0] + xs[-1]) / 2 if xs else 0.0")


@case("the untouched release: NotImplementedError everywhere, 0", score=0.0, failed=["test_double", "test_mean"],
      output={"test_double": "NotImplementedError"})
def stub(toy):
    return toy.release


@case("correct code that warns and writes to stderr while the tests run: full marks, the text still shown",
      score=FULL, check=lambda o: "[stderr]" in o.printed("test_double") and "careful" in o.printed("test_double"))
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


@case("the solution cell duplicated, the copy (run last) corrected: graded as it runs", score=FULL,
      passed=["test_double", "test_mean"])
def duplicated_solution(toy):
    return duplicate(toy.answer(double=WRONG_DOUBLE), "double", toy.sources["double"])


@case("a test cell duplicated: graded once, with its points (not twice)", score=DOUBLE, failed=["test_mean"])
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
# Code that hangs, crashes, or exhausts a resource: only the tests of that cell lose their points
# --------------------------------------------------------------------------------------------------------------------


@case("`while True: pass` in double: the cell timeout interrupts it, test_mean keeps its points", score=MEAN,
      failed=["test_double"], output={"test_double": "CellTimeoutError"},
      remarks=["timeout in toy.ipynb cell 5 (test_double)"], problems=["cell 5 (test_double): the cell ran for more"])
def infinite_loop(toy):
    return toy.answer(double="def double(x):\n    while True:\n        pass")


@case("a loop that ignores SIGINT (the interrupt): its cell is neutralised, the later cells keep their points",
      score=MEAN, failed=["test_double"], output={"test_double": "did not stop when interrupted"}, restarts=1,
      remarks=["timeout in toy.ipynb cell 5 (test_double)"],
      problems=["cell 5 (test_double): this cell ran past its time limit and did not stop when interrupted"])
def loop_ignoring_interrupt(toy):
    return toy.answer(double=code("""
        import signal, time
        def double(x):
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            while True:
                time.sleep(1)  # asleep rather than spinning: the same hang, without eating the other worker's CPU
    """))


@case("os._exit(1) inside mean, called by test_mean: that cell is neutralised, the rest graded", score=DOUBLE,
      failed=["test_mean"], output={"test_mean": "CellKilledByGrader"}, restarts=1,
      remarks=["kernel crash in toy.ipynb cell 8 (test_mean)"], problems=["cell 8 (test_mean): this cell crashed"])
def crash_exit(toy):
    return toy.answer(mean="import os\n\ndef mean(xs):\n    os._exit(1)")


@case("a segfault (ctypes.string_at(0)) at the top of the double cell: neutralised, test_mean keeps its points",
      score=MEAN, failed=["test_double"], output={"test_double": "NameError"}, restarts=1,
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


def no_fork_bomb_left(o: Outcome) -> bool:
    left = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and FORK_MARKER.encode() in (entry / "cmdline").read_bytes():
                left.append(entry.name)
        except OSError:
            pass
    assert not left, f"fork-bomb processes (sleep {FORK_MARKER}) still alive after grading: {left}"
    return "children: 200" in o.printed("double")


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
    """) + "\n\n" + guarded("double", "children < 100"))  # full marks prove that the bomb went off


@case("50 MB printed by a solution cell: capped, graded, feedback under 2 MB", score=FULL,
      check=lambda o: (len(o.feedback()) < 2 * 2**20 and "output cut by the grader" in o.feedback()
                       and (o.workspace / "results" / o.student / "toy.json").stat().st_size < 100_000))
def huge_output(toy):
    return toy.answer(double="for _ in range(50):\n    print('x' * 2**20)\n\n" + toy.sources["double"])


@case("kill -9 of the grader's executor (the kernel's parent, pid 1 of the sandbox): nothing happens",
      score=FULL, needs_isolation=True)
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

with open("decoy.txt", "w") as fh:  # a positive control: the search must find this one
    fh.write(" ".join(MARKERS))
repo = Path(gptcourse.__file__).resolve().parent.parent  # the course repository, read-only
workspace = Path({workspace!r})
for top in [repo, workspace, {submissions!r}, {solutions!r}, os.path.expanduser("~"), os.getcwd(), "/dev/shm"]:
    walk(top)
for path in [*glob.glob(str(repo / "**" / "solutions" / "**" / "*.ipynb"), recursive=True),
             repo / "tests" / "fixtures" / "toy_course" / "solutions" / "toy" / "toy.ipynb",
             workspace / "prepared" / "gradebook.db", workspace / "gradebook.db"]:
    look(path)
for folder in Path.cwd().parents:  # walk up, looking for what a grader keeps next to its work
    for name in ("solutions", "source", "release", "submitted", "autograded", "results", "prepared", "gradebook.db"):
        walk(folder / name) if (folder / name).is_dir() else look(folder / name)
for pid in [p for p in os.listdir("/proc") if p.isdigit()]:  # the grader's executor is pid 1 here
    look(f"/proc/{{pid}}/cmdline")
    look(f"/proc/{{pid}}/environ")
    for fd in glob.glob(f"/proc/{{pid}}/fd/*"):
        if os.path.isfile(fd):  # regular files only: a pipe would block
            look(fd)
    walk(f"/proc/{{pid}}/cwd", limit=50)  # /proc/1/cwd: the executor's folder
for value in os.environ.values():
    if os.path.isdir(value):
        walk(value, limit=50)
decoy_seen = any(path.endswith("decoy.txt") for path in found)
found = [path for path in found if not path.endswith("decoy.txt")]
print("tried", tried, "decoy seen", decoy_seen, "found", found)
"""


@case("solution code hunts for the hidden tests: repo via gptcourse.__file__, toy solutions, workspace, submissions, "
      "gradebooks, cwd and its parents, /proc/*/cwd|fd|environ, $HOME: finds nothing", score=FULL,
      needs_isolation=True, check=lambda o: "decoy seen True" in o.printed("mean"))
def snoop_files(toy):
    return toy.answer(mean=SNOOP_FILES.format(markers=SECRET_MARKERS, workspace=str(toy.workspace),
                                              submissions=str(toy.submissions), solutions=str(toy.solutions))
                      + "\n" + guarded("mean", "found or not decoy_seen"))


@case("solution code reads the memory of its parent (the grader's executor, /proc/1/mem), which holds the hidden "
      "tests: it cannot", score=FULL, needs_isolation=True,
      check=lambda o: "found hidden tests in the memory of pid []" in o.printed("double"))
def snoop_memory(toy):
    return toy.answer(double=code(f"""
        import os
        MARKERS = {SECRET_MARKERS}
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


ROOT_FALLBACK_HOLE = ("when learner code runs as the grader's own user (root without capabilities: the fallback "
                      "whenever autograder.grade.learner_uid_works() says no; only a non-blocking run-level remark "
                      "says so) it passes the OWNER permission check on every root-owned file outside the few "
                      "hidden paths: ")


@case("solution code polls the other worker's throwaway folders (/tmp/gptcourse-grade-*: a gradebook with the "
      "hidden tests, other learners' graded notebooks) while --jobs 2 grades someone else: finds nothing",
      score=FULL, needs_isolation=True, hole_when="root_fallback",
      hole=ROOT_FALLBACK_HOLE + "it reads (and could rewrite) the OTHER workers' course folders in /tmp: their "
           "gradebook.db with the hidden tests, other learners' autograded notebooks; only its own job's are hidden",
      observed=dict(score=DOUBLE, failed=["test_mean"], check=lambda o: "gradebook.db" in o.printed("mean")))
def snoop_workers(toy):
    # Another worker's folders exist only while it grades (a few seconds of each job): poll in two cells (3 s each,
    # under the cell timeout), so that the window spans a whole job of the other worker slot whatever the timing.
    poll = code(f"""
        import glob, time
        MARKERS = {SECRET_MARKERS}
        found = set()

        def poll(seconds):
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and not found:
                for path in glob.glob({toy.temp_dir!r} + "/gptcourse-*/**", recursive=True):
                    try:
                        with open(path, "rb") as fh:
                            if any(m.encode() in fh.read() for m in MARKERS):
                                found.add(path)
                    except OSError:
                        pass
                time.sleep(0.1)

        poll(3)
    """)
    return toy.answer(double=poll + "\n\n" + toy.sources["double"],
                      mean="poll(3)\nprint('found:', sorted(found))\n\n" + guarded("mean", "found"))


@case("solution code reads and appends to a private file of the grading host's user (mode 0600 in a 0700 folder): "
      "it cannot", score=FULL, needs_isolation=True, check=lambda o: o.toy.canary.read_text() == o.toy.canary_text,
      hole_when="root_fallback",
      hole=ROOT_FALLBACK_HOLE + "it reads and writes the grader user's private files (~/.ssh, its other work, "
           "/etc where root owns it)",
      observed=dict(score=MEAN, failed=["test_double"],
                    check=lambda o: o.toy.canary.read_text().endswith("learner was here")))
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


@case("solution code writes its result JSON, the gradebooks, grades.csv and its own submission (exact paths): "
      "nothing changes, the result is the grader's", score=FULL, needs_isolation=True,
      check=lambda o: (sum(t["score"] for t in o.result["tests"]) == o.result["score"] == FULL
                       and sorted(p.name for p in (o.workspace / "results" / o.student).iterdir()) == ["toy.json"]
                       and not (o.workspace / "pwned.txt").exists() and "written: []" in o.printed("double")))
def write_results(toy):
    me = "write_results"  # the student is named after the case
    fake = '{"status": "graded", "score": 100, "max_score": 5}'
    return toy.answer(double=code(f"""
        import sqlite3
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


def nobody_knocked(o: Outcome) -> bool:
    """No connection waits on the host's listener (a completed connect stays queued even after the client closed)."""
    o.toy.listener.setblocking(False)
    try:
        conn, peer = o.toy.listener.accept()
    except BlockingIOError:
        return "reached: []" in o.printed("mean")
    conn.close()
    raise AssertionError(f"learner code connected to the host's loopback listener from {peer}")


@case("the network: 1.1.1.1:53, https://pypi.org and a port listening on the host's loopback are unreachable",
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


def flagged(*what: str) -> dict:
    """The remarks and problems of a submission flagged for review (autograder.worker.REVIEW_PATTERNS): code that can
    change how the tests in its kernel run. The score stands; the instructor is told to look."""
    return dict(remarks=[f"review: uses {w}" for w in what], problems=[f"code uses {w}" for w in what])



# --------------------------------------------------------------------------------------------------------------------
# Wrong solutions that try to pass anyway (installed in the first solution cell, before any test runs)
# --------------------------------------------------------------------------------------------------------------------


@case("wrong answers + builtins.AssertionError replaced, builtins.__import__ wrapped, sys.modules['math'] faked, "
      "sys.excepthook silenced, IPython's showtraceback silenced, a custom handler swallowing every exception: 0",
      score=0.0, failed=["test_double", "test_mean"], output={"test_double": "AssertionError: double(2) should be 4"},
      **flagged("IPython internals", "the builtins module", "interpreter hooks"))
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


KERNEL_HOLE = ("the tests run in the learner's own kernel, after the learner's code, which therefore decides what a "
               "test cell executes and what it reports; nothing outside the kernel checks it (nbgrader's model): ")
RIGGED = dict(score=FULL, passed=["test_double", "test_mean"], **flagged("IPython internals"))


@case("wrong answers + an IPython input transformer that turns every cell with an `assert` into `pass`: 0",
      score=0.0, failed=["test_double", "test_mean"], observed=RIGGED, **flagged("IPython internals"),
      hole=KERNEL_HOLE + "get_ipython().input_transformers_cleanup empties the test cells -> full marks")
def rig_input_transformer(toy):
    return toy.answer(mean=WRONG_MEAN, double=code("""
        get_ipython().input_transformers_cleanup.append(
            lambda lines: ["pass\\n"] if any("assert" in line for line in lines) else lines)
    """) + "\n\n" + WRONG_DOUBLE)


@case("wrong answers + a post_run_cell hook that forgets the error of every failed cell: 0",
      score=0.0, failed=["test_double", "test_mean"], observed=RIGGED, **flagged("IPython internals"),
      hole=KERNEL_HOLE + "a post_run_cell hook sets result.error_in_exec = None (reply status 'ok') and calls "
           "clear_output() (the error output goes) -> full marks")
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
      observed={**RIGGED, **flagged("an __eq__ of its own")}, **flagged("an __eq__ of its own"),
      hole="the toy's tests compare with ==, so a float subclass whose __eq__ is always True passes them all (a "
           "weakness of the tests, not of the grader: tests should check the type too, as assert_close does)")
def always_equal(toy):
    return toy.answer(double=code("""
        class Anything(float):
            def __eq__(self, other):
                return True
        def double(x):
            return Anything()
    """), mean="def mean(xs):\n    return Anything()")


def rot13_leak(o: Outcome) -> list[str]:
    """The hidden-test lines that the feedback shows rot13-encoded."""
    shown = codecs.encode(html_text(o.feedback()), "rot13")
    return [line for line in hidden_lines(o.toy.solution) if line in shown]


@case("correct code whose pre_run_cell hook prints each cell's source rot13-encoded: the feedback still carries no "
      "hidden test out", score=FULL, check=lambda o: not rot13_leak(o), **flagged("IPython internals"),
      hole="HideHiddenTests drops only the output lines that contain a hidden line verbatim: learner code sees each "
           "test cell's source (pre_run_cell) and prints it encoded into that cell's output, which the feedback "
           "shows -> the learner reads every hidden test",
      observed=dict(score=FULL, check=lambda o: len(rot13_leak(o)) == len(hidden_lines(o.toy.solution)),
                    **flagged("IPython internals")))
def exfiltrate_hidden_tests(toy):
    return toy.answer(double=code("""
        import codecs
        get_ipython().events.register("pre_run_cell", lambda info: print(codecs.encode(info.raw_cell, "rot13")))
    """) + "\n\n" + toy.sources["double"])
