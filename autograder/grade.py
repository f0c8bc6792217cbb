"""Grade learners' notebooks with nbgrader: sandboxed, in parallel, sharded across runners, on CPU or GPU.

    python -m autograder.grade SUBMISSIONS --workspace DIR [--chapter CH ...] [--jobs N] [--device cpu|cuda]
                               [--shard I/N] [--force] [--timeout SECONDS] [--budget SECONDS] [--memory-mb MB]

``SUBMISSIONS`` is a folder ``<student>/<chapter>/<notebook>.ipynb`` or a .zip of one; it is only read, never
changed. Each submission is graded by its own worker process (``autograder.worker``) in a throwaway course
directory: the learner's code in a sandboxed kernel (``autograder.sandbox``), the tests in the worker itself
(``autograder.referee``). The workspace (outside the repository) gets:

* ``results/<student>/<chapter>.json``: one result per submission (schema: ``autograder/result_schema.json``);
* ``feedback/<student>/<chapter>/<notebook>.html``: what each learner may read (hidden tests removed);
* ``autograded/``: the graded notebooks, for the instructor; ``logs/``; ``prepared/``: the chapters as nbgrader
  knows them (a gradebook with the tests, hidden ones included);
* and, after the merge (at once without ``--shard``; see ``autograder.merge``): ``gradebook.db`` (nbgrader's
  master gradebook), ``grades.csv``, ``problems.csv`` (what could not be graded and what to do) and ``report.html``.

Re-running is idempotent: a submission whose notebooks, chapter version and settings are unchanged keeps its result
(``--force`` grades it again). Exit status: 0 all graded, 1 some submissions have problems (listed), 2 the command
could not run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from autograder.course import GRADING_CELL_TIMEOUT, REPO_ROOT, SOLUTIONS_DIR, venv_scripts_on_path
from autograder.merge import merge
from autograder.nbgrader_steps import prepare_chapter, quiet_nbgrader_logging
from autograder.report import fmt
from autograder.results import (RESULTS_DIR, assignment_version, new_result, problem, read_result, result_path,
                                sha256_of_files, write_result)
from autograder.sandbox import Filesystem, run_sandboxed, user_switch_available
from autograder.submissions import (Problem, Submission, UsageError, extract_zip, find_solution_notebooks,
                                    scan_submissions)
from autograder.worker import LEARNER_READ_ONLY, library_paths
from autograder.workspace import check_workspace, mark

# --------------------------------------------------------------------------------------------------------------------
# Running the jobs
# --------------------------------------------------------------------------------------------------------------------

#: When grading as root, learner code of worker slot k runs as uid ``learner_uids()[k]``: a uid nothing else uses,
#: so that the process limit counts only that slot and every leftover process of it can be killed afterwards.
#: Uids come from this run's pid, so two grading runs on one machine never share (and never kill) each other's.
UID_BASE = int(os.environ.get("GPTCOURSE_GRADING_UID_BASE", "2000000000"))
MAX_JOBS = 256
#: Address-space limit for learner code on CPU (importing torch alone maps ~2 GB of it); none on a GPU.
DEFAULT_MEMORY_MB = 8192
#: Seconds a worker may take beyond the submission's budget: nbgrader, the tests' imports, the feedback page.
WORKER_MARGIN_S = 600


def default_budget(cell_timeout: int) -> int:
    """Seconds a whole submission may take by default: three cells' worth of the limit, and a minute."""
    return 3 * cell_timeout + 60


def parse_shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise UsageError(f"--shard {text!r}: expected I/N with 1 <= I <= N, e.g. --shard 1/4 ... --shard 4/4.")
    return int(match[1]), int(match[2])


def in_shard(student: str, shard: tuple[int, int] | None) -> bool:
    """Students are split by a hash of their name: stable across runners and when students are added."""
    if shard is None:
        return True
    index, count = shard
    return int(hashlib.sha256(student.encode()).hexdigest()[:16], 16) % count == index - 1


def visible_gpus() -> list[str]:
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g.strip() for g in listed.split(",") if g.strip() and g.strip() != "-1"]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def learner_uids(jobs: int) -> list[int]:
    """This run's uids for learner code, one per worker slot (below 2**32 - 1 for any Linux pid)."""
    uids = [UID_BASE + os.getpid() * MAX_JOBS + slot for slot in range(jobs)]
    if not (0 < UID_BASE and uids[-1] < 2**32 - 1):
        raise UsageError(f"GPTCOURSE_GRADING_UID_BASE={UID_BASE} leaves no room for this run's uids (up to "
                         f"{uids[-1]}; the largest valid uid is {2**32 - 2}). Unset it or choose e.g. 2000000000.")
    return uids


def learner_uid_works(uid: int) -> bool:
    """Whether learner code can run as ``uid`` here: root, setpriv, and this Python (with Jupyter's kernel) usable
    by that uid in the sandbox's own root, which holds nothing else."""
    if not user_switch_available():
        return False
    probe = Path(tempfile.mkdtemp(prefix="gptcourse-probe-"))
    try:
        check = f"import os; assert os.__file__ == {os.__file__!r}; import ipykernel, zmq"
        result = run_sandboxed([sys.executable, "-c", check], cwd=probe, timeout_s=120, run_as=uid,
                               filesystem=Filesystem(read_only=[*LEARNER_READ_ONLY, *library_paths()]),
                               env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"})
        return result.returncode == 0
    finally:
        shutil.rmtree(probe, ignore_errors=True)


def unchanged(path: Path, version: str, digest: str, settings: dict) -> bool:
    """Whether the result at ``path`` graded exactly this submission, against this version, with these settings."""
    try:
        old = read_result(path)
    except ValueError:
        return False
    return (old["status"] == "graded" and old["assignment_version"] == version
            and old["submission_sha256"] == digest and old["settings"] == settings)


def run_worker(job_path: Path, job: dict) -> dict:
    """Run one worker process (own process group, killed whole if it hangs); its result, or a failure result."""
    # The submission's budget covers the learner's code; the rest (nbgrader, imports, feedback) gets a margin.
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": job.get("gpu") or ""}  # the tests see the learner's GPU
    run = run_sandboxed([sys.executable, "-m", "autograder.worker", str(job_path)], cwd=job_path.parent,
                        timeout_s=job["budget"] + WORKER_MARGIN_S, network=True, max_file_bytes=None,
                        max_output_bytes=200_000, env=env,
                        drop_privileges=False)  # the worker is ours: it needs root to set up the learner's sandbox
    result_path = Path(job["result_path"])
    if run.returncode == 0 and result_path.exists():
        return read_result(result_path)
    log = Path(job["workspace"]) / "logs" / job["chapter"] / f"{job['student']}.worker.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(f"exit {run.returncode} ({run.killed_reason})\n--- stdout\n{run.stdout}\n--- stderr\n{run.stderr}")
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    result = new_result(job["student"], job["chapter"], "autograde failed", job["assignment_version"],
                        job["submission_sha256"], job["settings"])
    result["problems"] = [*job["problems"], problem(
        f"{job['student']}/{job['chapter']}/",
        f"the grading worker failed ({run.killed_reason or 'exit ' + str(run.returncode)}): "
        f"{lines[-1] if lines else 'no message'}",
        f"read {log}; this is a grader problem, not the learner's: fix it and re-run")]
    result["execution_time"] = round(run.wall_s, 3)
    write_result(result_path, result)
    return result


def make_job(sub: Submission, digest: str, problems: list[Problem], *, prepared: Path, workspace: Path,
             submissions: Path, solutions: Path, version: str, settings: dict, jobs: int) -> dict:
    """Everything a worker needs to grade ``sub`` (written to a JSON job file; see ``autograder.worker``)."""
    return {
        "student": sub.student, "chapter": sub.chapter, "notebooks": [str(p) for p in sub.notebooks],
        "expected_notebooks": find_solution_notebooks(solutions, sub.chapter),
        "prepared": str(prepared), "workspace": str(workspace),
        "result_path": str(result_path(workspace, sub.student, sub.chapter)),
        "assignment_version": version, "submission_sha256": digest, "settings": settings,
        "problems": [problem(p.file, p.problem, p.what_to_do, p.blocking) for p in problems],
        "remarks": list(sub.remarks), "cell_timeout": settings["cell_timeout"], "budget": settings["budget"],
        "memory_mb": settings["memory_mb"], "device": settings["device"],
        "threads": max(1, (os.cpu_count() or 1) // jobs),
        # Never in the learner's sandbox, whatever folder holds them: the course, the workspace, the submissions.
        "private_paths": [str(REPO_ROOT), str(solutions), str(workspace), str(submissions)],
    }


def result_line(result: dict) -> str:
    student, chapter = result["student"], result["chapter"]
    if result["status"] != "graded":
        reason = next((p["problem"] for p in result["problems"] if p["blocking"]), result["status"])
        return f"  ✗ {student:<16} {chapter:<16} not graded: {reason}"
    mark = "✓" if result["score"] == result["max_score"] else "•"
    extra = f"  ({'; '.join(result['remarks'])})" if result["remarks"] else ""
    return (f"  {mark} {student:<16} {chapter:<16} {fmt(result['score']):>6} / {fmt(result['max_score'])}"
            f"  {result['execution_time']:.0f} s{extra}")


# --------------------------------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------------------------------


def grade(submissions: Path, workspace: Path, solutions: Path = SOLUTIONS_DIR, wanted: list[str] | None = None,
          timeout: int = GRADING_CELL_TIMEOUT, out=None, jobs: int = 1, device: str = "cpu",
          shard: tuple[int, int] | None = None, force: bool = False, memory_mb: int | None = DEFAULT_MEMORY_MB,
          budget: int | None = None) -> int:
    """Grade every submission under ``submissions`` into ``workspace``; returns the exit status (see the module)."""
    out = out or sys.stdout

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    submissions = submissions.expanduser().resolve()
    workspace = workspace.expanduser().resolve()
    solutions = solutions.expanduser().resolve()
    if not solutions.is_dir():
        raise UsageError(f"The solutions folder {solutions} does not exist.")
    known = sorted(p.name for p in solutions.iterdir() if p.is_dir() and any(p.glob("*.ipynb")))
    if not known:
        raise UsageError(f"The solutions folder {solutions} has no chapter (no <chapter>/<notebook>.ipynb).")
    for chapter in wanted or []:
        if chapter not in known:
            raise UsageError(f"Unknown chapter '{chapter}'. Chapters with solutions: {', '.join(known)}.")
    if not 1 <= jobs <= MAX_JOBS:
        raise UsageError(f"--jobs must be between 1 and {MAX_JOBS}.")
    if timeout < 1:
        raise UsageError(f"--timeout must be at least 1 second, not {timeout}.")
    budget = default_budget(timeout) if budget is None else budget
    if budget < timeout:
        raise UsageError(f"--budget ({budget} s) must be at least --timeout ({timeout} s): the budget is for the "
                         "whole submission, the timeout for one cell.")
    gpus = visible_gpus() if device == "cuda" else []
    if device == "cuda" and not gpus:
        raise UsageError("--device cuda, but no CUDA GPU is visible here. Use --device cpu, or run on a GPU runner.")
    check_workspace(workspace, submissions, solutions)
    mark(workspace)
    if submissions.is_file() and submissions.suffix.lower() == ".zip":
        archive = submissions
        submissions = extract_zip(archive, workspace / "unzipped", known)
        say(f"Unpacked {archive} (checked first: no unsafe paths, no absurd sizes)")
    subs, problems, chapters = scan_submissions(submissions, solutions, wanted, known)
    everyone = {(s.student, s.chapter) for s in subs}
    subs = [s for s in subs if in_shard(s.student, shard)]
    shard_name = f"shard-{shard[0]}-of-{shard[1]}" if shard else "all"

    settings = {"cell_timeout": int(timeout), "budget": int(budget), "device": device,
                "memory_mb": None if gpus else memory_mb}
    logs = workspace / "logs"
    prepared = workspace / "prepared"
    prepared.mkdir(exist_ok=True)
    say(f"Grading {len(subs)} submission(s) of {', '.join(chapters)} from {submissions}"
        + (f" (shard {shard[0]} of {shard[1]})" if shard else ""))
    say(f"Workspace: {workspace}")
    with venv_scripts_on_path():
        quiet_nbgrader_logging()
        unusable = {ch: why for ch in chapters if (why := prepare_chapter(prepared, ch, solutions, logs))}
    for chapter, why in unusable.items():
        say(f"  ✗ could not prepare {chapter}: {why}")
    versions = {ch: assignment_version(solutions, ch) for ch in chapters}

    uids = learner_uids(jobs)
    uids = uids if learner_uid_works(uids[0]) else None
    todo, finished = [], []
    for sub in subs:
        mine = [p for p in problems if p.student == sub.student and p.chapter == sub.chapter]
        path = result_path(workspace, sub.student, sub.chapter)
        if sub.status == "pending" and sub.chapter in unusable:
            sub.status = "chapter could not be prepared"
            mine.append(Problem(sub.student, sub.chapter, "", f"the chapter could not be prepared: "
                                f"{unusable[sub.chapter]}", "fix the solution notebook, then re-run"))
        if sub.status != "pending":
            result = new_result(sub.student, sub.chapter, sub.status, versions[sub.chapter], None, settings)
            result["problems"] = [problem(p.file, p.problem, p.what_to_do, p.blocking) for p in mine]
            result["output"] = "Your submission could not be graded; your instructor has been told why."
            write_result(path, result)
            finished.append(result)
            continue
        digest = sha256_of_files(sub.notebooks)
        if not force and unchanged(path, versions[sub.chapter], digest, settings):
            finished.append(read_result(path))
            continue
        todo.append(make_job(sub, digest, mine, prepared=prepared, workspace=workspace, submissions=submissions,
                             solutions=solutions, version=versions[sub.chapter], settings=settings, jobs=jobs))
    # A problem of a submission goes with its result (in the shard that grades it); only the others are run-level.
    run_problems = [p.row() for p in problems if (p.student, p.chapter) not in everyone
                    and (not p.student or in_shard(p.student, shard))]
    if uids is None:
        run_problems.append(Problem("", "", "", "learner code ran as the grader's own user (not root, no setpriv, "
                                    "or the Python is not readable by another user)",
                                    "grade as root in the container (see autograder/deploy/README.md) for a "
                                    "separate user per worker", blocking=False).row())
    runs_dir = workspace / RESULTS_DIR
    runs_dir.mkdir(exist_ok=True)
    (runs_dir / f"_run-{shard_name}.json").write_text(json.dumps(run_problems, indent=1))

    skipped = sum(r["status"] == "graded" for r in finished)  # graded before and unchanged
    if skipped:
        say(f"{skipped} unchanged submission(s) already graded: skipped (--force grades them again)")
    for result in finished:
        if result["status"] != "graded":
            say(result_line(result))
    finished += run_jobs(todo, workspace, jobs, gpus, uids, out, say)
    if shard:
        say(f"\nShard {shard[0]}/{shard[1]}: {len(subs)} submission(s), results in {workspace / RESULTS_DIR}.")
        say("When every shard is done: python -m autograder.merge --workspace MASTER SHARD_WORKSPACE ...")
        return 1 if any(r["status"] != "graded" or any(p["blocking"] for p in r["problems"]) for r in finished) else 0
    return merge(workspace, [workspace], solutions=solutions, out=out)


def run_jobs(todo: list[dict], workspace: Path, jobs: int, gpus: list[str], uids: list[int] | None, out,
             say) -> list[dict]:
    """Grade the jobs, ``jobs`` at a time; each worker slot has its own uid and (on CUDA) its own GPU."""
    import queue
    from concurrent.futures import ThreadPoolExecutor, as_completed

    if not todo:
        return []
    jobs_dir = workspace / "jobs"
    shutil.rmtree(jobs_dir, ignore_errors=True)
    jobs_dir.mkdir()
    slots: queue.Queue[int] = queue.Queue()
    for slot in range(jobs):
        slots.put(slot)

    def work(index: int, job: dict) -> dict:
        slot = slots.get()
        try:
            job = {**job, "uid": uids[slot] if uids else None, "gpu": gpus[slot % len(gpus)] if gpus else None}
            job_path = jobs_dir / f"{index:06d}.json"
            job_path.write_text(json.dumps(job, indent=1))
            return run_worker(job_path, job)
        finally:
            slots.put(slot)

    bar = None
    if len(todo) >= 4 and out.isatty():
        from tqdm import tqdm

        bar = tqdm(total=len(todo), unit="submission", file=out, leave=False)
    done = []
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for future in as_completed([pool.submit(work, i, job) for i, job in enumerate(todo)]):
            result = future.result()
            done.append(result)
            if bar is not None:
                bar.write(result_line(result), file=out)
                bar.update()
            else:
                say(result_line(result))
    if bar is not None:
        bar.close()
    shutil.rmtree(jobs_dir, ignore_errors=True)
    return done

def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="replace")  # a terminal that cannot show ✓ gets "?" rather than a crash
        except AttributeError:  # pragma: no cover - a replaced stream
            pass
    parser = argparse.ArgumentParser(
        prog="python -m autograder.grade",
        description="Grade SUBMISSIONS/<student>/<chapter>/<notebook>.ipynb (a folder or a .zip) with nbgrader, "
                    "sandboxed, in a workspace outside the repository. The submissions are only read.")
    parser.add_argument("submissions", type=Path, help="folder with one folder per student, or a .zip of it")
    parser.add_argument("--workspace", type=Path, required=True,
                        help="where grading happens (outside the repository; created if missing; re-usable)")
    parser.add_argument("--chapter", action="append", dest="chapters", metavar="CHAPTER",
                        help="grade only this chapter (repeat for several); default: every chapter submitted")
    parser.add_argument("--jobs", type=int, default=1, help="submissions graded at once (default 1)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="where hidden tests run: cpu, or cuda (one GPU per worker, round-robin)")
    parser.add_argument("--shard", metavar="I/N", help="grade only share I of N of the students (1-based), for "
                        "one of N runners; then merge the shards with python -m autograder.merge")
    parser.add_argument("--force", action="store_true", help="grade unchanged submissions again")
    parser.add_argument("--timeout", type=int, default=GRADING_CELL_TIMEOUT,
                        help=f"seconds one cell may run before it is interrupted (default {GRADING_CELL_TIMEOUT})")
    parser.add_argument("--budget", type=int, default=None,
                        help="seconds a whole submission may take, restarts after a crash included (default: "
                             "3 x --timeout + 60); cells not reached score 0 and say so")
    parser.add_argument("--memory-mb", type=int, default=DEFAULT_MEMORY_MB,
                        help=f"address-space limit of learner code on CPU, MB (default {DEFAULT_MEMORY_MB})")
    parser.add_argument("--solutions", type=Path, default=SOLUTIONS_DIR, help=argparse.SUPPRESS)  # for the tests
    args = parser.parse_args(argv)
    try:
        return grade(args.submissions, args.workspace, args.solutions, args.chapters, args.timeout, jobs=args.jobs,
                     device=args.device, shard=parse_shard(args.shard), force=args.force, memory_mb=args.memory_mb,
                     budget=args.budget)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nInterrupted. Re-run the same command: finished submissions are kept and skipped.", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the output was piped into `head` or similar
        sys.stdout = None
        return 1


if __name__ == "__main__":
    sys.exit(main())
