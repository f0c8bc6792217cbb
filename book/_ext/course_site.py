"""Sphinx tweaks of the course site, loaded from _config.yml (``sphinx.local_extensions``).

* Chapters are numbered from 0: "Before you start" is Chapter 0, so "Chapter 1" in the prose is the page numbered 1.
  Sphinx always counts from 1, so the numbers it assigns are shifted down by one after it assigns them.
* Thebe (live code in the browser) is off, but sphinx-thebe still adds its scripts, one of them twice, which makes
  every page log "Identifier 'THEBE_JS_URL' has already been declared" and point at a CDN. The pages drop them.
"""

from docutils import nodes

FIRST_CHAPTER = 0


def shift_chapter_numbers(app, env) -> list[str]:
    """Runs after Sphinx's own section numbering (same event, later priority) and renumbers from FIRST_CHAPTER."""
    shift = 1 - FIRST_CHAPTER

    def shifted(number):
        return [number[0] - shift, *number[1:]] if number else number

    for docname, secnumbers in env.toc_secnumbers.items():
        env.toc_secnumbers[docname] = {anchor: tuple(shifted(list(n))) for anchor, n in secnumbers.items()}
    numbered = (lambda n: isinstance(n, (nodes.reference, nodes.title)) and n.get("secnumber"))
    for tree in [*env.tocs.values(), *env.titles.values()]:  # the navigation; the next/previous links
        for node in tree.findall(numbered):
            node["secnumber"] = shifted(node["secnumber"])
    for docname, kinds in env.toc_fignumbers.items():  # "Figure 2.1": the chapter part moves too
        for kind, numbers in kinds.items():
            kinds[kind] = {key: (tuple(shifted(list(n))) if len(n) > 1 else n) for key, n in numbers.items()}
    return []


def drop_thebe(app, pagename, templatename, context, doctree) -> None:
    def thebe(asset) -> bool:
        return "thebe" in str(getattr(asset, "filename", "") or "") or "THEBE" in str(asset.attributes.get("body", ""))

    for key in ("script_files", "css_files"):
        if key in context:
            context[key] = [asset for asset in context[key] if not thebe(asset)]


def setup(app):
    app.connect("env-get-updated", shift_chapter_numbers, priority=900)
    app.connect("html-page-context", drop_thebe)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
