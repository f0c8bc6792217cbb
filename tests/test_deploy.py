"""autograder/deploy/: the grading runners' templates (Docker, Slurm, Kubernetes, GitHub Actions).

The linters (hadolint, shellcheck, yamllint, check-jsonschema, kubernetes-validate) are pinned in requirements.txt
and called from next to this Python; one that is not installed is skipped, with the reason. Without any linter:
the structure of each template, and each template's shell code run for real with a stand-in ``python`` that
records its arguments and exits with a chosen status. That checks the commands (against the grader's own
``--help``) and that exit status 1 ("graded, some submissions have problems") counts as success everywhere.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "autograder" / "deploy"
DOCKERFILES = {"cpu": DEPLOY / "Dockerfile.cpu", "cuda": DEPLOY / "Dockerfile.cuda"}
SBATCH_GRADE = DEPLOY / "slurm" / "grade_array.sbatch"
SBATCH_MERGE = DEPLOY / "slurm" / "merge.sbatch"
K8S_GRADE = DEPLOY / "kubernetes" / "grade-job.yaml"
K8S_MERGE = DEPLOY / "kubernetes" / "merge-job.yaml"
WORKFLOW = DEPLOY / "github-actions" / "grade.yml"
YAML_FILES = [K8S_GRADE, K8S_MERGE, WORKFLOW]
YAMLLINT_CONFIG = "{extends: default, rules: {line-length: {max: 120}, truthy: {check-keys: false}}}"
POLICY_LABEL = {"app.kubernetes.io/name": "gptcourse-grader"}


# --------------------------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------------------------


def linter(name: str) -> Path:
    path = Path(sys.executable).parent / name
    if not path.exists():
        pytest.skip(f"{name} is not installed next to {sys.executable}; it is pinned in requirements.txt "
                    "(run `make install`)")
    return path


def lint(*argv: str | Path, cwd: Path = REPO) -> None:
    proc = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{Path(argv[0]).name} found problems:\n{proc.stdout}{proc.stderr}"


def yaml_docs(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


def k8s(path: Path, kind: str) -> dict:
    found = [doc for doc in yaml_docs(path) if doc["kind"] == kind]
    assert len(found) == 1, f"{path.name}: expected one {kind}, found {len(found)}"
    return found[0]


def container(job: dict) -> dict:
    containers = job["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def container_env(job: dict) -> dict[str, str]:
    return {item["name"]: str(item["value"]) for item in container(job).get("env", [])}


def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))


def workflow_on(doc: dict) -> dict:
    return doc.get("on", doc.get(True))  # PyYAML (YAML 1.1) reads the key `on` as True


def step(job: dict, name: str) -> dict:
    found = [s for s in job["steps"] if s.get("name") == name]
    assert len(found) == 1, f"no single step named {name!r}"
    return found[0]


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out, pending = [], ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip("\\").strip() + " " if line.endswith("\\") else line.strip()
        if not line.endswith("\\"):
            word, _, rest = pending.partition(" ")
            out.append((word.upper(), rest.strip()))
            pending = ""
    return out


@functools.cache
def cli_flags(module_name: str) -> frozenset[str]:
    """The options the real command accepts, read from its --help."""
    module = __import__(f"autograder.{module_name}", fromlist=["main"])
    text = io.StringIO()
    with contextlib.redirect_stdout(text), pytest.raises(SystemExit):
        module.main(["--help"])
    return frozenset(re.findall(r"(?<![\w-])--[a-z][a-z-]*", text.getvalue()))


class FakePython:
    """A stand-in ``python``: records its arguments, exits with FAKE_STATUS."""

    def __init__(self, path: Path):
        self.path = path
        self.argv_file = path.parent / "argv.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$FAKE_ARGV"\nexit "${FAKE_STATUS:-0}"\n')
        path.chmod(0o755)

    def run(self, argv: list[str], env: dict[str, str], status: int, cwd: Path) -> tuple[int, list[str] | None, str]:
        self.argv_file.unlink(missing_ok=True)
        full_env = {"PATH": f"{self.path.parent}:/usr/bin:/bin", "HOME": str(cwd), "LANG": "C.UTF-8",
                    "FAKE_ARGV": str(self.argv_file), "FAKE_STATUS": str(status), **env}
        proc = subprocess.run(argv, env=full_env, cwd=cwd, capture_output=True, text=True, timeout=30)
        recorded = self.argv_file.read_text().splitlines() if self.argv_file.exists() else None
        return proc.returncode, recorded, proc.stdout + proc.stderr


def check_command(recorded: list[str] | None, module: str, expected: list[str]) -> None:
    assert recorded is not None, "the script never ran python"
    assert recorded[:2] == ["-m", f"autograder.{module}"]
    assert recorded[2:] == expected
    unknown = {a for a in recorded if a.startswith("--")} - cli_flags(module)
    assert not unknown, f"options that `python -m autograder.{module}` does not have: {sorted(unknown)}"


#: The grader's exit status -> the template's: 1 ("some submissions have problems") is a success.
STATUS_CASES = [(0, 0), (1, 0), (2, 2), (3, 3)]


# --------------------------------------------------------------------------------------------------------------------
# Linters (skipped where not installed)
# --------------------------------------------------------------------------------------------------------------------


def test_hadolint(tmp_path):
    config = tmp_path / "hadolint.yaml"
    config.write_text("failure-threshold: style\n")
    lint(linter("hadolint"), "--config", config, "--no-color", *DOCKERFILES.values())


def test_shellcheck_slurm_scripts():
    lint(linter("shellcheck"), "--norc", "--severity=style", "--shell=bash", SBATCH_GRADE, SBATCH_MERGE)


def test_shellcheck_kubernetes_and_workflow_scripts(tmp_path):
    shellcheck = linter("shellcheck")
    for path in (K8S_GRADE, K8S_MERGE):
        job = k8s(path, "Job")
        script = tmp_path / f"{path.stem}.sh"
        script.write_text(container(job)["args"][0])
        lint(shellcheck, "--norc", "--severity=style", "--shell=sh", script)
    jobs = workflow()["jobs"]
    for job_name, step_name in (("grade", "Grade"), ("merge", "Merge")):
        script = tmp_path / f"workflow-{job_name}.sh"
        script.write_text(step(jobs[job_name], step_name)["run"])
        lint(shellcheck, "--norc", "--severity=style", "--shell=bash", script)


def test_yamllint():
    lint(linter("yamllint"), "--strict", "--config-data", YAMLLINT_CONFIG, *YAML_FILES)


def test_workflow_matches_github_schema():
    lint(linter("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", WORKFLOW)


def test_kubernetes_manifests_match_the_api_schema():
    lint(linter("kubernetes-validate"), "--strict", K8S_GRADE, K8S_MERGE)


# --------------------------------------------------------------------------------------------------------------------
# Dockerfiles
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("flavour", DOCKERFILES)
def test_dockerfile(flavour):
    path = DOCKERFILES[flavour]
    instructions = dockerfile_instructions(path)
    kinds = [kind for kind, _ in instructions]

    base = [args for kind, args in instructions if kind == "FROM"]
    assert len(base) == 1 and re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", base[0])

    users = [args for kind, args in instructions if kind == "USER"]
    assert users, "no USER: the grader would run as root"
    assert users[-1].split(":")[0] not in {"0", "root"}, "the last USER must not be root"
    assert kinds.index("USER") > max(i for i, kind in enumerate(kinds) if kind == "RUN"), "USER before the last RUN"
    assert "ENTRYPOINT" in kinds and kinds.index("ENTRYPOINT") > kinds.index("USER")
    assert [args for kind, args in instructions if kind == "ENTRYPOINT"] == ['["python", "-m", "autograder.grade"]']
    assert ("WORKDIR", "/opt/gptcourse") in instructions

    # Only what the grader needs is copied, and all of it exists.
    assert "ADD" not in kinds
    sources = [src for kind, args in instructions if kind == "COPY" for src in args.split()[:-1]
               if not src.startswith("--")]
    assert "." not in sources and "./" not in sources
    for src in sources:
        assert (REPO / src).exists(), f"COPY {src}: no such path in the repository"
    assert {s.rstrip("/") for s in sources} >= {"gptcourse", "autograder", "solutions", "exercises",
                                                "pyproject.toml", "requirements.txt"}

    runs = " ".join(args for kind, args in instructions if kind == "RUN")
    for pip_install in re.findall(r"pip install[^&]*", runs):
        assert "--no-cache-dir" in pip_install, pip_install
    assert re.search(r"apt-get install -y --no-install-recommends [^&]*iproute2", runs)
    assert re.search(r"apt-get install [^&]*util-linux", runs)
    assert "rm -rf /var/lib/apt/lists/*" in runs
    index = {"cpu": "https://download.pytorch.org/whl/cpu", "cuda": "https://download.pytorch.org/whl/cu128"}[flavour]
    assert index in path.read_text(encoding="utf-8")


def test_requirements_fit_the_dockerfiles():
    """The Dockerfiles install torch from `grep '^torch=='` and everything else but `-e .` from requirements.txt."""
    lines = [line.strip() for line in (REPO / "requirements.txt").read_text().splitlines()]
    assert len([line for line in lines if re.match(r"torch==\d", line)]) == 1
    assert [line for line in lines if line.startswith("-e")] == ["-e ."]
    assert not [line for line in lines if line.startswith(("-r", "-c", "./", "../", "/"))]


# --------------------------------------------------------------------------------------------------------------------
# Slurm
# --------------------------------------------------------------------------------------------------------------------


def test_slurm_headers():
    grade = SBATCH_GRADE.read_text()
    for directive in ("--array=1-4", "--gres=gpu:1", "--cpus-per-task=", "--mem=", "--time="):
        assert re.search(rf"^#SBATCH {re.escape(directive)}", grade, re.M), directive
    merge = SBATCH_MERGE.read_text()
    assert "--dependency=afterany:" in merge and "--dependency=afterany:" in grade
    for text in (grade, merge):
        assert text.startswith("#!/bin/bash\n")
        assert "\nset -euo pipefail\n" in text
        # #SBATCH lines are read only before the first command.
        first_command = text.index("\nset -euo pipefail")
        assert all(m.start() < first_command for m in re.finditer(r"^#SBATCH", text, re.M))


@pytest.mark.parametrize(("status", "expected"), STATUS_CASES)
def test_slurm_grade_task(tmp_path, status, expected):
    fake = FakePython(tmp_path / "bin" / "python")
    course = tmp_path / "course"
    course.mkdir()
    env = {"COURSE_DIR": str(course), "PYTHON": str(fake.path), "SUBMISSIONS": "/data/subs.zip",
           "RESULTS_ROOT": str(tmp_path / "results"), "CHAPTERS": "ch01_tokens ch02_embeddings",
           "SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4"}
    code, recorded, output = fake.run(["bash", str(SBATCH_GRADE)], env, status, tmp_path)
    assert code == expected, output
    check_command(recorded, "grade", [
        "/data/subs.zip", "--workspace", f"{tmp_path}/results/shard-3", "--shard", "3/4", "--device", "cuda",
        "--jobs", "4", "--chapter", "ch01_tokens", "--chapter", "ch02_embeddings"])


def test_slurm_grade_task_all_chapters_and_checks(tmp_path):
    fake = FakePython(tmp_path / "bin" / "python")
    env = {"COURSE_DIR": str(tmp_path), "PYTHON": str(fake.path), "SUBMISSIONS": "/data/subs",
           "RESULTS_ROOT": str(tmp_path / "results"), "JOBS": "2",
           "SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "2"}
    code, recorded, output = fake.run(["bash", str(SBATCH_GRADE)], env, 0, tmp_path)
    assert code == 0, output
    check_command(recorded, "grade", ["/data/subs", "--workspace", f"{tmp_path}/results/shard-1", "--shard", "1/2",
                                      "--device", "cuda", "--jobs", "2"])
    del env["SUBMISSIONS"]
    code, recorded, output = fake.run(["bash", str(SBATCH_GRADE)], env, 0, tmp_path)
    assert code != 0 and recorded is None and "SUBMISSIONS" in output


@pytest.mark.parametrize(("status", "expected"), STATUS_CASES)
def test_slurm_merge(tmp_path, status, expected):
    fake = FakePython(tmp_path / "bin" / "python")
    results = tmp_path / "results"
    for i in range(1, 5):
        (results / f"shard-{i}").mkdir(parents=True)
    env = {"COURSE_DIR": str(tmp_path), "PYTHON": str(fake.path), "RESULTS_ROOT": str(results)}
    code, recorded, output = fake.run(["bash", str(SBATCH_MERGE)], env, status, tmp_path)
    assert code == expected, output
    shards = [f"{results}/shard-{i}" for i in range(1, 5)]
    check_command(recorded, "merge", ["--workspace", f"{results}/master", *shards])


def test_slurm_merge_reports_a_missing_shard(tmp_path):
    fake = FakePython(tmp_path / "bin" / "python")
    results = tmp_path / "results"
    for i in (1, 3):
        (results / f"shard-{i}").mkdir(parents=True)
    env = {"COURSE_DIR": str(tmp_path), "PYTHON": str(fake.path), "RESULTS_ROOT": str(results)}
    code, recorded, output = fake.run(["bash", str(SBATCH_MERGE)], env, 1, tmp_path)
    assert code == 2 and "2 4" in output, output
    check_command(recorded, "merge", ["--workspace", f"{results}/master", f"{results}/shard-1", f"{results}/shard-3"])


# --------------------------------------------------------------------------------------------------------------------
# Kubernetes
# --------------------------------------------------------------------------------------------------------------------


def test_network_policy_denies_all_traffic():
    policies = [k8s(path, "NetworkPolicy") for path in (K8S_GRADE, K8S_MERGE)]
    assert policies[0] == policies[1], "the two files must carry the same NetworkPolicy"
    policy = policies[0]
    assert policy["apiVersion"] == "networking.k8s.io/v1"
    assert policy["spec"]["podSelector"] == {"matchLabels": POLICY_LABEL}
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert not policy["spec"].get("egress") and not policy["spec"].get("ingress")
    # The policy comes first in each file, so it exists before any pod starts.
    assert [doc["kind"] for doc in yaml_docs(K8S_GRADE)][0] == "NetworkPolicy"
    assert [doc["kind"] for doc in yaml_docs(K8S_MERGE)][0] == "NetworkPolicy"


@pytest.mark.parametrize("path", [K8S_GRADE, K8S_MERGE], ids=lambda p: p.name)
def test_kubernetes_pods_are_locked_down(path):
    job = k8s(path, "Job")
    assert job["apiVersion"] == "batch/v1"
    assert job["spec"]["ttlSecondsAfterFinished"] > 0
    pod = job["spec"]["template"]
    assert POLICY_LABEL.items() <= pod["metadata"]["labels"].items(), "pods not covered by the NetworkPolicy"
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Never"
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    box = container(job)
    context = box["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context.get("runAsUser", 1) != 0 and "privileged" not in context
    # A read-only root filesystem needs writable scratch space.
    mounts = {m["mountPath"]: m for m in box["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    for writable in ("/tmp", "/home/grader"):
        assert "emptyDir" in volumes[mounts[writable]["name"]]
    assert volumes[mounts["/results"]["name"]]["persistentVolumeClaim"]["claimName"] == "gptcourse-results"


def test_kubernetes_grade_job_shape():
    job = k8s(K8S_GRADE, "Job")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == int(container_env(job)["SHARDS"]) == 4
    assert spec.get("backoffLimitPerIndex", spec.get("backoffLimit")) is not None
    box = container(job)
    assert box["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert box["image"].endswith(":cuda")
    mounts = {m["mountPath"]: m for m in box["volumeMounts"]}
    assert mounts["/submissions"]["readOnly"] is True
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    assert volumes[mounts["/submissions"]["name"]]["persistentVolumeClaim"]["readOnly"] is True
    merge = k8s(K8S_MERGE, "Job")
    assert container(merge)["image"] == box["image"], "the merge must use the grading image (same tests)"
    assert container_env(merge)["SHARDS"] == container_env(job)["SHARDS"]
    assert "nvidia.com/gpu" not in container(merge)["resources"].get("limits", {})


@pytest.mark.parametrize(("status", "expected"), STATUS_CASES)
@pytest.mark.parametrize("chapters", ["", "ch01_tokens ch03_attention"])
def test_kubernetes_grade_command(tmp_path, status, expected, chapters):
    job = k8s(K8S_GRADE, "Job")
    fake = FakePython(tmp_path / "bin" / "python")
    env = {**container_env(job), "CHAPTERS": chapters, "JOB_COMPLETION_INDEX": "2"}
    box = container(job)
    code, recorded, output = fake.run([*box["command"], *box["args"]], env, status, tmp_path)
    assert code == expected, output
    chapter_args = [a for c in chapters.split() for a in ("--chapter", c)]
    check_command(recorded, "grade", [env["SUBMISSIONS"], "--workspace", "/results/shard-3", "--shard", "3/4",
                                      "--device", "cuda", "--jobs", env["JOBS"], *chapter_args])


@pytest.mark.parametrize(("status", "expected"), STATUS_CASES)
def test_kubernetes_merge_command(tmp_path, status, expected):
    job = k8s(K8S_MERGE, "Job")
    fake = FakePython(tmp_path / "bin" / "python")
    results = tmp_path / "results"
    for i in range(1, 5):
        (results / f"shard-{i}").mkdir(parents=True)
    box = container(job)
    script = box["args"][0].replace("/results", str(results))  # the volume's mount point, here a temporary folder
    code, recorded, output = fake.run([*box["command"], script], container_env(job), status, tmp_path)
    assert code == expected, output
    shards = [f"{results}/shard-{i}" for i in range(1, 5)]
    check_command(recorded, "merge", ["--workspace", f"{results}/master", *shards])
    (results / "shard-4").rmdir()
    code, recorded, output = fake.run([*box["command"], script], container_env(job), 0, tmp_path)
    assert code == 2 and "4" in output, output
    assert recorded[-1] == f"{results}/shard-3"


# --------------------------------------------------------------------------------------------------------------------
# GitHub Actions
# --------------------------------------------------------------------------------------------------------------------


def test_workflow_shape():
    doc = workflow()
    inputs = workflow_on(doc)["workflow_dispatch"]["inputs"]
    assert {"submissions", "submissions_artifact", "chapter", "shards"} <= inputs.keys()
    assert doc["permissions"] == {"contents": "read"}
    grade, merge = doc["jobs"]["grade"], doc["jobs"]["merge"]
    assert grade["runs-on"] == ["self-hosted", "linux", "gpu"]
    assert grade["strategy"]["fail-fast"] is False
    for job in (grade, merge):
        assert set(job.get("permissions", {}).values()) <= {"read"}
    # matrix.shard is [1, ..., shards] for every choice of `shards`.
    table = re.fullmatch(r"\$\{\{ fromJSON\('(.*)'\)\[inputs\.shards\] \}\}", grade["strategy"]["matrix"]["shard"])
    assert table, grade["strategy"]["matrix"]["shard"]
    shard_lists = json.loads(table[1])
    for option in inputs["shards"]["options"]:
        assert shard_lists[option] == list(range(1, int(option) + 1))
    assert inputs["shards"]["default"] == "4"
    assert merge["needs"] == "grade" and merge["if"] in ("always()", "${{ always() }}", "${{ !cancelled() }}")

    for job in (grade, merge):
        checkout = [s for s in job["steps"] if s.get("uses", "").startswith("actions/checkout@")]
        assert checkout and checkout[0]["with"]["persist-credentials"] is False
        assert any(s.get("run") == "make install" for s in job["steps"])
        for s in job["steps"]:
            # Values reach scripts through env:, never pasted into the script (no injection from the inputs).
            assert "${{" not in s.get("run", ""), s.get("name")
    upload = [s for s in grade["steps"] if s.get("uses") == "actions/upload-artifact@v4"]
    assert len(upload) == 1 and upload[0]["with"]["name"] == "shard-${{ matrix.shard }}"
    assert upload[0]["with"]["include-hidden-files"] is True
    download = [s for s in merge["steps"] if s.get("uses") == "actions/download-artifact@v4"]
    assert len(download) == 1
    assert download[0]["with"]["pattern"] == "shard-*" and download[0]["with"]["merge-multiple"] is False
    assert any(s.get("uses") == "actions/upload-artifact@v4" for s in merge["steps"])


def run_workflow_step(fake: FakePython, script: str, env: dict[str, str], status: int, cwd: Path):
    path = cwd / "step.sh"
    path.write_text(script)
    # GitHub runs `shell: bash` steps as: bash --noprofile --norc -eo pipefail {0}
    return fake.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(path)], env, status, cwd)


@pytest.mark.parametrize(("status", "expected"), STATUS_CASES)
def test_workflow_grade_step(tmp_path, status, expected):
    doc = workflow()
    assert doc["defaults"]["run"]["shell"] == "bash"
    grade = step(doc["jobs"]["grade"], "Grade")
    assert set(grade["env"]) == {"SUBMISSIONS", "WORKSPACE", "SHARD", "SHARDS", "CHAPTER", "JOBS"}
    fake = FakePython(tmp_path / ".venv" / "bin" / "python")
    env = {"SUBMISSIONS": "/srv/subs", "WORKSPACE": f"{tmp_path}/shard-2", "SHARD": "2", "SHARDS": "4",
           "CHAPTER": "ch02_embeddings", "JOBS": str(grade["env"]["JOBS"])}
    code, recorded, output = run_workflow_step(fake, grade["run"], env, status, tmp_path)
    assert code == expected, output
    check_command(recorded, "grade", ["/srv/subs", "--workspace", f"{tmp_path}/shard-2", "--shard", "2/4",
                                      "--device", "cuda", "--jobs", env["JOBS"], "--chapter", "ch02_embeddings"])
    code, recorded, output = run_workflow_step(fake, grade["run"], {**env, "CHAPTER": ""}, status, tmp_path)
    assert code == expected and "--chapter" not in recorded
    code, recorded, output = run_workflow_step(fake, grade["run"], {**env, "SUBMISSIONS": ""}, 0, tmp_path)
    assert code == 2 and recorded is None


@pytest.mark.parametrize(("status", "expected"), STATUS_CASES)
def test_workflow_merge_step(tmp_path, status, expected):
    merge = step(workflow()["jobs"]["merge"], "Merge")
    assert set(merge["env"]) == {"SHARDS_DIR", "MASTER", "SHARDS"}
    fake = FakePython(tmp_path / ".venv" / "bin" / "python")
    shards = tmp_path / "shards"
    for i in (1, 2):
        (shards / f"shard-{i}").mkdir(parents=True)
    env = {"SHARDS_DIR": str(shards), "MASTER": f"{tmp_path}/master", "SHARDS": "2"}
    code, recorded, output = run_workflow_step(fake, merge["run"], env, status, tmp_path)
    assert code == expected, output
    check_command(recorded, "merge", ["--workspace", f"{tmp_path}/master", f"{shards}/shard-1", f"{shards}/shard-2"])
    code, recorded, output = run_workflow_step(fake, merge["run"], {**env, "SHARDS": "3"}, 0, tmp_path)
    assert code == 2 and "3" in output


# --------------------------------------------------------------------------------------------------------------------
# Every template
# --------------------------------------------------------------------------------------------------------------------


def test_every_template_runs_the_sharded_grade_and_the_merge():
    texts = {path.name: path.read_text(encoding="utf-8") for path in (SBATCH_GRADE, K8S_GRADE, WORKFLOW)}
    for name, text in texts.items():
        assert re.search(r"-m autograder\.grade .*--workspace .*\n?.*--shard .*--device cuda --jobs", text), name
    for path in (SBATCH_MERGE, K8S_MERGE, WORKFLOW):
        assert "-m autograder.merge --workspace " in path.read_text(encoding="utf-8"), path.name
    readme = (DEPLOY / "README.md").read_text(encoding="utf-8")
    assert "--network none" in readme and "--cap-add SYS_ADMIN" in readme and "--dependency=afterany" in readme
