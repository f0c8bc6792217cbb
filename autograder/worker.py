"""Grade one submission, alone, in a throwaway course directory: ``python -m autograder.worker JOB.json``.

``autograder.grade`` writes a job file per submission and runs one worker process per job (``--jobs`` at a time).
The worker is trusted code; it never runs the learner's code itself:

1. It makes a throwaway course directory (mode 0700) holding a copy of the prepared gradebook (which knows the
   tests, hidden ones included), the chapter's non-notebook files and the submitted notebooks, and runs nbgrader's
   ``autograde`` and ``generate_feedback`` there. The master gradebook and other learners' work are never touched.
2. nbgrader's ``Execute`` step is replaced by ``RefereeExecute`` (``autograder.referee``): the learner's cells run in a
   Jupyter kernel inside ``autograder.sandbox`` (no network, its own root that holds nothing but Python, the course
   library and a copy of the learner's folder, a uid of its own, limits); the course's test cells run here, in the
   worker, and reach the learner's code only through plain values. No test, expected value or tolerance enters the
   learner's kernel.
3. When the learner's code kills the kernel or ignores an interrupt, that cell is marked, a new kernel replays the
   cells before it, and grading goes on; the submission's time budget counts everything once.
4. It writes ``results/<student>/<chapter>.json`` (see ``autograder.results``), the feedback pages and the
   autograded notebook into the workspace, and deletes the throwaway directory.
"""

from __future__ import annotations

import copy
import glob
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

from traitlets import Dict, Float, Integer, List

from autograder import results as res
from autograder.course import (REPO_ROOT, HideHiddenTests, grading_config, is_test_cell, venv_scripts_on_path)
from autograder.nbgrader_steps import last_error_line, quiet_nbgrader_logging, write_log
from nbgrader.preprocessors import NbGraderPreprocessor

#: Short labels of why a cell was stopped, for grades.csv remarks and the report's categories.
STOP_LABELS = {"timeout": "timeout", "stuck": "timeout (did not stop when interrupted)", "kernel": "kernel crash",
               "memory": "memory limit", "protocol": "kernel stopped answering the grader"}
#: Code that tries to reach into the grading machinery (none of this is needed by any exercise). Since the tests
#: run in the grader's process, none of it can change a verdict; a submission that uses it is still flagged for a
#: human look, as a second line of defence. Its score stands.
REVIEW_PATTERNS = {
    "IPython internals": re.compile(r"\bget_ipython\s*\(|\bInteractiveShell\b|\binput_transformers\w*"),
    "an __eq__ of its own": re.compile(r"\bdef\s+__eq__\b"),
    "the builtins module": re.compile(r"\bbuiltins\b|__builtins__"),
    "interpreter hooks": re.compile(r"\bsys\.(settrace|setprofile|excepthook|_getframe|addaudithook)\b"),
    "the grader's agent": re.compile(r"_gptcourse_agent|gptcourse_referee"),
}
#: What learner code may see, read-only: Python (the venv and the installation behind it), the course library.
LEARNER_READ_ONLY = sorted({sys.prefix, sys.base_prefix, str(REPO_ROOT / "gptcourse")})


def library_paths() -> list[str]:
    """Folders of shared libraries named by LD_LIBRARY_PATH (a container's CUDA, say): the kernel needs them too."""
    return [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p and Path(p).is_dir()]


def gpu_paths() -> tuple[list[str], list[str]]:
    """(device nodes, read-only folders) a CUDA kernel needs in the sandbox: the NVIDIA devices, and /sys."""
    devices = sorted(p for p in glob.glob("/dev/nvidia*") + glob.glob("/dev/nvidia-caps/*") if not Path(p).is_dir())
    return devices, ["/sys"]


class RefereeExecute(NbGraderPreprocessor):
    """nbgrader's Execute step, the referee's way (``autograder.referee.runner.NotebookRun``) in the sandbox."""

    timeout = Integer(600, help="seconds one cell may run").tag(config=True)
    budget = Float(1860.0, help="seconds the whole submission may take, restarts included").tag(config=True)
    memory_mb = Integer(None, allow_none=True).tag(config=True)
    max_processes = Integer(256).tag(config=True)
    run_as = Integer(None, allow_none=True, help="uid dedicated to this worker's learner code").tag(config=True)
    env = Dict().tag(config=True)
    read_only = List().tag(config=True)
    covered = List().tag(config=True)
    devices = List().tag(config=True)
    work_source = Dict(help="notebook name -> folder copied into the kernel's working folder").tag(config=True)

    #: What each notebook's run reported (one submission per process), and a kernel that would not start.
    reports: dict = {}
    start_error: str | None = None
    #: Seconds left of the submission's budget, shared by its notebooks.
    spent: float = 0.0

    def preprocess(self, nb, resources):
        from autograder.referee.kernel import KernelStartError
        from autograder.referee.runner import NotebookRun

        name = resources["nbgrader"]["notebook"]
        trusted = self.trusted_cells(resources)
        run = NotebookRun(nb, lambda seed_torch: self.new_kernel(name, seed_torch), trusted,
                          cell_timeout=self.timeout, budget=max(self.budget - type(self).spent, 1.0),
                          log=self.log.warning)
        try:
            done = run.run()
        except KernelStartError as exc:
            type(self).start_error = str(exc)
            raise
        finally:
            type(self).spent += run.report.seconds
            type(self).reports[name] = run.report
        nb.cells = done.cells
        return nb, resources

    def trusted_cells(self, resources) -> dict[str, str]:
        """grade_id -> source of the course's locked code cells (setup and tests), from the gradebook."""
        from nbgrader.api import Gradebook

        with Gradebook(resources["nbgrader"]["db_url"]) as gb:
            notebook = gb.find_notebook(resources["nbgrader"]["notebook"], resources["nbgrader"]["assignment"])
            return {c.name: c.source for c in notebook.source_cells if c.cell_type == "code" and c.locked}

    def new_kernel(self, notebook: str, seed_torch: bool):
        from autograder.referee.kernel import LearnerKernel, SandboxedKernelProcess

        folder = Path(tempfile.mkdtemp(prefix="gptcourse-run-"))
        _RUN_FOLDERS.append(folder)
        process = SandboxedKernelProcess(folder, self.env, self.read_only, covered=self.covered, devices=self.devices,
                                         work_source=self.work_source.get(notebook), run_as=self.run_as,
                                         memory_mb=self.memory_mb, max_processes=self.max_processes)
        return LearnerKernel(process, seed_torch=seed_torch)


#: Throwaway folders of this worker's kernels (their shared socket folders): removed when the job ends.
_RUN_FOLDERS: list[Path] = []


# --------------------------------------------------------------------------------------------------------------------
# One job
# --------------------------------------------------------------------------------------------------------------------


def sandbox_env(job: dict) -> dict:
    """The whole environment the learner's kernel gets: nothing of ours (no tokens, no paths to secrets)."""
    venv_bin = str(Path(sys.executable).parent)
    threads = str(job["threads"])
    env = {
        "PATH": f"{venv_bin}:/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
        "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "Agg",
        "GPTCOURSE_DEVICE": job["device"], "CUDA_VISIBLE_DEVICES": job.get("gpu") or "",
        "NVIDIA_TF32_OVERRIDE": "0",  # no TF32 in cuBLAS/cuDNN, whatever the learner's code sets
        "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,  # --jobs workers must not fight over cores
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
    }
    if os.environ.get("LD_LIBRARY_PATH"):
        env["LD_LIBRARY_PATH"] = os.environ["LD_LIBRARY_PATH"]
    return env


def grading_configuration(course: Path, job: dict, work: dict[str, str]):
    from nbgrader.preprocessors import Execute

    c = grading_config(course, timeout=job["cell_timeout"])
    pps = list(c.Autograde.autograde_preprocessors)
    pps[pps.index(Execute)] = RefereeExecute
    c.Autograde.autograde_preprocessors = pps
    c.RefereeExecute.timeout = job["cell_timeout"]
    c.RefereeExecute.budget = float(job["budget"])
    c.RefereeExecute.memory_mb = job["memory_mb"]
    c.RefereeExecute.run_as = job.get("uid")
    c.RefereeExecute.env = sandbox_env(job)
    devices, gpu_folders = gpu_paths() if job["device"] == "cuda" else ([], [])
    c.RefereeExecute.read_only = sorted({*LEARNER_READ_ONLY, *library_paths(), *gpu_folders})
    c.RefereeExecute.devices = devices
    # Never shown, even were an allowed folder to contain them (a Python installed beside the course, say).
    c.RefereeExecute.covered = [str(REPO_ROOT), *job["private_paths"], str(course)]
    c.RefereeExecute.work_source = work
    c.LimitOutput.max_lines = 200  # per output; the kernel driver already capped characters
    return c


def make_course(job: dict) -> tuple[Path, dict[str, str]]:
    """The throwaway course directory (prepared gradebook, the chapter's data files, the submitted notebooks) and,
    per notebook, the folder its kernel starts in: the chapter's data files and the learner's own notebook."""
    course = Path(tempfile.mkdtemp(prefix="gptcourse-grade-"))  # mode 0700: only we can read it
    prepared, chapter, student = Path(job["prepared"]), job["chapter"], job["student"]
    shutil.copyfile(prepared / "gradebook.db", course / "gradebook.db")
    source = prepared / "solutions" / chapter
    shutil.copytree(source, course / "solutions" / chapter, ignore=shutil.ignore_patterns("*.ipynb"))
    submitted = course / "submitted" / student / chapter
    submitted.mkdir(parents=True)
    work = {}
    for path in job["notebooks"]:
        shutil.copyfile(path, submitted / Path(path).name)
        folder = course / "work" / Path(path).stem
        shutil.copytree(source, folder, ignore=shutil.ignore_patterns("*.ipynb"))
        shutil.copyfile(path, folder / Path(path).name)  # the learner's own notebook, as submitted
        work[Path(path).stem] = str(folder)
    return course, work


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


def stopped_cells(autograded: Path, reports: dict) -> list[tuple[str, str, str, bool]]:
    """(where, label, why, is a test cell) for every cell interrupted, stopped, not reached or that did not parse,
    from the runs' reports; cells not reached are summed up in one entry per notebook."""
    import nbformat

    from autograder.referee.runner import KILLED_MESSAGES, nbgrader_meta

    found = []
    for name, report in sorted(reports.items()):
        path = autograded / f"{name}.ipynb"
        if not path.exists():
            continue
        cells = nbformat.read(path, as_version=4).cells

        def where(index: int) -> str:
            grade_id = nbgrader_meta(cells[index]).get("grade_id") if index < len(cells) else None
            return f"{path.name} cell {index + 1}" + (f" ({grade_id})" if grade_id else "")

        def is_test(index: int) -> bool:
            return index < len(cells) and is_test_cell(cells[index])

        for index in report.timeouts:
            evalue = next((o.get("evalue", "") for o in cells[index].get("outputs", [])
                           if o.get("output_type") == "error"), "") if index < len(cells) else ""
            found.append((where(index), "timeout", evalue or "the cell ran past its time limit", is_test(index)))
        for index, reason in sorted(report.killed.items()):
            found.append((where(index), STOP_LABELS.get(reason, reason), KILLED_MESSAGES.get(reason, reason),
                          is_test(index)))
        for index, line in sorted(report.syntax_errors.items()):
            found.append((where(index), "syntax error", f"{line}; nothing in the cell ran, so the tests that use "
                          "what it defines fail with NameError (their message names this cell)", False))
        if report.not_reached:
            tests = sum(is_test(i) for i in report.not_reached)
            found.append((f"{path.name} cells {report.not_reached[0] + 1}-{report.not_reached[-1] + 1}",
                          "time budget used up", f"{len(report.not_reached)} cell(s) were not run, {tests} of them "
                          "test cells, because the submission's time budget was used up", tests > 0))
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


def describe_stops(result: dict, student: str, chapter: str, stops) -> None:
    """Remarks and (non-blocking) problems for the cells that were stopped or not reached."""
    for where, label, why, is_test in stops:
        result["remarks"].append(f"{label} in {where}")
        lost = ("its tests scored 0; the other cells were graded" if is_test else
                "the other cells were graded" if label == "syntax error" else
                "what it defines may be missing for later cells; the other cells were graded")
        advice = ("if the work is legitimately slow, re-run with a longer --timeout or --budget and --force"
                  if "time" in label else "a fix of that line would let the learner's code be graded"
                  if label == "syntax error" else "nothing, unless you think the learner's code is right")
        result["problems"].append(res.problem(f"{student}/{chapter}/", f"{where}: {why} ({lost})",
                                              f"look at the learner's code there; {advice}", blocking=False))


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
    course, work = make_course(job)
    quiet_nbgrader_logging()
    try:
        with venv_scripts_on_path():
            api = NbGraderAPI(config=grading_configuration(course, job, work))
            outcome = api.autograde(chapter, student, force=True, create=True)
            write_log(log, f"autograde {student} {chapter}", outcome)
            reports = RefereeExecute.reports
            result["kernel_restarts"] = sum(len(r.restarts) for r in reports.values())
            result["restart_reasons"] = [reason for r in reports.values() for reason in r.restarts]
            isolation = next(iter(reports.values())).isolation if reports else {}
            result["isolation"] = {k: bool(isolation.get(k)) for k in
                                   ("process_group", "network_isolated", "separate_user", "paths_hidden")}
            if RefereeExecute.start_error is not None:
                result["status"] = "grader error"
                result["problems"].append(res.problem(
                    f"{student}/{chapter}/", f"the grader could not run the notebook: {RefereeExecute.start_error}",
                    f"this is a problem of the grading machine, not the learner's: read {log}, fix it, and grade "
                    "this submission again (--force)"))
                result["output"] = "Your notebook could not be graded because of a problem on the grading machine."
                return finish(result, job, start)
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
        describe_stops(result, student, chapter, stopped_cells(autograded, RefereeExecute.reports))
        for what in needs_review(job["notebooks"]):
            result["remarks"].append(f"review: uses {what}")
            result["problems"].append(res.problem(
                f"{student}/{chapter}/", f"the learner's code uses {what}; it cannot change how the tests run (they "
                "run in the grader's process), but it is not needed by any exercise",
                "read the graded notebook (autograded/) if you want to know why", blocking=False))
        copy_out(course, workspace, student, chapter, result, feedback["success"])
        passed = sum(t["status"] == "passed" for t in result["tests"])
        result["output"] = (f"{passed} of {len(result['tests'])} tests passed: {result['score']:g} / "
                            f"{result['max_score']:g} points.")
    finally:
        shutil.rmtree(course, ignore_errors=True)
        for folder in _RUN_FOLDERS:
            shutil.rmtree(folder, ignore_errors=True)
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
