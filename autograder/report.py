"""What an instructor reads after grading: grades.csv, problems.csv and the summary on the console."""

from __future__ import annotations

import csv
from pathlib import Path

from autograder.submissions import Problem, Submission


#: A spreadsheet treats a cell that starts with one of these as a formula (OWASP: CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def cell_text(value) -> str:
    """A CSV cell that a spreadsheet shows as text: a leading formula character gets a ' before it."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def fmt(points: float | None) -> str:
    if points is None:
        return "-"
    return f"{points:g}"


def cell_column(chapter: str, notebook: str, grade_id: str, cell_order) -> str:
    notebooks = {n for n, _, _ in cell_order.get(chapter, [])}
    return f"{chapter}/{grade_id}" if len(notebooks) <= 1 else f"{chapter}/{notebook}/{grade_id}"


def write_grades(path: Path, subs: list[Submission], chapters: list[str], cell_order) -> None:
    columns = []
    for chapter in chapters:
        for notebook, grade_id, _ in cell_order.get(chapter, []):
            columns.append((chapter, notebook, grade_id, cell_column(chapter, notebook, grade_id, cell_order)))
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["student", "chapter", "score", "max_score", "status", "remarks"] + [c[3] for c in columns])
        for sub in subs:
            row = [cell_text(sub.student), cell_text(sub.chapter), fmt(sub.score) if sub.score is not None else "",
                   fmt(sub.max_score) if sub.max_score is not None else
                   fmt(sum(p for _, _, p in cell_order.get(sub.chapter, []))) if sub.chapter in cell_order else "",
                   cell_text(sub.status), cell_text("; ".join(sub.remarks))]
            for chapter, notebook, grade_id, _ in columns:
                value = sub.cells.get(f"{notebook}/{grade_id}") if chapter == sub.chapter else None
                row.append(fmt(value) if value is not None else "")
            writer.writerow(row)


def write_problems(path: Path, problems: list[Problem]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["student", "chapter", "file", "problem", "what_to_do", "graded"])
        writer.writeheader()
        for problem in problems:
            writer.writerow({key: cell_text(value) for key, value in problem.row().items()})


def summary(say, subs: list[Submission], problems: list[Problem], workspace: Path) -> int:
    say("")
    say("Summary")
    width = max([len("student")] + [len(s.student) for s in subs])
    cwidth = max([len("chapter")] + [len(s.chapter) for s in subs])
    say(f"  {'student':<{width}}  {'chapter':<{cwidth}}  {'score':>9}  status")
    for sub in subs:
        score = f"{fmt(sub.score)}/{fmt(sub.max_score)}" if sub.status == "graded" else "-"
        remarks = f" ({'; '.join(sub.remarks)})" if sub.remarks else ""
        say(f"  {sub.student:<{width}}  {sub.chapter:<{cwidth}}  {score:>9}  {sub.status}{remarks}")
    graded = sum(s.status == "graded" for s in subs)
    blocking = [p for p in problems if p.blocking]
    say("")
    say(f"{len(subs)} submission(s): {graded} graded, {len(subs) - graded} not graded.")
    if problems:
        say(f"{len(problems)} problem(s) and remark(s), with what to do, in {workspace / 'problems.csv'}:")
        for p in problems:
            who = "/".join(x for x in (p.student, p.chapter) if x) or p.file
            say(f"  {'✗' if p.blocking else '!'} {who}: {p.problem}")
    say(f"Grades: {workspace / 'grades.csv'}")
    say(f"Feedback for each learner: {workspace / 'feedback'}/<student>/<chapter>/<notebook>.html")
    return 1 if blocking or graded < len(subs) else 0
