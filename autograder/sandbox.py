"""Run one command (a learner's grading) with limits, so that untrusted code cannot hang or hurt the grading host.

    result = run_sandboxed([sys.executable, "grade_one.py"], cwd=copy_dir, timeout_s=600, memory_mb=4096)
    if result.killed_reason: ...

What is isolated, on Linux, and how:

* **Time.** The command runs in a new session and process group (``start_new_session=True``). On timeout the whole
  group gets SIGKILL, grandchildren included, and the group is killed again after the command exits, so nothing it
  started in the background outlives it. A process that calls ``setsid()``/``setpgid()`` itself leaves the group
  and escapes this (and, if it holds our pipes, costs ``DRAIN_S`` of waiting). A PID namespace would close that hole
  (``unshare --pid --fork``; but the command becomes pid 1 there, which ignores signals it does not handle, even a
  SIGKILL it sends itself), or a cgroup (``cgroup.kill``).
* **Memory.** ``RLIMIT_AS`` caps the address space: an allocation past it fails *inside* the child (Python raises
  ``MemoryError``) instead of making the host swap or wake the OOM killer. It counts virtual memory, not RAM, so
  leave room: importing torch maps far more than it touches (it fails under 1 GB, works under 2 GB here), every
  thread reserves a stack, and CUDA reserves huge ranges (leave ``memory_mb`` None on a GPU). ``killed_reason``
  says ``"memory"`` when the child exited non-zero and its stderr shows an allocation failure; that is the child's
  own report, read honestly, not a kernel signal (a program may print "MemoryError" and exit 1 on purpose).
* **Processes.** ``RLIMIT_NPROC`` bounds forking, but the kernel counts it per *real uid* over the whole machine
  (the grader's own processes included), and does not enforce it at all for root or a process with
  CAP_SYS_RESOURCE / CAP_SYS_ADMIN: see ``nproc_limit_enforced()``. Run grading under a dedicated unprivileged
  user for this limit to mean anything. Whatever was forked is still in the group and dies with it.
* **Files and cores.** ``RLIMIT_FSIZE`` caps the size of any file the command writes (Python gets
  ``OSError: File too large``); ``RLIMIT_CORE`` is 0, so a crash leaves no core dump.
* **Output.** stdout and stderr are read together as they come (a child blocked on a full pipe cannot deadlock us)
  and kept up to ``max_output_bytes`` each; past that the group is killed (``killed_reason="output"``) and the text
  ends with a marker, so a ``while True: print()`` never fills the grader's memory.
* **Network.** With ``network=False`` the command runs in a new, empty network namespace (``unshare --net``, which
  needs CAP_SYS_ADMIN, i.e. root; ``unshare --user --map-root-user`` could do it unprivileged, not tried here)
  where only the loopback interface exists; it is brought up because Jupyter kernels talk to their client over TCP
  on 127.0.0.1. Where ``unshare`` is not permitted the command runs *with* the network and ``network_isolated`` is
  False: the caller must check it and decide.

What is **not** isolated: the filesystem. The command sees every file its user may read or write; the caller must
run it in a throwaway copy (and, ideally, as an unprivileged user who cannot read the hidden tests' originals or
other learners' work). Environment variables are passed as given: give ``env`` a minimal dict, not ``os.environ``,
so no secret reaches learner code. Stdin is empty.
"""

from __future__ import annotations

import functools
import os
import re
import resource
import selectors
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

#: Appended to stdout/stderr when they were cut at ``max_output_bytes``.
CUT_MARKER = "\n[... output cut by the sandbox after {limit} bytes ...]\n"
#: How an allocation failure looks in a child's stderr: Python (numpy's _ArrayMemoryError too), torch, C, C++, and
#: the loader when a shared library no longer fits (``import torch`` under a 1 GB limit).
MEMORY_ERROR = re.compile(
    r"MemoryError|Cannot allocate memory|can't allocate memory|std::bad_alloc|failed to map segment from shared object")
#: How long we keep reading output after the group was killed; a process that left the group may hold the pipes.
DRAIN_S = 2.0


@dataclass
class SandboxResult:
    returncode: int            # negative: killed by that signal (-9 after a timeout, memory or output kill)
    timed_out: bool
    killed_reason: str | None  # "timeout" | "memory" | "output" (cut: killed, or it exited just then) | None
    stdout: str                # at most max_output_bytes, then CUT_MARKER
    stderr: str
    wall_s: float
    network_isolated: bool     # True only if the command really ran without network


# --------------------------------------------------------------------------------------------------------------------
# What this machine allows
# --------------------------------------------------------------------------------------------------------------------


@functools.cache
def _netns_prefix() -> tuple[str, ...] | None:
    """The argv prefix that runs a command in a new network namespace with loopback up, or None where not permitted.

    Tried once per process: ``unshare --net`` needs CAP_SYS_ADMIN (root) and ``ip`` must exist to bring
    loopback up; without loopback a Jupyter kernel could not reach its client, so "isolated but broken" is not offered.
    """
    unshare, ip = shutil.which("unshare"), shutil.which("ip")
    if not (unshare and ip):
        return None
    prefix = (unshare, "--net", "--")
    try:
        probe = subprocess.run([*prefix, ip, "link", "set", "lo", "up"], capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if probe.returncode != 0:
        return None
    # Absolute paths: the caller's env may have no PATH. "$@" then is the learner's argv, exec'd in place (same pid).
    script = f'{ip} link set lo up || {{ echo "sandbox: cannot bring loopback up" >&2; exit 125; }}; exec "$@"'
    return (*prefix, "/bin/sh", "-c", script, "sandbox")


def network_isolation_available() -> bool:
    return _netns_prefix() is not None


def nproc_limit_enforced() -> bool:
    """Whether the kernel would enforce RLIMIT_NPROC on a child of this process.

    Linux skips the check (kernel/fork.c) for real uid 0 and for CAP_SYS_RESOURCE (bit 24) or CAP_SYS_ADMIN (bit 21).
    """
    if os.getuid() == 0:
        return False
    caps = int(re.search(r"^CapEff:\s*([0-9a-f]+)", Path("/proc/self/status").read_text(), re.M).group(1), 16)
    return not caps & (1 << 24 | 1 << 21)


# --------------------------------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------------------------------


def _set_limits(memory_mb: int | None, max_processes: int | None, max_file_bytes: int | None) -> None:
    """Runs in the child between fork and exec (preexec_fn): only setrlimit calls, nothing that could deadlock."""
    def lower(limit: int, value: int) -> None:
        hard = resource.getrlimit(limit)[1]
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)  # an unprivileged process may lower its hard limit, never raise it
        resource.setrlimit(limit, (value, value))

    lower(resource.RLIMIT_CORE, 0)
    if memory_mb is not None:
        lower(resource.RLIMIT_AS, memory_mb * 2**20)
    if max_processes is not None:
        lower(resource.RLIMIT_NPROC, max_processes)
    if max_file_bytes is not None:
        lower(resource.RLIMIT_FSIZE, max_file_bytes)


class _Capture:
    """Keeps the first ``limit`` bytes of a stream and remembers whether more came."""

    def __init__(self, limit: int):
        self.data, self.limit, self.cut = bytearray(), limit, False

    def add(self, chunk: bytes) -> None:
        room = self.limit - len(self.data)
        self.data += chunk[:room]
        self.cut = self.cut or len(chunk) > room

    def text(self) -> str:
        text = self.data.decode(errors="replace")
        return text + CUT_MARKER.format(limit=self.limit) if self.cut else text


def _exited(pid: int) -> bool:
    # WNOWAIT leaves the child a zombie: its pid, which is also the group id, cannot be reused before we kill the group.
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:  # the whole group is already gone
        pass


def _read(sel: selectors.BaseSelector, timeout: float) -> None:
    """Read what is ready on the registered pipes, waiting at most ``timeout`` seconds; forget pipes at EOF."""
    for key, _ in sel.select(max(timeout, 0)):
        chunk = os.read(key.fd, 65536)
        if chunk:
            key.data.add(chunk)
        else:
            sel.unregister(key.fileobj)


def run_sandboxed(argv: Sequence[str | os.PathLike], *, cwd: str | os.PathLike, timeout_s: float,
                  memory_mb: int | None = None, max_processes: int | None = None,
                  max_output_bytes: int = 1_000_000, max_file_bytes: int | None = 100 * 2**20,
                  network: bool = False, env: Mapping[str, str] | None = None) -> SandboxResult:
    """Run ``argv`` in ``cwd`` with the limits above; return once it exited or was killed.

    Never raises for what the command does, only for what the caller got wrong (a missing cwd, say). A missing
    program raises FileNotFoundError when run directly, but exits 127 when run through ``unshare``'s shell.
    """
    argv = [os.fspath(a) for a in argv]
    prefix = None if network else _netns_prefix()
    if prefix:
        argv = [*prefix, *argv]
    out, err = _Capture(max_output_bytes), _Capture(max_output_bytes)
    killed_reason = None

    start = time.monotonic()
    deadline = start + timeout_s
    proc = subprocess.Popen(
        argv, cwd=cwd, env=None if env is None else dict(env), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        preexec_fn=functools.partial(_set_limits, memory_mb, max_processes, max_file_bytes))
    with proc, selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ, out)
        sel.register(proc.stderr, selectors.EVENT_READ, err)
        # Read until the command (the group leader) exits. Poll it every 0.1 s: a background grandchild may keep
        # the pipes open long after the command itself is done.
        while not _exited(proc.pid):
            if time.monotonic() >= deadline:
                killed_reason = "timeout"
                break
            if out.cut or err.cut:
                killed_reason = "output"
                break
            if sel.get_map():
                _read(sel, min(0.1, deadline - time.monotonic()))
            else:
                time.sleep(min(0.1, max(deadline - time.monotonic(), 0)))
        # Kill the group whatever happened: leftovers of a finished command must not outlive it either.
        _kill_group(proc.pid)
        drain_end = time.monotonic() + DRAIN_S
        while sel.get_map() and time.monotonic() < drain_end:
            _read(sel, drain_end - time.monotonic())
        returncode = proc.wait()
    wall_s = time.monotonic() - start

    if killed_reason is None and (out.cut or err.cut):
        killed_reason = "output"  # the command finished, but what it printed was cut
    if killed_reason is None and memory_mb is not None and returncode != 0 and MEMORY_ERROR.search(err.text()):
        killed_reason = "memory"
    return SandboxResult(returncode=returncode, timed_out=killed_reason == "timeout", killed_reason=killed_reason,
                         stdout=out.text(), stderr=err.text(), wall_s=wall_s, network_isolated=prefix is not None)
