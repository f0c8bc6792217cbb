"""Grade one submission, alone, in a throwaway course directory: ``python -m autograder.worker JOB.json``.

``autograder.grade`` writes a job file per submission and runs one worker process per job (``--jobs`` at a time).
The worker is trusted code; it never runs the learner's code itself:

1. It makes a throwaway course directory (mode 0700) holding a copy of the prepared gradebook (which knows the
   tests, hidden ones included), the chapter's non-notebook files and the submitted notebooks, and runs nbgrader's
   ``autograde`` and ``generate_feedback`` there. The master gradebook and other learners' work are never touched.
2. nbgrader's ``Execute`` step is replaced by ``SandboxedExecute``: the notebook nbgrader prepared (test cells
   restored from the gradebook) is run by ``autograder.execute`` inside ``autograder.sandbox.run_sandboxed``, in an
   empty folder, as a uid of its own, without network, under memory/process/file/output limits, with the solutions,
   the workspace, the submissions and the throwaway course directory hidden.
3. When the sandbox dies in a cell (the kernel crashed, or the time, memory or output limit killed it), that cell is
   neutralised and the notebook runs again from the start, so the other exercises keep their points.
4. It writes ``results/<student>/<chapter>.json`` (see ``autograder.results``), the feedback pages and the
   autograded notebook into the workspace, and deletes the throwaway directory.
"""

from __future__ import annotations

import copy
import json
import re
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from traitlets import Dict, Integer, List

from autograder import results as res
from autograder.course import (REPO_ROOT, TIMEOUT_ENAME, HideHiddenTests, grading_config, is_test_cell,
                               venv_scripts_on_path)
from autograder.execute import KERNEL_DIED, KERNEL_STUCK
from autograder.nbgrader_steps import last_error_line, quiet_nbgrader_logging, write_log
from autograder.sandbox import run_sandboxed
from nbgrader.preprocessors import NbGraderPreprocessor

#: What a neutralised cell runs instead of its code, and the error it then shows, per reason the sandbox died.
KILLED_ENAME = "CellKilledByGrader"
KILLED_MESSAGES = {
    "kernel": "this cell crashed the Python kernel (os._exit, a segfault, or an abort in a library)",
    "timeout": "this cell was still running when the submission's time budget ran out",
    "stuck": "this cell ran past its time limit and did not stop when interrupted",
    "memory": "this cell used more memory than the grader allows",
    "output": "this cell printed more than the grader keeps",
    "unknown": "the grading sandbox stopped while this cell ran",
}
SKIPPED_NOTE = "; it was skipped so that the rest of the notebook could be graded"
#: Short labels for grades.csv remarks (and the report's failure categories).
KILLED_LABELS = {"kernel": "kernel crash", "timeout": "timeout", "stuck": "timeout", "memory": "memory limit",
                 "output": "output cut",
                 "unknown": "sandbox stopped"}
#: Code that can change how the tests in the same kernel run or what they report (nbgrader runs the tests in the
#: learner's kernel, after the learner's code: see tests/adversarial_cases.py for what each makes possible). No
#: exercise needs them, so a submission that uses one is flagged for a human look; its score stands.
REVIEW_PATTERNS = {
    "IPython internals (get_ipython)": re.compile(r"\bget_ipython\s*\("),
    "an __eq__ of its own": re.compile(r"\bdef\s+__eq__\b"),
    "the builtins module": re.compile(r"\bbuiltins\b"),
    "interpreter hooks (sys.settrace/setprofile/excepthook)":
        re.compile(r"\bsys\.(settrace|setprofile|excepthook)\b"),
}
#: The executed notebook comes back on the executor's stdout; outputs are capped per cell, so this is generous.
MAX_NOTEBOOK_BYTES = 64 * 2**20
#: Paths of the repository that learner code must never see (solutions, tests with their catalogue, git history).
SECRET_REPO_PATHS = ("solutions", "tests", ".git", "autograder/catalogue")
#: What learner code must be able to run: Python (the venv and the installation behind it) and the course library.
LEARNER_REACHABLE = sorted({sys.prefix, sys.base_prefix, str(REPO_ROOT)})


class SandboxedExecute(NbGraderPreprocessor):
    """nbgrader's Execute step, run in the sandbox; re-runs with the crashing cell neutralised (see the module)."""

    timeout = Integer(600, help="seconds one cell may run").tag(config=True)
    submission_timeout = Integer(1860, help="seconds one run of the whole notebook may take").tag(config=True)
    memory_mb = Integer(None, allow_none=True).tag(config=True)
    max_processes = Integer(256).tag(config=True)
    max_restarts = Integer(4, help="cells that may be neutralised before the submission counts as failed").tag(
        config=True)
    run_as = Integer(None, allow_none=True, help="uid dedicated to this worker's learner code").tag(config=True)
    env = Dict().tag(config=True)
    hide_paths = List().tag(config=True)
    read_only_paths = List().tag(config=True)

    #: What the last preprocess() saw, for the worker (one submission per process).
    report: dict = {}

    def preprocess(self, nb, resources):
        killed: dict[int, str] = {}
        sources = [cell.get("source", "") for cell in nb.cells]
        while True:
            run = copy.deepcopy(nb)
            for index, reason in killed.items():
                run.cells[index].source = f"raise RuntimeError({KILLED_MESSAGES[reason] + SKIPPED_NOTE!r})"
            done, reason, index, sandbox = self.run_once(run)
            type(self).report = {"kernel_restarts": len(killed), "killed": dict(killed), "sandbox": sandbox}
            if done is not None:
                break
            if index is None or index < 0 or index in killed or len(killed) >= self.max_restarts:
                where = "before the first cell" if index is None or index < 0 else f"in cell {index + 1}"
                said = [line.strip() for line in sandbox["stderr_tail"].splitlines() if line.strip()]
                raise RuntimeError(f"GradingSandboxError: the sandbox stopped ({reason}) {where} and could not "
                                   f"recover after {len(killed)} restart(s)"
                                   + (f"; it said: {said[-1]}" if said else ""))
            self.log.warning("Sandbox stopped (%s) in cell %s: neutralising it and running again", reason, index)
            killed[index] = reason
        from nbformat.v4 import new_output

        for index, reason in killed.items():  # the learner sees their own code, and why it did not count
            cell = done.cells[index]
            cell.source = sources[index]
            cell.outputs = [new_output("error", ename=KILLED_ENAME, evalue=KILLED_MESSAGES[reason],
                                       traceback=[f"{KILLED_ENAME}: {KILLED_MESSAGES[reason]}{SKIPPED_NOTE}."])]
        done.metadata.pop("gptcourse_execution", None)
        nb.cells = done.cells
        return nb, resources

    def run_once(self, nb):
        """Run ``nb`` once in the sandbox: (executed notebook or None, why it stopped, cell index, sandbox facts)."""
        import nbformat

        folder = Path(tempfile.mkdtemp(prefix="gptcourse-run-"))
        try:
            for sub in (".runtime", ".ipython", ".config"):
                (folder / sub).mkdir()
            nbformat.write(nb, folder / "in.ipynb")
            if self.run_as is not None and os.geteuid() == 0:
                for path in [folder, *folder.rglob("*")]:
                    os.chown(path, self.run_as, self.run_as)
            env = {**self.env, "HOME": str(folder), "JUPYTER_RUNTIME_DIR": str(folder / ".runtime"),
                   "IPYTHONDIR": str(folder / ".ipython"), "MPLCONFIGDIR": str(folder / ".config"),
                   "XDG_CONFIG_HOME": str(folder / ".config"), "XDG_CACHE_HOME": str(folder / ".config")}
            argv = [sys.executable, "-m", "autograder.execute", "in.ipynb", "--timeout", str(self.timeout),
                    "--progress", "progress"]
            result = run_sandboxed(argv, cwd=folder, timeout_s=self.submission_timeout, memory_mb=self.memory_mb,
                                   max_processes=self.max_processes, max_file_bytes=200 * 2**20, env=env,
                                   max_output_bytes=MAX_NOTEBOOK_BYTES,
                                   run_as=self.run_as, hide_paths=self.hide_paths,
                                   read_only_paths=self.read_only_paths,
                                   reachable_paths=self.read_only_paths)  # the same: Python and the course library
            facts = {"network_isolated": result.network_isolated, "separate_user": result.user_separated,
                     "paths_hidden": result.paths_hidden, "returncode": result.returncode,
                     "stderr_tail": result.stderr[-2000:]}
            progress = (folder / "progress").read_text().split() if (folder / "progress").exists() else []
            running = int(progress[-1]) if progress else None
            if result.killed_reason is None and result.returncode == 0:
                return nbformat.reads(result.stdout, as_version=4), None, None, facts
            if result.killed_reason is None and result.returncode in (KERNEL_DIED, KERNEL_STUCK):
                return None, "kernel" if result.returncode == KERNEL_DIED else "stuck", running, facts
            reason = result.killed_reason or "unknown"
            if reason == "unknown" and "MemoryError" in result.stderr:
                reason = "memory"
            self.log.warning("sandbox exit %s, stderr: %s", result.returncode, result.stderr[-2000:])
            return None, reason, running, facts
        finally:
            shutil.rmtree(folder, ignore_errors=True)


# --------------------------------------------------------------------------------------------------------------------
# One job
# --------------------------------------------------------------------------------------------------------------------


def sandbox_env(job: dict) -> dict:
    """The whole environment the learner's kernel gets: nothing of ours (no tokens, no paths to secrets)."""
    venv_bin = str(Path(sys.executable).parent)
    threads = str(job["threads"])
    return {
        "PATH": f"{venv_bin}:/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
        "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "Agg",
        "GPTCOURSE_DEVICE": job["device"], "CUDA_VISIBLE_DEVICES": job.get("gpu") or "",
        "NVIDIA_TF32_OVERRIDE": "0",  # no TF32 in cuBLAS/cuDNN, whatever the learner's code sets
        "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,  # --jobs workers must not fight over cores
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
    }


def grading_configuration(course: Path, job: dict):
    from nbgrader.preprocessors import Execute

    c = grading_config(course, timeout=job["cell_timeout"])
    pps = list(c.Autograde.autograde_preprocessors)
    pps[pps.index(Execute)] = SandboxedExecute
    c.Autograde.autograde_preprocessors = pps
    c.SandboxedExecute.timeout = job["cell_timeout"]
    c.SandboxedExecute.submission_timeout = job["submission_timeout"]
    c.SandboxedExecute.memory_mb = job["memory_mb"]
    c.SandboxedExecute.run_as = job.get("uid")
    c.SandboxedExecute.env = sandbox_env(job)
    c.SandboxedExecute.hide_paths = [*job["hide_paths"], str(course)]
    # The course library and Python itself: learner code must not change what the next submission imports.
    c.SandboxedExecute.read_only_paths = LEARNER_REACHABLE
    c.LimitOutput.max_lines = 200  # per output; the executor already capped characters
    return c


def make_course(job: dict) -> Path:
    """The throwaway course directory: prepared gradebook, the chapter's data files, the submitted notebooks."""
    course = Path(tempfile.mkdtemp(prefix="gptcourse-grade-"))  # mode 0700: only we can read it
    prepared, chapter, student = Path(job["prepared"]), job["chapter"], job["student"]
    shutil.copyfile(prepared / "gradebook.db", course / "gradebook.db")
    source = prepared / "solutions" / chapter
    shutil.copytree(source, course / "solutions" / chapter, ignore=shutil.ignore_patterns("*.ipynb"))
    submitted = course / "submitted" / student / chapter
    submitted.mkdir(parents=True)
    for path in job["notebooks"]:
        shutil.copyfile(path, submitted / Path(path).name)
    return course


def test_outcomes(autograded: Path, notebooks: list[str], scores: dict[str, tuple[float, float]]) -> list[dict]:
    """One Gradescope-style test entry per test cell, in notebook order, with the error a learner may see."""
    import nbformat

    tests = []
    for name in notebooks:
        path = autograded / f"{name}.ipynb"
        if not path.exists():
            continue
        nb = nbformat.read(path, as_version=4)
        for index, cell in enumerate(nb.cells):
            if not is_test_cell(cell):
                continue
            grade_id = cell.metadata["nbgrader"]["grade_id"]
            score, max_score = scores.get(f"{name}/{grade_id}", (0.0, float(cell.metadata["nbgrader"]["points"])))
            shown, _ = HideHiddenTests().preprocess_cell(copy.deepcopy(cell), {}, index)
            errors = [f"{o.get('ename')}: {o.get('evalue')}" for o in shown.get("outputs", [])
                      if o.get("output_type") == "error"]
            tests.append({"name": grade_id, "notebook": name, "score": score, "max_score": max_score,
                          "status": "passed" if score >= max_score else "failed",
                          "output": "\n".join(errors)[:1000], "visibility": "visible"})
    return tests


def stopped_cells(autograded: Path) -> list[tuple[str, str]]:
    """(where, label, message) of every cell interrupted by the cell timeout or neutralised by the worker."""
    import nbformat

    found = []
    for path in sorted(autograded.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for index, cell in enumerate(nb.cells):
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error" and output.get("ename") in (TIMEOUT_ENAME, KILLED_ENAME):
                    grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
                    where = f"{path.name} cell {index + 1}" + (f" ({grade_id})" if grade_id else "")
                    label = next((KILLED_LABELS[k] for k, m in KILLED_MESSAGES.items() if m == output.get("evalue")),
                                 "timeout")
                    found.append((where, label, output.get("evalue", "")))
    return found


def needs_review(notebooks: list[str]) -> list[str]:
    """What in the learner's own code cells (test cells excluded) matches ``REVIEW_PATTERNS``."""
    import nbformat

    found = []
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        code = "\n".join(c.source for c in nb.cells if c.get("cell_type") == "code" and not is_test_cell(c))
        found += [what for what, pattern in REVIEW_PATTERNS.items() if pattern.search(code) and what not in found]
    return found


def read_scores(db_url: str, chapter: str, student: str, notebooks: list[str]) -> dict[str, tuple[float, float]]:
    from nbgrader.api import Gradebook, MissingEntry

    scores = {}
    with Gradebook(db_url) as gb:
        for name in notebooks:
            try:
                nb = gb.find_submission_notebook(name, chapter, student)
            except MissingEntry:
                continue
            for g in nb.grades:
                scores[f"{name}/{g.name}"] = (float(g.score), float(g.max_score))
    return scores


def grade_job(job: dict) -> dict:
    """Grade the submission described by ``job``; the result (also written to the workspace)."""
    from nbgrader.apps import NbGraderAPI

    start = time.monotonic()
    student, chapter, workspace = job["student"], job["chapter"], Path(job["workspace"])
    result = res.new_result(student, chapter, "graded", job["assignment_version"], job["submission_sha256"],
                            job["settings"])
    result["problems"] = list(job.get("problems", []))
    result["remarks"] = list(job.get("remarks", []))
    log = workspace / "logs" / chapter / f"{student}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.unlink(missing_ok=True)
    course = make_course(job)
    quiet_nbgrader_logging()
    try:
        with venv_scripts_on_path():
            api = NbGraderAPI(config=grading_configuration(course, job))
            outcome = api.autograde(chapter, student, force=True, create=True)
            write_log(log, f"autograde {student} {chapter}", outcome)
            report = SandboxedExecute.report
            result["kernel_restarts"] = report.get("kernel_restarts", 0)
            sandbox = report.get("sandbox", {})
            result["isolation"] = {"process_group": bool(sandbox), **{
                k: bool(sandbox.get(k)) for k in ("network_isolated", "separate_user", "paths_hidden")}}
            if not outcome["success"]:
                result["status"] = "autograde failed"
                reason = last_error_line(outcome)
                result["problems"].append(res.problem(
                    f"{student}/{chapter}/", f"autograde failed: {reason}",
                    f"read {log}; run the learner's notebook to find the cell that fails, then re-run with --force"))
                result["output"] = "Your notebook could not be graded automatically; your instructor will look at it."
                return finish(result, job, start)
            feedback = api.generate_feedback(chapter, student, force=True)
            write_log(log, f"generate_feedback {student} {chapter}", feedback)
        autograded = course / "autograded" / student / chapter
        scores = read_scores(f"sqlite:///{course / 'gradebook.db'}", chapter, student, job["expected_notebooks"])
        result["tests"] = test_outcomes(autograded, job["expected_notebooks"], scores)
        result["score"] = sum(t["score"] for t in result["tests"])
        result["max_score"] = sum(t["max_score"] for t in result["tests"])
        for where, label, why in stopped_cells(autograded):
            result["remarks"].append(f"{label} in {where}")
            advice = ("if the work is legitimately slow, re-run with a longer --timeout and --force"
                      if label == "timeout" else "nothing, unless you think the learner's code is right")
            result["problems"].append(res.problem(
                f"{student}/{chapter}/", f"{where}: {why} (its tests scored 0; the other cells were graded)",
                f"look at the learner's code there; {advice}", blocking=False))
        for what in needs_review(job["notebooks"]):
            result["remarks"].append(f"review: uses {what}")
            result["problems"].append(res.problem(
                f"{student}/{chapter}/", f"the learner's code uses {what}, which can change how the tests in the "
                "same kernel run or what they report", "read the graded notebook (autograded/) before trusting "
                "the score", blocking=False))
        copy_out(course, workspace, student, chapter, result, feedback["success"])
        passed = sum(t["status"] == "passed" for t in result["tests"])
        result["output"] = (f"{passed} of {len(result['tests'])} tests passed: {result['score']:g} / "
                            f"{result['max_score']:g} points.")
    finally:
        shutil.rmtree(course, ignore_errors=True)
    return finish(result, job, start)


def copy_out(course: Path, workspace: Path, student: str, chapter: str, result: dict, feedback_ok: bool) -> None:
    """The autograded notebooks (for the instructor) and the feedback pages (for the learner) into the workspace."""
    for step in ("autograded", "feedback"):
        target = workspace / step / student / chapter
        shutil.rmtree(target, ignore_errors=True)
        source = course / step / student / chapter
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("timestamp.txt"))
    pages = sorted((workspace / "feedback" / student / chapter).glob("*.html"))
    result["feedback"] = [str(p.relative_to(workspace)) for p in pages]
    if not feedback_ok or not pages:
        result["remarks"].append("no feedback")
        result["problems"].append(res.problem(f"{student}/{chapter}/", "graded, but the feedback could not be made",
                                              f"read {workspace / 'logs' / chapter / (student + '.log')}",
                                              blocking=False))


def finish(result: dict, job: dict, start: float) -> dict:
    result["execution_time"] = round(time.monotonic() - start, 3)
    res.write_result(Path(job["result_path"]), result)
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m autograder.worker JOB.json (written by autograder.grade)", file=sys.stderr)
        return 2
    job = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    result = grade_job(job)
    print(json.dumps({"status": result["status"], "score": result["score"], "max_score": result["max_score"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
