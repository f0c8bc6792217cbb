"""Collect grading results into one master workspace: nbgrader gradebook, grades.csv, problems.csv, feedback, report.

    python -m autograder.merge --workspace MASTER SHARD_WORKSPACE [SHARD_WORKSPACE ...]

Each SHARD_WORKSPACE is a workspace written by ``python -m autograder.grade --shard I/N`` (on any runner, copied
back here). The merge refuses, with the list of offenders and nothing changed:

* a result that is damaged or breaks the schema (``autograder/result_schema.json``);
* the same student and chapter graded in two shards (overlapping shard settings, or one shard copied twice);
* results graded against another version of a chapter's tests than the others or than ``solutions/`` here.

MASTER may be new, or a workspace merged into before (results are updated in place: a manual grade entered in its
gradebook stays), or one of the shards. ``autograder.grade`` without ``--shard`` merges its own workspace itself.
Exit status: 0 all graded, 1 some submissions have problems (listed in problems.csv), 2 the merge was refused.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from autograder.course import REPO_ROOT, SOLUTIONS_DIR, venv_scripts_on_path
from autograder.nbgrader_steps import prepare_chapter, quiet_nbgrader_logging, test_cell_order
from autograder.report import summary, write_grades, write_problems
from autograder.report_page import write_report
from autograder.results import (RESULTS_DIR, RUN_PROBLEMS_GLOB, assignment_version, read_result, result_files,
                                result_path)
from autograder.submissions import Problem, Submission, UsageError
from autograder.workspace import MARKER, mark


def collect(sources: list[Path]) -> tuple[dict[tuple[str, str], tuple[dict, Path]], list[dict]]:
    """Every result of every source, keyed by (student, chapter), and the run-level problems; refuses bad input."""
    found: dict[tuple[str, str], tuple[dict, Path]] = {}
    duplicates, damaged, run_problems = [], [], []
    for source in sources:
        if not (source / MARKER).exists() or not (source / RESULTS_DIR).is_dir():
            raise UsageError(f"{source} is not a grading workspace (no {MARKER} and {RESULTS_DIR}/ in it). Pass the "
                             "--workspace folders that `python -m autograder.grade` wrote.")
        for path in result_files(source):
            try:
                result = read_result(path)
            except ValueError as exc:
                damaged.append(str(exc))
                continue
            key = (result["student"], result["chapter"])
            if key in found and found[key][1] != source:
                duplicates.append(f"{key[0]}/{key[1]}: in {found[key][1]} and in {source}")
            found[key] = (result, source)
        for path in sorted((source / RESULTS_DIR).glob(RUN_PROBLEMS_GLOB)):
            run_problems += [row for row in json.loads(path.read_text()) if row not in run_problems]
    if damaged:
        raise UsageError(f"{len(damaged)} result file(s) are damaged; nothing was merged:\n  "
                         + "\n  ".join(damaged[:10]) + "\nGrade those submissions again (--force) on their runner.")
    if duplicates:
        raise UsageError(f"{len(duplicates)} submission(s) were graded in more than one shard; nothing was merged:\n  "
                         + "\n  ".join(duplicates[:10]) + "\nEvery runner must use the same N in --shard I/N and a "
                         "different I; or a shard folder was passed twice. Remove the extra results and merge again.")
    return found, run_problems


def check_versions(results: list[dict], solutions: Path) -> dict[str, str]:
    """chapter -> version, the same for every result and for ``solutions``; refuses a mix."""
    versions: dict[str, set[str]] = {}
    for result in results:
        versions.setdefault(result["chapter"], set()).add(result["assignment_version"])
    wrong = []
    here = {}
    for chapter, seen in sorted(versions.items()):
        if not (solutions / chapter).is_dir():
            raise UsageError(f"Results for chapter '{chapter}', which {solutions} does not have. Merge with the same "
                             "course version the shards graded with.")
        here[chapter] = assignment_version(solutions, chapter)
        if seen != {here[chapter]}:
            mismatched = sorted(f"{r['student']}" for r in results if r["chapter"] == chapter
                                and r["assignment_version"] != here[chapter])
            wrong.append(f"{chapter}: {len(mismatched)} result(s) graded against another version of its tests "
                         f"(e.g. {', '.join(mismatched[:5])})")
    if wrong:
        raise UsageError("The results were graded against different versions of the assignment; nothing was merged:\n  "
                         + "\n  ".join(wrong) + f"\nThis merge uses {solutions}. Re-grade the listed shards with the "
                         "same course version (git checkout of the same commit), then merge again.")
    return here


def copy_in(master: Path, source: Path, result: dict) -> None:
    """The result, feedback and graded notebooks of one submission from a shard into the master workspace."""
    student, chapter = result["student"], result["chapter"]
    target = result_path(master, student, chapter)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(result_path(source, student, chapter), target)
    for step in ("feedback", "autograded"):
        shutil.rmtree(master / step / student / chapter, ignore_errors=True)
        if (source / step / student / chapter).is_dir():
            shutil.copytree(source / step / student / chapter, master / step / student / chapter)


def update_gradebook(db_url: str, results: list[dict]) -> None:
    """Load automatic scores into the master gradebook; a submission not graded any more is removed from it."""
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(db_url) as gb:
        for r in results:
            if r["status"] != "graded":
                try:
                    gb.remove_submission(r["chapter"], r["student"])
                except MissingEntry:
                    pass
                continue
            gb.update_or_create_student(r["student"])
            gb.update_or_create_submission(r["chapter"], r["student"])
            scores = {(t["notebook"], t["name"]): t["score"] for t in r["tests"]}
            for notebook in gb.find_assignment(r["chapter"]).notebooks:
                sub_nb = gb.find_submission_notebook(notebook.name, r["chapter"], r["student"])
                for grade in sub_nb.grades:
                    if (notebook.name, grade.name) in scores:
                        grade.auto_score = scores[(notebook.name, grade.name)]
                        grade.needs_manual_grade = False
                    elif grade.auto_score is None and grade.manual_score is None:
                        grade.auto_score = 0  # a missing notebook, or a cell that never ran
                        grade.needs_manual_grade = False
            gb.db.commit()


def as_submission(result: dict) -> Submission:
    sub = Submission(result["student"], result["chapter"], status=result["status"], remarks=list(result["remarks"]))
    if result["status"] == "graded":
        sub.score, sub.max_score = result["score"], result["max_score"]
        sub.cells = {f"{t['notebook']}/{t['name']}": t["score"] for t in result["tests"]}
    return sub


def as_problems(result: dict) -> list[Problem]:
    return [Problem(result["student"], result["chapter"], p["file"], p["problem"], p["what_to_do"], p["blocking"])
            for p in result["problems"]]


def merge(master: Path, sources: list[Path], solutions: Path = SOLUTIONS_DIR, out=None) -> int:
    out = out or sys.stdout

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    master, solutions = master.expanduser().resolve(), solutions.expanduser().resolve()
    sources = [s.expanduser().resolve() for s in sources]
    if master.is_relative_to(REPO_ROOT) or REPO_ROOT.is_relative_to(master):
        raise UsageError(f"The master workspace {master} overlaps the course repository ({REPO_ROOT}); grading "
                         "files must stay out of it. Choose a folder outside, e.g. ~/grading/master.")
    if master.exists() and any(master.iterdir()) and not (master / MARKER).exists():
        raise UsageError(f"{master} exists, is not empty and is not a grading workspace; choose a new folder.")
    found, run_problems = collect(sources)
    results = [r for r, _ in found.values()]
    versions = check_versions(results, solutions)

    mark(master)
    for result, source in found.values():
        if source != master:
            copy_in(master, source, result)
    with venv_scripts_on_path():
        quiet_nbgrader_logging()
        broken = {ch: why for ch in versions if (why := prepare_chapter(master, ch, solutions, master / "logs"))}
        update_gradebook(f"sqlite:///{master / 'gradebook.db'}", [r for r in results if r["chapter"] not in broken])
    for chapter, why in broken.items():  # its results say "chapter could not be prepared" already
        run_problems.append(Problem("", chapter, f"solutions/{chapter}/", f"chapter not in the gradebook: {why}",
                                    "fix the solution notebook and grade again").row())

    # Everything in the master (earlier merges included), so that grades.csv is the whole class.
    everything = sorted((read_result(p) for p in result_files(master)), key=lambda r: (r["chapter"], r["student"]))
    chapters = sorted({r["chapter"] for r in everything})
    cell_order = {ch: test_cell_order(master / "solutions", ch) for ch in chapters
                  if (master / "solutions" / ch).is_dir()}
    subs = [as_submission(r) for r in everything]
    problems = [Problem(row["student"], row["chapter"], row["file"], row["problem"], row["what_to_do"],
                        row["graded"] == "no") for row in run_problems]
    problems += [p for r in everything for p in as_problems(r)]
    write_grades(master / "grades.csv", subs, chapters, cell_order)
    write_problems(master / "problems.csv", problems)
    write_report(master / "report.html", everything, run_problems,
                 subtitle=f"{len(everything)} submission(s) from {len(sources)} workspace(s)")
    code = summary(say, subs, problems, master)
    say(f"Report: {master / 'report.html'}")
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder.merge", description=__doc__.split("\n")[0])
    parser.add_argument("--workspace", type=Path, required=True, help="the master workspace (new, or merged before)")
    parser.add_argument("sources", type=Path, nargs="+", help="shard workspaces written by autograder.grade --shard")
    parser.add_argument("--solutions", type=Path, default=SOLUTIONS_DIR, help=argparse.SUPPRESS)  # for the tests
    args = parser.parse_args(argv)
    try:
        return merge(args.workspace, args.sources, args.solutions)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
