"""The book builds: every page in _toc.yml exists, and `make book` builds the site with warnings as errors.

The build test runs the README's own command. It is slow the first time (it executes every chapter) and fast
afterwards, because executed notebooks are cached in _build/.jupyter_cache; `make book` drops that cache when the
`gptcourse` library is newer than it, so the book is always checked against the library as it is now.
"""

import html as html_lib
import re
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest

from book_site import BUILD, ROOT, toc_files


def test_no_directive_hides_behind_a_backtick_fence():
    """CommonMark forbids backticks in the info string of a backtick fence, so ```{admonition} with `code` in its
    title is not a directive at all: the page shows it as raw text, without a warning. Use a ::: fence there."""
    bad = [f"{page.name}:{n}" for page in sorted((ROOT / "book").glob("*.md"))
           for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1)
           if re.match(r"^(`{3,})\{[\w-]+\}.*`", line)]
    assert not bad, f"backticks in a directive's first line, which then never parses: {bad}"


def test_every_toc_page_exists():
    files = toc_files()
    assert files[0] == "book/intro" and "book/ch01_tokens" in files
    missing = [f for f in files if not any((ROOT / f"{f}{ext}").exists() for ext in (".md", ".ipynb"))]
    assert not missing, f"_toc.yml lists pages that do not exist: {missing}"


def _chapter_pages(site: Path) -> dict[str, str]:
    """Each chapter in _toc.yml -> its built HTML."""
    pages = {}
    for chapter in toc_files()[1:]:
        page = site / f"{chapter}.html"
        assert page.exists(), f"{chapter} is in _toc.yml but was not built"
        pages[chapter] = page.read_text(encoding="utf-8")
    return pages


@pytest.mark.slow
def test_book_builds_with_plots(site):
    for chapter, html in _chapter_pages(site).items():
        images = [src for src in _image_sources(html) if src.endswith((".png", ".svg"))]
        assert images, f"{chapter} shows no plot"
        for src in images:
            assert (site / chapter).parent.joinpath(src).resolve().exists(), f"{chapter}: the image {src} is missing"
    tokens = (site / "book" / "ch01_tokens.html").read_text(encoding="utf-8")
    assert "Byte-pair encoding" in tokens and "&lt;|endoftext|&gt;" in tokens


@pytest.mark.slow
def test_pages_show_no_raw_markup(site):
    for chapter, html in _chapter_pages(site).items():
        raw = raw_markup(html)
        assert not raw, f"{chapter} shows MyST markup as text (a directive or role that did not parse): {raw}"


@pytest.mark.slow
def test_every_code_cell_is_on_its_page(site):
    """A directive that does not parse can swallow the code cell after it, which then never runs: count them."""
    for chapter, html in _chapter_pages(site).items():
        source = (ROOT / f"{chapter}.md").read_text(encoding="utf-8")
        written = len(re.findall(r"^```\{code-cell\}", source, flags=re.M))
        shown = len(re.findall(r'<div class="cell(?: [^"]*)?"', html))
        assert shown == written, f"{chapter}: {written} code cells in the source, {shown} on the page"


@pytest.mark.slow
def test_outputs_show_no_errors_or_warnings(site):
    """Outputs show no traceback and no warning (stderr is dropped from the pages, so the executed notebooks are
    read too). A page may print an error message on purpose (`print(error)` after catching it); not a traceback."""
    for chapter, html in _chapter_pages(site).items():
        bad = [text[:300] for text in cell_outputs(html) if ALARM.search(text)]
        assert not bad, f"{chapter} shows an error or a warning in an output: {bad}"
        executed = BUILD / "jupyter_execute" / f"{chapter}.ipynb"
        for cell in nbformat.read(executed, as_version=4).cells:
            for output in cell.get("outputs", []):
                text = output.get("text", "") if output.output_type == "stream" else output.get("ename", "")
                assert output.output_type != "error" and not ALARM.search(text), (
                    f"{chapter}: a cell printed an error or a warning: {text[:300]}")


@pytest.mark.slow
def test_pages_load_no_thebe_and_number_chapters_from_zero(site):
    """Thebe is off; its scripts declared THEBE_JS_URL twice (an error in every page's console) and named a CDN.
    "Chapter 1" in the prose is the page numbered 1: the primer is 0 (book/_ext/course_site.py)."""
    pages = _chapter_pages(site)
    for chapter, html in pages.items():
        assert "THEBE_JS_URL" not in html and "thebe" not in " ".join(_script_sources(html)), chapter
    numbers = {chapter: re.search(r'<h1>\s*<span class="section-number">([\d.]+) </span>', html)
               for chapter, html in pages.items()}
    assert all(numbers.values()), f"a chapter without a number: {numbers}"
    for chapter in pages:
        match = re.match(r"book/ch(\d\d)_", chapter)
        if match and not chapter.endswith("_families"):
            assert numbers[chapter].group(1) == f"{int(match.group(1))}.", f"{chapter} is numbered {numbers[chapter]}"


# --- Reading the built HTML (the checks above use these; the tests below check the checks) ---------------------

RAW_MARKUP = re.compile(
    r"^\s*(```|~~~|:::)"  # a directive's fence, or a closing fence that opened a code block of its own
    r"|(?:```|:::)\{[\w-]+\}"  # a fence with a directive's name, anywhere in a line
    r"|\{[a-z][\w:-]*\}`"  # a role such as {ref}`...` or {doc}`...`
    r"|^\s*\{(?:code-cell|admonition|note|tip|hint|important|warning|caution|seealso|margin|dropdown|figure"
    r"|image|math|literalinclude|toctree|list-table|glue|eval-rst)\}"  # a directive's name starting a line
    r"|^\s*:[a-z][\w-]*:(?: |$)",  # a directive's option line such as :class: or :tags:
    re.M)
ALARM = re.compile(r"Traceback|\w*Warning\b|warnings\.warn|^-{20,}$", re.M)


def raw_markup(html: str) -> list[str]:
    text = _visible_text(html)
    return [text[max(0, m.start() - 40): m.end() + 40].strip() for m in RAW_MARKUP.finditer(text)]


def cell_outputs(html: str) -> list[str]:
    """The text of every cell's output block."""

    class Outputs(HTMLParser):
        def __init__(self):
            super().__init__()
            self.open: list[bool] = []  # per open element: is it an output block?
            self.texts: list[list[str]] = []
            self.inside = 0

        def handle_starttag(self, tag, attrs):
            if tag in VOID_ELEMENTS:
                return
            is_output = "cell_output" in (dict(attrs).get("class") or "").split()
            self.open.append(is_output)
            if is_output:
                self.inside += 1
                self.texts.append([])

        def handle_endtag(self, tag):
            if tag not in VOID_ELEMENTS and self.open and self.open.pop():
                self.inside -= 1

        def handle_data(self, data):
            if self.inside:
                self.texts[-1].append(data)

    parser = Outputs()
    parser.feed(html)
    return ["".join(parts) for parts in parser.texts]


VOID_ELEMENTS = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}


def test_the_checks_see_what_a_reader_would():
    broken = ("<p>```{admonition} Question: My <code>nn.Linear(3, 2)</code> weight</p>"
              "<pre>:class: tip\n```{code-cell} ipython3\nprint(1)</pre><p>See {ref}`ch01-tokens`.</p>")
    assert len(raw_markup(broken)) >= 3
    fine = ("<p>Mask with <code>scores[mask] = -inf</code>: 3 {x} 4 and a set {1, 2}.</p><pre>x = {'a': 1}\n"
            "html = f'&lt;span title=\"{tip}\"&gt;'</pre>")
    assert raw_markup(fine) == []
    page = ('<div class="cell_output docutils container"><div class="output stream"><pre>'
            "/x.py:3: UserWarning: slow<br/>ok</pre></div></div><div><pre>Traceback in prose</pre></div>")
    assert [ALARM.search(t) is not None for t in cell_outputs(page)] == [True]
    assert not ALARM.search("ValueError: the text contains a special token")


def _visible_text(html: str) -> str:
    """The page's text as a reader sees it: no tags, no scripts or styles."""
    html = re.sub(r"<(script|style)\b.*?</\1>", "", html, flags=re.S | re.I)
    return html_lib.unescape(re.sub(r"<[^>]+>", "", html))


def _image_sources(html: str) -> list[str]:
    return re.findall(r'<img[^>]*\ssrc="([^"]+)"', html)


def _script_sources(html: str) -> list[str]:
    return re.findall(r'<script[^>]*\ssrc="([^"]+)"', html)
