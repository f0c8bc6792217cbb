"""The chapters as Jupyter notebooks to run and change: ``make notebooks`` writes ``book/notebooks/<page>.ipynb``.

The pages are MyST Markdown, which Jupyter Book runs and renders. JupyterLab opens ``.ipynb`` files, and its Markdown
knows nothing of MyST's directives and roles, so the copies turn them into plain Markdown: a call-out becomes a
quote, a ``{literalinclude}`` becomes the code it shows, a ``{ref}`` becomes a link named after the section.

The copies are not in git (book/notebooks/ is ignored), so a learner can change and run them freely. Running this
again refreshes a copy only while the learner has not edited it: each copy records a fingerprint of the cells it was
written with, and a copy whose cells differ from it is kept as it is (outputs do not count as edits).

    python book/_ext/chapter_notebooks.py [--force]     (what `make notebooks` runs)
"""

import argparse
import hashlib
import re
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote

import nbformat
import yaml
from myst_nb.core.read import read_myst_markdown_notebook
from sphinx.directives.code import LiteralIncludeReader

ROOT = Path(__file__).resolve().parents[2]
BOOK = ROOT / "book"
OUT = BOOK / "notebooks"

LABEL = re.compile(r"^\((?P<label>[\w-]+)\)=\s*\n+#+\s+(?P<title>.+)$", re.M)
ROLE = re.compile(r"\{(?P<role>ref|doc)\}`(?:(?P<text>[^`<]+?)\s*<(?P<target>[^`>]+)>|(?P<bare>[^`]+))`")
FENCE_OPEN = re.compile(r"^(?P<fence>`{3,}|:{3,})\{(?P<name>[\w-]+)\}\s*(?P<argument>.*)$")


def chapter_pages() -> list[str]:
    """The pages named in _toc.yml after the root (``book/ch01_tokens`` ...), in order."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    pages: list[str] = []

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                pages.append(entry["file"])
            walk(entry.get("sections"))

    walk(toc.get("chapters"))
    return pages


def section_titles(pages: list[str]) -> dict[str, tuple[str, str]]:
    """Every ``(label)=`` target -> (page name, the heading it labels)."""
    titles = {}
    for page in pages:
        text = (ROOT / f"{page}.md").read_text(encoding="utf-8")
        for match in LABEL.finditer(text):
            titles[match["label"]] = (Path(page).name, match["title"].strip())
    return titles


def anchor(title: str) -> str:
    """The id JupyterLab gives a heading (its text with spaces as dashes), quoted for use in a link."""
    return quote(re.sub(r"\s+", "-", re.sub(r"[`*]", "", title.strip())), safe="-_.,:")


def plain_roles(text: str, page: str, titles: dict[str, tuple[str, str]]) -> str:
    """{ref}`label` and {doc}`page` as Markdown links between the notebooks."""

    def link(match) -> str:
        target = (match["target"] or match["bare"]).strip()
        if match["role"] == "doc":
            name = Path(target).name
            return f"[{match['text'] or name}]({name}.ipynb)"
        where, title = titles.get(target, (page, target))
        text = match["text"] or title
        return f"[{text}](#{anchor(title)})" if where == page else f"[{text}]({where}.ipynb#{anchor(title)})"

    return ROLE.sub(link, text)


def included_code(argument: str, options: dict[str, str]) -> str:
    """What a {literalinclude} shows: the file (relative to book/), cut by the same options Sphinx uses."""
    options = {key: value for key, value in options.items() if key != "dedent"}  # the text is dedented below
    reader = LiteralIncludeReader(str((BOOK / argument).resolve()), options, SimpleNamespace(source_encoding="utf-8"))
    text, _ = reader.read()
    return textwrap.dedent(text).rstrip("\n")


def plain_directives(text: str) -> str:
    """Directive fences as plain Markdown: literalinclude -> a Python code block, anything else -> a quote."""
    lines, out, i = text.split("\n"), [], 0
    while i < len(lines):
        opened = FENCE_OPEN.match(lines[i])
        if not opened:
            out.append(lines[i])
            i += 1
            continue
        fence, name, argument = opened["fence"], opened["name"], opened["argument"].strip()
        body, options, i = [], {}, i + 1
        while i < len(lines) and lines[i].strip() != fence:
            option = re.match(r"^:([\w-]+):\s*(.*)$", lines[i])
            if option and not body:
                options[option[1]] = option[2]
            else:
                body.append(lines[i])
            i += 1
        i += 1  # the closing fence
        if name == "literalinclude":
            out += ["```python", included_code(argument, options), "```"]
        else:
            title = argument or name.capitalize()
            out += [f"> **{title}**", ">", *[f"> {line}".rstrip() for line in plain_directives("\n".join(body))
                                            .strip("\n").split("\n")]]
    return "\n".join(out)


def chapter_notebook(page: str, titles: dict[str, tuple[str, str]]) -> nbformat.NotebookNode:
    source = ROOT / f"{page}.md"
    myst = read_myst_markdown_notebook(source.read_text(encoding="utf-8"), path=source)
    cells = []
    for cell in myst.cells:
        if cell.cell_type == "code":
            cells.append(nbformat.v4.new_code_cell(cell.source, metadata=dict(cell.metadata)))
        else:
            text = re.sub(r"^\([\w-]+\)=\s*$\n?", "", cell.source, flags=re.M)  # targets: Jupyter needs none
            text = plain_roles(plain_directives(text), Path(page).name, titles).strip("\n")
            cells.append(nbformat.v4.new_markdown_cell(text))
    nb = nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": myst.metadata["kernelspec"]})
    nb.metadata["course"] = {"source": f"{page}.md", "cells": fingerprint(nb)}
    return nb


def fingerprint(nb) -> str:
    """A hash of the cells' types and sources: what a learner edits (outputs and execution counts do not count)."""
    digest = hashlib.sha256()
    for cell in nb.cells:
        digest.update(f"{cell.cell_type}\0{cell.source}\0".encode())
    return digest.hexdigest()


def edited(path: Path) -> bool:
    """Has the learner changed the cells of this copy since it was written?"""
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception:  # unreadable: treat it as the learner's, never overwrite it
        return True
    return nb.metadata.get("course", {}).get("cells") != fingerprint(nb)


def write_all(out: Path = OUT, force: bool = False) -> dict[str, str]:
    """Write every chapter's notebook into ``out``; returns page -> what happened ("written", "kept: edited")."""
    out.mkdir(parents=True, exist_ok=True)
    pages = chapter_pages()
    titles = section_titles(pages)
    done = {}
    for page in pages:
        path = out / f"{Path(page).name}.ipynb"
        if path.exists() and edited(path) and not force:
            done[page] = "kept: you edited it"
            continue
        nbformat.write(chapter_notebook(page, titles), path)
        done[page] = "written"
    return done


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--force", action="store_true", help="overwrite copies you edited too (your changes are lost)")
    args = parser.parse_args(argv)
    done = write_all(force=args.force)
    for page, what in done.items():
        print(f"  {OUT.relative_to(ROOT)}/{Path(page).name}.ipynb: {what}")
    if any(what != "written" for what in done.values()):
        print("Copies you edited were kept. To get a fresh one, rename yours and run `make notebooks` again.")
    print("Open them in JupyterLab with `make lab` (Kernel -> Restart and Run All runs a chapter).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
