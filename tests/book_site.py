"""The book's pages and its built site, shared by the build tests (test_book.py) and the browser tests
(test_site.py)."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "_build"
sys.path.insert(0, str(ROOT / "book" / "_ext"))
import chapter_notebooks  # noqa: E402  (it reads _toc.yml for `make notebooks`)


def toc_files() -> list[str]:
    """The page paths named in _toc.yml, the root first, in reading order, without their suffix."""
    import yaml  # a dependency of jupyter-book

    root = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))["root"]
    return [root, *chapter_notebooks.chapter_pages()]


def build_site() -> Path:
    """The site as `make book` builds it (with warnings as errors)."""
    result = subprocess.run(["make", "-s", "book"], cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, f"make book failed:\n{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
    assert (BUILD / "html" / "book" / "intro.html").exists()
    return BUILD / "html"


CODE_DIRECTIVES = {"code-cell", "literalinclude", "code-block", "code", "sourcecode"}
DISPLAY_MATH = re.compile(r"^\$\$.*?\$\$[ \t]*$", re.S | re.M)
INLINE_MATH = re.compile(r"(?<![\\$\w])\$(?=\S)[^$\n]+?(?<=\S)\$(?![\w$])")  # $x$, not $5 or a\$


def prose_of(markdown: str) -> str:
    """A page's text without its code: code cells, included code and code blocks are dropped, inline code too;
    directives that hold prose (admonitions) keep their content."""
    kept, fence = [], None  # the open fence: (its marker, whether it holds code)
    for line in markdown.splitlines():
        opening = re.match(r"^(`{3,}|~{3,})\s*(\{([\w-]+)\}|[\w+-]*)", line)
        if fence is None and opening:
            fence = (opening[1], opening[3] is None or opening[3] in CODE_DIRECTIVES)
        elif fence is not None and re.fullmatch(rf"{re.escape(fence[0][0])}{{{len(fence[0])},}}\s*", line):
            fence = None
        elif fence is None or not fence[1]:
            kept.append(line)
    return re.sub(r"`[^`\n]*`", "", "\n".join(kept))


def formulas_in_source(page: str) -> int:
    """How many formulas the page's MyST source writes: $$ blocks and inline $...$ in its prose."""
    text = prose_of((ROOT / f"{page}.md").read_text(encoding="utf-8"))
    return len(DISPLAY_MATH.findall(text)) + len(INLINE_MATH.findall(DISPLAY_MATH.sub("", text)))
