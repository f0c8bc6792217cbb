"""The instructor's HTML grading report (autograder/report_page.py), on synthetic results: no grading needed."""

from __future__ import annotations

import re

from autograder.report_page import category, write_report

XSS = "<script>alert(1)</script>"
SAFE = {"process_group": True, "network_isolated": True, "separate_user": True, "paths_hidden": True}


def make_test(name: str, passed: bool, points: float = 1, notebook: str = "tokens.ipynb", output: str = "") -> dict:
    return {"name": name, "notebook": notebook, "score": points if passed else 0, "max_score": points,
            "status": "passed" if passed else "failed", "output": output, "visibility": "visible"}


def result(student: str, chapter: str = "ch01_tokens", passes=(True, True, True), status: str = "graded",
           remarks=(), problems=(), time: float = 10.0, isolation=None) -> dict:
    tests = [make_test(f"ex{i + 1}_tests", p, output="" if p else "AssertionError: " + "x" * 500)
             for i, p in enumerate(passes)] if status == "graded" else []
    return {"schema": "gptcourse-grading-result/1", "student": student, "chapter": chapter, "status": status,
            "assignment_version": "sha256:" + "0" * 64, "submission_sha256": None,
            "score": sum(t["score"] for t in tests), "max_score": 3.0, "execution_time": time, "output": "",
            "tests": tests, "problems": list(problems), "remarks": list(remarks), "feedback": [],
            "settings": {"cell_timeout": 60, "device": "cpu", "memory_mb": None},
            "isolation": dict(isolation or SAFE), "graded_at": "2024-01-01T00:00:00"}


def results(isolation=None) -> list[dict]:
    timeout = {"file": "tokens.ipynb", "problem": "cell 5 ran too long", "what_to_do": "look for a loop",
               "blocking": False}
    malformed = {"file": "tokens.ipynb", "problem": "not valid JSON", "what_to_do": "ask for a new upload",
                 "blocking": True}
    return [
        result("alice", time=5.0),
        result("bob", passes=(True, False, True), time=7.5, isolation=isolation),
        result("carol", passes=(False, False, False), remarks=["timeout in tokens.ipynb cell 5 (ex2_tests)"],
               problems=[timeout], time=61.0),
        result("dave", passes=(True, False, False), remarks=["kernel died"], time=12.0),
        result("erin", status="malformed", problems=[timeout, malformed], time=0.2),
        result(XSS, passes=(True, True, False), time=3.0),
        result("frank", chapter="ch02_embeddings", time=20.0),
        result("gina", chapter="ch02_embeddings", passes=(False, True, True), remarks=["no feedback"], time=30.0),
    ]


def sections(html: str) -> list[str]:
    return re.findall(r"<section>.*?</section>", html, flags=re.S)


def test_the_page_has_plots_tables_and_everyone_escaped(tmp_path):
    path = tmp_path / "report.html"
    write_report(path, results(), [{"student": "", "chapter": "ch03", "file": "ch03/", "problem": "no solutions",
                                    "what_to_do": "run generate", "graded": "no"}], subtitle="run of <today>")
    html = path.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    chapters = sections(html)
    assert len(chapters) == 2 and "ch01_tokens" in chapters[0] and "ch02_embeddings" in chapters[1]
    for section in chapters:  # grades, pass rates, runtimes, failures
        assert section.count('<img src="data:image/png;base64,') >= 4
    assert XSS not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "run of &lt;today&gt;" in html
    for r in results():
        assert escape_name(r["student"]) in html
    assert "no solutions" in html and "run generate" in html
    assert "x" * 201 not in html  # test output appears as a short snippet only
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html  # nothing external


def escape_name(name: str) -> str:
    return name.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def test_pass_rates_and_headline_numbers(tmp_path):
    path = tmp_path / "report.html"
    write_report(path, results(), [])
    ch01 = sections(path.read_text(encoding="utf-8"))[0]
    # ch01 graded: alice TTT, bob TFT, carol FFF, dave TFF, xss TTF -> ex1 4/5, ex2 2/5, ex3 2/5
    assert re.search(r"<td>ex1_tests</td><td>tokens.ipynb</td><td[^>]*>4 / 5</td><td[^>]*>80.0 %</td>", ch01)
    assert re.search(r"<td>ex2_tests</td><td>tokens.ipynb</td><td[^>]*>2 / 5</td><td[^>]*>40.0 %</td>", ch01)
    html = path.read_text(encoding="utf-8")
    # ch01: 6 submissions, 5 graded, 1 not; scores 100, 66.7, 0, 33.3, 66.7 -> mean 53.3, median 66.7
    row = re.search(r"<tr><td>ch01_tokens</td>(.*?)</tr>", html).group(1)
    assert re.findall(r">([^<]*)</td>", row)[:5] == ["6", "5", "1", "53.3 %", "66.7 %"]
    # problems under a submission: blocking first, with what to do
    erin = html[html.index("<td>erin</td>"):]
    assert erin.index("not valid JSON") < erin.index("cell 5 ran too long") and "ask for a new upload" in erin


def test_failure_categories():
    assert category("timeout in tokens.ipynb cell 5 (ex2_tests)") == "timeout"
    assert category("kernel died") == "kernel crash"
    assert category("MemoryError in cell 3") == "memory"
    assert category("output cut at 1 MB") == "output cut"
    assert category("bpe.ipynb missing (0 points)") == "missing notebook"
    assert category("something else") == "other remark"


def test_isolation_warning_only_when_a_protection_was_missing(tmp_path):
    path = tmp_path / "report.html"
    write_report(path, results(), [])
    assert "network not isolated" not in path.read_text(encoding="utf-8")
    write_report(path, results(isolation={**SAFE, "network_isolated": False}), [])
    html = path.read_text(encoding="utf-8")
    assert 'class="warn"' in html and "network not isolated for 1 of 8 submissions" in html


def test_empty_and_nothing_graded(tmp_path):
    path = tmp_path / "empty.html"
    write_report(path, [], [])
    assert "No submissions" in path.read_text(encoding="utf-8")
    write_report(path, [result("erin", status="malformed"), result("zed", status="missing", time=0)], [])
    html = path.read_text(encoding="utf-8")
    assert "No submission could be graded" in html and "erin" in html and "zed" in html
    assert html.count("data:image/png;base64,") == 2  # runtimes and failures; no grade plots without grades


def test_same_input_same_bytes(tmp_path):
    write_report(tmp_path / "a.html", results(), [])
    write_report(tmp_path / "b.html", results(), [])
    assert (tmp_path / "a.html").read_bytes() == (tmp_path / "b.html").read_bytes()
