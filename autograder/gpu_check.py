"""The checks that need a CUDA GPU: ``make gpu-check`` (``python -m autograder.gpu_check``).

Where CUDA is present:

1. the library's tests and the protocol's tests, whose numerical checks loop over ``devices_to_test()`` (CPU and
   CUDA), and every chapter's tests, visible and hidden, against the reference solutions and the catalogue of wrong
   implementations (the hidden tests run on the GPU as well as the CPU);
2. a small class graded twice, ``--device cuda`` and ``--device cpu``: per chapter the reference answer, the untouched
   stub and catalogued mistakes; the grades must be the same;
3. the bfloat16 training MFU of GPT-2 small (124M) against the GPU's measured bfloat16 matrix-product FLOP/s
   (``python -m benchmarks.pretraining --gpu``, a few steps): printed, and the step fails only if it crashes;
4. a summary: each step, its time, and what it found.

Elsewhere it says there is no GPU and exits 0. Later chapters add their GPU checks to ``GPU_TESTS``.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from autograder.course import REPO_ROOT, chapters

#: Test files with CUDA branches (devices_to_test) or that run the chapters' tests; a chapter adds its own.
GPU_TESTS = ["tests/test_tolerances_and_seed.py", "tests/test_device.py", "tests/test_embeddings.py",
             "tests/test_attention.py", "tests/test_model.py", "tests/test_families.py", "tests/test_gpt2_weights.py",
             "tests/test_referee.py", "tests/test_catalogue.py", "tests/test_exercises.py", "tests/test_train.py",
             "tests/test_flops.py", "tests/test_distributed.py", "tests/test_generate.py",
             "tests/test_finetune.py"]
#: Submissions per chapter in the class graded on both devices: the reference, the stub, and this many mistakes.
MISTAKES_PER_CHAPTER = 3


def run(step: str, argv: list[str]) -> tuple[int, float, str]:
    """Run a command from the repository; (exit status, seconds, the end of what it printed)."""
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
    print(f"[{step}] exit {proc.returncode} in {seconds:.0f} s\n{tail}\n", flush=True)
    return proc.returncode, seconds, tail


def grades(workspace: Path) -> dict[tuple[str, str], tuple[str, str]]:
    with open(workspace / "grades.csv", newline="", encoding="utf-8") as fh:
        return {(r["student"], r["chapter"]): (r["status"], r["score"]) for r in csv.DictReader(fh)}


def build_class(folder: Path) -> Path:
    from autograder.classroom import make_class

    for chapter in chapters():
        make_class(chapter, 2 + MISTAKES_PER_CHAPTER, folder / chapter)
    merged = folder / "all"
    for chapter in chapters():  # one folder per student, every chapter in it
        for student in (folder / chapter).iterdir():
            target = merged / f"{student.name}" / chapter
            target.parent.mkdir(parents=True, exist_ok=True)
            (student / chapter).rename(target)
    return merged


def main() -> int:
    import torch

    if not torch.cuda.is_available():
        print("No CUDA GPU here: nothing to check on a GPU (the ordinary test suite covers the CPU). Run "
              "`make gpu-check` on a machine with an NVIDIA GPU.")
        return 0
    print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}", flush=True)
    summary = []
    code, seconds, tail = run("tests on CPU and CUDA", [sys.executable, "-m", "pytest", "-q", "-p",
                                                        "no:cacheprovider", *GPU_TESTS])
    summary.append(("tests (CPU and CUDA)", code == 0, seconds, tail.splitlines()[-1] if tail else ""))
    with tempfile.TemporaryDirectory(prefix="gptcourse-gpu-check-") as tmp:
        submissions = build_class(Path(tmp) / "class")
        found = {}
        for device in ("cuda", "cpu"):
            workspace = Path(tmp) / f"workspace-{device}"
            code, seconds, tail = run(f"grading on {device}", [
                sys.executable, "-m", "autograder.grade", str(submissions), "--workspace", str(workspace),
                "--device", device, "--jobs", "2", "--timeout", "120"])
            found[device] = grades(workspace) if (workspace / "grades.csv").exists() else {}
            summary.append((f"grading a class on {device}", code in (0, 1) and bool(found[device]), seconds,
                            f"{len(found[device])} submissions"))
        keys = set(found["cuda"]) | set(found["cpu"])
        differ = sorted(k for k in keys if found["cuda"].get(k) != found["cpu"].get(k))
        summary.append(("same grades on cuda and cpu", not differ and bool(found["cuda"]), 0.0,
                        "identical" if not differ else f"differ for {differ[:5]}"))
        for key in differ[:10]:
            print(f"  {key}: cuda {found['cuda'].get(key)}, cpu {found['cpu'].get(key)}")
    code, seconds, tail = run("bf16 training MFU", [sys.executable, "-m", "benchmarks.pretraining", "--gpu"])
    summary.append(("bf16 training MFU, GPT-2 124M", code == 0, seconds, tail.splitlines()[-1].strip() if tail else ""))
    print("\nGPU check summary")
    for step, ok, seconds, detail in summary:
        print(f"  {'✓' if ok else '✗'} {step:<32} {seconds:6.0f} s  {detail}")
    return 0 if all(ok for _, ok, _, _ in summary) else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
