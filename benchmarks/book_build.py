"""How long the book takes to build: cold (every chapter executed) and again with the execution cache warm.

Run from the repository's root:  python -m benchmarks.book_build

Both builds go to one fresh temporary folder (--path-output), with its own execution cache, so the repository's
_build is left alone. The second build passes --all, so Sphinx reads every page again as after an edit to the prose,
but takes the executed notebooks from the cache instead of running them.
"""

import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build(output: Path, *extra: str) -> float:
    """Build the site into `output` and return the seconds it took; exit with the log if the build fails."""
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    command = [str(jupyter_book), "build", str(ROOT), "--builder", "html", "-W", "-n", "--keep-going",
               "--path-output", str(output), *extra]
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"The build failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return seconds


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="book_build_") as tmp:
        output = Path(tmp)
        cold = build(output)
        assert (output / "_build" / ".jupyter_cache").is_dir(), "the build did not use its own execution cache"
        cached = build(output, "--all")
    print(f"book build, cold (executes every chapter):  {cold:6.1f} s")
    print(f"book build, execution cache warm (--all):   {cached:6.1f} s")
    print(f"cold / cached:                              {cold / cached:6.1f}x")


if __name__ == "__main__":
    main()
