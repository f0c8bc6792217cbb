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
* **Namespaces** (``network=False``, where ``unshare`` is permitted: as root, or inside an unprivileged user
  namespace where the kernel allows one). The command runs in new network, mount and PID namespaces. Network: only
  loopback. PID: it sees only its own processes (no grader process to signal or inspect), and when it ends the
  kernel kills everything left in the namespace. Mount, with a ``Filesystem``: the command gets a root of its own
  (``pivot_root``) that holds only the allow-listed paths, read-only, a private copy of its working folder and
  private temporary folders, all in memory and size-capped; every other file of the machine does not exist for it,
  and nothing it writes outlives it (but the ``writable`` folders it is given). Where namespaces are not
  permitted, none of this happens and the result says so (``network_isolated``, ``paths_hidden`` False): the
  caller must check it and decide.
* **Privileges.** As root, the command runs as ``run_as`` (a uid dedicated to it: no capabilities, no
  supplementary groups, no way back; every process of that uid is killed afterwards) or, without ``run_as``, still
  as uid 0 but with every capability dropped: it cannot undo the mounts or override file permissions. In a user
  namespace, it is this user outside, with no capabilities inside.

Environment variables are passed as given: give ``env`` a minimal dict, not ``os.environ``, so no secret reaches
learner code. Stdin is empty.
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
import dataclasses
import tempfile
import threading
from dataclasses import dataclass, field
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
#: Without root: a user namespace of its own first, in which this user counts as root for those namespaces only.
USER_NAMESPACE = ("--user", "--map-root-user")


@functools.cache
def _namespace_flags() -> tuple[str, ...] | None:
    """The ``unshare`` flags that make network, mount and PID namespaces here, or None where none can be made.

    As root, directly. Otherwise inside an unprivileged user namespace, where the kernel allows those (most Linux
    hosts; not Docker's default profile): the command then stays this user outside, but sees only its own root.
    ``ip`` must bring loopback up: without it a Jupyter kernel could not reach its client, so "isolated but broken"
    is not offered."""
    unshare, ip = shutil.which("unshare"), shutil.which("ip")
    if not (unshare and ip):
        return None
    for flags in ((NAMESPACES,) if os.geteuid() == 0 else ()) + ((*USER_NAMESPACE, *NAMESPACES),):
        try:
            probe = subprocess.run([unshare, *flags, "--", ip, "link", "set", "lo", "up"], capture_output=True,
                                   timeout=10)
        except (OSError, subprocess.SubprocessError):
            continue
        if probe.returncode == 0:
            return tuple(flags)
    return None


def _namespaces_permitted() -> bool:
    return _namespace_flags() is not None


def _in_user_namespace() -> bool:
    flags = _namespace_flags()
    return flags is not None and flags[:len(USER_NAMESPACE)] == USER_NAMESPACE


@dataclass
class Filesystem:
    """What a sandboxed command may see: only these paths (an allow-list), in a root of its own; nothing else exists.

    ``read_only``: folders or files shown read-only at their own path (Python, the course library; ``/usr``, with the
    system's programs and libraries, always is). ``writable``:
    folders shown read-write at their own path (where the kernel's sockets live). ``work``: the command's working
    folder, a private size-capped tmpfs at this path, filled with a copy of ``work_source`` (if given) and owned by
    the command's user. ``covered``: paths inside an allowed folder that must still not be seen (the course
    repository, were it inside /usr): an empty folder is mounted over each. ``devices``: device nodes beyond the
    basic ones (a GPU's). ``/tmp`` and ``/dev/shm`` are private tmpfs of ``tmp_mb``; ``/etc`` holds only what
    programs need (users, hosts, the loader's cache); ``/proc`` shows the sandbox's own processes. Everything
    writable is in memory and vanishes with the sandbox, except ``writable``.
    """

    read_only: list = field(default_factory=list)
    writable: list = field(default_factory=list)
    work: str = "/home/learner"
    work_source: str | None = None
    covered: list = field(default_factory=list)
    devices: list = field(default_factory=list)
    work_mb: int = 512
    tmp_mb: int = 512

    def entries(self) -> list[tuple[str, str]]:
        """(path, kind) to mount, parents before what they contain; kind: ro, rw, cover, tmp or work."""
        found = [(str(Path(p)), "ro") for p in ["/usr", *self.read_only] if Path(p).exists()]
        found += [(str(Path(p)), "rw") for p in self.writable if Path(p).is_dir()]
        found += [(str(Path(p)), "cover") for p in self.covered
                  if any(Path(p) != Path(a) and Path(p).is_relative_to(a) for a, _ in found)]
        found += [("/tmp", "tmp"), ("/dev/shm", "tmp"), (self.work, "work")]
        return sorted(found, key=lambda entry: (len(Path(entry[0]).parts), entry[1] != "cover"))


#: Where the set-up script finds mount, pivot_root, ip and the like, whatever the command's PATH.
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
ETC_FILES = {"passwd": "root:x:0:0:root:/root:/bin/sh\nlearner:x:{uid}:{uid}:learner:{work}:/bin/sh\n",
             "group": "root:x:0:\nlearner:x:{uid}:\n", "hosts": "127.0.0.1 localhost\n::1 localhost\n",
             "nsswitch.conf": "passwd: files\ngroup: files\nhosts: files\n"}
ETC_COPIED = ("/etc/ld.so.cache", "/etc/localtime")
BASIC_DEVICES = ("null", "zero", "full", "random", "urandom")


def _root_script(fs: Filesystem, root: str, uid: int) -> list[str]:
    """Shell lines that build ``fs`` in a tmpfs at ``root`` and make it the root (pivot_root), as root."""
    q, mount = shlex.quote, "mount"
    lines = [f"R={q(root)}", f'{mount} -t tmpfs -o mode=0755,size=16m sandbox-root "$R" || fail "cannot make a root"']
    for top in ("bin", "lib", "lib64", "sbin"):  # merged-/usr systems link these into /usr
        target = Path("/" + top)
        if target.is_symlink():
            lines.append(f'ln -s {q(os.readlink(target))} "$R/{top}"')
        elif target.is_dir():
            fs = dataclasses.replace(fs, read_only=[*fs.read_only, str(target)])
    lines.append('mkdir -p "$R/etc" "$R/dev" "$R/proc" "$R/tmp"')
    for name, text in ETC_FILES.items():
        lines.append(f'printf %s {q(text.format(uid=uid, work=fs.work))} > "$R/etc/{name}"')
    lines += [f'cp -P {q(p)} "$R{p}" 2>/dev/null || true' for p in ETC_COPIED if os.path.lexists(p)]
    for dev in [f"/dev/{d}" for d in BASIC_DEVICES] + [str(d) for d in fs.devices]:
        if os.path.exists(dev):
            lines.append(f'mkdir -p "$(dirname "$R{dev}")" && touch "$R{dev}" && {mount} --bind {q(dev)} "$R{dev}" '
                         f"|| fail 'cannot add {dev}'")
    lines += [f'ln -s /proc/self/fd "$R/dev/fd"', f'ln -s /proc/self/fd/0 "$R/dev/stdin"',
              f'ln -s /proc/self/fd/1 "$R/dev/stdout"', f'ln -s /proc/self/fd/2 "$R/dev/stderr"']
    for path, kind in fs.entries():
        target = f'"$R"{q(path)}'
        if kind in ("ro", "rw"):
            make = "touch" if Path(path).is_file() else "mkdir -p"
            lines.append(f'mkdir -p "$(dirname {target})" && {make} {target} && {mount} --bind {q(path)} {target} '
                         f"|| fail 'cannot show {path}'")
            if kind == "ro":
                lines.append(f"{mount} -o remount,bind,ro {target} || fail 'cannot make {path} read-only'")
        elif kind == "cover":
            lines.append(f"{mount} -t tmpfs -o ro,size=4k,mode=0755 sandbox-covered {target} "
                         f"|| fail 'cannot cover {path}'")
        else:  # tmp, work: private, size-capped, in memory
            size, mode = (fs.tmp_mb, "1777") if kind == "tmp" else (fs.work_mb, "0755")
            lines.append(f"mkdir -p {target} && {mount} -t tmpfs -o mode={mode},size={size}m sandbox-{kind} "
                         f"{target} || fail 'cannot make {path}'")
    if fs.work_source:
        lines.append(f'cp -R {q(fs.work_source)}/. "$R"{q(fs.work)}/ || fail "cannot fill the work folder"')
    lines.append(f'chown -R {uid}:{uid} "$R"{q(fs.work)}')
    lines.append(f'{mount} -t proc proc "$R/proc" || fail "cannot mount /proc"')
    # The old root goes: nothing outside the allow-list is reachable any more, whatever the command's user.
    lines += ['cd "$R" && mkdir .old-root && pivot_root . .old-root && cd / && umount -l /.old-root '
              '&& rmdir /.old-root || fail "cannot change the root"', f"cd {q(fs.work)}"]
    return lines


def _setup_script(fs: Filesystem | None, root: str | None, uid: int) -> str:
    """The shell script that runs first inside the new namespaces (as root, before privileges are dropped): loopback
    up, then, with ``fs``, the allow-listed root. Mounts are private to the namespace. Then exec the command."""
    lines = ['fail() { echo "sandbox: $*" >&2; exit 125; }', 'saved_path="$PATH"', f"PATH={SYSTEM_PATH}",
             'ip link set lo up || fail "cannot bring loopback up"']
    if fs is not None:
        lines += _root_script(fs, root, uid)
    lines += ['PATH="$saved_path"', 'exec "$@"']
    return "\n".join(lines) + "\n"


def _netns_prefix(fs: Filesystem | None = None, root: str | None = None, uid: int = 0) -> tuple[str, ...] | None:
    """The argv prefix that runs a command in new network, mount and PID namespaces (no network but loopback; it
    sees only its own processes, and when it ends they all die), set up by ``_setup_script``; None where the
    namespaces are not permitted. The command's argv follows the prefix."""
    if not _namespaces_permitted():
        return None
    script = _setup_script(fs, root, uid)
    return (shutil.which("unshare"), *_namespace_flags(), "--", "/bin/sh", "-c", script, "sandbox")


def _no_privileges_prefix(namespaced: bool = False) -> tuple[str, ...] | None:
    """As root (or as the root of a user namespace: ``namespaced``), the argv prefix that runs a command still as
    uid 0 but with no capabilities and no way to regain them: it cannot undo the mounts or override file
    permissions."""
    setpriv = shutil.which("setpriv")
    if not (os.geteuid() == 0 or (namespaced and _in_user_namespace())) or not setpriv:
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


def _command(argv, *, network: bool, run_as: int | None, drop_privileges: bool, filesystem: Filesystem | None,
             root: str | None) -> tuple[list[str], dict]:
    """The full argv (namespace set-up, user switch, command) and which protections apply."""
    argv = [os.fspath(a) for a in argv]
    as_user = _as_user_prefix(run_as) if run_as is not None else None
    if as_user:
        argv = [*as_user, *argv]
    elif drop_privileges and (no_caps := _no_privileges_prefix(namespaced=not network)):
        argv = [*no_caps, *argv]
    prefix = None if network else _netns_prefix(filesystem, root, run_as if as_user else 0)
    if prefix:
        argv = [*prefix, *argv]
    return argv, {"network_isolated": prefix is not None, "user_separated": as_user is not None,
                  "paths_hidden": prefix is not None and filesystem is not None}


def run_sandboxed(argv: Sequence[str | os.PathLike], *, cwd: str | os.PathLike, timeout_s: float,
                  memory_mb: int | None = None, max_processes: int | None = None,
                  max_output_bytes: int = 1_000_000, max_file_bytes: int | None = 100 * 2**20,
                  network: bool = False, env: Mapping[str, str] | None = None, run_as: int | None = None,
                  filesystem: Filesystem | None = None, drop_privileges: bool = True) -> SandboxResult:
    """Run ``argv`` in ``cwd`` with the limits above; return once it exited or was killed.

    ``run_as``: a uid *dedicated to this sandbox* (nothing else may run as it) to run the command as, when this
    process is root; every process of that uid is killed afterwards. ``filesystem``: the allow-list of what the
    command sees (with ``network=False`` and where namespaces are permitted); it then runs in ``filesystem.work``,
    not ``cwd``. The result says which of these protections really applied.

    Never raises for what the command does, only for what the caller got wrong (a missing cwd, say). A missing
    program raises FileNotFoundError when run directly, but exits 127 when run through ``unshare``'s shell.
    """
    with tempfile.TemporaryDirectory(prefix="gptcourse-sandbox-") as root:
        argv, facts = _command(argv, network=network, run_as=run_as, drop_privileges=drop_privileges,
                               filesystem=filesystem, root=root)
        return _run(argv, cwd, timeout_s, memory_mb, max_processes, max_output_bytes, max_file_bytes, env,
                    run_as if facts["user_separated"] else None, facts)


def _run(argv, cwd, timeout_s, memory_mb, max_processes, max_output_bytes, max_file_bytes, env, run_as,
         facts) -> SandboxResult:
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
        if run_as is not None:
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
                         stdout=out.text(), stderr=err.text(), wall_s=wall_s, **facts)


class SandboxedProcess:
    """A command started in the sandbox that keeps running (a Jupyter kernel): ``alive``, ``kill``, ``stderr``.

    Its stdout and stderr (not what it sends elsewhere) are kept, the last ``keep_bytes`` of them, by a thread."""

    def __init__(self, popen: subprocess.Popen, run_as: int | None, facts: dict, root: tempfile.TemporaryDirectory,
                 keep_bytes: int = 100_000):
        self.popen, self.run_as, self.facts, self._root = popen, run_as, facts, root
        self._tail = bytearray()
        self._keep = keep_bytes
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for chunk in iter(lambda: self.popen.stdout.read1(65536), b""):
            self._tail += chunk
            del self._tail[:-self._keep]

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output_tail(self) -> str:
        return self._tail.decode("utf-8", "replace")

    def kill(self) -> None:
        """Kill it and everything it started (its group, its namespace, its dedicated user's processes)."""
        _kill_group(self.popen.pid)
        if self.run_as is not None:
            kill_user_processes(self.run_as)
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL of the group does not fail
            pass
        self._reader.join(timeout=2)
        self.popen.stdout.close()
        self._root.cleanup()


def start_sandboxed(argv: Sequence[str | os.PathLike], *, cwd: str | os.PathLike, env: Mapping[str, str],
                    memory_mb: int | None = None, max_processes: int | None = None,
                    max_file_bytes: int | None = 100 * 2**20, run_as: int | None = None,
                    filesystem: Filesystem | None = None, pass_fds: Sequence[int] = ()) -> SandboxedProcess:
    """Start ``argv`` like ``run_sandboxed`` would run it (no network, the limits, ``filesystem``) and return at
    once; the caller talks to it (through ``filesystem.writable`` folders, say) and kills it when done."""
    root = tempfile.TemporaryDirectory(prefix="gptcourse-sandbox-")
    argv, facts = _command(argv, network=False, run_as=run_as, drop_privileges=True, filesystem=filesystem,
                           root=root.name)
    popen = subprocess.Popen(argv, cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, start_new_session=True, pass_fds=tuple(pass_fds),
                             preexec_fn=functools.partial(_set_limits, memory_mb, max_processes, max_file_bytes))
    return SandboxedProcess(popen, run_as if facts["user_separated"] else None, facts, root)
