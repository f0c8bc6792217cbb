"""Releases for instructors: the student notebooks as archives to upload to a learning-management system.

    python -m autograder.release                 (make release)   every chapter, into _build/release/
    python -m autograder.release ch07_finetuning --out DIR

- ``gptcourse-<chapter>-<version>.zip``, one per chapter: the chapter's folder of ``exercises/`` (its notebook and
  any data files next to it) and ``MANIFEST.json``: the chapter, its assignment version, and every file's sha256.
- ``gptcourse-exercises-<version>.zip``: every chapter, with one manifest for all.
- ``SHA256SUMS``: the archives' checksums (``sha256sum -c SHA256SUMS`` checks a download).

A chapter's **assignment version** is a hash of its ``solutions/`` folder (``autograder.results.assignment_version``):
any change to its tests or points changes it. The student notebooks carry their version in their metadata, so the
grader can tell a submission made from an older release (it notes it in ``problems.csv`` and grades it against the
current tests). Every version is recorded in ``CHANGELOG.md`` with what changed and whether submissions graded before
should be re-graded; a release is refused while an entry is missing, and so is a stale ``exercises/`` folder.

The archives are reproducible: the same files give byte-identical archives (sorted members, fixed timestamps).
"""

import argparse
import hashlib
import json
import re
import sys
import zipfile
from pathlib import Path

from autograder.course import EXERCISES_DIR, REPO_ROOT, SOLUTIONS_DIR, chapters
from autograder.results import assignment_version

CHANGELOG = REPO_ROOT / "CHANGELOG.md"
METADATA_KEY = "gptcourse"  # notebook.metadata["gptcourse"] = {"chapter": ..., "assignment_version": ...}
ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip can hold: archives do not depend on when they were made
#: "## ch07_finetuning 1a2b3c4d5e6f" opens the entry of that chapter's version.
ENTRY = re.compile(r"^## (?P<chapter>ch\d\d_\w+) (?P<version>[0-9a-f]{12})\b", re.M)


class ReleaseError(Exception):
    """A release cannot be made as things are; the message says what to do."""


def short(version: str) -> str:
    """The 12 hex digits that name a version in file names and in the changelog."""
    return version.removeprefix("sha256:")[:12]


def changelog_entries(text: str) -> dict[tuple[str, str], str]:
    """(chapter, short version) -> the text of its entry in CHANGELOG.md."""
    starts = list(ENTRY.finditer(text))
    ends = [m.start() for m in starts[1:]] + [len(text)]
    return {(m["chapter"], m["version"]): text[m.end():end].strip() for m, end in zip(starts, ends)}


def missing_changelog_entries(text: str, chapter_ids: list[str]) -> list[str]:
    """The headings CHANGELOG.md lacks: one per chapter whose current version has no entry."""
    entries = changelog_entries(text)
    return [f"## {ch} {short(assignment_version(SOLUTIONS_DIR, ch))}" for ch in chapter_ids
            if (ch, short(assignment_version(SOLUTIONS_DIR, ch))) not in entries]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def chapter_files(chapter: str) -> list[Path]:
    folder = EXERCISES_DIR / chapter
    return sorted(p for p in folder.rglob("*") if p.is_file() and ".ipynb_checkpoints" not in p.parts
                  and "__pycache__" not in p.parts)


def release_note(carried: str, current: str, changelog: Path = CHANGELOG) -> str | None:
    """What to tell the instructor about a submission whose notebook carries the version ``carried`` (None: it is
    the current release, or it carries no version, as notebooks from before versions were recorded)."""
    if not carried or carried == current:
        return None
    known = changelog.exists() and any(v == short(carried) for _, v in changelog_entries(changelog.read_text("utf-8")))
    which = "an older release" if known else "a release this course's CHANGELOG.md does not list"
    return f"made from {which} of the exercises ({short(carried)}; the current one is {short(current)})"


def check_current(chapter: str, version: str) -> None:
    """Every student notebook of ``chapter`` was generated from today's solutions (it carries their version)."""
    notebooks = [p for p in chapter_files(chapter) if p.suffix == ".ipynb"]
    if not notebooks:
        raise ReleaseError(f"exercises/{chapter} has no notebook: run make exercises first.")
    for path in notebooks:
        carried = json.loads(path.read_text(encoding="utf-8")).get("metadata", {}).get(METADATA_KEY, {})
        if carried.get("assignment_version") != version:
            raise ReleaseError(f"exercises/{chapter}/{path.name} is stale: solutions/{chapter} changed since it was "
                               "generated. Run make exercises, commit, then release.")


def manifest(chapter_ids: list[str], versions: dict[str, str]) -> dict:
    return {"course": "gptcourse", "chapters": {
        ch: {"assignment_version": versions[ch],
             "files": {str(p.relative_to(EXERCISES_DIR)): sha256(p) for p in chapter_files(ch)}}
        for ch in chapter_ids}}


def write_zip(path: Path, files: dict[str, bytes]) -> None:
    """A zip of ``files`` (name in the archive -> content), the same bytes for the same files."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16  # rw-r--r--, whoever made the release
            archive.writestr(info, files[name])


README = """Student notebooks of the course "Build a GPT-style language model from scratch": {what}.

The notebooks run inside the course's repository, which holds the library they import (gptcourse) and the
self-check. Clone it and run `make install` once; a clone of the same version already has these notebooks in
exercises/ (MANIFEST.json lists each file's sha256, to compare). Open them with `make lab`, check your work with
`make check NB=exercises/<chapter>/<notebook>.ipynb`, and hand in the notebook file itself.
"""


def archive_files(chapter_ids: list[str], versions: dict[str, str]) -> dict[str, bytes]:
    files = {str(p.relative_to(EXERCISES_DIR)): p.read_bytes() for ch in chapter_ids for p in chapter_files(ch)}
    files["MANIFEST.json"] = (json.dumps(manifest(chapter_ids, versions), indent=2) + "\n").encode()
    what = ", ".join(f"{ch} (version {short(versions[ch])})" for ch in chapter_ids)
    files["README.txt"] = README.format(what=what).encode()
    return files


def release(out: Path, chapter_ids: list[str] | None = None, changelog: Path = CHANGELOG) -> list[Path]:
    """Write the archives and SHA256SUMS into ``out``; return the archives' paths."""
    every = chapters()
    chapter_ids = every if chapter_ids is None else list(chapter_ids)
    unknown = sorted(set(chapter_ids) - set(every))
    if unknown:
        raise ReleaseError(f"No chapter {unknown}; the chapters are {every}.")
    versions = {ch: assignment_version(SOLUTIONS_DIR, ch) for ch in chapter_ids}
    for ch in chapter_ids:
        check_current(ch, versions[ch])
    missing = missing_changelog_entries(changelog.read_text(encoding="utf-8") if changelog.exists() else "",
                                        chapter_ids)
    if missing:
        raise ReleaseError("CHANGELOG.md has no entry for these versions; add one for each (what changed, why, and "
                           "whether submissions graded before should be re-graded):\n  " + "\n  ".join(missing))
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("gptcourse-*.zip"):  # an earlier release's archives would be uploaded by mistake
        old.unlink()
    archives = []
    for ch in chapter_ids:
        archives.append(out / f"gptcourse-{ch}-{short(versions[ch])}.zip")
        write_zip(archives[-1], archive_files([ch], versions))
    if chapter_ids == every:
        combined = hashlib.sha256("".join(versions[ch] for ch in every).encode()).hexdigest()
        archives.append(out / f"gptcourse-exercises-{combined[:12]}.zip")
        write_zip(archives[-1], archive_files(every, versions))
    (out / "SHA256SUMS").write_text("".join(f"{sha256(a)}  {a.name}\n" for a in archives), encoding="utf-8")
    return archives


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("chapters", nargs="*", help="chapters to release (default: every chapter, and the course)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "_build" / "release", help="where the archives go")
    args = parser.parse_args(argv)
    try:
        archives = release(args.out, args.chapters or None)
    except ReleaseError as error:
        print(f"No release made: {error}", file=sys.stderr)
        return 2
    for path in archives:
        print(f"wrote {path}")
    print(f"Upload the archives to your learning-management system; {args.out / 'SHA256SUMS'} lists their checksums.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
