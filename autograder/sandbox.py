"""Run one command (a learner's grading) with limits, so that untrusted code cannot hang or hurt the grading host.

    result = run_sandboxed([sys.executable, "grade_one.py"], cwd=copy_dir, timeout_s=600, memory_mb=4096)
    if result.killed_reason: ...

What is isolated, on Linux, and how:

* **Time.** The command runs in a new session and process group (``start_new_session=True``). On timeout the whole
  group gets SIGKILL, grandchildren included, and the group is killed again after the command exits, so nothing it
  started in the background outlives it. A process that calls ``setsid()`` itself leaves the group; it still dies
  with the PID namespace (below), or with its dedicated user (``run_as``); without either it escapes.
* **Memory.** ``RLIMIT_AS`` caps the address space: an allocation past it fails *inside* the child (Python raises
  ``MemoryError``) instead of making the host swap or wake the OOM killer. It counts virtual memory, not RAM, so
  leave room: importing torch maps far more than it touches (it fails under 1 GB, works under 2 GB here), every
  thread reserves a stack, and CUDA reserves huge ranges (leave ``memory_mb`` None on a GPU). ``killed_reason``
  says ``"memory"`` when the child exited non-zero and its stderr shows an allocation failure; that is the child's
  own report, read honestly, not a kernel signal (a program may print "MemoryError" and exit 1 on purpose).
* **Processes.** ``RLIMIT_NPROC`` bounds forking, but the kernel counts it per *real uid* over the whole machine
  and never enforces it for uid 0 (``nproc_limit_enforced()``): it means something only with ``run_as``. Whatever
  was forked dies with the group (and the namespace).
* **Files and cores.** ``RLIMIT_FSIZE`` caps the size of any file the command writes (Python gets
  ``OSError: File too large``); ``RLIMIT_CORE`` is 0, so a crash leaves no core dump.
* **Output.** stdout and stderr are read together as they come (a child blocked on a full pipe cannot deadlock us)
  and kept up to ``max_output_bytes`` each; past that the group is killed (``killed_reason="output"``) and the text
  ends with a marker, so a ``while True: print()`` never fills the grader's memory.
* **Namespaces** (``network=False``, where ``unshare`` is permitted: it needs CAP_SYS_ADMIN, i.e. root). The command
  runs in new network, mount and PID namespaces. Network: only loopback, brought up because Jupyter kernels talk
  to their client over TCP on 127.0.0.1. PID: it sees only its own processes (no grader process to signal or
  inspect), and when it ends the kernel kills everything left in the namespace. Mount: ``hide_paths`` are covered
  by an empty tmpfs of mode 000, ``read_only_paths`` are re-mounted read-only, for the command only. Where
  ``unshare`` is not permitted, none of this happens and the result says so (``network_isolated`` False): the
  caller must check it and decide.
* **Privileges.** As root, the command runs as ``run_as`` (a uid dedicated to it: no capabilities, no
  supplementary groups, no way back; every process of that uid is killed afterwards) or, without ``run_as``, still
  as uid 0 but with every capability dropped: it cannot undo the mounts, read what mode 000 hides, or override
  file permissions (it still owns root's files outside the read-only paths: make those paths cover what matters).

What is **not** isolated: the rest of the filesystem. The command sees every other file its user may read or write;
the caller runs it in a throwaway folder. Environment variables are passed as given: give ``env`` a minimal dict,
not ``os.environ``, so no secret reaches learner code. Stdin is empty.
"""

from __future__ import annotations

import functools
import os
import re
import resource
import selectors
import shlex
import shutil
import signal
import stat
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
    user_separated: bool = False  # it ran as the dedicated uid ``run_as``
    paths_hidden: bool = False    # ``hide_paths`` were covered


# --------------------------------------------------------------------------------------------------------------------
# What this machine allows
# --------------------------------------------------------------------------------------------------------------------


NAMESPACES = ("--net", "--mount", "--pid", "--fork", "--mount-proc")


@functools.cache
def _namespaces_permitted() -> bool:
    """Whether ``unshare`` may create network, mount and PID namespaces here (it needs CAP_SYS_ADMIN, i.e. root) and
    ``ip`` can bring loopback up; without loopback a Jupyter kernel could not reach its client, so "isolated but
    broken" is not offered."""
    unshare, ip = shutil.which("unshare"), shutil.which("ip")
    if not (unshare and ip):
        return False
    try:
        probe = subprocess.run([unshare, *NAMESPACES, "--", ip, "link", "set", "lo", "up"],
                               capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return probe.returncode == 0


def _private_ancestor(path: Path) -> Path | None:
    """The outermost folder above ``path`` that other users may not enter (no o+x), e.g. /root; None if none."""
    for ancestor in reversed(path.parents):
        if ancestor != Path("/") and not ancestor.stat().st_mode & stat.S_IXOTH:
            return ancestor
    return None


def _setup_script(read_only: Sequence[str], hidden: Sequence[str], reachable: Sequence[str]) -> str:
    """The shell script that runs first inside the new namespaces (as root, before privileges are dropped).

    * loopback up;
    * each ``reachable`` path inside a private folder (the Python under /root, mode 0700) is made reachable for
      another uid: the folder is covered by an empty tmpfs of mode 0755 and only that path is mounted back into it;
    * each read-only path bind-mounted read-only onto itself; each hidden path covered by an empty tmpfs of mode 000.
    Mounts are private to this namespace (``unshare`` makes them so). Then exec the command in place."""
    q, mount = shlex.quote, shutil.which("mount") or "/bin/mount"
    lines = ['fail() { echo "sandbox: $*" >&2; exit 125; }',
             f'{q(shutil.which("ip"))} link set lo up || fail "cannot bring loopback up"']
    covers: dict[Path, list[Path]] = {}
    for path in map(Path, reachable):
        if (ancestor := _private_ancestor(path)) is not None:
            covers.setdefault(ancestor, []).append(path)
    for n, (cover, paths) in enumerate(covers.items()):
        # Staged outside every covered folder: a fresh root-only folder in /tmp, removed once empty again.
        lines.append(f'stage=$(mktemp -d /tmp/.sandbox-stage-{n}.XXXXXX) || fail "cannot stage"')
        lines += [f"mkdir \"$stage/{i}\" && {mount} --rbind {q(str(p))} \"$stage/{i}\" || fail 'cannot stage {p}'"
                  for i, p in enumerate(paths)]
        lines.append(f"{mount} -t tmpfs -o mode=0755,size=64k sandbox-private {q(str(cover))} || "
                     f"fail 'cannot cover {cover}'")
        lines += [f"mkdir -p {q(str(p))} && {mount} --move \"$stage/{i}\" {q(str(p))} || fail 'cannot expose {p}'"
                  for i, p in enumerate(paths)]
        lines.append('rm -r "$stage"')
    lines += [f"{mount} --bind {q(p)} {q(p)} && {mount} -o remount,bind,ro {q(p)} || fail 'cannot make {p} read-only'"
              for p in read_only]
    lines += [f"{mount} -t tmpfs -o ro,size=4k,mode=0 sandbox-hidden {q(p)} || fail 'cannot hide {p}'" for p in hidden]
    lines.append('exec "$@"')
    return "\n".join(lines) + "\n"


def _netns_prefix(hide_paths: Sequence[str] = (), read_only_paths: Sequence[str] = (),
                  reachable_paths: Sequence[str] = ()) -> tuple[str, ...] | None:
    """The argv prefix that runs a command in new network, mount and PID namespaces (no network but loopback; it
    sees only its own processes, and when it ends they all die), set up by ``_setup_script``; None where the
    namespaces are not permitted. The command's argv follows the prefix."""
    if not _namespaces_permitted():
        return None
    script = _setup_script(read_only_paths, hide_paths, reachable_paths)
    return (shutil.which("unshare"), *NAMESPACES, "--", "/bin/sh", "-c", script, "sandbox")


def _no_privileges_prefix() -> tuple[str, ...] | None:
    """As root, the argv prefix that runs a command still as uid 0 but with no capabilities and no way to regain
    them: it cannot undo the mounts, read what mode 000 hides, or override file permissions."""
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or not setpriv:
        return None
    return (setpriv, "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--")


def _as_user_prefix(uid: int) -> tuple[str, ...] | None:
    """The argv prefix that runs a command as ``uid`` (group ``uid``, no supplementary groups, no capabilities, no
    way to gain privileges back), or None when this process cannot switch users (it is not root)."""
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or not setpriv:
        return None
    return (setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all", "--no-new-privs", "--")


def kill_user_processes(uid: int) -> int:
    """SIGKILL every process of ``uid`` (a uid dedicated to one sandbox slot); how many there were.

    This catches what the process-group kill cannot: a process that called ``setsid()`` to leave the group."""
    killed = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid == uid:
                os.kill(int(entry.name), signal.SIGKILL)
                killed += 1
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            pass
    return killed


def network_isolation_available() -> bool:
    return _netns_prefix() is not None


def user_switch_available() -> bool:
    return _as_user_prefix(65534) is not None


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
                  network: bool = False, env: Mapping[str, str] | None = None, run_as: int | None = None,
                  hide_paths: Sequence[str | os.PathLike] = (), read_only_paths: Sequence[str | os.PathLike] = (),
                  reachable_paths: Sequence[str | os.PathLike] = (), drop_privileges: bool = True) -> SandboxResult:
    """Run ``argv`` in ``cwd`` with the limits above; return once it exited or was killed.

    ``run_as``: a uid *dedicated to this sandbox* (nothing else may run as it) to run the command as, when this
    process is root; every process of that uid is killed afterwards. ``hide_paths``: folders covered by an empty
    tmpfs for the command (with ``network=False`` and where namespaces are permitted). The result says which of
    these protections really applied.

    Never raises for what the command does, only for what the caller got wrong (a missing cwd, say). A missing
    program raises FileNotFoundError when run directly, but exits 127 when run through ``unshare``'s shell.
    """
    argv = [os.fspath(a) for a in argv]
    as_user = _as_user_prefix(run_as) if run_as is not None else None
    if as_user:
        argv = [*as_user, *argv]
    elif drop_privileges and (no_caps := _no_privileges_prefix()):
        argv = [*no_caps, *argv]
    folders = {Path(p).resolve() for p in hide_paths if Path(p).is_dir()}
    # Outermost only: once a folder is covered, nothing inside it exists to be covered.
    hidden = sorted(str(p) for p in folders if not any(p != q and p.is_relative_to(q) for q in folders))
    read_only = [str(Path(p).resolve()) for p in read_only_paths if Path(p).is_dir()]
    reachable = [str(Path(p).resolve()) for p in reachable_paths if Path(p).is_dir()] if as_user else []
    prefix = None if network else _netns_prefix(hidden, read_only, reachable)
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
        if as_user:
            kill_user_processes(run_as)
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
                         stdout=out.text(), stderr=err.text(), wall_s=wall_s, network_isolated=prefix is not None,
                         user_separated=as_user is not None, paths_hidden=prefix is not None and bool(hidden))
