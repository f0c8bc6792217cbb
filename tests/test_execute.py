"""autograder/execute.py, the untrusted side of grading: it runs a notebook and reports, nothing else."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from autograder.sandbox import run_sandboxed, user_switch_available
from autograder.execute import KERNEL_DIED, KERNEL_STUCK, MAX_CELL_OUTPUT, SETUP_LIGHT, SETUP_TORCH, setup_code


def run(tmp_path: Path, *sources: str, timeout: int = 20) -> tuple[int, nbformat.NotebookNode, list[int]]:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nbformat.write(nb, tmp_path / "in.ipynb")
    proc = subprocess.run([sys.executable, "-m", "autograder.execute", "in.ipynb", "--timeout", str(timeout),
                           "--progress", "progress"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    progress = [int(x) for x in (tmp_path / "progress").read_text().split()]
    return proc.returncode, nbformat.reads(proc.stdout, as_version=4), progress


def text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs)


def test_setup_seeds_torch_only_when_the_notebook_uses_it():
    uses = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import torch")])
    plain = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    assert setup_code(uses) == SETUP_TORCH and "gptcourse.seed" in SETUP_TORCH
    assert setup_code(plain) == SETUP_LIGHT and "torch" not in SETUP_LIGHT


@pytest.mark.slow
def test_runs_seeded_deletes_its_input_and_records_progress(tmp_path):
    code, nb, progress = run(tmp_path, "import os, random, torch\nprint(random.random(), torch.rand(1).item())",
                             "print(sorted(os.listdir('.')))")
    assert code == 0 and progress == [-1, 0, 1]  # -1: the setup cell
    # Seeded by gptcourse.seed.set_seed(0): the first draws are always these.
    import random

    import torch

    random.seed(0), torch.manual_seed(0)
    assert text(nb.cells[0]).split() == [str(random.random()), str(torch.rand(1).item())]
    assert "in.ipynb" not in text(nb.cells[1])  # the notebook with the hidden tests is gone from the disk
    assert len(nb.cells) == 2  # the setup cell is not in the result


@pytest.mark.slow
def test_the_kernel_cannot_write_into_the_result(tmp_path):
    # The result goes to the executor's stdout; the kernel's own stdout is elsewhere, so it cannot forge it.
    code, nb, _ = run(tmp_path, "import os\nos.write(1, b'forged')\nprint('shown')")
    assert code == 0 and text(nb.cells[0]) == "shown\n"


@pytest.mark.slow
def test_a_dead_kernel_is_reported_with_the_cell_it_died_in(tmp_path):
    code, nb, progress = run(tmp_path, "x = 1", "import os; os._exit(1)", "print('never')")
    assert code == KERNEL_DIED and progress[-1] == 1
    assert nb.metadata["gptcourse_execution"]["dead_kernel"] is True


@pytest.mark.slow
def test_output_is_capped_per_cell(tmp_path):
    code, nb, _ = run(tmp_path, "for i in range(200_000):\n    print('x' * 50)", "print('next cell runs')")
    assert code == 0
    assert MAX_CELL_OUTPUT <= len(text(nb.cells[0])) < MAX_CELL_OUTPUT + 1000  # not 10 MB
    assert "output cut by the grader" in text(nb.cells[0]) and text(nb.cells[1]) == "next cell runs\n"


@pytest.mark.slow
def test_a_cell_past_its_timeout_is_interrupted_and_the_next_runs(tmp_path):
    code, nb, _ = run(tmp_path, "while True:\n    pass", "print('after')", timeout=2)
    assert code == 0
    assert "CellTimeoutError" in [o["ename"] for o in nb.cells[0].outputs if o["output_type"] == "error"]
    assert text(nb.cells[1]) == "after\n"


@pytest.mark.slow
def test_a_cell_that_ignores_the_interrupt_ends_the_run_so_the_worker_can_neutralise_it(tmp_path):
    stubborn = "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    time.sleep(0.1)"
    code, nb, progress = run(tmp_path, "x = 1", stubborn, "print('never reached')", timeout=2)
    assert code == KERNEL_STUCK and progress[-1] == 1
    assert nb.metadata["gptcourse_execution"]["stuck"] is True


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() == 0 and not user_switch_available(),
                    reason="as root, only the sandbox (which drops capabilities) can show this")
def test_the_kernel_cannot_read_the_executors_memory(tmp_path):
    # The executor holds the whole notebook, hidden tests included; the kernel is its child, same user. Run as the
    # grader runs it: in the sandbox, where root has no CAP_SYS_PTRACE.
    probe = ("import os\ntry:\n    open(f'/proc/{os.getppid()}/mem', 'rb')\n    print('readable')\n"
             "except OSError as e:\n    print(type(e).__name__)")
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(probe)]), tmp_path / "in.ipynb")
    result = run_sandboxed([sys.executable, "-m", "autograder.execute", "in.ipynb", "--timeout", "20"],
                           cwd=tmp_path, timeout_s=120, env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert text(nbformat.reads(result.stdout, as_version=4).cells[0]).strip() == "PermissionError"
