"""Releases for instructors (autograder/release.py, `make release`) and the changelog of the exercises.

Every chapter's current assignment version has an entry in CHANGELOG.md saying whether to re-grade; the archives
hold exactly the student notebooks with a manifest whose checksums match; the same files give the same archives;
a stale exercises/ folder or a missing changelog entry stops a release with a message that says what to do.
"""

import hashlib
import json
import shutil
import zipfile

import pytest

from autograder import release as release_module
from autograder.course import EXERCISES_DIR, SOLUTIONS_DIR, chapters
from autograder.release import (CHANGELOG, METADATA_KEY, ReleaseError, changelog_entries, missing_changelog_entries,
                                release, release_note, short)
from autograder.results import assignment_version


def test_every_chapter_version_has_a_changelog_entry():
    missing = missing_changelog_entries(CHANGELOG.read_text(encoding="utf-8"), chapters())
    assert not missing, (
        "solutions/ changed, so these chapters have a new assignment version; add an entry to CHANGELOG.md for each, "
        "under the heading shown (what changed, why, and a line '- Re-grade: yes/no (why)'):\n  " + "\n  ".join(missing))


def test_every_changelog_entry_says_whether_to_regrade():
    entries = changelog_entries(CHANGELOG.read_text(encoding="utf-8"))
    assert entries
    vague = [f"{chapter} {version}" for (chapter, version), text in entries.items()
             if not any(line.startswith("- Re-grade: ") for line in text.splitlines())]
    assert not vague, f"entries without a '- Re-grade: yes/no (why)' line: {vague}"


def test_the_student_notebooks_carry_their_release():
    for chapter in chapters():
        version = assignment_version(SOLUTIONS_DIR, chapter)
        for path in (EXERCISES_DIR / chapter).glob("*.ipynb"):
            carried = json.loads(path.read_text(encoding="utf-8"))["metadata"][METADATA_KEY]
            assert carried == {"chapter": chapter, "assignment_version": version}, path


def test_release_writes_one_archive_per_chapter_and_one_for_the_course(tmp_path):
    archives = release(tmp_path / "a")
    again = release(tmp_path / "b")
    assert [a.read_bytes() for a in archives] == [b.read_bytes() for b in again], "the same files, the same bytes"
    assert len(archives) == len(chapters()) + 1
    sums = (tmp_path / "a" / "SHA256SUMS").read_text().splitlines()
    assert sums == [f"{hashlib.sha256(a.read_bytes()).hexdigest()}  {a.name}" for a in archives]
    for chapter, archive in zip(chapters(), archives):
        version = assignment_version(SOLUTIONS_DIR, chapter)
        assert archive.name == f"gptcourse-{chapter}-{short(version)}.zip"
        with zipfile.ZipFile(archive) as z:
            manifest = json.loads(z.read("MANIFEST.json"))
            files = manifest["chapters"][chapter]["files"]
            assert manifest["chapters"][chapter]["assignment_version"] == version
            assert sorted(z.namelist()) == sorted([*files, "MANIFEST.json", "README.txt"])
            assert short(version) in z.read("README.txt").decode()
            for name, digest in files.items():
                assert hashlib.sha256(z.read(name)).hexdigest() == digest
                assert z.read(name) == (EXERCISES_DIR / name).read_bytes()
            assert any(name.endswith(".ipynb") for name in files)
    with zipfile.ZipFile(archives[-1]) as z:
        assert set(json.loads(z.read("MANIFEST.json"))["chapters"]) == set(chapters())


def test_a_release_replaces_the_archives_of_an_earlier_one(tmp_path):
    old = tmp_path / "gptcourse-ch01_tokens-000000000000.zip"
    old.write_bytes(b"an earlier release")
    release(tmp_path, ["ch01_tokens"])
    assert not old.exists()
    assert [p.name for p in tmp_path.glob("*.zip")] == [
        f"gptcourse-ch01_tokens-{short(assignment_version(SOLUTIONS_DIR, 'ch01_tokens'))}.zip"]


def test_a_missing_changelog_entry_stops_the_release(tmp_path):
    changelog = tmp_path / "CHANGELOG.md"
    changelog.write_text("# Changelog\n\n## ch01_tokens 000000000000 (2020-01-01)\n- Re-grade: no\n")
    with pytest.raises(ReleaseError, match=f"## ch01_tokens {short(assignment_version(SOLUTIONS_DIR, 'ch01_tokens'))}"):
        release(tmp_path / "out", ["ch01_tokens"], changelog=changelog)
    assert not (tmp_path / "out").exists(), "nothing is written when the release is refused"


def test_stale_student_notebooks_stop_the_release(tmp_path, monkeypatch):
    exercises = tmp_path / "exercises"
    shutil.copytree(EXERCISES_DIR / "ch01_tokens", exercises / "ch01_tokens")
    (path,) = (exercises / "ch01_tokens").glob("*.ipynb")
    nb = json.loads(path.read_text())
    nb["metadata"][METADATA_KEY]["assignment_version"] = "sha256:" + "1" * 64
    path.write_text(json.dumps(nb))
    monkeypatch.setattr(release_module, "EXERCISES_DIR", exercises)
    with pytest.raises(ReleaseError, match="is stale.*make exercises"):
        release(tmp_path / "out", ["ch01_tokens"])
    with pytest.raises(ReleaseError, match="No chapter"):
        release(tmp_path / "out", ["ch99_nothing"])


def test_the_release_note_tells_older_from_unknown_releases(tmp_path):
    changelog = tmp_path / "CHANGELOG.md"
    changelog.write_text("## ch01_tokens aaaaaaaaaaaa (2020-01-01)\n- Re-grade: no\n")
    current, older, unknown = ("sha256:" + c * 64 for c in "bac")
    assert release_note(current, current, changelog) is None
    assert release_note(None, current, changelog) is None, "notebooks from before versions were recorded"
    assert "an older release" in release_note(older, current, changelog)
    assert "does not list" in release_note(unknown, current, changelog)
    assert short(older) in release_note(older, current, changelog)
