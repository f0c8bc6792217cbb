"""Adversarial and broken submissions of the toy assignments, each with the outcome the grader must produce.

Used by ``tests/test_adversarial.py``, which grades every case of a chapter in ONE run (``autograder.grade --jobs 2
--timeout 5 --budget 40``, with the CPU oversubscribed) and checks each outcome; it also runs every case that does
not depend on the sandbox through the learner's self-check, which must give the same verdicts. Two chapters: ``toy``
(no torch: fast) and ``toytorch`` (one exercise whose tests use torch's comparisons, the course's tolerances, a
setup helper and a referee class: the targets of the attacks on the tests themselves). A case is a builder
registered with ``@case(probe, **expect)``; the student is named after the builder:

* the builder gets a ``Toy`` (the toy release and solution, and the paths of the run, which an attacker is assumed
  to know) and returns what the student submits: a notebook (written as ``toy.ipynb``), or a dict
  ``{file name: notebook or raw text}`` for the chapter folder (``{}``: an empty folder);
* ``expect`` (the keyword arguments, see ``EXPECT_KEYS``) says what a correct grader does with it; scores are
  exact, from the toy's points (test_double 2, test_mean 3);
* ``hole``: the grader does NOT do that today. The case's test is then ``xfail(strict=True)`` with this text as the
  reason: the suite stays green, documents the hole, and fails the day the hole is closed (then update the case).
  ``observed`` pins what the grader does instead (checked by its own, passing test: the reproduction).
  ``hole_when="root_fallback"``: only when learner code ran as the grader's own user (root without capabilities:
  the run's results say ``isolation.separate_user: false``), not when it ran as a uid of its own. Since the tests
  left the learner's kernel (``autograder.referee``) no case has a hole.
* ``chapter``: ``toy`` (default) or ``toytorch``; ``parity``: whether the self-check must agree with the grader
  (not for cases that probe the sandbox or its memory limit, which the self-check on a learner's machine lacks).

Every attack has the honest score as its expected outcome: what the submission's code earns without the attack.

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
LINEAR = 4.0  # points of toytorch's test_linear
CHAPTER, NOTEBOOK = "toy", "toy.ipynb"
NOTEBOOKS = {"toy": "toy.ipynb", "toytorch": "toytorch.ipynb"}
MAX_SCORES = {"toy": FULL, "toytorch": LINEAR}

#: Unique to this session: the fork bomb's children run ``sleep FORK_MARKER``; afterwards none may be left.
FORK_MARKER = f"{86_400 + uuid.uuid4().int % 900_000}.{os.getpid()}"
#: How learner code recognises the toy's hidden tests: built at run time, so that its own source never matches.
SECRET_MARKERS = '("hidden_" + "mean_values", "hidden_" + "double_cases")'

WRONG_DOUBLE = "def double(x):\n    return 3 * x"
WRONG_MEAN = "def mean(xs):\n    return 0.0"
WRONG_LINEAR = "def linear(x, weight, bias):\n    return x @ weight.T  # forgets the bias"


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
    torch_release: nbformat.NotebookNode = None
    torch_solution: nbformat.NotebookNode = None
    torch_sources: dict = None

    def answer(self, **sources: str) -> nbformat.NotebookNode:
        """The release with every solution cell filled: the reference code, except the cells given here."""
        return fill(self.release, {**self.sources, **sources})

    def torch_answer(self, linear: str | None = None) -> nbformat.NotebookNode:
        """The toytorch release with ``linear`` as its solution (the reference by default)."""
        return fill(self.torch_release, {"linear": self.torch_sources["linear"] if linear is None else linear})

    def solution_of(self, chapter: str) -> nbformat.NotebookNode:
        return self.solution if chapter == "toy" else self.torch_solution


@dataclasses.dataclass
class Outcome:
    """What the grading run produced for one student (filled in by the test)."""

    student: str
    result: dict | None   # results/<student>/toy.json
    row: dict | None      # grades.csv row
    problems: list[dict]  # problems.csv rows of this student
    workspace: Path
    toy: Toy
    chapter: str = CHAPTER

    def feedback(self) -> str:
        page = Path(NOTEBOOKS[self.chapter]).with_suffix(".html").name
        return (self.workspace / "feedback" / self.student / self.chapter / page).read_text(encoding="utf-8")

    def autograded(self) -> nbformat.NotebookNode:
        return nbformat.read(self.workspace / "autograded" / self.student / self.chapter / NOTEBOOKS[self.chapter],
                             as_version=4)

    def printed(self, grade_id: str) -> str:
        """What the cell ``grade_id`` printed when graded (the learner's own diagnostics)."""
        cell = next(c for c in self.autograded().cells if meta(c).get("grade_id") == grade_id)
        return "".join(str(o.get("text", "")) for o in cell.get("outputs", []))


#: What an expectation may say. status: the result's status ("graded" unless said). score: exact points, None when
#: not graded. passed/failed: test cells. output: test -> substring of its learner-facing error. remarks/problems:
#: substrings, one per remark of the result / row of problems.csv for this student (the counts must match: nothing
#: else is reported). blocking: whether a problem says "not graded". restarts: kernel restarts (0 unless said).
#: check: extra assertions on the Outcome (returns False or raises when they fail). loose: the remarks and problems
#: listed must be there, others may be too (their number depends on the machine's speed).
EXPECT_KEYS = {"status", "score", "passed", "failed", "output", "remarks", "problems", "blocking", "restarts", "check",
               "loose"}


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
    chapter: str = CHAPTER
    parity: bool = True             # the self-check gives the same verdicts (see the module)

    def files(self, toy: Toy) -> dict[str, object]:
        built = self.build(toy)
        return {NOTEBOOKS[self.chapter]: built} if isinstance(built, nbformat.NotebookNode) else built


CASES: list[Case] = []


def case(probe: str, *, hole: str | None = None, hole_when: str = "always", observed: dict | None = None,
         needs_isolation: bool = False, chapter: str = CHAPTER, parity: bool | None = None, **expect):
    assert set(expect) <= EXPECT_KEYS and set(observed or {}) <= EXPECT_KEYS
    assert (hole is None) == (observed is None), "a hole says what is observed instead"
    parity = not needs_isolation if parity is None else parity

    def register(build):
        CASES.append(Case(build.__name__, probe, build, expect, hole, hole_when, observed, needs_isolation, chapter,
                          parity))
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


@case("a syntax error in the double cell: its tests fail with a NameError that names the cell, the rest is graded",
      score=MEAN, failed=["test_double"], output={"test_double": "cell 4 (double): SyntaxError"},
      remarks=["syntax error in toy.ipynb cell 4 (double)"], problems=["cell 4 (double): SyntaxError: "])
def syntax_error(toy):
    return toy.answer(double="def double(x)\n    return 2 * x")


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
      remarks=["timeout (did not stop when interrupted) in toy.ipynb cell 5 (test_double)"],
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
      failed=["test_double"], output={"test_double": "MemoryError"}, parity=False)
def memory_huge_allocation(toy):
    return toy.answer(double="def double(x):\n    hog = bytearray(10**11)\n    return 2 * x")


@case("mean grows a list until memory runs out: MemoryError in test_mean only", score=DOUBLE, failed=["test_mean"],
      output={"test_mean": "MemoryError"}, parity=False)
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
      score=FULL, check=no_fork_bomb_left, parity=False)
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


@case("kill -9 of every other process it can see (in its PID namespace: none of the grader's): nothing happens",
      score=FULL, needs_isolation=True, check=lambda o: "killed: []" in o.printed("mean"))
def kill_others(toy):
    return toy.answer(mean=code("""
        import os, signal
        killed = []
        for pid in [int(p) for p in os.listdir("/proc") if p.isdigit()]:
            if pid != os.getpid():
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                except OSError:
                    pass
        print("killed:", killed)
    """) + "\n\n" + toy.sources["mean"])


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


@case("solution code polls the other worker's throwaway folders (/tmp/gptcourse-grade-*: a gradebook with the "
      "hidden tests, other learners' graded notebooks) while --jobs 2 grades someone else: finds nothing, even as "
      "the grader's own user (its root holds nothing but the allow-list)",
      score=FULL, needs_isolation=True, check=lambda o: "found: []" in o.printed("mean"))
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
      "it cannot, even as the grader's own user", score=FULL, needs_isolation=True,
      check=lambda o: o.toy.canary.read_text() == o.toy.canary_text)
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


LEFTOVERS = [Path("/tmp/gptcourse-adversarial-leftover.txt"), Path("/dev/shm/gptcourse-adversarial-leftover.txt"),
             Path("/var/tmp/gptcourse-adversarial-leftover.txt")]


def nothing_left(o: Outcome) -> bool:
    left = [str(p) for p in LEFTOVERS if p.exists()]
    assert not left, f"files written by learner code outlived its sandbox: {left}"
    return "wrote: /tmp" in o.printed("double")


@case("solution code writes into /tmp, /dev/shm and /var/tmp: its own private, in-memory folders, gone after "
      "grading (there is no /var/tmp at all)", score=FULL, needs_isolation=True, check=nothing_left)
def leave_files(toy):
    return toy.answer(double=code(f"""
        wrote = []
        for path in {[str(p) for p in LEFTOVERS]!r}:
            try:
                with open(path, "w") as fh:
                    fh.write("left behind")
                wrote.append(path.rsplit("/", 1)[0])
            except OSError:
                pass
        print("wrote:", " ".join(wrote))
    """) + "\n\n" + toy.sources["double"])


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


@case("wrong answers + an IPython input transformer that turns every cell with an `assert` into `pass`: 0 (the "
      "tests are not cells of its kernel)", score=0.0, failed=["test_double", "test_mean"],
      **flagged("IPython internals"))
def rig_input_transformer(toy):
    return toy.answer(mean=WRONG_MEAN, double=code("""
        get_ipython().input_transformers_cleanup.append(
            lambda lines: ["pass\\n"] if any("assert" in line for line in lines) else lines)
    """) + "\n\n" + WRONG_DOUBLE)


@case("wrong answers + a post_run_cell hook that forgets the error of every failed cell: 0",
      score=0.0, failed=["test_double", "test_mean"], **flagged("IPython internals"))
def rig_post_run_hook(toy):
    return toy.answer(mean=WRONG_MEAN, double=code("""
        from IPython.display import clear_output
        def forget_failure(result):
            if result.error_in_exec is not None:
                result.error_in_exec = None
                clear_output()
        get_ipython().events.register("post_run_cell", forget_failure)
    """) + "\n\n" + WRONG_DOUBLE)


@case("wrong answers returning an object equal to everything: 0 (it arrives as a plain float)", score=0.0,
      failed=["test_double", "test_mean"], **flagged("an __eq__ of its own"))
def always_equal(toy):
    return toy.answer(double=code("""
        class Anything(float):
            def __eq__(self, other):
                return True
        def double(x):
            return Anything()
    """), mean="def mean(xs):\n    return Anything()")


def decoded_leaks(o: Outcome) -> list[str]:
    """Hidden-test lines that the feedback shows, plainly, rot13-encoded or base64-encoded."""
    import base64
    import binascii
    import re

    text = html_text(o.feedback())
    shown = [text, codecs.encode(text, "rot13")]
    for blob in re.findall(r"[A-Za-z0-9+/=]{24,}", text):
        try:
            shown.append(base64.b64decode(blob + "=" * (-len(blob) % 4)).decode("utf-8", "replace"))
        except (binascii.Error, ValueError):
            pass
    return [line for line in hidden_lines(o.toy.solution_of(o.chapter)) if any(line in s for s in shown)]


@case("correct code whose pre_run_cell hook prints each cell's source rot13-encoded: no hidden test runs in its "
      "kernel, so none can come out", score=FULL, check=lambda o: not decoded_leaks(o), **flagged("IPython internals"))
def exfiltrate_hidden_tests(toy):
    return toy.answer(double=code("""
        import codecs
        get_ipython().events.register("pre_run_cell", lambda info: print(codecs.encode(info.raw_cell, "rot13")))
    """) + "\n\n" + toy.sources["double"])


def budget_check(o: Outcome) -> bool:
    assert o.result["execution_time"] < 40 + 60, o.result["execution_time"]  # the budget, plus nbgrader's part
    return "time budget used up in toy.ipynb" in " ".join(o.result["remarks"])


@case("a helper with an endless loop that ten cells call: each is interrupted, then the submission's budget (40 s) "
      "ends the run; the test cells not reached say so", score=0.0, failed=["test_double", "test_mean"],
      output={"test_mean": "not run: the submission's time budget"}, loose=True, remarks=["timeout in toy.ipynb"],
      problems=["cell(s) were not run"], check=budget_check, parity=False)
def budget_exhausted(toy):
    nb = toy.answer(double="def double(x):\n    while True:\n        pass")
    index = next(i for i, c in enumerate(nb.cells) if meta(c).get("grade_id") == "double")
    nb.cells[index + 1:index + 1] = [nbformat.v4.new_code_cell(f"double({i})") for i in range(10)]
    return nb


# --------------------------------------------------------------------------------------------------------------------
# The toytorch chapter: attacks on what the tests themselves use (torch's comparisons, the course's tolerances, a
# setup helper, a referee class), on the caller's frames, and through IPython. All of it happens in the learner's
# kernel; the tests run in the grader's process, so each attack is worth what the code under it is worth.
# --------------------------------------------------------------------------------------------------------------------


def torch_case(probe: str, **expect):
    return case(probe, chapter="toytorch", **expect)


LINEAR_FAILS = dict(score=0.0, failed=["test_linear"])


@torch_case("the reference answer: full marks", score=LINEAR, passed=["test_linear"])
def torch_correct(toy):
    return toy.torch_answer()


@torch_case("a wrong linear (no bias) + torch.allclose, torch.equal, torch.testing.assert_close and "
            "torch.Tensor.__eq__ replaced by ones that always agree: 0", **LINEAR_FAILS)
def patch_torch_comparisons(toy):
    return toy.torch_answer(code("""
        import torch, torch.testing
        torch.allclose = lambda *args, **kwargs: True
        torch.equal = lambda *args, **kwargs: True
        torch.testing.assert_close = lambda *args, **kwargs: None
        torch.Tensor.__eq__ = lambda self, other: torch.ones_like(self, dtype=torch.bool)
    """) + "\n\n" + WRONG_LINEAR)


@torch_case("a wrong linear + the referee class torch.nn.Linear and F.linear replaced by the wrong maths: 0",
            **LINEAR_FAILS)
def patch_referee_class(toy):
    return toy.torch_answer(code("""
        import torch
        import torch.nn.functional as F

        class Linear(torch.nn.Module):
            def __init__(self, d_in, d_out, **kwargs):
                super().__init__()
                self.weight = torch.nn.Parameter(torch.zeros(d_out, d_in, **kwargs))
                self.bias = torch.nn.Parameter(torch.zeros(d_out, **kwargs))
            def forward(self, x):
                return x @ self.weight.T

        torch.nn.Linear = Linear
        F.linear = lambda x, weight, bias=None: x @ weight.T
    """) + "\n\n" + WRONG_LINEAR)


@torch_case("a wrong linear + the course's tolerances loosened to infinity, devices_to_test emptied, and a fake "
            "gptcourse.tolerances module put in sys.modules: 0", **LINEAR_FAILS)
def loosen_tolerances(toy):
    return toy.torch_answer(code("""
        import sys, types
        import gptcourse.tolerances as tolerances
        for key in list(tolerances._TOLERANCES):
            tolerances._TOLERANCES[key] = (float("inf"), float("inf"))
        tolerances.devices_to_test = lambda: []
        fake = types.ModuleType("gptcourse.tolerances")
        fake.assert_close = lambda *args, **kwargs: None
        fake.devices_to_test = lambda: []
        fake.tolerance = lambda *args, **kwargs: {"atol": float("inf"), "rtol": float("inf")}
        sys.modules["gptcourse.tolerances"] = fake
        assert_close, devices_to_test = fake.assert_close, fake.devices_to_test
    """) + "\n\n" + WRONG_LINEAR)


@torch_case("a wrong linear + the setup helper reference_linear redefined to agree with it: 0", **LINEAR_FAILS)
def redefine_setup_helper(toy):
    return toy.torch_answer(WRONG_LINEAR + "\n\n\ndef reference_linear(x, weight, bias):\n"
                            "    return linear(x, weight, bias)")


@torch_case("a wrong linear + a background thread that re-applies every patch above each millisecond: 0",
            **LINEAR_FAILS)
def background_patcher(toy):
    return toy.torch_answer(code("""
        import threading, time
        import torch, torch.testing
        import gptcourse.tolerances as tolerances

        def patch_forever():
            while True:
                torch.allclose = lambda *args, **kwargs: True
                torch.testing.assert_close = lambda *args, **kwargs: None
                tolerances.assert_close = lambda *args, **kwargs: None
                for name in ("reference_linear", "assert_close"):
                    globals()[name] = lambda *args, **kwargs: None
                time.sleep(0.001)

        threading.Thread(target=patch_forever, daemon=True).start()
    """) + "\n\n" + WRONG_LINEAR)


FRAME_WALK = """
import inspect, sys

def linear(x, weight, bias):
    # Look for the hidden test's own reference among the callers' locals and globals, and answer what it answers.
    seen = []
    frame = sys._getframe(1)
    while frame is not None:
        for scope in (frame.f_locals, frame.f_globals):
            for name, value in list(scope.items()):
                seen.append(name)
                if callable(value) and "hidden" in name:
                    try:
                        return value(x, weight, bias)
                    except Exception:
                        pass
        frame = frame.f_back
    for info in inspect.stack():
        seen.append(info.function)
    print("callers' names:", sorted(set(seen))[:40])
    return x @ weight.T  # nothing found: the wrong answer
"""


@torch_case("a wrong linear that walks its callers' frames (sys._getframe, inspect.stack) for the hidden test's "
            "reference function, to answer what it answers: finds none, 0", **LINEAR_FAILS,
            check=lambda o: "hidden_reference_linear" not in o.feedback(), **flagged("interpreter hooks"))
def frame_walk(toy):
    return toy.torch_answer(FRAME_WALK)


@torch_case("the untouched stub + an input transformer reached through InteractiveShell.instance() (not "
            "get_ipython) that empties every cell with an assert: 0", **LINEAR_FAILS,
            output={"test_linear": "NotImplementedError"}, **flagged("IPython internals"))
def transformer_through_instance(toy):
    nb = toy.torch_release
    nb = fill(nb, {})
    setup = nbformat.v4.new_code_cell(code("""
        from IPython.core.interactiveshell import InteractiveShell
        InteractiveShell.instance().input_transformers_post.append(
            lambda lines: ["pass\\n"] if any("assert" in line for line in lines) else lines)
    """))
    index = next(i for i, c in enumerate(nb.cells) if meta(c).get("grade_id") == "linear")
    nb.cells.insert(index, setup)
    return nb


EXFILTRATE = """
import base64, gc, inspect, linecache, sys

def linear(x, weight, bias):
    # Everything this process holds that looks like test source: the call stack, linecache, the names and strings of
    # every code object compiled from a string (a cell, a test). Printed base64-encoded, so that a filter looking for
    # plain hidden lines would miss it.
    found = []
    for info in inspect.stack():
        found += info.code_context or []
    for lines in list(linecache.cache.values()):
        if isinstance(lines, tuple) and len(lines) > 2:
            found += lines[2]
    for obj in gc.get_objects():
        if inspect.isfunction(obj) and obj.__code__.co_filename.startswith("<"):
            code = obj.__code__
            found += [*code.co_names, *(c for c in code.co_consts if isinstance(c, str))]
    text = "\\n".join(str(line) for line in found if "hidden" in str(line) or "assert" in str(line))
    print("EXFILTRATED", base64.b64encode(text.encode()).decode()[:50000])
    return x @ weight.T + bias
"""


@torch_case("correct code that prints, base64-encoded, every source line it can find (the stack, linecache, every "
            "code object in memory): full marks, and no hidden line in its feedback", score=LINEAR,
            passed=["test_linear"], check=lambda o: not decoded_leaks(o) and "EXFILTRATED" in o.printed("test_linear"))
def exfiltrate_sources(toy):
    return toy.torch_answer(EXFILTRATE)


@torch_case("a wrong linear + the grader's agent in its kernel patched to answer every call with the reference "
            "maths it computes itself: it never sees what the test expects, so it can only answer its own way: 0",
            **LINEAR_FAILS, **flagged("the grader's agent"))
def tamper_with_the_agent(toy):
    return toy.torch_answer(code("""
        import sys
        agent = sys.modules["_gptcourse_agent"]
        original = agent.Agent.op_call

        def op_call(self, target, args, kwargs):
            result = original(self, target, args, kwargs)
            return result * 1.0  # all it can do: answer something for the test's inputs
        agent.Agent.op_call = op_call
    """) + "\n\n" + WRONG_LINEAR)
