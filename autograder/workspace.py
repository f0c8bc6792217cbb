"""The grading workspace: a folder outside the repository that only grading writes to."""

from __future__ import annotations

from pathlib import Path

from autograder.course import REPO_ROOT
from autograder.submissions import UsageError

MARKER = ".gptcourse-grading-workspace"


# --------------------------------------------------------------------------------------------------------------------
# Checking the input
# --------------------------------------------------------------------------------------------------------------------


def _inside(path: Path, other: Path) -> bool:
    return path == other or path.is_relative_to(other)


def check_workspace(workspace: Path, submissions: Path, solutions: Path) -> None:
    """Refuse a workspace that would mix grading files with the course, the submissions, or someone's files."""
    if _inside(workspace, REPO_ROOT):
        raise UsageError(
            f"The workspace {workspace} is inside the course repository ({REPO_ROOT}).\n"
            "Grading files (learners' notebooks, the gradebook, the hidden tests' results) must not end up in the\n"
            "repository. Choose a folder outside it, for example: --workspace ~/grading/ch01")
    if _inside(REPO_ROOT, workspace):
        raise UsageError(f"The workspace {workspace} contains the course repository ({REPO_ROOT}). "
                         "Choose a dedicated folder outside the repository, for example ~/grading/ch01.")
    if _inside(workspace, submissions) or _inside(submissions, workspace):
        raise UsageError(
            f"The workspace {workspace} and the submissions folder {submissions} overlap.\n"
            "The submissions are only read; the workspace must be a separate folder, e.g. next to them: "
            f"--workspace {submissions.parent / (submissions.name + '-grading')}")
    if _inside(workspace, solutions) or _inside(solutions, workspace):
        raise UsageError(f"The workspace {workspace} and the solutions folder {solutions} overlap; choose another.")
    if workspace.exists():
        if not workspace.is_dir():
            raise UsageError(f"The workspace {workspace} exists and is not a folder. Choose a folder path.")
        if any(workspace.iterdir()) and not (workspace / MARKER).exists():
            raise UsageError(
                f"The workspace {workspace} already exists, is not empty, and was not made by this command.\n"
                "Grading deletes and re-creates folders inside the workspace, so it only uses a new or empty folder\n"
                "(or one it made before). Choose another path.")


def mark(workspace: Path) -> None:
    """Create ``workspace`` (if needed) and mark it as ours, so that a later run or merge may write into it."""
    workspace.mkdir(parents=True, exist_ok=True)
    (workspace / MARKER).write_text("Made by `python -m autograder.grade`; safe to delete with everything here.\n")
