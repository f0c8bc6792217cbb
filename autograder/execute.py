"""Run a learner's notebook inside the grading sandbox (the untrusted side of grading).

    python -m autograder.execute IN.ipynb --timeout 600 [--progress FILE] > OUT.ipynb

``autograder.worker`` starts this under ``autograder.sandbox.run_sandboxed`` (a uid of its own, or root without
capabilities), in a folder that holds nothing but the notebook to run. It deliberately imports neither nbgrader nor
the gradebook: the learner's kernel is a child of this process, so whatever this process could open, the learner's
code could open too.

* ``IN.ipynb`` is read, then deleted before the kernel starts: the notebook holds the hidden tests, and a learner's
  code that looks for files next to itself finds none.
* Each cell's index is appended to ``--progress`` before it runs, so when the whole sandbox is killed (time, memory,
  output) the worker still knows which cell was running.
* Output is capped per cell (``MAX_CELL_OUTPUT`` characters): a ``while True: print(...)`` fills neither the
  notebook nor this process's memory.
* A cell that kills the kernel (``os._exit``, a segfault) ends the run: the notebook is written with the cells run
  so far and the crash recorded in ``metadata.gptcourse_execution``; the worker re-runs with that cell neutralised.
* Grading setup runs first in the kernel (``setup_code``): every generator seeded; on a GPU, TF32 off.

* A cell that ignores the interrupt at its timeout (it keeps the kernel busy: every later cell would time out too)
  ends the run the same way (``KernelStuck``).
* The process makes itself non-dumpable: the kernel, same user, cannot read the hidden tests from its memory.

Exit status: 0 the notebook ran (cells may have failed, which is the learner's business); 3 the kernel died;
4 a cell ignored the interrupt at its timeout.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

#: Characters of output one cell may produce; the rest is dropped with a note (nbgrader later trims lines too).
MAX_CELL_OUTPUT = 200_000
CUT_NOTE = "\n[... output cut by the grader: the cell printed more than {limit:,} characters ...]\n"
#: Runs in the kernel before the learner's first cell: every generator seeded by ``gptcourse.seed.set_seed`` (the
#: course's one place for seeding) and, on a GPU, TF32 off. Importing torch costs seconds, so a notebook that never
#: mentions torch or the course library gets Python and NumPy seeded without it.
SETUP_TORCH = """\
import os as _os
from gptcourse.seed import exact_gpu_maths as _exact, set_seed as _seed
_seed(0)
if _os.environ.get("GPTCOURSE_DEVICE", "").startswith("cuda"):
    _exact()
del _os, _exact, _seed
"""
SETUP_LIGHT = """\
import random as _random
_random.seed(0)
try:
    import numpy as _np
    _np.random.seed(0)
except ImportError:
    pass
"""


def setup_code(nb) -> str:
    uses_torch = any(word in cell.get("source", "") for cell in nb.cells if cell.get("cell_type") == "code"
                     for word in ("torch", "gptcourse"))
    return SETUP_TORCH if uses_torch else SETUP_LIGHT


KERNEL_DIED = 3
KERNEL_STUCK = 4
#: Seconds a kernel gets to answer after a timed-out cell was interrupted; silence means the cell ignores SIGINT.
ANSWER_AFTER_INTERRUPT_S = 10


class KernelStuck(Exception):
    """The kernel did not come back after its cell was interrupted: every later cell would time out too."""


async def kernel_answers(kc, seconds: float) -> bool:
    """Whether the kernel answers a kernel_info request within ``seconds`` (it is not busy any more)."""
    import queue
    import time

    msg_id = kc.kernel_info()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            msg = await kc.get_shell_msg(timeout=0.5)
        except queue.Empty:
            continue
        if msg.get("parent_header", {}).get("msg_id") == msg_id:
            return True
    return False


def make_client(nb, timeout: int, progress: Path | None, cwd: Path):
    from nbclient import NotebookClient
    from nbformat import NotebookNode

    sizes: dict[int, int] = {}  # characters of output so far, per cell

    class GradingClient(NotebookClient):
        """nbclient with progress marks, capped output, and errors recorded as nbgrader's Execute records them."""

        def output(self, outs, msg, display_id, cell_index):
            size = sizes.get(cell_index, 0)
            if size >= MAX_CELL_OUTPUT:
                return None  # already cut: drop the rest (the note is there)
            content = msg.get("content", {})
            length = len(str(content.get("text", ""))) + len(str(content.get("data", "")))
            sizes[cell_index] = size + length
            if size + length <= MAX_CELL_OUTPUT:
                return super().output(outs, msg, display_id, cell_index)
            if isinstance(content.get("text"), str):  # a stream: keep what fits
                msg = {**msg, "content": {**content, "text": content["text"][:MAX_CELL_OUTPUT - size]}}
                super().output(outs, msg, display_id, cell_index)
            outs.append(NotebookNode(output_type="stream", name="stdout", text=CUT_NOTE.format(limit=MAX_CELL_OUTPUT)))
            return None

    message = f"the cell ran for more than {timeout} s and was interrupted"
    client = GradingClient(
        nb, timeout=timeout, interrupt_on_timeout=True, allow_errors=True, kernel_name="python3",
        resources={"metadata": {"path": str(cwd)}}, extra_arguments=["--HistoryManager.hist_file=:memory:"],
        error_on_timeout={"ename": "CellTimeoutError", "evalue": message,
                          "traceback": [f"CellTimeoutError: {message}"]})

    def before(cell, cell_index, **_):
        if progress is not None:
            with open(progress, "a", encoding="utf-8") as fh:
                fh.write(f"{cell_index - 1}\n")  # minus the setup cell: indices of the learner's notebook

    async def after(cell, cell_index, execute_reply, **_):
        # As nbgrader's Execute: an error the kernel replied with but did not display (a timeout) is added as an
        # output, so the grade sees it.
        content = execute_reply.get("content", {})
        if content.get("status") != "error":
            return
        if not any(o.get("output_type") == "error" and o.get("ename") == content.get("ename") for o in cell.outputs):
            cell.outputs.append(NotebookNode(output_type="error", ename=content.get("ename", "Error"),
                                             evalue=content.get("evalue", ""),
                                             traceback=content.get("traceback") or [content.get("ename", "Error")]))
        if content.get("ename") == "CellTimeoutError" and not await kernel_answers(client.kc, ANSWER_AFTER_INTERRUPT_S):
            raise KernelStuck(cell_index - 1)

    client.on_cell_execute = before
    client.on_cell_executed = after
    return client


def execute(source: Path, timeout: int, progress: Path | None) -> int:
    import nbformat
    from nbclient.exceptions import DeadKernelError

    nb = nbformat.read(source, as_version=4)
    source.unlink()  # the hidden tests are in memory now; nothing left on disk for the learner's code to find
    nb.cells.insert(0, nbformat.v4.new_code_cell(setup_code(nb)))
    client = make_client(nb, timeout, progress, Path.cwd())
    status = {"dead_kernel": False, "stuck": False}
    try:
        # The kernel gets no handle on our stdout, which carries the result: a file next to the learner's code
        # could be rewritten by it (a process left behind) after we wrote it; this pipe cannot.
        client.execute(stdout=subprocess.DEVNULL)
    except DeadKernelError as exc:
        status = {"dead_kernel": True, "stuck": False, "detail": str(exc)[:500]}
    except KernelStuck:
        status = {"dead_kernel": False, "stuck": True}
    setup = nb.cells.pop(0)
    errors = [o for o in setup.get("outputs", []) if o.get("output_type") == "error"]
    if errors:  # the grading environment itself is broken: say so rather than blame the learner
        status["setup_error"] = f"{errors[0].get('ename')}: {errors[0].get('evalue')}"
    nb.metadata["gptcourse_execution"] = status
    sys.stdout.write(nbformat.writes(nb))
    sys.stdout.flush()
    return KERNEL_DIED if status["dead_kernel"] else KERNEL_STUCK if status["stuck"] else 0


def not_dumpable() -> None:
    """Make this process's memory (which holds the hidden tests) unreadable through /proc/<pid>/mem to the kernel,
    which runs as the same user: Linux then allows that only with CAP_SYS_PTRACE."""
    import ctypes

    PR_SET_DUMPABLE = 4
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: nothing to protect this way
        pass


def main(argv: list[str] | None = None) -> int:
    not_dumpable()
    # nbformat imports jsonschema, which builds an optional IRI-syntax checker (rfc3987_syntax) at import: over a
    # second per submission, for a format notebooks never use. Importing it fails fast instead.
    sys.modules.setdefault("rfc3987_syntax", None)
    parser = argparse.ArgumentParser(prog="python -m autograder.execute", description=__doc__.split("\n")[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("--timeout", type=int, required=True, help="seconds one cell may run")
    parser.add_argument("--progress", type=Path, default=None)
    args = parser.parse_args(argv)
    return execute(args.source, args.timeout, args.progress)


if __name__ == "__main__":
    sys.exit(main())
