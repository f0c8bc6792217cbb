"""autograder/referee/runner.py: a whole notebook run the referee's way, with what the learner's code may do to it.

Small notebooks built here, run with an ordinary kernel (the sandboxed one is tested in test_adversarial): roles,
outputs, the seeded start, timeouts, crashes and replays, the time budget, and cells that are not the course's.
"""

from __future__ import annotations

import os
import time

import nbformat
import pytest

from autograder.referee.kernel import MAX_CELL_OUTPUT, KernelStartError, LearnerKernel, LocalKernelProcess
from autograder.referee.runner import KILLED_ENAME, NOT_RUN_ENAME, NotebookRun, roles

pytestmark = pytest.mark.slow


def cell(source: str, grade_id: str | None = None, kind: str = "learner", points: int = 1):
    meta = {}
    if kind == "test":
        meta = {"grade": True, "solution": False, "locked": True, "points": points, "grade_id": grade_id,
                "schema_version": 3}
    elif kind == "setup":
        meta = {"grade": False, "solution": False, "locked": True, "grade_id": grade_id, "schema_version": 3}
    elif kind == "solution":
        meta = {"grade": False, "solution": True, "locked": False, "grade_id": grade_id, "schema_version": 3}
    return nbformat.v4.new_code_cell(source, metadata={"nbgrader": meta} if meta else {})


def run(tmp_path, cells, timeout=10, budget=None, trusted=None, **kw):
    nb = nbformat.v4.new_notebook(cells=cells)
    runner = NotebookRun(nb, lambda seed: LearnerKernel(LocalKernelProcess(tmp_path), seed_torch=seed), trusted,
                         cell_timeout=timeout, budget=budget, **kw)
    return runner.run(), runner.report


def text(c) -> str:
    return "".join(o.get("text", "") for o in c.outputs if o["output_type"] == "stream")


def error(c):
    return next((f"{o['ename']}: {o['evalue']}" for o in c.outputs if o["output_type"] == "error"), None)


def test_roles_come_from_metadata_and_trust():
    cells = [cell("import math", "setup", "setup"), cell("x = 1", "ex", "solution"), cell("assert x", "t", "test"),
             cell("print(1)"), nbformat.v4.new_markdown_cell("# hi")]
    nb = nbformat.v4.new_notebook(cells=cells)
    assert roles(nb, None) == ["setup", "learner", "test", "learner", "text"]
    # With the course's sources: an edited setup cell is the learner's, an edited test cell is not run at all.
    assert roles(nb, {"setup": "import os", "t": "assert x"}) == ["learner", "learner", "test", "learner", "text"]
    assert roles(nb, {"setup": "import math", "t": "assert y"})[2] == "untrusted"


def test_a_notebook_runs_seeded_with_its_outputs_in_place(tmp_path):
    done, report = run(tmp_path, [
        cell("import random\nprint(random.random())"),
        cell("HELPER = 41", "setup", "setup"),
        cell("def f():\n    return HELPER + 1", "ex", "solution"),
        cell("assert f() == 42, 'f() should be 42'\nprint('test ok')", "t", "test"),
        cell("import sys\nprint('warn', file=sys.stderr)\n7"),
    ])
    import random

    random.seed(0)
    assert text(done.cells[0]).strip() == str(random.random())  # the kernel starts seeded, as when grading
    assert text(done.cells[3]) == "test ok\n" and error(done.cells[3]) is None
    assert text(done.cells[4]) == "[stderr] warn\n"  # stderr never zeroes a grade
    assert done.cells[4].outputs[-1]["output_type"] == "execute_result"
    assert report.killed == {} and report.restarts == [] and report.not_reached == []


def test_a_learner_redefining_the_courses_helper_changes_nothing(tmp_path):
    done, _ = run(tmp_path, [
        cell("def referee(x):\n    return 2 * x", "setup", "setup"),
        cell("def double(x):\n    return 3 * x\ndef referee(x):\n    return 3 * x\nlen = lambda x: 0", "ex",
             "solution"),
        cell("assert double(2) == referee(2), 'double(2) should be referee(2)'\nassert len([1]) == 1", "t", "test"),
    ])
    assert error(done.cells[2]) == "AssertionError: double(2) should be referee(2)"


def test_output_is_capped_per_cell(tmp_path):
    done, _ = run(tmp_path, [cell("for _ in range(50):\n    print('x' * 100_000)")])
    shown = text(done.cells[0])
    assert len(shown) < MAX_CELL_OUTPUT + 200 and "output cut by the grader" in shown


def test_a_cell_past_its_time_is_interrupted_and_the_next_ones_run(tmp_path):
    done, report = run(tmp_path, [cell("while True:\n    pass"), cell("print('after')")], timeout=2)
    assert error(done.cells[0]).startswith("CellTimeoutError: the cell ran for more than 2 s")
    assert text(done.cells[1]) == "after\n" and report.timeouts == [0] and report.restarts == []


def test_a_crash_costs_only_its_cell_the_kernel_is_replaced_and_the_cells_before_replayed(tmp_path):
    done, report = run(tmp_path, [
        cell("import os\nCOUNT = 1\nprint('first run')"),
        cell("def f():\n    return COUNT", "ex", "solution"),
        cell("os._exit(1)"),
        cell("assert f() == 1, 'f() should still work'\nprint('graded')", "t", "test"),
    ])
    assert report.killed == {2: "kernel"} and report.restarts == ["kernel"]
    assert error(done.cells[2]).startswith(KILLED_ENAME)
    assert text(done.cells[0]) == "first run\n"  # the replay's output is not added again
    assert text(done.cells[3]) == "graded\n" and error(done.cells[3]) is None


def test_a_loop_that_ignores_the_interrupt_is_stopped_and_the_rest_graded(tmp_path):
    done, report = run(tmp_path, [
        cell("import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    time.sleep(0.5)"),
        cell("print('after')"),
    ], timeout=1)
    assert report.killed == {0: "stuck"} and text(done.cells[1]) == "after\n"


def test_the_budget_is_counted_once_and_cells_not_reached_say_so(tmp_path):
    start = time.monotonic()
    done, report = run(tmp_path, [
        cell("import time\ntime.sleep(1.5)"), cell("while True:\n    pass"), cell("print('late')"),
        cell("assert True", "t", "test"),
    ], timeout=30, budget=4)
    assert time.monotonic() - start < 20
    assert "time budget (4 s) ran out" in error(done.cells[1])
    assert report.not_reached == [2, 3]
    for c in done.cells[2:]:
        assert error(c).startswith(f"{NOT_RUN_ENAME}: not run: the submission's time budget")


def test_too_many_crashes_end_the_run_with_every_later_cell_saying_why(tmp_path):
    crashes = [cell("import os\nos._exit(1)") for _ in range(3)]
    done, report = run(tmp_path, [*crashes, cell("print('never')")], max_restarts=2)
    assert report.restarts == ["kernel", "kernel"] and len(report.killed) == 3
    assert error(done.cells[3]).startswith(NOT_RUN_ENAME)


def test_a_kernel_that_cannot_start_is_the_graders_problem(tmp_path, monkeypatch):
    monkeypatch.setattr("autograder.referee.runner.START_BACKOFF_S", (0, 0))
    nb = nbformat.v4.new_notebook(cells=[cell("print(1)")])
    (tmp_path / "gptcourse").mkdir()  # the kernel starts, but the course library it needs is broken
    (tmp_path / "gptcourse" / "__init__.py").write_text("raise ImportError('broken install')")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    with pytest.raises(KernelStartError, match="did not start .3 attempts.*broken install"):
        NotebookRun(nb, lambda seed: LearnerKernel(LocalKernelProcess(tmp_path, env=env)), cell_timeout=5).run()
