"""The learner's kernel, driven from the grader's process: start it, run the learner's cells, serve a test's requests.

``LearnerKernel`` owns one Jupyter kernel (``LocalKernelProcess``: an ordinary child process, for the learner's
self-check and the tests; ``SandboxedKernelProcess``: inside ``autograder.sandbox``, for grading) and one socket to the
agent in it (``agent.py``, sent in as source when the kernel starts, before any learner code). The learner's cells
are ordinary executions; their outputs are collected here, capped. A test cell is not executed in the kernel at all:
the kernel runs the agent's ``serve()`` while the test runs here and talks to it (``link.Link``).

Failures are told apart: ``KernelStartError`` (the grader's problem: retried, then reported), and for the learner's
code a cell that errs, that runs past its time (interrupted: ``CellTimeoutError``), that ignores the interrupt
(``stuck``) or that kills the kernel (``died``). The last two end the kernel; the runner starts another.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from autograder.referee import link as link_mod
from autograder.referee import wire

#: Characters of output one cell may keep; the rest is dropped with a note.
MAX_CELL_OUTPUT = 200_000
CUT_NOTE = "\n[... output cut by the grader: the cell printed more than {limit:,} characters ...]\n"
STDERR_MARK = "[stderr] "
TIMEOUT_ENAME = "CellTimeoutError"
#: Seconds a kernel may take to start and answer (generous: a busy machine is slow, and a slow start is not the
#: learner's fault). Then the start counts as failed.
KERNEL_START_S = 120
#: Largest message the grader accepts from the kernel on Jupyter's own channels (outputs): ZMQ drops the sender.
MAX_ZMQ_MESSAGE = 64 * 2**20
SERVE_CODE = "__import__('sys').modules['_gptcourse_agent'].serve()"
AGENT_SOURCES = {name: (Path(__file__).with_name(f"{name}.py")).read_text(encoding="utf-8")
                 for name in ("wire", "agent")}


class KernelStartError(Exception):
    """The kernel (or the agent in it) did not start: a problem of the grading machine, not of the learner."""


def bootstrap_code(address, token: str, max_message_bytes: int, seed_torch: bool) -> str:
    """What the kernel runs first, silently: seed the generators, then load the agent and connect it."""
    seeding = ("from gptcourse.seed import exact_gpu_maths as _x, set_seed as _s\n_s(0)\n"
               "if __import__('os').environ.get('GPTCOURSE_DEVICE', '').startswith('cuda'):\n    _x()\ndel _x, _s\n"
               if seed_torch else
               "import random as _r\n_r.seed(0)\ndel _r\ntry:\n    import numpy as _n\n    _n.random.seed(0)\n"
               "    del _n\nexcept ImportError:\n    pass\n")
    return seeding + f"""
def _gptcourse_install():
    import sys, types
    modules = {{}}
    for name, source in {AGENT_SOURCES!r}.items():
        module = modules[name] = types.ModuleType("gptcourse_referee_" + name)
        filename = {{"agent": "<the grader calling your code>", "wire": "<the grader's wire>"}}[name]
        exec(compile(source, filename, "exec"), module.__dict__)
    sys.modules["_gptcourse_agent"] = modules["agent"]
    modules["agent"].AGENT = modules["agent"].connect({address!r}, {token!r}, get_ipython().user_ns,
                                                      modules["wire"], {max_message_bytes!r})
    modules["agent"].serve = modules["agent"].AGENT.serve
_gptcourse_install()
del _gptcourse_install
"""


def uses_torch(sources) -> bool:
    """Whether a notebook uses torch, so that it is seeded with the rest (importing it costs seconds, so a notebook
    without it goes without; a torch imported later starts from its own fixed default seed anyway)."""
    return any(re.search(r"\btorch\b", source) for source in sources)


# --------------------------------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------------------------------


class Outputs:
    """The outputs of one execution, as nbformat output dicts, from its iopub messages; capped at ``limit``
    characters (a note marks the cut). ``streams_only``: keep stdout/stderr text alone (a test's session)."""

    def __init__(self, limit: int = MAX_CELL_OUTPUT, streams_only: bool = False):
        self.items: list[dict] = []
        self.size, self.limit, self.cut, self.streams_only = 0, limit, False, streams_only
        self.clear_pending = False
        self.execution_count = None
        self.done = False  # the kernel said it is idle again: nothing more will come

    def add(self, msg: dict) -> None:
        kind, content = msg.get("msg_type"), msg.get("content", {})
        if kind == "status":
            self.done = self.done or content.get("execution_state") == "idle"
            return
        if kind == "execute_input":
            self.execution_count = content.get("execution_count")
            return
        if kind == "clear_output":
            if content.get("wait"):
                self.clear_pending = True
            else:
                self.items, self.size = [], 0
            return
        if kind not in ("stream", "display_data", "execute_result", "error"):
            return
        if self.streams_only and kind != "stream":
            return
        if self.clear_pending:
            self.items, self.size, self.clear_pending = [], 0, False
        if kind == "stream":
            name = "stderr" if content.get("name") == "stderr" else "stdout"
            self._text(name, str(content.get("text", "")))
        elif kind == "error":
            tb = [str(line)[:10_000] for line in content.get("traceback", [])[:200]]
            self._keep({"output_type": "error", "ename": str(content.get("ename", "Error"))[:200],
                        "evalue": str(content.get("evalue", ""))[:20_000], "traceback": tb})
        else:
            data = content.get("data", {}) if isinstance(content.get("data"), dict) else {}
            item = {"output_type": kind, "data": data, "metadata": content.get("metadata", {})}
            if kind == "execute_result":
                item["execution_count"] = content.get("execution_count")
            self._keep(item)

    def _text(self, name: str, text: str) -> None:
        if self.cut:
            return
        room = self.limit - self.size
        if len(text) > room:
            text, self.cut = text[:max(room, 0)], True
        if self.items and self.items[-1].get("output_type") == "stream" and self.items[-1]["name"] == name:
            self.items[-1]["text"] += text
        elif text:
            self.items.append({"output_type": "stream", "name": name, "text": text})
        self.size += len(text)
        if self.cut:
            self.items.append({"output_type": "stream", "name": "stdout", "text": CUT_NOTE.format(limit=self.limit)})

    def _keep(self, item: dict) -> None:
        size = len(json.dumps(item, default=str))
        if self.cut or self.size + size > self.limit:
            if not self.cut:
                self.cut = True
                self.items.append({"output_type": "stream", "name": "stdout",
                                   "text": CUT_NOTE.format(limit=self.limit)})
            return
        self.items.append(item)
        self.size += size


def error_output(ename: str, evalue: str, traceback: list[str] | None = None) -> dict:
    """An nbformat error output (the traceback defaults to one line: kind and message)."""
    return {"output_type": "error", "ename": ename, "evalue": evalue,
            "traceback": traceback if traceback is not None else [f"{ename}: {evalue}"]}


def marked_stderr(text: str) -> str:
    """Text from stderr, each line marked ``[stderr]``, to be shown as stdout: nbgrader zeroes a test cell with any
    stderr output, and warnings (a library's, a progress bar's) are no failures."""
    return "".join(STDERR_MARK + line for line in text.splitlines(keepends=True))


def mark_stderr(items: list[dict]) -> list[dict]:
    """Stream outputs on stderr as stdout text marked ``[stderr]`` (see ``marked_stderr``)."""
    return [{**item, "name": "stdout", "text": marked_stderr(item["text"])}
            if item.get("output_type") == "stream" and item.get("name") == "stderr" else item for item in items]


# --------------------------------------------------------------------------------------------------------------------
# Kernel processes
# --------------------------------------------------------------------------------------------------------------------


class AgentListener:
    """The socket the agent connects back to: a Unix socket in ``folder`` where there are Unix sockets, else TCP on
    the loopback. Only a connection that says the token is accepted."""

    def __init__(self, folder: Path):
        self.token = secrets.token_hex(16)
        if hasattr(socket, "AF_UNIX"):
            self.address = str(folder / "agent.sock")
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.bind(self.address)
            os.chmod(self.address, 0o666)  # the learner's uid (another user, in the sandbox) must connect
        else:  # pragma: no cover - Windows
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.bind(("127.0.0.1", 0))
            self.address = list(self.sock.getsockname())
        self.sock.listen(4)

    def accept(self, limits: wire.Limits, timeout: float) -> socket.socket:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise KernelStartError("the agent in the learner's kernel did not connect to the grader")
            self.sock.settimeout(left)
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            conn.settimeout(None)
            try:
                hello, _ = wire.read_frame(conn, limits, time.monotonic() + min(left, 10))
            except wire.WireError:
                conn.close()
                continue
            if hello.get("op") == "hello" and hello.get("token") == self.token:
                return conn
            conn.close()

    def close(self) -> None:
        self.sock.close()
        if isinstance(self.address, str):
            Path(self.address).unlink(missing_ok=True)


class KernelProcess:
    """A kernel process and a client connected to it: ``start``, ``alive``, ``interrupt``, ``kill``."""

    client = None
    isolation: dict = {}
    agent_folder: Path  # where the agent's socket goes: a folder the kernel can reach

    def start(self, timeout: float) -> None:
        raise NotImplementedError

    def alive(self) -> bool:
        raise NotImplementedError

    def interrupt(self) -> None:
        """SIGINT to the kernel, through Jupyter's control channel (the kernel signals itself)."""
        if self.client is not None:
            self.client.control_channel.send(self.client.session.msg("interrupt_request", {}))

    def kill(self) -> None:
        raise NotImplementedError

    #: Lines every kernel writes at start: not worth showing when it died.
    NOISE = ("running over TCP without encryption", "Ctrl-C will not work", "To exit, you will have to",
             "To connect another client", "--existing", "issues/2049", "explicitly quit this process",
             "is not a writable location")

    def last_words(self) -> str:
        """The end of what the kernel process itself wrote on stderr (a crash report, say), without its noise."""
        text = self.output_tail()
        return "\n".join(line for line in text.splitlines() if line.strip() and not any(n in line for n in self.NOISE))

    def output_tail(self) -> str:
        return ""


def make_client(connection_file: str):
    """A blocking client whose sockets refuse oversized messages from the learner's kernel."""
    import zmq
    from jupyter_client import BlockingKernelClient

    context = zmq.Context()
    context.setsockopt(zmq.MAXMSGSIZE, MAX_ZMQ_MESSAGE)
    client = BlockingKernelClient(context=context)
    client.load_connection_file(connection_file)
    return client


class LocalKernelProcess(KernelProcess):
    """An ordinary child process (the learner's self-check; the tests): jupyter_client starts and signals it."""

    def __init__(self, cwd: Path, env: dict | None = None):
        self.cwd, self.env = cwd, env
        self.agent_folder = Path(tempfile.mkdtemp(prefix="gptcourse-agent-"))
        self.manager = None
        self.stderr_file = tempfile.TemporaryFile(mode="w+b")
        self.isolation = {"process_group": False, "network_isolated": False, "separate_user": False,
                          "paths_hidden": False}

    def start(self, timeout: float) -> None:
        from jupyter_client import KernelManager

        self.manager = KernelManager(kernel_name="python3")
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("MPLBACKEND", "Agg")
        self.manager.start_kernel(cwd=str(self.cwd), env=env, stderr=self.stderr_file, stdout=self.stderr_file,
                                  extra_arguments=["--HistoryManager.hist_file=:memory:"])
        self.client = make_client(self.manager.connection_file)
        self.client.start_channels()
        self.client.wait_for_ready(timeout=timeout)

    def alive(self) -> bool:
        return self.manager is not None and self.manager.is_alive()

    def interrupt(self) -> None:
        if self.manager is not None:
            self.manager.interrupt_kernel()

    def kill(self) -> None:
        if self.client is not None:
            self.client.stop_channels()
        if self.manager is not None:
            try:
                self.manager.shutdown_kernel(now=True)
            except Exception:  # noqa: BLE001 - it may be dead already
                pass
            self.manager.cleanup_resources()
        shutil.rmtree(self.agent_folder, ignore_errors=True)

    def output_tail(self) -> str:
        self.stderr_file.seek(0)
        return self.stderr_file.read()[-20_000:].decode("utf-8", "replace")


class SandboxedKernelProcess(KernelProcess):
    """A kernel inside ``autograder.sandbox`` (grading): no network, its own root with only ``read_only`` paths
    (Python, the course library) and a private copy of ``work_source`` as its working folder, a uid of its own
    (``run_as``) where the grader is root, and limits. Its Jupyter sockets and the agent's socket are Unix sockets in
    ``folder/ipc``, the one folder it shares with the grader; that folder is closed to new files once it started."""

    def __init__(self, folder: Path, env: dict, read_only: list[str], work_source: Path | None = None,
                 covered: list[str] = (), devices: list[str] = (), run_as: int | None = None,
                 memory_mb: int | None = None, max_processes: int = 256):
        self.folder, self.env, self.run_as = folder, env, run_as
        self.ipc = self.agent_folder = folder / "ipc"
        self.ipc.mkdir(exist_ok=True)
        if run_as is not None and os.geteuid() == 0:
            os.chown(self.ipc, run_as, run_as)
        self.filesystem = dict(read_only=list(read_only), writable=[str(self.ipc)], covered=list(covered),
                               devices=list(devices), work_source=str(work_source) if work_source else None)
        self.memory_mb, self.max_processes = memory_mb, max_processes
        self.process = None
        self.isolation = {"process_group": True, "network_isolated": False, "separate_user": False,
                          "paths_hidden": False}

    def start(self, timeout: float) -> None:
        from jupyter_client.connect import write_connection_file

        from autograder import sandbox

        connection, _ = write_connection_file(str(self.ipc / "kernel.json"), transport="ipc",
                                              ip=str(self.ipc / "kernel"), key=secrets.token_hex(32).encode())
        os.chmod(connection, 0o644)
        fs = sandbox.Filesystem(**self.filesystem)
        env = {**self.env, "HOME": fs.work, "IPYTHONDIR": "/tmp/.ipython", "MPLCONFIGDIR": "/tmp/.config",
               "JUPYTER_RUNTIME_DIR": "/tmp/.runtime", "XDG_CONFIG_HOME": "/tmp/.config",
               "XDG_CACHE_HOME": "/tmp/.cache", "TMPDIR": "/tmp"}
        argv = [sys.executable, "-m", "ipykernel_launcher", "-f", connection, "--HistoryManager.hist_file=:memory:"]
        self.process = sandbox.start_sandboxed(argv, cwd=self.folder, env=env, memory_mb=self.memory_mb,
                                               max_processes=self.max_processes, run_as=self.run_as,
                                               filesystem=fs)
        facts = self.process.facts
        self.isolation = {"process_group": True, "network_isolated": facts["network_isolated"],
                          "separate_user": facts["user_separated"], "paths_hidden": facts["paths_hidden"]}
        self.client = make_client(connection)
        self.client.start_channels()
        self.client.wait_for_ready(timeout=timeout)
        if os.geteuid() == 0:  # its sockets exist: no new file may appear in the shared folder
            os.chown(self.ipc, 0, 0)
            os.chmod(self.ipc, 0o555)

    def alive(self) -> bool:
        return self.process is not None and self.process.alive()

    def kill(self) -> None:
        if self.client is not None:
            self.client.stop_channels()
        if self.process is not None:
            self.process.kill()

    def output_tail(self) -> str:
        return self.process.output_tail() if self.process is not None else ""


# --------------------------------------------------------------------------------------------------------------------
# The learner's kernel
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class CellRun:
    """What running one of the learner's cells did. ``status``: ok, error, timeout (interrupted), stuck (did not
    stop when interrupted: the kernel must go) or died (the kernel died)."""

    status: str
    outputs: list = field(default_factory=list)
    execution_count: int | None = None
    error: dict | None = None


class LearnerKernel:
    """One kernel with the agent in it. ``start()`` may raise KernelStartError; ``run_cell`` runs a learner cell;
    ``begin_session``/``end_session`` serve one test cell."""

    def __init__(self, process: KernelProcess, limits: wire.Limits | None = None, seed_torch: bool = True):
        self.process = process
        self.limits = limits or wire.Limits()
        self.seed_torch = seed_torch
        self.link: link_mod.Link | None = None
        self.listener: AgentListener | None = None
        self.watched: dict[str, Outputs] = {}  # msg_id of an execution -> its outputs, as they come
        self.serving: Outputs | None = None  # the agent's serve() execution during a test

    # --- life -----------------------------------------------------------------------------------------------------

    def start(self, timeout: float = KERNEL_START_S) -> None:
        self.listener = AgentListener(self.process.agent_folder)
        try:
            self.process.start(timeout)
            code = bootstrap_code(self.listener.address, self.listener.token, self.limits.max_message_bytes,
                                  self.seed_torch)
            run = self.run_cell(code, timeout, silent=True)
            if run.status != "ok":
                raise KernelStartError(f"the grader's set-up failed in the kernel ({run.status}: "
                                       f"{(run.error or {}).get('ename')} {(run.error or {}).get('evalue')})")
            sock = self.listener.accept(self.limits, timeout)
        except KernelStartError:
            self.shutdown()
            raise
        except Exception as exc:  # noqa: BLE001 - jupyter_client raises many kinds when a start fails
            words = self.process.last_words().strip().splitlines()
            self.shutdown()
            raise KernelStartError(f"{type(exc).__name__}: {exc}" + (f" (it said: {words[-1]})" if words else ""))
        self.link = link_mod.Link(sock, self.limits, interrupt=self.process.interrupt, on_wait=self._on_wait)

    def shutdown(self) -> None:
        if self.link is not None:
            self.link.sock.close()
            self.link = None
        self.process.kill()
        if self.listener is not None:
            self.listener.close()
            self.listener = None

    # --- the learner's cells ------------------------------------------------------------------------------------

    def run_cell(self, source: str, timeout: float, silent: bool = False) -> CellRun:
        """Execute ``source`` (a learner cell); interrupted after ``timeout`` seconds."""
        msg_id = self.process.client.execute(source, silent=silent, store_history=not silent, allow_stdin=False,
                                             stop_on_error=False)
        outputs = self.watched[msg_id] = Outputs()
        try:
            reply, interrupted = self._wait_for(msg_id, outputs, timeout)
        finally:
            del self.watched[msg_id]
        items = mark_stderr(outputs.items)
        if reply is None:
            return CellRun("stuck" if interrupted else "died", items, outputs.execution_count)
        if interrupted:
            items = [o for o in items if o.get("output_type") != "error"]
            error = error_output(TIMEOUT_ENAME, f"the cell ran for more than {timeout:g} s and was interrupted")
            return CellRun("timeout", items + [error], outputs.execution_count, error)
        content = reply.get("content", {})
        if content.get("status") == "error":
            error = next((o for o in items if o.get("output_type") == "error"), None)
            if error is None:  # an error the kernel replied with but did not publish
                error = error_output(str(content.get("ename", "Error")), str(content.get("evalue", "")), [])
                items.append(error)
            return CellRun("error", items, outputs.execution_count, error)
        return CellRun("ok", items, outputs.execution_count)

    def _wait_for(self, msg_id: str, outputs: Outputs, timeout: float) -> tuple[dict | None, bool]:
        """(the execution's reply, whether it had to be interrupted) once it is idle; or (None, True) when it did not
        stop when interrupted, (None, False) when the kernel died."""
        reply, interrupted = None, False
        deadline = time.monotonic() + timeout
        while reply is None or not outputs.done:
            left = deadline - time.monotonic()
            if left <= 0:
                if interrupted:
                    return None, True  # stuck: it did not stop when interrupted
                self.process.interrupt()
                interrupted, deadline = True, time.monotonic() + link_mod.GRACE_S
                continue
            if not self._poll(min(left, 0.5)):
                if not self.process.alive():
                    return None, False  # died
                continue
            self._drain_iopub()
            reply = self._shell_reply(msg_id) or reply
        return reply, interrupted

    def _poll(self, timeout: float) -> bool:
        import zmq

        client = self.process.client
        poller = zmq.Poller()
        poller.register(client.iopub_channel.socket, zmq.POLLIN)
        poller.register(client.shell_channel.socket, zmq.POLLIN)
        return bool(poller.poll(int(timeout * 1000)))

    def _drain_iopub(self) -> None:
        """Take every waiting iopub message to the outputs of the execution it belongs to (others are dropped)."""
        channel = self.process.client.iopub_channel
        while channel.msg_ready():
            msg = channel.get_msg(timeout=0)
            outputs = self.watched.get(msg.get("parent_header", {}).get("msg_id"))
            if outputs is not None:
                outputs.add(msg)

    def _shell_reply(self, msg_id: str) -> dict | None:
        channel = self.process.client.shell_channel
        while channel.msg_ready():
            msg = channel.get_msg(timeout=0)
            if msg.get("parent_header", {}).get("msg_id") == msg_id:
                return msg
        return None

    # --- test cells ---------------------------------------------------------------------------------------------

    def begin_session(self, deadline: float) -> link_mod.Link:
        """Start the agent serving (a kernel execution) and open the link's session for one test cell."""
        msg_id = self.process.client.execute(SERVE_CODE, silent=False, store_history=False, allow_stdin=False,
                                             stop_on_error=False)
        self.serving = self.watched[msg_id] = Outputs(streams_only=True)
        self.link.begin(deadline)
        return self.link

    def end_session(self) -> list[dict]:
        """Close the session and wait for the agent's execution to return; the learner's output meanwhile."""
        self.link.end()
        deadline = time.monotonic() + link_mod.GRACE_S
        while not self.serving.done:
            if time.monotonic() > deadline:
                raise link_mod.LinkBroken("stuck", "the learner's kernel did not return after the test")
            self._on_wait(closing=True)
        return self.session_outputs()

    def session_outputs(self) -> list[dict]:
        """What the learner's code printed during the test (the session is over)."""
        items = mark_stderr(self.serving.items) if self.serving else []
        self.watched = {k: v for k, v in self.watched.items() if v is not self.serving}
        self.serving = None
        return items

    def _on_wait(self, closing: bool = False) -> None:
        """While the link waits: keep the kernel's output flowing, and notice a dead kernel or a lost agent."""
        self._poll(0.05 if closing else 0)
        self._drain_iopub()
        if not self.process.alive():
            raise link_mod.LinkBroken("kernel", "the learner's kernel died")
        if self.serving is not None and self.serving.done and not closing:
            raise link_mod.LinkBroken("protocol", "the agent in the learner's kernel stopped serving the test")
