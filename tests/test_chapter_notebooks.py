"""The chapters open as notebooks (`make notebooks`, book/_ext/chapter_notebooks.py), and the Makefile says so.

A copy must read as plain Jupyter Markdown (no MyST directive or role left), hold exactly the page's code cells,
link to sections that exist, run, and never overwrite a copy the learner has changed.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book" / "_ext"))
import chapter_notebooks  # noqa: E402

MYST_LEFT = re.compile(r"^\s*(```|:::)\{|\{(ref|doc|numref|eq)\}`|^\([\w-]+\)=\s*$", re.M)


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("notebooks")
    done = chapter_notebooks.write_all(out)
    assert set(done.values()) == {"written"}
    return out


def _code_cells_of_page(page: str) -> list[str]:
    from myst_nb.core.read import read_myst_markdown_notebook

    nb = read_myst_markdown_notebook((ROOT / f"{page}.md").read_text(encoding="utf-8"))
    return [cell.source for cell in nb.cells if cell.cell_type == "code"]


@pytest.mark.parametrize("page", chapter_notebooks.chapter_pages())
def test_a_chapter_becomes_a_plain_notebook(page, written):
    nb = nbformat.read(written / f"{Path(page).name}.ipynb", as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    assert [c.source for c in nb.cells if c.cell_type == "code"] == _code_cells_of_page(page)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            outside_code = re.sub(r"^```python\n.*?^```$", "", cell.source, flags=re.S | re.M)
            left = MYST_LEFT.search(outside_code)
            assert not left, f"{page}: MyST markup left in a notebook: {outside_code[left.start():][:120]!r}"


def test_includes_become_code_and_links_find_their_sections(written):
    headings: dict[str, set[str]] = {}
    links = []
    for path in written.glob("*.ipynb"):
        markdown = [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown"]
        headings[path.name] = {chapter_notebooks.anchor(h) for text in markdown
                               for h in re.findall(r"^#+\s+(.+)$", text, flags=re.M)}
        links += [(path.name, target) for text in markdown for target in re.findall(r"\]\(([^)\s]+)\)", text)
                  if not target.startswith("http")]
    attention = (written / "ch03_attention.ipynb").read_text(encoding="utf-8")
    assert "def scaled_dot_product_attention(" in attention, "a literalinclude did not become the code it shows"
    assert links, "no cross-reference became a link"
    for source, target in links:
        name, _, section = target.partition("#")
        name = name or source
        assert name in headings, f"{source} links to {target}, a notebook that does not exist"
        assert not section or section in headings[name], f"{source} links to {target}, a section that does not exist"


def test_a_copy_the_learner_edited_is_kept(tmp_path):
    first = chapter_notebooks.write_all(tmp_path)
    path = tmp_path / "ch01_tokens.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells[1].source += "\nprint('my experiment')"
    nbformat.write(nb, path)
    untouched = tmp_path / "ch02_embeddings.ipynb"
    ran = nbformat.read(untouched, as_version=4)
    ran.cells[1].outputs = [nbformat.v4.new_output("stream", text="outputs are not edits\n")]
    nbformat.write(ran, untouched)

    again = chapter_notebooks.write_all(tmp_path)
    assert again["book/ch01_tokens"].startswith("kept") and "my experiment" in path.read_text(encoding="utf-8")
    assert again["book/ch02_embeddings"] == "written" == first["book/ch02_embeddings"]
    (tmp_path / "ch03_attention.ipynb").write_text("{ not a notebook", encoding="utf-8")
    assert chapter_notebooks.write_all(tmp_path)["book/ch03_attention"].startswith("kept")
    assert chapter_notebooks.write_all(tmp_path, force=True)["book/ch01_tokens"] == "written"
    assert "my experiment" not in path.read_text(encoding="utf-8")


@pytest.mark.slow
def test_a_chapter_notebook_runs(written):
    """The first chapter in the table of contents runs from top to bottom where `make notebooks` puts it."""
    from nbclient import NotebookClient

    page = chapter_notebooks.chapter_pages()[0]
    path = written / f"{Path(page).name}.ipynb"
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(written)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors


def test_make_help_lists_every_target_and_lab_runs_as_root():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = re.search(r"^\.PHONY:(.*)$", makefile, flags=re.M).group(1).split()
    shown = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True).stdout
    missing = [t for t in targets if t != "help" and not re.search(rf"^make {re.escape(t)}\b", shown, flags=re.M)]
    assert not missing, f"`make help` does not list: {missing}"
    lab = subprocess.run(["make", "-n", "lab"], cwd=ROOT, capture_output=True, text=True).stdout
    assert "jupyter lab" in lab and ("--allow-root" in lab) == (os.geteuid() == 0)
