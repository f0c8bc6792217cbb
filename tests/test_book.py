"""The book builds: every page in _toc.yml exists, and `make book` builds the site with warnings as errors.

The build test runs the README's own command. It is slow the first time (it executes every chapter) and fast
afterwards, because executed notebooks are cached in _build/.jupyter_cache; `make book` drops that cache when the
`gptcourse` library is newer than it, so the book is always checked against the library as it is now.
"""

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "_build"


def _toc_files() -> list[str]:
    """The page paths named in _toc.yml (root and every `file:` entry), without their suffix."""
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


def test_no_directive_hides_behind_a_backtick_fence():
    """CommonMark forbids backticks in the info string of a backtick fence, so ```{admonition} with `code` in its
    title is not a directive at all: the page shows it as raw text, without a warning. Use a ::: fence there."""
    import re

    bad = [f"{page.name}:{n}" for page in sorted((ROOT / "book").glob("*.md"))
           for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1)
           if re.match(r"^(`{3,})\{[\w-]+\}.*`", line)]
    assert not bad, f"backticks in a directive's first line, which then never parses: {bad}"


def test_every_toc_page_exists():
    files = _toc_files()
    assert files[0] == "book/intro" and "book/ch01_tokens" in files
    missing = [f for f in files if not any((ROOT / f"{f}{ext}").exists() for ext in (".md", ".ipynb"))]
    assert not missing, f"_toc.yml lists pages that do not exist: {missing}"


@pytest.mark.slow
def test_book_builds_without_warnings():
    result = subprocess.run(["make", "-s", "book"], cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, f"make book failed:\n{result.stdout[-6000:]}\n{result.stderr[-6000:]}"

    site = BUILD / "html"
    assert (site / "book" / "intro.html").exists()
    chapters = [f for f in _toc_files() if f != "book/intro"]
    for chapter in chapters:
        page = site / f"{chapter}.html"
        assert page.exists(), f"{chapter} is in _toc.yml but was not built"
        html = page.read_text(encoding="utf-8")
        images = [src for src in _image_sources(html) if src.endswith((".png", ".svg"))]
        assert images, f"{chapter} shows no plot"
        for src in images:
            assert (page.parent / src).resolve().exists(), f"the image {src} of {chapter} is missing from the site"
        raw = [m for m in ("```{", ":::{", "{code-cell}", "{admonition}") if m in _visible_text(html)]
        assert not raw, f"{chapter} shows raw MyST markup {raw}: a directive that did not parse"
    tokens = (site / "book" / "ch01_tokens.html").read_text(encoding="utf-8")
    assert "Byte-pair encoding" in tokens and "&lt;|endoftext|&gt;" in tokens


def _visible_text(html: str) -> str:
    """The page's text as a reader sees it: no tags, no scripts or styles."""
    import html as html_lib
    import re

    html = re.sub(r"<(script|style)\b.*?</\1>", "", html, flags=re.S | re.I)
    return html_lib.unescape(re.sub(r"<[^>]+>", "", html))


def _image_sources(html: str) -> list[str]:
    import re

    return re.findall(r'<img[^>]*\ssrc="([^"]+)"', html)
