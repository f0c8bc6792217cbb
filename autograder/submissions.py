"""What was submitted: ``SUBMISSIONS/<student>/<chapter>/<notebook>.ipynb`` read into submissions to grade, and
problems an instructor can act on (never a submission dropped silently)."""

from __future__ import annotations

import functools
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from autograder.course import read_notebook
from autograder.release import METADATA_KEY, release_note
from autograder.results import assignment_version

IGNORED_NAMES = {"__MACOSX", "__pycache__", ".ipynb_checkpoints"}


class UsageError(Exception):
    """The command cannot run as asked; the message says what is wrong and what to do."""


@dataclass
class Problem:
    student: str
    chapter: str
    file: str
    problem: str
    what_to_do: str
    blocking: bool = True  # False: a remark on a submission that was graded anyway

    def row(self) -> dict:
        return {"student": self.student, "chapter": self.chapter, "file": self.file, "problem": self.problem,
                "what_to_do": self.what_to_do, "graded": "no" if self.blocking else "yes"}


@dataclass
class Submission:
    student: str
    chapter: str
    notebooks: list[Path] = field(default_factory=list)  # valid notebooks with an expected name, to grade
    status: str = "pending"
    score: float | None = None
    max_score: float | None = None
    cells: dict[str, float] = field(default_factory=dict)  # test cell -> points earned
    remarks: list[str] = field(default_factory=list)


def find_solution_notebooks(solutions: Path, chapter: str) -> list[str]:
    return sorted(p.stem for p in (solutions / chapter).glob("*.ipynb"))


def scan_submissions(submissions: Path, solutions: Path, wanted: list[str] | None,
                     known: list[str]) -> tuple[list[Submission], list[Problem], list[str]]:
    """What to grade, what is wrong, and the chapters concerned."""
    problems: list[Problem] = []
    version_of = functools.cache(lambda chapter: assignment_version(solutions, chapter))
    if not submissions.exists():
        raise UsageError(f"The submissions folder {submissions} does not exist.\n"
                         "Expected layout: SUBMISSIONS/<student>/<chapter>/<notebook>.ipynb")
    if not submissions.is_dir():
        raise UsageError(f"{submissions} is a file, not a folder. Pass the folder that holds one folder per student: "
                         "SUBMISSIONS/<student>/<chapter>/<notebook>.ipynb")
    entries = sorted(p for p in submissions.iterdir() if not p.name.startswith(".") and p.name not in IGNORED_NAMES)
    direct_chapters = [p.name for p in entries if p.is_dir() and p.name in known]
    if direct_chapters:
        raise UsageError(
            f"{submissions} holds chapter folders ({', '.join(direct_chapters)}) directly: it looks like ONE\n"
            "student's folder. Pass the folder that holds one folder per student: "
            "SUBMISSIONS/<student>/<chapter>/<notebook>.ipynb")
    students = [p for p in entries if p.is_dir()]
    for p in entries:
        if not p.is_dir():
            problems.append(Problem("", "", str(p.relative_to(submissions)), "a file directly in SUBMISSIONS, ignored",
                                    "if it is a learner's work, put it in SUBMISSIONS/<student>/<chapter>/ and re-run",
                                    blocking=False))
    if not students:
        raise UsageError(f"{submissions} has no student folders. "
                         "Expected layout: SUBMISSIONS/<student>/<chapter>/<notebook>.ipynb")

    present = {s.name: sorted(c.name for c in s.iterdir() if c.is_dir() and not c.name.startswith(".")
                              and c.name not in IGNORED_NAMES) for s in students}
    if wanted:
        chapters = list(wanted)
    else:
        chapters = sorted({c for names in present.values() for c in names if c in known})
        if not chapters:
            raise UsageError(
                f"No student folder in {submissions} has a chapter folder. Known chapters: {', '.join(known)}.\n"
                "Expected layout: SUBMISSIONS/<student>/<chapter>/<notebook>.ipynb")

    notebook_owner = {nb: ch for ch in known for nb in find_solution_notebooks(solutions, ch)}
    result: list[Submission] = []
    for student_dir in students:
        student = student_dir.name
        for name in present[student]:
            if name not in known:
                problems.append(Problem(student, name, f"{student}/{name}/", f"unknown chapter folder '{name}'",
                                        f"chapter folders are named after the chapters: {', '.join(known)}; "
                                        "rename the folder and re-run"))
        for stray in sorted(student_dir.glob("*.ipynb")):
            owner = notebook_owner.get(stray.stem)
            where = f"{student}/{owner}/{stray.name}" if owner else f"{student}/<chapter>/{stray.name}"
            problems.append(Problem(student, owner or "", f"{student}/{stray.name}",
                                    "notebook directly in the student folder, not in a chapter folder",
                                    f"move it to {where} and re-run"))
        for chapter in chapters:
            sub = Submission(student, chapter)
            result.append(sub)
            folder = student_dir / chapter
            expected = find_solution_notebooks(solutions, chapter)
            expected_names = ", ".join(f"{e}.ipynb" for e in expected)
            if not folder.is_dir():
                sub.status = "missing"
                problems.append(Problem(student, chapter, f"{student}/{chapter}/", "no folder for this chapter",
                                        f"if the learner submitted, put their notebook in {student}/{chapter}/ "
                                        f"(named {expected_names}) and re-run"))
                continue
            found = sorted(p for p in folder.glob("*.ipynb"))
            unexpected = [p for p in found if p.stem not in expected]
            malformed = []
            for name in expected:
                path = folder / f"{name}.ipynb"
                if not path.is_file():
                    continue
                try:
                    nb = read_notebook(path)
                except ValueError as exc:
                    malformed.append(path.name)
                    problems.append(Problem(student, chapter, f"{student}/{chapter}/{path.name}",
                                            f"malformed notebook: {exc}",
                                            "ask the learner for a fresh copy (File > Download in Jupyter); "
                                            "this submission was skipped"))
                else:
                    sub.notebooks.append(path)
                    carried = nb.metadata.get(METADATA_KEY, {}).get("assignment_version")
                    note = release_note(carried, version_of(chapter))
                    if note:
                        problems.append(Problem(student, chapter, f"{student}/{chapter}/{path.name}", note,
                                                "nothing: it was graded against the current tests (CHANGELOG.md "
                                                "says what changed)", blocking=False))
            missing = [e for e in expected if not (folder / f"{e}.ipynb").is_file()]
            for path in unexpected:
                if missing:
                    problems.append(Problem(
                        student, chapter, f"{student}/{chapter}/{path.name}",
                        f"wrong notebook name '{path.name}' (expected: {expected_names})",
                        f"if it is the learner's work, rename it to {missing[0]}.ipynb and re-run"))
                else:
                    problems.append(Problem(student, chapter, f"{student}/{chapter}/{path.name}",
                                            f"extra notebook '{path.name}' ignored (expected: {expected_names})",
                                            "nothing, unless it is the learner's real answer", blocking=False))
            if sub.notebooks:
                for name in missing:
                    sub.remarks.append(f"{name}.ipynb missing (0 points)")
                    problems.append(Problem(student, chapter, f"{student}/{chapter}/{name}.ipynb",
                                            "notebook missing, its tests score 0",
                                            f"if the learner submitted it, add it as {student}/{chapter}/{name}.ipynb "
                                            "and re-run", blocking=False))
            elif malformed:
                sub.status = "malformed"
            elif unexpected:
                sub.status = "wrong name"
            else:
                sub.status = "missing"
                problems.append(Problem(student, chapter, f"{student}/{chapter}/",
                                        f"no notebook in the chapter folder (expected: {expected_names})",
                                        "add the learner's notebook and re-run"))
    return result, problems, chapters


# --------------------------------------------------------------------------------------------------------------------
# A zip exported by a learning-management system
# --------------------------------------------------------------------------------------------------------------------

#: Limits on a submissions zip: a real course export is far below them; a zip bomb or a damaged file is not.
ZIP_MAX_FILES = 200_000
ZIP_MAX_FILE_BYTES = 200 * 2**20
ZIP_MAX_TOTAL_BYTES = 8 * 2**30
ZIP_MAX_RATIO = 200  # uncompressed / compressed, for each member over ZIP_RATIO_FROM bytes
ZIP_RATIO_FROM = 64 * 2**10
#: The whole archive may unpack to at most this many times its own size (notebooks compress 3-10 times), plus a
#: little: many small members each under the per-member check must not add up to a bomb either.
ZIP_MAX_EXPANSION = 50
ZIP_EXPANSION_ALLOWANCE = 64 * 2**20


def unsafe_member(info) -> str | None:
    """Why a zip member must not be extracted (None when it is safe)."""
    import stat

    name = info.filename
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "an absolute path"
    if ".." in parts:
        return "a path that climbs out of the folder ('..')"
    if "\\" in name:
        return "a backslash in its path (made on Windows by hand?)"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "a symbolic link"
    if info.file_size > ZIP_MAX_FILE_BYTES:
        return f"{info.file_size / 2**20:.0f} MB uncompressed (limit {ZIP_MAX_FILE_BYTES // 2**20} MB per file)"
    if info.file_size > ZIP_RATIO_FROM and info.file_size > ZIP_MAX_RATIO * max(info.compress_size, 1):
        return f"a compression ratio over {ZIP_MAX_RATIO}:1 (a zip bomb?)"
    return None


def extract_zip(archive: Path, target: Path, known_chapters: list[str]) -> Path:
    """Extract ``archive`` into ``target`` after checking every member; the folder that holds the student folders.

    Nothing is extracted if any member is unsafe: the error lists them. A zip whose only top-level entry is a folder
    wrapping the student folders (as some LMS exports are) is unwrapped."""
    import zipfile

    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            if len(members) > ZIP_MAX_FILES:
                raise UsageError(f"{archive} has {len(members):,} entries (limit {ZIP_MAX_FILES:,}); "
                                 "is it the right file?")
            total = sum(m.file_size for m in members)
            if total > ZIP_MAX_TOTAL_BYTES:
                raise UsageError(f"{archive} would unpack to {total / 2**30:.1f} GB (limit "
                                 f"{ZIP_MAX_TOTAL_BYTES // 2**30} GB); is it the right file?")
            size = archive.stat().st_size
            if total > ZIP_MAX_EXPANSION * size + ZIP_EXPANSION_ALLOWANCE:
                raise UsageError(
                    f"{archive} is {size / 2**20:.1f} MB but would unpack to {total / 2**20:,.0f} MB, more than "
                    f"{ZIP_MAX_EXPANSION} times its size (notebooks compress far less): a zip bomb, or not a course "
                    "export? Nothing was extracted. If you trust it, unpack it yourself and pass the folder.")
            bad = [(m.filename, why) for m in members if (why := unsafe_member(m))]
            if bad:
                listed = "\n".join(f"  {name!r}: {why}" for name, why in bad[:10])
                raise UsageError(f"{archive} has {len(bad)} unsafe entr{'y' if len(bad) == 1 else 'ies'}; nothing was "
                                 f"extracted:\n{listed}\nUnpack it yourself, check it, and pass the folder instead.")
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            zf.extractall(target)
    except zipfile.BadZipFile as exc:
        raise UsageError(f"{archive} is not a readable zip file ({exc}). Pass a folder or a .zip.") from None
    entries = [p for p in target.iterdir() if not p.name.startswith(".") and p.name not in IGNORED_NAMES]
    if len(entries) == 1 and entries[0].is_dir():
        inner = entries[0]
        if any((student / ch).is_dir() for student in inner.iterdir() if student.is_dir() for ch in known_chapters):
            return inner
    return target

