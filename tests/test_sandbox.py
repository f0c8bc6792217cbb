"""autograder/sandbox.py: each limit with a child that misbehaves on purpose, in a bounded way, so the host is safe."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest

from autograder import sandbox
from autograder.sandbox import (CUT_MARKER, Filesystem, network_isolation_available, nproc_limit_enforced,
                                run_sandboxed)

SYSTEM_PYTHON = "/usr/bin/python3"  # the venv's python may sit where the user nobody cannot read


@pytest.fixture(autouse=True, scope="module")
def reap_orphans():
    """Make this process the subreaper of the sandboxes' orphans, so that wait_all_dead() can reap them.

    A killed grandchild is re-parented to the nearest subreaper, else to pid 1; in a container whose pid 1 does not
    reap, it would stay a zombie for good (and a zombie counts against its user's RLIMIT_NPROC).
    """
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    PR_SET_CHILD_SUBREAPER = 36
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    yield
    prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


# Tests that read the pids of sandboxed processes pass network=True: without namespaces those pids are the host's,
# and what is tested is the process-group kill itself.


def py(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def alive(pid: int) -> bool:
    """Whether ``pid`` runs. A killed orphan may stay a zombie (state Z) if pid 1 does not reap; that counts as dead."""
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # not ours to reap (re-parented elsewhere, or already gone)
        pass


def wait_all_dead(pids: list[int], within_s: float = 2.0) -> list[int]:
    """The pids still running after ``within_s`` seconds (reaping the dead ones that were re-parented to us)."""
    end = time.monotonic() + within_s
    while True:
        for pid in pids:
            reap(pid)
        survivors = [p for p in pids if alive(p)]
        if not survivors or time.monotonic() > end:
            return survivors
        time.sleep(0.05)


def test_normal_run_exit_code_cwd_and_env(tmp_path):
    (tmp_path / "data.txt").write_text("hello from cwd")
    result = run_sandboxed(py("""
        import os, sys
        print(open("data.txt").read(), os.environ["GRADING_SECRET_FREE"])
        print("to stderr", file=sys.stderr)
        sys.exit(3)
    """), cwd=tmp_path, timeout_s=10, env={"GRADING_SECRET_FREE": "yes", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 3
    assert result.stdout == "hello from cwd yes\n"
    assert result.stderr == "to stderr\n"
    assert result.killed_reason is None and not result.timed_out


def test_env_is_exactly_what_was_given(tmp_path):
    os.environ["SANDBOX_TEST_LEAK"] = "should not be seen"
    try:
        result = run_sandboxed(py("import os; print('SANDBOX_TEST_LEAK' in os.environ)"),
                               cwd=tmp_path, timeout_s=10, env={})
    finally:
        del os.environ["SANDBOX_TEST_LEAK"]
    assert result.returncode == 0 and result.stdout == "False\n"


def test_timeout_kills_the_whole_group(tmp_path):
    # The child starts three grandchildren, tells us their pids, then hangs; none may survive the timeout.
    result = run_sandboxed(py("""
        import subprocess, time
        kids = [subprocess.Popen(["sleep", "1000"]) for _ in range(3)]
        print(*[k.pid for k in kids], flush=True)
        time.sleep(1000)
    """), network=True, cwd=tmp_path, timeout_s=1.5)
    assert result.timed_out and result.killed_reason == "timeout"
    assert result.returncode == -9
    assert result.wall_s < 5
    grandchildren = [int(p) for p in result.stdout.split()]
    assert len(grandchildren) == 3
    assert wait_all_dead(grandchildren) == []


def test_background_leftovers_die_when_the_command_exits(tmp_path):
    # A command that exits at once but leaves a process behind (holding our pipe, even) is cleaned up, not waited on.
    result = run_sandboxed(py("""
        import subprocess
        print(subprocess.Popen(["sleep", "1000"]).pid)
    """), network=True, cwd=tmp_path, timeout_s=20)
    assert result.returncode == 0 and result.killed_reason is None
    assert result.wall_s < 5
    assert wait_all_dead([int(result.stdout)]) == []


@pytest.mark.xfail(strict=True, reason="known limitation: without namespaces or a dedicated user, a process that "
                                       "calls setsid() leaves the group and survives")
def test_a_process_that_leaves_the_group_escapes(tmp_path):
    result = run_sandboxed(py("""
        import subprocess
        print(subprocess.Popen(["sleep", "1000"], start_new_session=True).pid)
    """), cwd=tmp_path, timeout_s=10, network=True)
    escaped = int(result.stdout)
    try:
        assert wait_all_dead([escaped], within_s=0.5) == []
    finally:
        os.kill(escaped, signal.SIGKILL)
        wait_all_dead([escaped])


AS_USER = pytest.mark.skipif(not (sandbox.user_switch_available() and Path(SYSTEM_PYTHON).exists()),
                             reason="needs root and setpriv to run the command as a dedicated user")
SLOT_UID = 2_000_000_017  # a uid nothing else on this machine uses


@AS_USER
def test_a_process_that_leaves_the_group_dies_with_its_dedicated_user(tmp_path):
    tmp_path.chmod(0o777)
    result = run_sandboxed([SYSTEM_PYTHON, "-c", textwrap.dedent("""
        import os, subprocess
        print(os.getuid(), subprocess.Popen(["sleep", "1000"], start_new_session=True).pid)
    """)], network=True, cwd=tmp_path, timeout_s=10, run_as=SLOT_UID)
    uid, escaped = map(int, result.stdout.split())
    assert result.user_separated and uid == SLOT_UID
    assert wait_all_dead([escaped]) == []


NAMESPACES = pytest.mark.skipif(not network_isolation_available(), reason="`unshare` is not permitted here")


@NAMESPACES
def test_in_its_pid_namespace_the_command_sees_only_its_own_processes_and_they_all_die(tmp_path):
    result = run_sandboxed(py("""
        import os, subprocess
        subprocess.Popen(["sleep", "1000"], start_new_session=True)
        print(sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))
    """), cwd=tmp_path, timeout_s=10)
    assert max(json.loads(result.stdout)) < 10  # pids of its own namespace: no grader process is visible
    stray = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
             and "sleep\x001000" in (p / "cmdline").read_bytes().decode(errors="replace").replace("\0", "\x00")]
    assert wait_all_dead(stray) == []


ALLOW_PYTHON = sorted({sys.prefix, sys.base_prefix})


@NAMESPACES
def test_root_without_capabilities_cannot_leave_its_root_or_write_read_only_paths(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("only root needs its capabilities dropped")
    secret, library = tmp_path / "secret", tmp_path / "library"
    secret.mkdir(), library.mkdir()
    (secret / "answer.py").write_text("42")
    result = run_sandboxed(py(f"""
        import os, subprocess
        for attempt in (lambda: os.listdir({str(secret)!r}), lambda: open({str(library / "x.py")!r}, "w")):
            try:
                attempt()
                print("allowed")
            except OSError as e:
                print(type(e).__name__)
        print(subprocess.run(["umount", "-l", {str(library)!r}], capture_output=True).returncode)
        print(subprocess.run(["mount", "-t", "tmpfs", "x", "/tmp"], capture_output=True).returncode)
    """), cwd=tmp_path, timeout_s=20, filesystem=Filesystem(read_only=[*ALLOW_PYTHON, str(library)]))
    missing, read_only, umount, mount = result.stdout.split()
    assert missing == "FileNotFoundError" and read_only == "OSError", result.stdout + result.stderr
    assert umount != "0" and mount != "0"
    assert (secret / "answer.py").read_text() == "42" and not (library / "x.py").exists()


PROBE_FILES = """
    import json, os, sys
    ALLOWED = tuple(sys.argv[1:])
    readable, outside = 0, []
    for root, dirs, files in os.walk("/"):
        if root in ("/proc", "/sys"):
            dirs[:] = []
            continue
        for name in files:
            path = os.path.join(root, name)
            if os.access(path, os.R_OK):
                readable += 1
                if not path.startswith(ALLOWED):
                    outside.append(path)
    with open("scratch.txt", "w") as fh:
        fh.write("written in the work folder")
    for tmp in ("/tmp", "/dev/shm"):
        with open(os.path.join(tmp, "left.txt"), "w") as fh:
            fh.write("left behind?")
    print(json.dumps({"readable": readable, "outside": outside[:50], "cwd": os.getcwd(),
                      "top": sorted(os.listdir("/")), "work": sorted(os.listdir("."))}))
"""


@NAMESPACES
@AS_USER
def test_the_command_sees_nothing_but_its_allow_list_and_leaves_nothing_behind(tmp_path):
    private = tmp_path / "private"  # like a Python under /root (mode 0700): shown, and nothing else of its folder
    (private / "lib").mkdir(parents=True)
    (private / "lib" / "module.py").write_text("X = 1")
    (private / "secret.txt").write_text("private")
    private.chmod(0o700)
    source = tmp_path / "learner"
    source.mkdir()
    (source / "data.txt").write_text("the learner's file")
    fs = Filesystem(read_only=[*ALLOW_PYTHON, str(private / "lib")], work="/home/learner",
                    work_source=str(source))
    allowed = ["/usr/", "/etc/", "/dev/", "/tmp/", "/home/learner/", str(private / "lib") + "/",
               *(p + "/" for p in ALLOW_PYTHON)]
    result = run_sandboxed([SYSTEM_PYTHON, "-c", textwrap.dedent(PROBE_FILES), *allowed], cwd=tmp_path,
                           timeout_s=120, run_as=SLOT_UID, filesystem=fs, env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0 and result.paths_hidden, result.stderr
    report = json.loads(result.stdout)
    assert report["readable"] > 1000 and report["outside"] == []  # it did look, and found only what is allowed
    top = {"dev", "etc", "home", "proc", "tmp", "usr", *(p.split("/")[1] for p in ALLOW_PYTHON)}
    top |= {name for name in ("bin", "lib", "lib64", "sbin") if os.path.lexists("/" + name)}
    assert report["top"] == sorted(top)
    assert report["cwd"] == "/home/learner" and report["work"] == ["data.txt", "scratch.txt"]
    assert sorted(os.listdir(source)) == ["data.txt"]  # the work folder was a copy, in memory
    assert not Path("/tmp/left.txt").exists() and not Path("/dev/shm/left.txt").exists()


UNPRIVILEGED = """
import json, sys
sys.path.insert(0, sys.argv[1])
from autograder.sandbox import Filesystem, run_sandboxed
result = run_sandboxed([sys.executable, "-c", sys.argv[2], *sys.argv[3:]], cwd="/tmp", timeout_s=120,
                       filesystem=Filesystem(read_only=[]), env={"PATH": "/usr/bin:/bin"})
print(json.dumps({"isolated": result.paths_hidden, "code": result.returncode, "out": result.stdout,
                  "err": result.stderr[-500:]}))
"""


@pytest.mark.skipif(not (os.getuid() == 0 and shutil.which("setpriv") and Path(SYSTEM_PYTHON).exists()),
                    reason="needs root to become an ordinary user, and a Python that user may run")
def test_an_ordinary_user_gets_the_same_root_through_a_user_namespace(tmp_path):
    """Without root the grader makes its namespaces inside a user namespace (where the kernel allows one): the
    command sees nothing but its allow-list either. Run as an unprivileged uid, from a system Python."""
    import subprocess

    tmp_path.chmod(0o777)
    probe = subprocess.run(["setpriv", f"--reuid={SLOT_UID + 1}", f"--regid={SLOT_UID + 1}", "--clear-groups",
                            SYSTEM_PYTHON, "-c", UNPRIVILEGED, str(Path(sandbox.__file__).parent.parent),
                            textwrap.dedent(PROBE_FILES), "/usr/", "/etc/", "/dev/", "/tmp/", "/home/learner/"],
                           capture_output=True, text=True, timeout=180, cwd=tmp_path)
    report = json.loads(probe.stdout or "{}") if probe.returncode == 0 else {}
    if not report.get("isolated"):
        pytest.skip(f"no unprivileged user namespaces here: {report or probe.stderr[-300:]}")
    assert report["code"] == 0, report
    found = json.loads(report["out"])
    assert found["readable"] > 1000 and found["outside"] == [], found["outside"][:10]
    assert not Path("/tmp/left.txt").exists()


@NAMESPACES
def test_a_covered_folder_inside_an_allowed_one_is_empty(tmp_path):
    library, repository = tmp_path / "lib", tmp_path / "lib" / "course"
    (repository / "solutions").mkdir(parents=True)
    (repository / "solutions" / "answer.py").write_text("42")
    (library / "ok.py").write_text("1")
    result = run_sandboxed(py(f"""
        import os
        print(sorted(os.listdir({str(library)!r})), os.listdir({str(repository)!r}))
    """), cwd=tmp_path, timeout_s=20, filesystem=Filesystem(read_only=[*ALLOW_PYTHON, str(library)],
                                                              covered=[str(repository)]))
    assert result.stdout.strip() == "['course', 'ok.py'] []", result.stderr


def test_memory_blow_up_fails_inside_the_child(tmp_path):
    # Asks for 2 GB in 100 MB steps under a 300 MB address-space limit: MemoryError in the child, host untouched.
    result = run_sandboxed(py("""
        chunks = []
        for i in range(20):
            chunks.append(b"x" * 100_000_000)
            print(len(chunks), flush=True)
    """), cwd=tmp_path, timeout_s=10, memory_mb=300)
    assert result.killed_reason == "memory", result.stderr
    assert result.returncode == 1 and "MemoryError" in result.stderr
    assert len(result.stdout.split()) <= 3  # it got at most 300 MB, never near 2 GB


def test_a_non_memory_failure_is_not_called_memory(tmp_path):
    result = run_sandboxed(py("raise ValueError('wrong answer')"), cwd=tmp_path, timeout_s=10, memory_mb=300)
    assert result.returncode == 1 and result.killed_reason is None


# At most 200 forks that sleep, so the host is never at risk; prints how many it got, then hangs until killed.
FORK_BOMB = """
    import os, time
    pids = []
    for _ in range(200):
        try:
            pid = os.fork()
        except OSError as e:
            print(e.strerror, flush=True)
            break
        if pid == 0:
            time.sleep(1000)
            os._exit(0)
        pids.append(pid)
    print(*pids, flush=True)
    time.sleep(1000)
"""


def forked_pids(stdout: str) -> list[int]:
    return [int(word) for word in stdout.split() if word.isdigit()]


def test_bounded_fork_bomb_is_contained_and_cleaned_up(tmp_path):
    # Where the kernel enforces RLIMIT_NPROC (not for root) forking stops early; either way the timeout's group kill
    # must take every one of them.
    result = run_sandboxed(py(FORK_BOMB), network=True, cwd=tmp_path, timeout_s=3, max_processes=50)
    assert result.timed_out
    forked = forked_pids(result.stdout)
    if nproc_limit_enforced():
        assert len(forked) < 50
    else:
        assert len(forked) == 200  # as root the limit is not enforced: the group kill is what contains it
    assert wait_all_dead(forked) == []


@pytest.mark.skipif(not (os.getuid() == 0 and shutil.which("setpriv") and Path(SYSTEM_PYTHON).exists()),
                    reason="needs root, setpriv and a python the user nobody may run, to show RLIMIT_NPROC enforced")
def test_fork_bomb_as_an_unprivileged_user_hits_the_process_limit(tmp_path):
    # The limit is per real uid: run the bomb as nobody (setpriv drops root, the limit set before it stays).
    tmp_path.chmod(0o777)
    result = run_sandboxed([SYSTEM_PYTHON, "-c", textwrap.dedent(FORK_BOMB)], network=True, cwd=tmp_path, timeout_s=3,
                           max_processes=50, run_as=SLOT_UID)
    assert result.timed_out
    assert "Resource temporarily unavailable" in result.stdout  # fork() failed with EAGAIN
    forked = forked_pids(result.stdout)
    assert len(forked) < 50
    assert wait_all_dead(forked) == []


def test_file_size_is_capped(tmp_path):
    result = run_sandboxed(py("""
        try:
            open("big.bin", "wb").write(b"x" * 5_000_000)
        except OSError as e:
            print(e.strerror)
    """), cwd=tmp_path, timeout_s=10, max_file_bytes=1_000_000)
    assert result.stdout.strip() == "File too large"
    assert (tmp_path / "big.bin").stat().st_size <= 1_000_000


def test_huge_output_is_capped_and_the_child_killed(tmp_path):
    # Would print forever; the sandbox keeps 100 kB and kills it.
    result = run_sandboxed(py("""
        import sys
        while True:
            sys.stdout.write("y" * 10_000)
    """), cwd=tmp_path, timeout_s=10, max_output_bytes=100_000)
    assert result.killed_reason == "output" and not result.timed_out
    assert result.stdout == "y" * 100_000 + CUT_MARKER.format(limit=100_000)
    assert result.wall_s < 5


def test_huge_stderr_is_capped_too(tmp_path):
    result = run_sandboxed(py("import sys; sys.stderr.write('e' * 300_000)"), cwd=tmp_path, timeout_s=10,
                           max_output_bytes=1000)
    assert result.killed_reason == "output"
    assert result.stderr.startswith("e" * 1000 + "\n[... output cut")


NETWORK_PROBE = """
    import json, socket, threading
    report = {"interfaces": [name for _, name in socket.if_nameindex()]}
    try:
        socket.create_connection(("1.1.1.1", 53), timeout=2).close()
        report["outside"] = "connected"
    except OSError as e:
        report["outside"] = type(e).__name__
    # A loopback server and client, as a Jupyter kernel and its client would use.
    server = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=lambda: server.accept()[0].sendall(b"pong"), daemon=True).start()
    with socket.create_connection(server.getsockname(), timeout=2) as client:
        report["loopback"] = client.recv(4).decode()
    print(json.dumps(report))
"""


@pytest.mark.skipif(not network_isolation_available(),
                    reason="`unshare --net` is not permitted here (needs root) or `ip` is missing")
def test_network_is_blocked_but_loopback_works(tmp_path):
    result = run_sandboxed(py(NETWORK_PROBE), cwd=tmp_path, timeout_s=10, network=False)
    assert result.network_isolated
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["interfaces"] == ["lo"]  # an empty namespace: this holds even on a host without internet
    assert report["outside"] != "connected"
    assert report["loopback"] == "pong"


def test_without_unshare_the_network_is_reported_not_isolated(tmp_path, monkeypatch):
    monkeypatch.setattr(sandbox, "_netns_prefix", lambda *args: None)  # as on a machine where unshare is not permitted
    result = run_sandboxed(py("print('ok')"), cwd=tmp_path, timeout_s=10, network=False)
    assert not result.network_isolated and result.stdout == "ok\n"


def test_network_true_is_not_isolated(tmp_path):
    result = run_sandboxed(py("print('ok')"), cwd=tmp_path, timeout_s=10, network=True)
    assert not result.network_isolated and result.stdout == "ok\n"
