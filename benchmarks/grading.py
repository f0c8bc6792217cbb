"""Benchmark: grading throughput, the referee's and sandbox's overhead, and the time to grade a class of Chapter 1.

    python -m benchmarks.grading [--chapter ch01_tokens] [--students 50] [--sample 8]

Submissions are made from the chapter's notebooks: the reference solution, the untouched stub, and one catalogued
mistake (autograder/catalogue) per learner in turn, so the tests pass and fail as in a real class.

1. ``--jobs 2`` vs ``--jobs 1`` on the same ``--sample`` submissions (target on 2 cores: >= 1.7x).
2. One submission through our worker (throwaway course copy, sandboxed kernel, the tests in the referee, feedback)
   vs plain nbgrader in one process (``autograde`` with the course's settings, the tests in the learner's kernel,
   no sandbox, then ``generate_feedback``) - the same work without isolation (target: <= 1.5x).
3. ``--students`` submissions with ``--jobs 2``: the wall-clock time for a class.
All timings are side by side in one run, on a shared machine: read the ratios, not the seconds.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from autograder.classroom import make_class
from autograder.course import REPO_ROOT, SOLUTIONS_DIR
from autograder.grade import DEFAULT_MEMORY_MB, default_budget, learner_uid_works, learner_uids, make_job
from autograder.results import assignment_version, sha256_of_files
from autograder.submissions import scan_submissions

#: Seconds per cell: some catalogued mistakes never finish (an endless merge loop); the default 600 s would make a
#: class of 50 take an hour of waiting, not of grading.
CELL_TIMEOUT = 30


def grade(submissions: Path, workspace: Path, jobs: int, chapter: str) -> float:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "autograder.grade", submissions, "--workspace", workspace,
                           "--jobs", str(jobs), "--chapter", chapter, "--timeout", str(CELL_TIMEOUT)],
                          capture_output=True, text=True, cwd=REPO_ROOT)
    elapsed = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        sys.exit(f"grading failed:\n{proc.stdout}\n{proc.stderr}")
    return elapsed


PLAIN = """
import sys
from pathlib import Path
from autograder.course import grading_config, venv_scripts_on_path
from nbgrader.apps import NbGraderAPI
course, chapter, student = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
with venv_scripts_on_path():
    api = NbGraderAPI(config=grading_config(course, timeout=int(sys.argv[4])))
    assert api.autograde(chapter, student, force=True, create=True)["success"]
    assert api.generate_feedback(chapter, student, force=True)["success"]
"""


def plain_nbgrader(prepared: Path, notebook: Path, chapter: str, work: Path) -> float:
    """Plain nbgrader in a fresh process (imports included, as the worker pays them): autograde + feedback."""
    course = work / "plain"
    shutil.rmtree(course, ignore_errors=True)
    shutil.copytree(prepared, course)
    (course / "submitted" / "solo" / chapter).mkdir(parents=True)
    shutil.copyfile(notebook, course / "submitted" / "solo" / chapter / notebook.name)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", PLAIN, course, chapter, "solo", str(CELL_TIMEOUT)], check=True,
                   capture_output=True, cwd=REPO_ROOT)
    return time.perf_counter() - start


def sandboxed_worker(sub, workspace: Path, submissions: Path, chapter: str) -> float:
    """Our worker on one submission, as ``autograder.grade`` runs it (``--jobs 1``, default settings)."""
    settings = {"cell_timeout": CELL_TIMEOUT, "budget": default_budget(CELL_TIMEOUT), "device": "cpu",
                "memory_mb": DEFAULT_MEMORY_MB}
    job = make_job(sub, sha256_of_files(sub.notebooks), [], prepared=workspace / "prepared", workspace=workspace,
                   submissions=submissions, solutions=SOLUTIONS_DIR,
                   version=assignment_version(SOLUTIONS_DIR, chapter), settings=settings, jobs=1)
    (uid,) = learner_uids(1)
    job["uid"] = uid if learner_uid_works(uid) else None
    path = workspace / "bench-job.json"
    path.write_text(json.dumps(job))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "autograder.worker", path], check=True, capture_output=True, cwd=REPO_ROOT)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chapter", default="ch01_tokens")
    parser.add_argument("--students", type=int, default=50)
    parser.add_argument("--sample", type=int, default=8, help="submissions for the --jobs comparison")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="gptcourse-bench-grading-"))
    try:
        sample = make_class(args.chapter, args.sample, work / "sample")
        # 1. Throughput. A first run prepares nothing shared, so both runs pay the same chapter preparation.
        one = grade(sample, work / "jobs1", 1, args.chapter)
        two = grade(sample, work / "jobs2", 2, args.chapter)
        print(f"{args.sample} submissions of {args.chapter}: --jobs 1 {one:.1f} s, --jobs 2 {two:.1f} s "
              f"-> {one / two:.2f}x (target >= 1.7x on 2 cores)", flush=True)
        # 2. Overhead of one submission: a whole worker process vs plain nbgrader in a process, alternated.
        subs, _, _ = scan_submissions(sample, SOLUTIONS_DIR, [args.chapter], [args.chapter])
        ours, plain = [], []
        for sub in subs:
            ours.append(sandboxed_worker(sub, work / "jobs1", sample, args.chapter))
            plain.append(plain_nbgrader(work / "jobs1" / "prepared", sub.notebooks[0], args.chapter, work))
        mean_ours, mean_plain = sum(ours) / len(ours), sum(plain) / len(plain)
        print(f"one submission, mean of {len(plain)}: sandboxed worker with the referee {mean_ours:.1f} s, "
              f"plain nbgrader {mean_plain:.1f} s -> {mean_ours / mean_plain:.2f}x (target <= 1.5x)", flush=True)
        # 3. A class.
        klass = make_class(args.chapter, args.students, work / "class")
        total = grade(klass, work / "class-ws", 2, args.chapter)
        print(f"{args.students} submissions of {args.chapter} with --jobs 2 --timeout {CELL_TIMEOUT}: {total:.0f} s "
              f"({total / args.students:.1f} s per submission)", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
