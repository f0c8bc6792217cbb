"""Grading at scale: shards merged into one gradebook, the merge's refusals, zip input, re-runs that skip unchanged
work, and the result files' schema. The toy assignment keeps these runs short."""

from __future__ import annotations

import csv
import json
import shutil
import zipfile
from pathlib import Path

import pytest

from grading_support import (TOY_CHAPTER, TOY_SOLUTIONS, fill, make_release, points_of_tests, read, run_module,
                             solution_sources, tree_hashes, write)
from autograder import results as res
from autograder import grade as grade_module
from autograder.grade import in_shard, parse_shard, visible_gpus
from autograder.submissions import UsageError, extract_zip

STUDENTS = ["ada", "ben", "cleo", "dev", "eva", "fin"]


def read_csv(path: Path) -> dict[str, dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return {row["student"]: row for row in csv.DictReader(fh)}


# --------------------------------------------------------------------------------------------------------------------
# Fast
# --------------------------------------------------------------------------------------------------------------------


def test_shards_split_students_exactly_once_and_stably():
    names = [f"student{i:03d}" for i in range(300)]
    shards = [[n for n in names if in_shard(n, (i, 3))] for i in (1, 2, 3)]
    assert sorted(sum(shards, [])) == sorted(names)  # each student in exactly one shard
    assert all(60 < len(s) < 140 for s in shards)  # roughly even
    assert [n for n in names[:50] if in_shard(n, (2, 3))] == [n for n in names if in_shard(n, (2, 3))][:len(
        [n for n in names[:50] if in_shard(n, (2, 3))])]  # adding students does not move the others


@pytest.mark.parametrize("text", ["0/2", "3/2", "1", "a/b", "1/0"])
def test_bad_shard_is_explained(text):
    with pytest.raises(UsageError, match="I/N"):
        parse_shard(text)


def test_gpus_are_the_visible_ones(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, 3")
    assert visible_gpus() == ["2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpus() == []


def test_cuda_without_a_gpu_is_explained_before_anything_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    (tmp_path / "subs" / "ada" / TOY_CHAPTER).mkdir(parents=True)
    code = grade_module.main([str(tmp_path / "subs"), "--workspace", str(tmp_path / "ws"), "--solutions",
                              str(TOY_SOLUTIONS), "--device", "cuda"])
    assert code == 2 and "no CUDA GPU is visible" in capsys.readouterr().err
    assert not (tmp_path / "ws").exists()


def test_merge_into_the_repository_is_refused(tmp_path, capsys):
    from autograder import merge as merge_module

    code = merge_module.main(["--workspace", str(grade_module.REPO_ROOT / "merged"), str(tmp_path)])
    assert code == 2 and "overlaps the course repository" in capsys.readouterr().err
    assert not (grade_module.REPO_ROOT / "merged").exists()


def zip_with(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


@pytest.mark.parametrize("name, why", [("../evil.ipynb", "climbs out"), ("/etc/evil.ipynb", "absolute"),
                                       ("ada\\toy.ipynb", "backslash")])
def test_unsafe_zip_is_refused_and_nothing_extracted(tmp_path, name, why):
    archive = zip_with(tmp_path / "subs.zip", {"ada/toy/toy.ipynb": b"{}", name: b"{}"})
    with pytest.raises(UsageError, match=why):
        extract_zip(archive, tmp_path / "out", [TOY_CHAPTER])
    assert not (tmp_path / "out").exists() and not (tmp_path / "evil.ipynb").exists()


def test_zip_bomb_is_refused(tmp_path):
    archive = zip_with(tmp_path / "bomb.zip", {"ada/toy/toy.ipynb": b"0" * 50_000_000})
    with pytest.raises(UsageError, match="compression ratio"):
        extract_zip(archive, tmp_path / "out", [TOY_CHAPTER])


def test_many_small_members_that_add_up_to_a_bomb_are_refused_before_anything_is_extracted(tmp_path):
    # 1,000 members of exactly 1 MiB (each under the per-member checks of old) in a zip of about 1 MB: 1 GB unpacked.
    archive = tmp_path / "many.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(1000):
            zf.writestr(f"s{i:04d}/toy/toy.ipynb", b"\0" * 2**20)
    assert archive.stat().st_size < 5 * 2**20
    with pytest.raises(UsageError, match="would unpack to 1,000 MB, more than 50 times its size"):
        extract_zip(archive, tmp_path / "out", [TOY_CHAPTER])
    assert not (tmp_path / "out").exists()


def test_an_honest_export_is_far_below_the_limits(tmp_path):
    notebook = json.dumps({"cells": [{"cell_type": "code", "source": f"x = {i}\n" * 20, "metadata": {},
                                      "outputs": []} for i in range(200)]}).encode()
    archive = zip_with(tmp_path / "export.zip", {f"s{i:03d}/toy/toy.ipynb": notebook for i in range(100)})
    root = extract_zip(archive, tmp_path / "out", [TOY_CHAPTER])
    assert len(list(root.iterdir())) == 100


def test_zip_symlink_is_refused(tmp_path):
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("ada/toy/toy.ipynb")
        info.external_attr = (0o120777 << 16)  # a symbolic link, pointing at the grader's files
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(UsageError, match="symbolic link"):
        extract_zip(archive, tmp_path / "out", [TOY_CHAPTER])


def test_a_zip_that_wraps_the_student_folders_is_unwrapped(tmp_path):
    archive = zip_with(tmp_path / "export.zip", {"course-export/ada/toy/toy.ipynb": b"{}",
                                                  "course-export/ben/toy/toy.ipynb": b"{}"})
    root = extract_zip(archive, tmp_path / "out", [TOY_CHAPTER])
    assert sorted(p.name for p in root.iterdir()) == ["ada", "ben"]


def test_a_result_that_breaks_the_schema_is_not_written(tmp_path):
    result = res.new_result("ada", "toy", "graded", "sha256:" + "0" * 64, None, {"cell_timeout": 5, "device": "cpu",
                                                                                "memory_mb": None})
    result["score"] = -1
    with pytest.raises(ValueError, match="score"):
        res.write_result(tmp_path / "r.json", result)
    assert not (tmp_path / "r.json").exists()


# --------------------------------------------------------------------------------------------------------------------
# Slow: two shards, merged
# --------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    base = tmp_path_factory.mktemp("shards")
    release = read(make_release(TOY_SOLUTIONS, TOY_CHAPTER, base / "release"))
    solution = read(TOY_SOLUTIONS / TOY_CHAPTER / "toy.ipynb")
    sources = solution_sources(solution)
    subs = base / "submissions"
    expected = {}
    for i, student in enumerate(STUDENTS):  # alternately full marks and the untouched stub
        write(fill(release, sources) if i % 2 == 0 else release, subs / student / TOY_CHAPTER / "toy.ipynb")
        expected[student] = sum(points_of_tests(solution).values()) if i % 2 == 0 else 0.0
    (subs / "notes.txt").write_text("not a submission")  # a run-level remark, which every shard sees
    write(release, subs / STUDENTS[0] / TOY_CHAPTER / "scratch.ipynb")  # a remark on one submission, in one shard
    runs = {}
    for i in (1, 2):
        runs[i] = run_module("autograder.grade", subs, "--workspace", base / f"shard{i}", "--solutions", TOY_SOLUTIONS,
                             "--shard", f"{i}/2", "--jobs", "2", "--timeout", "20")
    merged = run_module("autograder.merge", "--workspace", base / "master", base / "shard1", base / "shard2",
                        "--solutions", TOY_SOLUTIONS)
    return {"base": base, "subs": subs, "runs": runs, "merged": merged, "expected": expected}


@pytest.mark.slow
def test_each_shard_grades_its_own_students(shards):
    graded = {}
    for i, proc in shards["runs"].items():
        assert proc.returncode == 0, proc.stdout + proc.stderr
        graded[i] = {p.parent.name for p in res.result_files(shards["base"] / f"shard{i}")}
        assert graded[i] == {s for s in STUDENTS if in_shard(s, (i, 2))}
        assert not (shards["base"] / f"shard{i}" / "gradebook.db").exists()  # the merge makes the gradebook
    assert graded[1] | graded[2] == set(STUDENTS) and not graded[1] & graded[2]


@pytest.mark.slow
def test_merge_makes_one_gradebook_csv_feedback_and_report(shards):
    from nbgrader.api import Gradebook

    proc, master = shards["merged"], shards["base"] / "master"
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = read_csv(master / "grades.csv")
    assert {s: float(rows[s]["score"]) for s in STUDENTS} == shards["expected"]
    with Gradebook(f"sqlite:///{master / 'gradebook.db'}") as gb:
        assert {s: gb.find_submission(TOY_CHAPTER, s).score for s in STUDENTS} == shards["expected"]
    for student in STUDENTS:
        assert (master / "feedback" / student / TOY_CHAPTER / "toy.html").is_file()
    report = (master / "report.html").read_text(encoding="utf-8")
    # Grade distribution, pass rate per test, runtime (no failure plot: nothing failed to grade).
    assert all(s in report for s in STUDENTS) and report.count("data:image/png;base64,") >= 3


@pytest.mark.slow
def test_merged_problems_list_each_remark_once(shards):
    with open(shards["base"] / "master" / "problems.csv", newline="", encoding="utf-8") as fh:
        problems = [row["problem"] for row in csv.DictReader(fh)]
    assert sorted(problems) == sorted(["a file directly in SUBMISSIONS, ignored",
                                       "extra notebook 'scratch.ipynb' ignored (expected: toy.ipynb)"]), problems


@pytest.mark.slow
def test_results_follow_the_schema_and_gradescope_keys(shards):
    for path in res.result_files(shards["base"] / "master"):
        result = res.read_result(path)  # validates against autograder/result_schema.json
        assert {"score", "execution_time", "output", "tests"} <= set(result)
        assert all({"name", "score", "max_score", "status", "output", "visibility"} <= set(t) for t in result["tests"])


@pytest.mark.slow
def test_merge_refuses_a_student_graded_in_two_shards(shards):
    base = shards["base"]
    copy = base / "shard1-copy"
    shutil.copytree(base / "shard1", copy)
    before = tree_hashes(base / "master")
    proc = run_module("autograder.merge", "--workspace", base / "master", base / "shard1", copy, base / "shard2",
                      "--solutions", TOY_SOLUTIONS)
    assert proc.returncode == 2 and "more than one shard" in proc.stderr and "nothing was merged" in proc.stderr
    assert tree_hashes(base / "master") == before


@pytest.mark.slow
def test_merge_refuses_results_of_another_assignment_version(shards):
    base = shards["base"]
    old = base / "shard2-old"
    shutil.copytree(base / "shard2", old)
    path = res.result_files(old)[0]
    result = json.loads(path.read_text())
    result["assignment_version"] = "sha256:" + "1" * 64  # graded before the tests changed
    path.write_text(json.dumps(result))
    proc = run_module("autograder.merge", "--workspace", base / "master-2", base / "shard1", old,
                      "--solutions", TOY_SOLUTIONS)
    assert proc.returncode == 2 and "different versions" in proc.stderr and result["student"] in proc.stderr
    assert not (base / "master-2").exists()


@pytest.mark.slow
def test_merge_refuses_a_damaged_result(shards):
    base = shards["base"]
    damaged = base / "shard1-damaged"
    shutil.copytree(base / "shard1", damaged)
    res.result_files(damaged)[0].write_text('{"schema": "gptcourse-grading-result/1", "student": ')
    proc = run_module("autograder.merge", "--workspace", base / "master-3", damaged, "--solutions", TOY_SOLUTIONS)
    assert proc.returncode == 2 and "damaged" in proc.stderr


@pytest.mark.slow
def test_rerun_skips_unchanged_submissions_and_force_grades_again(shards):
    base = shards["base"]
    args = (shards["subs"], "--workspace", base / "shard1", "--solutions", TOY_SOLUTIONS, "--shard", "1/2",
            "--timeout", "20")
    before = {p: p.read_text() for p in res.result_files(base / "shard1")}
    again = run_module("autograder.grade", *args)
    assert again.returncode == 0 and "skipped" in again.stdout
    assert {p: p.read_text() for p in res.result_files(base / "shard1")} == before  # not graded again
    forced = run_module("autograder.grade", *args, "--force")
    assert forced.returncode == 0 and "skipped" not in forced.stdout
    assert any(json.loads(p.read_text())["graded_at"] != json.loads(text)["graded_at"] or
               json.loads(p.read_text())["execution_time"] != json.loads(text)["execution_time"]
               for p, text in before.items())


@pytest.mark.slow
def test_a_zip_of_submissions_grades_like_the_folder(shards, tmp_path):
    archive = tmp_path / "lms-export.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(shards["subs"].rglob("toy.ipynb"))[:2]:
            zf.write(path, "export/" + str(path.relative_to(shards["subs"])))
    proc = run_module("autograder.grade", archive, "--workspace", tmp_path / "ws", "--solutions", TOY_SOLUTIONS,
                      "--timeout", "20")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = read_csv(tmp_path / "ws" / "grades.csv")
    assert len(rows) == 2 and all(float(r["score"]) == shards["expected"][s] for s, r in rows.items())
