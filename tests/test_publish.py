"""Publishing the site: the GitHub Pages workflow (linted offline like the grading runners' templates in
test_deploy.py) and `make serve`."""

import os
import signal
import subprocess
import sys
import urllib.request

import yaml

from test_deploy import REPO, YAMLLINT_CONFIG, lint, linter, workflow_on

BOOK_WORKFLOW = REPO / ".github" / "workflows" / "book.yml"


def book_workflow() -> dict:
    return yaml.safe_load(BOOK_WORKFLOW.read_text(encoding="utf-8"))


def test_book_workflow_passes_yamllint():
    lint(linter("yamllint"), "--strict", "--config-data", YAMLLINT_CONFIG, BOOK_WORKFLOW)


def test_book_workflow_matches_github_schema():
    lint(linter("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", BOOK_WORKFLOW)


def test_book_workflow_shell_steps_pass_shellcheck(tmp_path):
    shellcheck = linter("shellcheck")
    for name, job in book_workflow()["jobs"].items():
        for i, step in enumerate(job["steps"]):
            if "run" in step:
                script = tmp_path / f"{name}-{i}.sh"
                script.write_text(step["run"])
                lint(shellcheck, "--norc", "--severity=style", "--shell=bash", script)


def test_book_workflow_builds_every_change_and_publishes_only_main():
    doc = book_workflow()
    triggers = workflow_on(doc)
    assert triggers["push"]["branches"] == ["main"] and "pull_request" in triggers
    assert doc["permissions"] == {"contents": "read"}, "the build needs to read the code, nothing more"
    build, deploy = doc["jobs"]["build"], doc["jobs"]["deploy"]
    runs = [step.get("run", "") for step in build["steps"]]
    assert "make book" in runs, "the workflow builds the book with the README's command"
    install = next(r for r in runs if "make install" in r)
    assert "download.pytorch.org/whl/cpu" in install, "torch's CPU build first: PyPI's pulls GBs of CUDA packages"
    upload = next(s for s in build["steps"] if s.get("uses", "").startswith("actions/upload-pages-artifact@"))
    assert upload["with"]["path"] == "_build/html"
    assert "pull_request" in deploy["if"] and "refs/heads/main" in deploy["if"], "a pull request never publishes"
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert [s["uses"].split("@")[0] for s in deploy["steps"]] == ["actions/deploy-pages"]
    (execution,) = [s["with"] for s in build["steps"] if s.get("id") == "execution-cache"]
    library = "hashFiles('requirements.txt', 'gptcourse/**')"
    assert library in execution["key"] and execution["restore-keys"].startswith(f"executed-${{{{ {library} }}}}-"), (
        "only an execution cache made with this library may be restored (make book cannot tell otherwise)")


def test_make_serve_serves_the_site_and_says_where(tmp_path):
    site = tmp_path / "html"
    (site / "book").mkdir(parents=True)
    (site / "index.html").write_text("<p>the course</p>")
    (site / "search.html").write_text("<p>search</p>")
    proc = subprocess.Popen(["make", "-s", "serve", "PORT=0", f"SITE={site}"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        line = proc.stdout.readline()
        assert "http://127.0.0.1:" in line, line
        url = line.split()[line.split().index("at") + 1]
        with urllib.request.urlopen(url + "search.html", timeout=10) as response:
            assert response.status == 200 and b"search" in response.read()
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=10)


def test_make_serve_without_a_site_says_to_build_it(tmp_path):
    proc = subprocess.run(["make", "-s", "serve", f"SITE={tmp_path}"], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode != 0 and "make book" in proc.stdout + proc.stderr


def test_serve_refuses_a_port_in_use_with_advice(tmp_path):
    import socket

    (tmp_path / "index.html").write_text("x")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run([sys.executable, str(REPO / "book" / "_ext" / "serve.py"), "--port", str(port),
                               "--site", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and f"PORT={port + 1}" in proc.stderr
