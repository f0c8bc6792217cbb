"""Where the course's exercise material lives, and the nbgrader settings every command shares.

nbgrader's "source" is ``solutions/`` (instructor notebooks with solutions and hidden tests) and its "release" is
``exercises/`` (the student notebooks generated from them). Each chapter is one nbgrader assignment:
``solutions/<chapter>/<notebook>.ipynb``.
"""

from pathlib import Path

from traitlets.config import Config

REPO_ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS_DIR = REPO_ROOT / "solutions"
EXERCISES_DIR = REPO_ROOT / "exercises"


def chapters() -> list[str]:
    """The assignment ids (chapter folders) that have solution notebooks, in order."""
    return sorted(p.name for p in SOLUTIONS_DIR.iterdir() if p.is_dir() and any(p.glob("*.ipynb")))


def base_config(root: Path = REPO_ROOT) -> Config:
    """nbgrader settings with ``root`` as the course directory (the repository, or a grading workspace)."""
    c = Config()
    c.CourseDirectory.root = str(root)
    c.CourseDirectory.source_directory = "solutions"
    c.CourseDirectory.release_directory = "exercises"
    c.CourseDirectory.db_url = f"sqlite:///{Path(root) / 'gradebook.db'}"
    return c
