"""The book's pages and its built site, shared by the build tests (test_book.py) and the browser tests
(test_site.py)."""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "_build"


def toc_files() -> list[str]:
    """The page paths named in _toc.yml (root and every `file:` entry) in reading order, without their suffix."""
    import yaml  # a dependency of jupyter-book

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    files = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections"))
            walk(entry.get("chapters"))

    walk(toc.get("chapters"))
    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    return files


def build_site() -> Path:
    """The site as `make book` builds it (with warnings as errors)."""
    result = subprocess.run(["make", "-s", "book"], cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, f"make book failed:\n{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
    assert (BUILD / "html" / "book" / "intro.html").exists()
    return BUILD / "html"
