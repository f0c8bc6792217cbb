"""One JSON result per graded submission: the unit that grading runners produce and the merge step collects.

The format is documented as a JSON Schema in ``autograder/result_schema.json`` (a Gradescope ``results.json`` with a
few more keys). Results are JSON, never pickle: a result file comes from a runner that executed untrusted code, and
loading it must not run anything.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import json
import os
import platform
from pathlib import Path

SCHEMA_ID = "gptcourse-grading-result/1"
SCHEMA_PATH = Path(__file__).with_name("result_schema.json")
RESULTS_DIR = "results"
#: Run-level problems (not tied to one submission), one file per run or shard: results/_run-<shard>.json
RUN_PROBLEMS_GLOB = "_run*.json"


def result_path(workspace: Path, student: str, chapter: str) -> Path:
    return workspace / RESULTS_DIR / student / f"{chapter}.json"


def sha256_of_files(paths: list[Path]) -> str:
    """sha256 over names and bytes of ``paths`` (sorted by name): equal iff the same files with the same content."""
    digest = hashlib.sha256()
    for path in sorted(paths, key=lambda p: p.name):
        digest.update(path.name.encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return "sha256:" + digest.hexdigest()


def assignment_version(solutions: Path, chapter: str) -> str:
    """The version of a chapter's tests: a hash of every file of ``solutions/<chapter>`` (notebooks and data)."""
    folder = solutions / chapter
    files = [p for p in sorted(folder.rglob("*")) if p.is_file() and ".ipynb_checkpoints" not in p.parts
             and "__pycache__" not in p.parts]
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return "sha256:" + digest.hexdigest()


def new_result(student: str, chapter: str, status: str, version: str, submission_sha256: str | None,
               settings: dict) -> dict:
    """A result with every required key; the grader fills in scores, tests and problems."""
    return {
        "schema": SCHEMA_ID, "student": student, "chapter": chapter, "status": status,
        "assignment_version": version, "submission_sha256": submission_sha256,
        "score": 0.0, "max_score": 0.0, "execution_time": 0.0, "output": "", "tests": [], "problems": [],
        "remarks": [], "feedback": [], "settings": dict(settings),
        "isolation": {"process_group": False, "network_isolated": False, "separate_user": False,
                      "paths_hidden": False},
        "kernel_restarts": 0, "restart_reasons": [],
        "graded_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
    }


def problem(file: str, text: str, what_to_do: str, blocking: bool = True) -> dict:
    return {"file": file, "problem": text, "what_to_do": what_to_do, "blocking": blocking}


@functools.cache
def _validator():
    import jsonschema

    return jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))


def validation_errors(result) -> list[str]:
    """What is wrong with ``result`` against the schema (empty when it is valid)."""
    return [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
            for e in _validator().iter_errors(result)]


def write_result(path: Path, result: dict) -> None:
    """Write atomically (a reader never sees half a file), after checking the schema: a bug here must not produce a
    result that the merge would later refuse."""
    errors = validation_errors(result)
    if errors:
        raise ValueError(f"result for {result.get('student')}/{result.get('chapter')} breaks the schema: {errors[:3]}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_result(path: Path) -> dict:
    """The result at ``path``; ValueError with a plain reason when it is damaged or not one of ours."""
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable JSON result ({exc})") from None
    errors = validation_errors(result)
    if errors:
        raise ValueError(f"{path}: not a valid grading result ({'; '.join(errors[:3])})")
    return result


def result_files(workspace: Path) -> list[Path]:
    folder = workspace / RESULTS_DIR
    return sorted(p for p in folder.glob("*/*.json")) if folder.is_dir() else []
