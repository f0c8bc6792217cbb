"""The built site in a real browser: headless Chromium against `_build/html`, served from 127.0.0.1, with every
request to another address refused (the site must work offline).

Every page of the book is visited once at a desktop width and once at a phone's; one visit collects every fact the
tests below check: console errors, requests that left the machine or failed, formulas on the page and formulas
MathJax rendered, images and their sizes, the previous/next links, and prose wider than the screen. The search page
is asked for a few course terms. Screenshots of a few pages go to `_build/screenshots/` for a human look.

Chromium is Debian's `chromium` package (`.ci/run` installs it); where it is missing these tests are skipped with a
message that says how to install it (in CI, where `GPTCOURSE_REQUIRE_BROWSER` is set, they fail). `CHROMIUM=/path/to/chrome` picks another Chromium-based browser.
"""

import functools
import os
import shutil
import textwrap
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from book_site import BUILD, DISPLAY_MATH, INLINE_MATH, formulas_in_source, prose_of, toc_files

pytestmark = pytest.mark.slow

PHONE = {"width": 375, "height": 812}
DESKTOP = {"width": 1280, "height": 900}
SCREENSHOTS = ["book/intro", "book/ch03_attention", "book/ch07_finetuning"]
SEARCHES = {"tokenizer": "book/ch01_tokens", "attention": "book/ch03_attention", "LoRA": "book/ch07_finetuning",
            "temperature": "book/ch06_generating"}

# Everything one visit learns about a page, read in the page itself once it has loaded and MathJax has finished.
FACTS = """() => {
  const article = document.querySelector('article.bd-article') || document.body;
  const math = [...article.querySelectorAll('.math')];
  const link = selector => document.querySelector(selector)?.getAttribute('href') ?? null;
  const inBox = e => {
    for (let a = e.parentElement; a && a !== article.parentElement; a = a.parentElement)
      if (getComputedStyle(a).overflowX !== 'visible') return true;
    return false;
  };
  return {
    formulas: math.length,
    rendered: math.filter(m => m.querySelector('mjx-container') && !m.querySelector('mjx-merror')).length,
    images: [...article.querySelectorAll('img')].map(img => ({
      src: img.getAttribute('src'), loaded: img.complete && img.naturalWidth > 0,
      shown: img.getBoundingClientRect().width > 0 && img.getBoundingClientRect().height > 0})),
    next: link('a.right-next'), prev: link('a.left-prev'),
    pageWidth: document.scrollingElement.scrollWidth, viewport: window.innerWidth,
    // What reaches past the window's right edge, outside any box that scrolls or clips it (a wide formula or
    // table scrolling in its own box is fine; the page scrolling sideways is not).
    tooWide: [...article.querySelectorAll('*')].filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
      .filter(e => !inBox(e) && ![...e.children].some(c => c.getBoundingClientRect().right > window.innerWidth + 1))
      .map(e => `${e.tagName.toLowerCase()}: ${e.textContent.trim().slice(0, 60)}`),
  };
}"""


def chromium() -> str | None:
    candidates = [os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"]
    return next((path for path in map(lambda c: c and shutil.which(c), candidates) if path), None)


@pytest.fixture(scope="module")
def browser():
    path = chromium()
    if path is None:
        # CI sets GPTCOURSE_REQUIRE_BROWSER (.ci/run installs Chromium): there a missing browser is a failure.
        (pytest.fail if os.environ.get("GPTCOURSE_REQUIRE_BROWSER") else pytest.skip)("Chromium is not installed, so the built site was not checked in a browser. Install it "
                    "(Debian/Ubuntu: sudo apt-get install chromium; macOS: brew install --cask chromium) or set "
                    "CHROMIUM=/path/to/chrome, then run the tests again.")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # Chromium's sandbox cannot start as root (containers, CI); the pages are the course's own.
        args = ["--no-sandbox"] if os.geteuid() == 0 else []
        browser = playwright.chromium.launch(executable_path=path, args=args)
        yield browser
        browser.close()


def serve(folder: Path):
    """An HTTP server for ``folder`` on 127.0.0.1 (a free port), in a thread; returns (server, base URL)."""
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


@pytest.fixture(scope="module")
def base_url(site):
    server, url = serve(site)
    yield url
    server.shutdown()


def visit(browser, url: str, viewport: dict, base: str, screenshot: Path | None = None) -> dict:
    """Load ``url`` in a fresh page, refusing every request outside ``base``; the page's facts and its problems."""
    page = browser.new_page(viewport=viewport)
    problems = []
    page.on("console", lambda m: m.type == "error" and problems.append(f"console error: {m.text}"))
    page.on("pageerror", lambda e: problems.append(f"script error: {e}"))
    page.on("response", lambda r: r.status >= 400 and problems.append(f"HTTP {r.status}: {r.url}"))

    def offline(route):
        if route.request.url.startswith(base):
            return route.continue_()
        problems.append(f"asked the internet for {route.request.url}")
        return route.abort()

    page.route("**/*", offline)
    try:
        page.goto(url, wait_until="load")
        page.evaluate("() => window.MathJax?.startup?.promise?.then(() => true)")  # resolves once MathJax has typeset the page
        facts = page.evaluate(FACTS)
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=False)
    finally:
        page.close()
    return facts | {"problems": problems}


@pytest.fixture(scope="module")
def visits(browser, base_url) -> dict:
    """(page, "desktop" or "phone") -> the facts of one visit, for every page of the book."""
    facts = {}
    for name in toc_files():
        for kind, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
            shot = BUILD / "screenshots" / f"{name.split('/')[-1]}-{kind}.png" if name in SCREENSHOTS else None
            facts[name, kind] = visit(browser, f"{base_url}{name}.html", viewport, base_url, shot)
    return facts


def test_every_page_loads_offline_without_errors(visits):
    bad = {f"{name} ({kind})": v["problems"] for (name, kind), v in visits.items() if v["problems"]}
    assert not bad, f"pages with console errors, failed requests or requests to the internet: {bad}"


def test_mathjax_renders_every_formula_of_the_source(visits):
    for (name, kind), v in visits.items():
        written = formulas_in_source(name)
        assert v["formulas"] == written, (
            f"{name} ({kind}): the source writes {written} formulas, the page has {v['formulas']} (a formula the "
            "parser did not see as math shows as raw $...$ text)")
        assert v["rendered"] == written, (
            f"{name} ({kind}): MathJax rendered {v['rendered']} of the page's {written} formulas (one it could not "
            "parse, or MathJax did not load)")
    assert sum(v["formulas"] for v in visits.values()) > 0, "no formula anywhere: the check would check nothing"


def test_formulas_are_counted_in_prose_only():
    source = textwrap.dedent("""\
        Text $a$ and a price of $5, an escaped \\$x$, `$code$`.
        $$
        b
        $$
        ```{code-cell} ipython3
        x = "$cell$"
        ```
        :::{admonition} A question
        $colon$
        :::
        ```{admonition} Another
        $backtick$
        ```
        ```python
        $block$
        ```
        """)
    text = prose_of(source)
    for kept in ("$a$", "$colon$", "$backtick$"):
        assert kept in text
    for dropped in ("$code$", "$cell$", "$block$"):
        assert dropped not in text
    assert len(DISPLAY_MATH.findall(text)) == 1 and INLINE_MATH.findall(DISPLAY_MATH.sub("", text)) == [
        "$a$", "$colon$", "$backtick$"]


def test_every_figure_loads_and_has_a_size(visits):
    for (name, kind), v in visits.items():
        broken = [image["src"] for image in v["images"] if not (image["loaded"] and image["shown"])]
        assert not broken, f"{name} ({kind}): images that did not load or have no size: {broken}"
    assert all(v["images"] for (name, _), v in visits.items() if name != "book/intro"), "a chapter shows no figure"


def test_next_and_previous_links_walk_the_book_in_order(visits):
    pages = toc_files()
    for i, name in enumerate(pages):
        v = visits[name, "desktop"]
        target = {"next": pages[i + 1] if i + 1 < len(pages) else None, "prev": pages[i - 1] if i > 0 else None}
        for direction, expected in target.items():
            href = v[direction]
            got = None if href is None else str(Path(name).parent.joinpath(href.split("#")[0]).with_suffix(""))
            got = os.path.normpath(got) if got else None
            assert got == expected, f"{name}: the {direction} link goes to {got}, expected {expected}"


def test_phone_width_needs_no_horizontal_scrolling(visits):
    for (name, kind), v in visits.items():
        assert v["pageWidth"] <= v["viewport"] + 1, (
            f"{name} ({kind}): the page is {v['pageWidth']} px wide in a {v['viewport']} px window")
        assert not v["tooWide"], f"{name} ({kind}): wider than the window: {v['tooWide'][:3]}"
    for name in SCREENSHOTS:
        assert (BUILD / "screenshots" / f"{name.split('/')[-1]}-phone.png").stat().st_size > 0


def test_search_finds_the_chapters(browser, base_url):
    for term, expected in SEARCHES.items():
        page = browser.new_page()
        try:
            page.goto(f"{base_url}search.html?q={term}", wait_until="load")
            page.wait_for_selector("#search-results ul.search li a", timeout=20_000)
            found = {os.path.normpath(a.split("#")[0].split("?")[0]).removesuffix(".html")
                     for a in page.eval_on_selector_all("#search-results ul.search li a",
                                                        "links => links.map(a => a.getAttribute('href'))")}
        finally:
            page.close()
        assert expected in found, f"searching for {term!r} did not find {expected}; it found {sorted(found)}"


def test_the_checks_catch_a_broken_page(browser, tmp_path):
    """A page with each fault the tests look for: every fault must be found (else the tests above prove nothing)."""
    mathjax = BUILD / "html" / "_static" / "mathjax" / "tex-chtml.js"
    assert mathjax.exists(), "the site ships no MathJax: build the book first"
    shutil.copy(mathjax, tmp_path / "mathjax.js")
    (tmp_path / "broken.html").write_text("""<!doctype html><html><head><meta name="viewport"
      content="width=device-width"><script src="mathjax.js"></script></head><body><article class="bd-article">
      <p><span class="math">\\(x^2\\)</span> and <span class="math">\\(\\frac{1}{\\)</span></p>
      <p style="width: 2000px">a line of prose far wider than a phone</p>
      <img src="missing.png"><img src="https://example.com/remote.png">
      <script>console.error("a console error");</script></article></body></html>""")
    server, url = serve(tmp_path)
    try:
        facts = visit(browser, f"{url}broken.html", PHONE, url)
    finally:
        server.shutdown()
    problems = " ".join(facts["problems"])
    assert "console error" in problems and "asked the internet for https://example.com" in problems
    assert "HTTP 404" in problems
    assert facts["formulas"] == 2 and facts["rendered"] == 1
    assert [i["loaded"] for i in facts["images"]] == [False, False]
    assert facts["tooWide"] and facts["pageWidth"] > facts["viewport"]
