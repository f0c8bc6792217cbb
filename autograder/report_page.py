"""The instructor's grading report: one self-contained HTML page (report.html) summarising a grading run.

The page needs nothing beside itself: the CSS is a small style block and the plots are PNGs embedded as base64 data
URIs, so it works offline, opened from disk, and can be mailed or archived as one file.

Input is one result dict per submission (autograder/result_schema.json) and the run-level problems. Student names,
remarks and test outputs are untrusted text: everything is HTML-escaped, test outputs appear only as short snippets,
and no source code is ever shown.

The same input gives byte-identical HTML: no clock in the page (pass a date in `subtitle` if you want one), PNGs are
saved without the "Software" metadata, and chapters and students are sorted.

"Failures by reason" counts submissions per category (a submission counts once per category):
- a result that was not graded: "not graded: <status>" (missing, malformed, wrong name, ...);
- each remark, lower-cased, goes to the first rule of REMARK_RULES with a keyword in it, else "other remark";
(A kernel restart is counted by the remark that says why it happened: a crash, or a timeout the cell ignored.)
"""

from __future__ import annotations

import base64
import io
import statistics
from html import escape
from pathlib import Path

import matplotlib
# The object-oriented Figure API draws with Agg without touching pyplot: no backend switch, no global figure list,
# so this works the same whether or not pyplot (with any backend) was imported first.
from matplotlib.figure import Figure

REMARK_RULES = [  # (keywords, category); first match wins, so specific causes come before general words
    (("review:",), "flagged for review"),
    (("syntax error",), "syntax error"),
    (("time budget",), "time budget used up"),
    (("stopped answering",), "kernel stopped answering"),
    (("timeout", "timed out"), "timeout"),
    (("kernel died", "kernel crash", "dead kernel", "crashed", "restart"), "kernel crash"),
    (("memory", "oom"), "memory"),
    (("output cut", "truncated", "output limit", "too much output"), "output cut"),
    (("manual grading",), "manual grading"),
    (("missing",), "missing notebook"),
    (("feedback",), "no feedback"),
]
ISOLATION = {  # protection -> what the warning says when it was not in force
    "process_group": "learner code not in its own process group",
    "network_isolated": "network not isolated",
    "separate_user": "learner code not run as a separate user",
    "paths_hidden": "course files not hidden from learner code",
}
SNIPPET = 200  # at most this many characters of a test's output appear on the page
CSS = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;
vertical-align:top}th{background:#f0f0f0}td.num{text-align:right}.warn{background:#fff3cd;border:1px solid #e0b000;
padding:.6em 1em}.ok{color:#1a7f37}.bad{color:#b42318}tr.sub td{border-top:none;font-size:.9em;background:#fafafa}
ul{margin:.2em 0}img{max-width:100%}.plots{display:flex;flex-wrap:wrap;gap:1em}"""


def category(remark: str) -> str:
    text = remark.lower()
    return next((cat for words, cat in REMARK_RULES if any(w in text for w in words)), "other remark")


def failure_reasons(result: dict) -> set[str]:
    reasons = {category(r) for r in result.get("remarks", [])}
    if result.get("status") != "graded":
        reasons.add(f"not graded: {result.get('status')}")
    return reasons


def percent(result: dict) -> float:
    return 100.0 * result["score"] / result["max_score"] if result.get("max_score") else 0.0


def seconds(s: float) -> str:
    return f"{s:.1f} s" if s < 120 else f"{int(s // 60)} min {int(s % 60):02d} s"


def snippet(text: str) -> str:
    """The start of a test's output: enough to recognise the error, never a whole traceback."""
    return text if len(text) <= SNIPPET else text[:SNIPPET - 1] + "…"


def pass_rates(graded: list[dict]) -> list[tuple[str, str, int]]:
    """(notebook, test name, how many graded submissions passed it), in the order tests first appear."""
    passed: dict[tuple[str, str], int] = {}
    for result in graded:
        for test in result.get("tests", []):
            key = (test["notebook"], test["name"])
            passed[key] = passed.get(key, 0) + (test["status"] == "passed")
    names = [name for _, name in passed]
    # a test name used in two notebooks gets its notebook in front, or the bar chart would merge the two
    return [(notebook, name if names.count(name) == 1 else f"{notebook}/{name}", n)
            for (notebook, name), n in passed.items()]


def png(draw, width: float = 6, height: float = 3) -> str:
    """An <img> of the plot `draw(ax)` makes, as an embedded PNG (no file beside the page to lose)."""
    with matplotlib.rc_context({"font.size": 8}):
        fig = Figure(figsize=(width, height), dpi=100, layout="tight")
        alt = draw(fig.add_subplot())
        buf = io.BytesIO()
        fig.savefig(buf, format="png", metadata={"Software": None})  # no version string: stable bytes
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{escape(alt)}">'


def plots(results: list[dict]) -> str:
    graded = [r for r in results if r["status"] == "graded"]
    out = []
    if graded:
        def grades(ax):
            ax.hist([percent(r) for r in graded], bins=range(0, 101, 10), color="#4c78a8", edgecolor="white")
            ax.set(title="Grade distribution (graded submissions)", xlabel="score (% of max)", ylabel="submissions",
                   xlim=(0, 100))
            ax.yaxis.get_major_locator().set_params(integer=True)  # counts of submissions: no 0.25 ticks
            return "histogram of scores"
        out.append(png(grades))
        rates = pass_rates(graded)
        if rates:
            def tests(ax):
                names = [name for _, name, _ in rates][::-1]  # barh draws bottom-up: reverse to read top-down
                ax.barh(names, [100 * n / len(graded) for _, _, n in rates][::-1], color="#54a24b")
                ax.set(title="Pass rate per test", xlabel="% of graded submissions that passed", xlim=(0, 100))
                return "pass rate per test"
            out.append(png(tests, height=max(3, 0.25 * len(rates) + 1)))
    else:
        out.append("<p>No graded submissions: no grade distribution or pass rates.</p>")

    def runtimes(ax):
        times = sorted(r["execution_time"] for r in results)
        ax.bar(range(1, len(times) + 1), times, color="#f58518")
        ax.set(title="Grading time per submission (sorted)", xlabel="submission", ylabel="seconds")
        return "grading time per submission"
    out.append(png(runtimes))
    counts: dict[str, int] = {}
    for result in results:
        for reason in failure_reasons(result):
            counts[reason] = counts.get(reason, 0) + 1
    if counts:
        def failures(ax):
            reasons = sorted(counts, key=lambda k: (-counts[k], k))[::-1]
            ax.barh(reasons, [counts[k] for k in reasons], color="#e45756")
            ax.set(title="Failures by reason", xlabel="submissions")
            ax.xaxis.get_major_locator().set_params(integer=True)
            return "failures by reason: " + ", ".join(f"{k} {counts[k]}" for k in reasons[::-1])
        out.append(png(failures, height=max(3, 0.3 * len(counts) + 1)))
    else:
        out.append("<p>No failures, timeouts or remarks.</p>")
    return '<div class="plots">' + "".join(out) + "</div>"


def headline(results: list[dict]) -> list[str]:
    """The numbers of one chapter (or of the whole run) as table cells."""
    graded = [r for r in results if r["status"] == "graded"]
    pcts = [percent(r) for r in graded]
    times = [r["execution_time"] for r in results]
    return [str(len(results)), str(len(graded)), str(len(results) - len(graded)),
            f"{statistics.mean(pcts):.1f} %" if pcts else "-", f"{statistics.median(pcts):.1f} %" if pcts else "-",
            seconds(sum(times)), seconds(statistics.median(times)) if times else "-"]


def table(head: list[str], rows: list[list[str]], numbers_from: int = 99) -> str:
    """Cells are already HTML: callers escape untrusted text where they make it. Columns from `numbers_from` on
    are numbers, right-aligned."""
    cells = "".join(f"<th>{h}</th>" for h in head)
    body = "".join("<tr>" + "".join(f'<td class="num">{c}</td>' if i >= numbers_from else f"<td>{c}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><tr>{cells}</tr>{body}</table>"


def isolation_note(results: list[dict]) -> str:
    known = [r for r in results if r.get("isolation")]
    if not known:
        return "<p>No isolation information in the results.</p>"
    missing = [(what, sum(r["isolation"].get(key) is False for r in known)) for key, what in ISOLATION.items()]
    missing = [(what, n) for what, n in missing if n]
    if not missing:
        return f'<p class="ok">Isolation in force for all {len(known)} submissions: ' \
               "own process group, no network, separate user, course files hidden.</p>"
    items = "".join(f"<li>{escape(what)} for {n} of {len(known)} submissions</li>" for what, n in missing)
    return f'<div class="warn"><strong>Warning: protection missing on this runner.</strong><ul>{items}</ul></div>'


def submission_rows(result: dict) -> list[str]:
    """The table row of one submission, then a row listing its problems (blocking first) and failed tests."""
    graded = result["status"] == "graded"
    score = f"{result['score']:g} / {result['max_score']:g}" if graded else "-"
    status = f'<span class="{"ok" if graded else "bad"}">{escape(result["status"])}</span>'
    row = (f"<tr><td>{escape(result['student'])}</td><td>{escape(result['chapter'])}</td><td class='num'>{score}</td>"
           f"<td>{status}</td><td class='num'>{seconds(result['execution_time'])}</td>"
           f"<td>{escape('; '.join(result.get('remarks', [])))}</td></tr>")
    items = [f"<li><strong>{'blocking' if p['blocking'] else 'remark'}</strong>: {escape(p['file'])}: "
             f"{escape(p['problem'])} &mdash; <em>what to do:</em> {escape(p['what_to_do'])}</li>"
             for p in sorted(result.get("problems", []), key=lambda p: not p["blocking"])]
    items += [f"<li>failed {escape(t['notebook'])} / {escape(t['name'])}: <code>{escape(snippet(t['output']))}</code>"
              "</li>" for t in result.get("tests", []) if t["status"] == "failed"]
    return [row] + ([f'<tr class="sub"><td colspan="6"><ul>{"".join(items)}</ul></td></tr>'] if items else [])


def chapter_section(chapter: str, results: list[dict]) -> str:
    graded = [r for r in results if r["status"] == "graded"]
    rates = [[escape(name), escape(notebook), f"{n} / {len(graded)}", f"{100 * n / len(graded):.1f} %"]
             for notebook, name, n in pass_rates(graded)]
    rows = [line for r in sorted(results, key=lambda r: r["student"]) for line in submission_rows(r)]
    head = "".join(f"<th>{h}</th>" for h in ["student", "chapter", "score", "status", "time", "remarks"])
    return (f"<section><h2>{escape(chapter)}</h2>{plots(results)}"
            + ("<h3>Pass rate per test</h3>" + table(["test", "notebook", "passed", "pass rate"], rates, 2) if rates
               else "")
            + f"<h3>Submissions</h3><table><tr>{head}</tr>{''.join(rows)}</table></section>")


def run_problems(problems: list[dict]) -> str:
    if not problems:
        return ""
    keys = ["student", "chapter", "file", "problem", "what_to_do", "graded"]
    rows = [[escape(str(p.get(k, ""))) for k in keys] for p in problems]
    return "<h2>Run-level problems</h2>" + table([k.replace("_", " ") for k in keys], rows)


def write_report(path: Path, results: list[dict], problems: list[dict], title: str = "Grading report",
                 subtitle: str = "") -> None:
    """Write the self-contained HTML report of a grading run to `path`."""
    chapters = sorted({r["chapter"] for r in results})
    by_chapter = {c: [r for r in results if r["chapter"] == c] for c in chapters}
    parts = [f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{escape(title)}</title>"
             f"<style>{CSS}</style></head><body><h1>{escape(title)}</h1>"]
    if subtitle:
        parts.append(f"<p>{escape(subtitle)}</p>")
    if not results:
        parts.append("<p>No submissions in this run: nothing was graded.</p>")
    else:
        head = ["chapter", "submissions", "graded", "not graded", "mean score", "median score", "total time",
                "median time"]
        rows = [[escape(c)] + headline(by_chapter[c]) for c in chapters]
        if len(chapters) > 1:
            rows.append(["<strong>all</strong>"] + headline(results))
        parts += ["<h2>Summary</h2>", table(head, rows, 1), isolation_note(results)]
        if not any(r["status"] == "graded" for r in results):
            parts.append('<p class="bad">No submission could be graded: see the problems below.</p>')
    parts.append(run_problems(problems))
    parts += [chapter_section(c, by_chapter[c]) for c in chapters]
    parts.append("</body></html>\n")
    Path(path).write_text("\n".join(parts), encoding="utf-8")
