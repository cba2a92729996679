"""Split files: verified copy, missing and tampered files, line parsing."""
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, SHARED
from litemono.data import splits

SHARED_SPLITS = SHARED / "splits"
needs_shared = pytest.mark.skipif(not SHARED_SPLITS.is_dir(), reason="../shared/splits absent")


def test_checksums_match_the_published_list():
    if not (SHARED_SPLITS / "SHA256SUMS").is_file():
        pytest.skip("../shared/splits/SHA256SUMS absent")
    published = {}
    for line in (SHARED_SPLITS / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        published[name.removeprefix("./")] = digest
    assert published == splits.SPLIT_SHA256


@needs_shared
def test_copy_verify_and_rerun(tmp_path):
    dest = tmp_path / "splits"
    out = subprocess.run([sys.executable, str(ROOT / "scripts/download_splits.py"), "--dest",
                          str(dest), "--from", str(SHARED_SPLITS), "--split", "eigen"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert (dest / "eigen/test_files.txt").read_bytes() == (SHARED_SPLITS / "eigen/test_files.txt").read_bytes()
    assert splits.fetch_splits(dest, SHARED_SPLITS, ["eigen/test_files.txt"]) == []  # kept
    assert splits.verify_splits(dest, ["eigen/test_files.txt"]) == ["eigen/test_files.txt"]
    lines = splits.read_split_lines(splits.split_file("eigen", dest, "test"))
    assert len(lines) == 697
    assert splits.parse_split_line(lines[0]) == ("2011_09_26/2011_09_26_drive_0002_sync", 69, "l")


@needs_shared
def test_missing_and_tampered(tmp_path):
    dest = tmp_path / "splits"
    with pytest.raises(splits.SplitError, match="eigen/test_files.txt is missing.*download_splits"):
        splits.verify_splits(dest, ["eigen/test_files.txt"])
    with pytest.raises(splits.SplitError, match="no folder .*eigen_zhou.*download_splits"):
        splits.split_file("eigen_zhou", dest, "train")
    (dest / "eigen").mkdir(parents=True)
    shutil.copy(SHARED_SPLITS / "eigen/test_files.txt", dest / "eigen/test_files.txt")
    with open(dest / "eigen/test_files.txt", "a") as handle:
        handle.write("2011_09_26/2011_09_26_drive_0002_sync 0000000001 l\n")
    with pytest.raises(splits.SplitError, match="does not match the published eigen/test_files.txt"):
        splits.split_file("eigen", dest, "test")
    out = subprocess.run([sys.executable, str(ROOT / "scripts/download_splits.py"), "--dest",
                          str(dest), "--check", "--split", "eigen"], capture_output=True, text=True)
    assert out.returncode == 2 and "does not match" in out.stderr
    assert out.stderr.startswith("download_splits.py: error: ")
    # a tampered source is never written
    bad_source = tmp_path / "bad"
    (bad_source / "eigen").mkdir(parents=True)
    (bad_source / "eigen/test_files.txt").write_text("nope\n")
    with pytest.raises(splits.SplitError, match="refusing to write"):
        splits.fetch_splits(tmp_path / "other", bad_source, ["eigen/test_files.txt"])
    assert not (tmp_path / "other/eigen/test_files.txt").exists()


def test_custom_split_folder_is_not_checksummed(tmp_path):
    (tmp_path / "train_files.txt").write_text("a/b_sync 3 l\n\n9 0 r\n")
    path = splits.split_file(str(tmp_path), tmp_path / "unused", "train")
    assert [splits.parse_split_line(l) for l in splits.read_split_lines(path)] == [
        ("a/b_sync", 3, "l"), ("9", 0, "r")]


@pytest.mark.parametrize("line", ["a", "a 1 x", "a b l", "a 1 l extra"])
def test_bad_lines(line):
    with pytest.raises(ValueError):
        splits.parse_split_line(line)
