"""Generate the student notebooks in ``exercises/`` from the instructor notebooks in ``solutions/`` with nbgrader.

    python -m autograder.generate               # every chapter
    python -m autograder.generate ch01_tokens   # just these chapters

nbgrader's ``generate_assignment`` replaces each solution region by a stub, removes the hidden tests, clears outputs
and locks the test cells. It also records the assignment in a gradebook database; that database stays in a temporary
folder, so nothing but the student notebooks (and any data files next to them) lands in the repository. The output
is deterministic: running this twice gives byte-identical files, which is how ``tests/test_exercises.py`` can tell
that ``exercises/`` is stale (regenerate and commit it after every change to ``solutions/``).
"""

import argparse
import logging
import shutil
import sys
import tempfile
from pathlib import Path

import nbformat
from nbgrader.converters import GenerateAssignment
from nbgrader.coursedir import CourseDirectory

from autograder.course import EXERCISES_DIR, SOLUTIONS_DIR, base_config, chapters, venv_scripts_on_path
from autograder.release import METADATA_KEY
from autograder.results import assignment_version

# Editor and nbgrader leftovers that never belong to a release.
IGNORE = shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__", "*.pyc", ".DS_Store", "gradebook.db")


def _generate_one(root: Path, chapter: str) -> None:
    config = base_config(root)
    coursedir = CourseDirectory(config=config)
    coursedir.assignment_id = chapter
    converter = GenerateAssignment(coursedir=coursedir, config=config)
    converter.force = True
    converter.create_assignment = True
    converter.log.setLevel(logging.WARNING)
    with venv_scripts_on_path():
        converter.start()  # raises NbGraderException if a notebook cannot be converted


def _normalise(path: Path, chapter: str) -> None:
    """Rewrite a generated notebook in nbformat's canonical layout (sorted keys, one trailing newline), carrying
    the chapter and the assignment version it was generated from (the grader reads them back from a submission)."""
    nb = nbformat.read(path, as_version=4)
    nb.metadata[METADATA_KEY] = {"chapter": chapter, "assignment_version": assignment_version(SOLUTIONS_DIR, chapter)}
    nbformat.validate(nb)
    nbformat.write(nb, path)


def generate_to(dest_dir: Path | str, chapter_ids: list[str] | None = None) -> list[Path]:
    """Generate the student version of each chapter into ``dest_dir/<chapter>/``, replacing what was there.

    ``chapter_ids`` defaults to every chapter. Returns the files written. The gradebook and all working files live in
    a temporary directory.
    """
    dest_dir = Path(dest_dir)
    chapter_ids = chapters() if chapter_ids is None else list(chapter_ids)
    unknown = sorted(set(chapter_ids) - set(chapters()))
    if unknown:
        raise ValueError(f"No solution notebooks for {unknown}; the chapters are {chapters()}.")
    written = []
    with tempfile.TemporaryDirectory(prefix="gptcourse-generate-") as tmp:
        root = Path(tmp)
        for chapter in chapter_ids:
            shutil.copytree(SOLUTIONS_DIR / chapter, root / "solutions" / chapter, ignore=IGNORE)
            _generate_one(root, chapter)
            released = root / "exercises" / chapter
            for notebook in released.rglob("*.ipynb"):
                _normalise(notebook, chapter)
            target = dest_dir / chapter
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(released, target, ignore=IGNORE)
            written += sorted(p for p in target.rglob("*") if p.is_file())
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Regenerate exercises/ (student notebooks) from solutions/.")
    parser.add_argument("chapters", nargs="*", help=f"chapters to generate (default: all of {chapters()})")
    args = parser.parse_args(argv)
    for path in generate_to(EXERCISES_DIR, args.chapters or None):
        print(f"wrote {path.relative_to(EXERCISES_DIR.parent)}")
    stray = sorted(p.name for p in EXERCISES_DIR.iterdir() if p.is_dir() and p.name not in chapters())
    if stray:
        print(f"note: exercises/ has folders with no solutions/ counterpart (delete them if obsolete): {stray}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
