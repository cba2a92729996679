"""Crash safety and bad input (issue 20, issue 23 items 7-8): one-line errors from every tool,
the training state committed last, umask-respecting files, temp leftovers removed, --check_data,
the teacher manifest. docs/reliability.md points at these tests."""
import errno
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from litemono import checkpoint as ckpt
from litemono import engine, io
from litemono.data import synthetic
from litemono.data.teacher_store import MANIFEST_NAME, teacher_path
from litemono.errors import DataError, UserError, cli, one_line

from test_train import TinyScene, tiny_config, use_tiny_scene

ROOT = Path(__file__).resolve().parent.parent
TINY_SCENE = dict(drives=1, frames_per_drive=6, height=32, width=96, seed=0, workers=1)


def load_script(name):
    path = ROOT / (f"{name}.py" if (ROOT / f"{name}.py").is_file() else f"scripts/{name}.py")
    spec = importlib.util.spec_from_file_location(f"_{name}_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_cli(capsys, name, argv):
    """Run ``<name>.main(argv)``; return (exit code, stderr lines)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        load_script(name).main(argv)
    return info.value.code, capsys.readouterr().err.strip().splitlines()


def assert_one_line(code, err, tool, *fragments):
    """Exit status 2 and one error line (a progress bar's lines may precede it), no traceback."""
    assert code == 2, err
    err = [line for line in err if line.strip() and not line.startswith(("epoch ", "check_data"))]
    assert len(err) == 1, err
    assert err[0].startswith(f"{tool}: error: "), err
    for fragment in fragments:
        assert str(fragment) in err[0], (fragment, err[0])


@pytest.fixture
def scene(tmp_path):
    """A fresh 1-drive synthetic scene (32x96) with its own split folder."""
    return synthetic.make_synthetic_kitti(tmp_path / "scene", **TINY_SCENE)


def train_argv(scene, log_dir, *extra):
    return ["--data_path", str(scene.root), "--split", str(scene.split_dir), "--height", "32",
            "--width", "96", "--batch_size", "1", "--num_workers", "0", "--model",
            "lite-mono-tiny", "--weights_init", "scratch", "--num_steps", "1", "--no_cuda",
            "--log_dir", str(log_dir), "--model_name", "r", *extra]


def first_line(scene, part="train"):
    return (scene.split_dir / f"{part}_files.txt").read_text().split("\n")[0]


def frame_file(scene, line, offset=0):
    folder, frame, side = line.split()
    return Path(scene.root) / folder / f"image_0{2 if side == 'l' else 3}" / "data" / \
        f"{int(frame) + offset:010d}.jpg"


# ----------------------------------------------------------------------------- A: the mechanism

def test_cli_wrapper_one_line_debug_and_bugs(capsys, monkeypatch):
    @cli("tool.py")
    def main(argv=None):
        if argv == ["user"]:
            raise UserError("what went wrong", "--flag x", "do this")
        if argv == ["disk"]:
            raise OSError(errno.ENOSPC, "No space left on device", "/some/file")
        raise KeyError("a genuine bug")

    with pytest.raises(SystemExit) as info:
        main(["user"])
    assert info.value.code == 2
    assert capsys.readouterr().err == "tool.py: error: what went wrong, --flag x, do this\n"
    with pytest.raises(SystemExit):
        main(["disk"])
    assert capsys.readouterr().err.strip() == (
        "tool.py: error: no space left on device, /some/file, free some space or write elsewhere")
    with pytest.raises(KeyError):  # bugs keep their traceback
        main(["bug"])
    with pytest.raises(UserError):  # --debug (removed from argv) shows the traceback
        main(["user", "--debug"])
    monkeypatch.setenv("LITEMONO_DEBUG", "1")
    with pytest.raises(UserError):
        main(["user"])


def test_worker_traceback_collapses_to_the_original_message():
    wrapped = DataError("Caught DataError in DataLoader worker process 0.\nOriginal Traceback "
                        "(most recent call last):\n  File \"x.py\", line 1\nlitemono.errors."
                        "DataError: cannot decode image file /a/b.jpg, split line 3")
    assert one_line(wrapped) == "cannot decode image file /a/b.jpg, split line 3"


@pytest.mark.parametrize("tool", ["train", "precompute_teacher", "evaluate_depth",
                                  "export_gt_depth", "predict", "export_onnx", "run_ablation",
                                  "make_synthetic_kitti", "download_splits", "evaluate_pose"])
def test_every_cli_goes_through_the_wrapper(tool):
    main = load_script(tool).main
    assert getattr(main, "__wrapped__", None) is not None, f"{tool}.main is not @cli-wrapped"


# ----------------------------------------------------------------------------- A: train.py cases

def test_train_corrupt_frame_names_file_and_split_line(scene, tmp_path, capsys):
    line = first_line(scene)
    (scene.split_dir / "train_files.txt").write_text(line + "\n")  # the first step reads it
    bad = frame_file(scene, line)
    bad.write_bytes(bad.read_bytes()[:100])  # a truncated JPEG
    code, err = run_cli(capsys, "train", train_argv(scene, tmp_path / "log"))
    assert_one_line(code, err, "train.py", bad, "train_files.txt line 1", "--check_data")


def test_train_missing_neighbour_frame(scene, tmp_path, capsys):
    line = first_line(scene)
    frame_file(scene, line, offset=1).unlink()
    code, err = run_cli(capsys, "train", train_argv(scene, tmp_path / "log"))
    assert_one_line(code, err, "train.py", "missing", frame_file(scene, line, offset=1))


def test_train_malformed_split_line(scene, tmp_path, capsys):
    path = scene.split_dir / "train_files.txt"
    path.write_text(path.read_text().replace(" l\n", " x\n", 1))
    code, err = run_cli(capsys, "train", train_argv(scene, tmp_path / "log"))
    assert_one_line(code, err, "train.py", "train_files.txt line", "'l' or 'r'")


def test_train_empty_train_split_is_named(scene, tmp_path, capsys):
    (scene.split_dir / "train_files.txt").write_text("")
    code, err = run_cli(capsys, "train", train_argv(scene, tmp_path / "log"))
    assert_one_line(code, err, "train.py", "train list has no lines", "train_files.txt")
    assert "--batch_size" not in err[0]


def test_train_read_only_log_folder(scene, tmp_path, capsys, monkeypatch):
    log = tmp_path / "log"
    log.mkdir()
    log.chmod(0o555)
    if os.geteuid() == 0:  # root ignores the mode: refuse the folder's creations as the OS would
        real_mkdir = os.mkdir

        def refused(path, *args, **kwargs):
            if str(path).startswith(str(log)):
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return real_mkdir(path, *args, **kwargs)

        monkeypatch.setattr(os, "mkdir", refused)
    try:
        code, err = run_cli(capsys, "train", train_argv(scene, log))
    finally:
        log.chmod(0o755)
    assert_one_line(code, err, "train.py", "permission denied", log, "permissions")


def test_train_full_disk_names_the_file(scene, tmp_path, capsys, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io.os, "fsync", full)
    code, err = run_cli(capsys, "train", train_argv(scene, tmp_path / "log"))
    assert_one_line(code, err, "train.py", "no space left on device", tmp_path / "log" / "r",
                    "free some space")


def test_train_truncated_checkpoint_and_other_variant(scene, tmp_path, capsys):
    log = tmp_path / "log"
    assert load_script("train").main(train_argv(scene, log)) == 0
    last = log / "r" / "checkpoints" / "last.pt"
    # weights of another variant through --load_weights_folder
    code, err = run_cli(capsys, "train", train_argv(scene, tmp_path / "other", "--model",
                                                    "lite-mono-small", "--load_weights_folder",
                                                    str(log / "r" / "models" / "weights_0")))
    assert_one_line(code, err, "train.py", "weights_0/encoder.pth", "lite-mono-tiny")
    last.write_bytes(last.read_bytes()[:1000])  # truncated: torch's PytorchStreamReader
    code, err = run_cli(capsys, "train", train_argv(scene, log, "--resume", "auto"))
    assert_one_line(code, err, "train.py", "--resume", last, "truncated")


def write_teacher(scene, root, shape=(32, 96)):
    load_script("precompute_teacher").main([
        "--teacher", "synthetic", "--data_path", str(scene.root), "--split", str(scene.split_dir),
        "--height", str(shape[0]), "--width", str(shape[1]), "--teacher_dir", str(root),
        "--num_workers", "0", "--no_progress"])


def distill_argv(scene, tmp_path, teacher):
    return train_argv(scene, tmp_path / "log", "--teacher_dir", str(teacher), "--distill_weight",
                      "0.1")


def test_train_teacher_maps_wrong_shape_missing_truncated(scene, tmp_path, capsys):
    teacher = tmp_path / "teacher"
    write_teacher(scene, teacher)
    line = first_line(scene).split()
    mine = teacher_path(teacher, line[0], int(line[1]), line[2])
    # a manifest of another size
    other = tmp_path / "teacher64"
    write_teacher(scene, other, (64, 96))
    code, err = run_cli(capsys, "train", distill_argv(scene, tmp_path, other))
    assert_one_line(code, err, "train.py", "64x96", "precompute_teacher.py")
    # a map of the wrong shape, found by --check_data together with a truncated one
    io.save_npz(mine, disp=np.zeros((16, 48), np.float16))
    second = sorted(p for p in teacher.rglob("*.npz") if p != mine)[0]
    second.write_bytes(second.read_bytes()[:50])
    code, err = run_cli(capsys, "train", distill_argv(scene, tmp_path, teacher) +
                        ["--check_data_only"])
    assert_one_line(code, err, "train.py", "2 bad file(s)")
    # a truncated map found mid-training names the file (BadZipFile otherwise)
    with pytest.raises(DataError, match=f"{second}.*delete it"):
        from litemono.data.teacher_store import read_teacher_file
        read_teacher_file(second)
    # a missing map
    mine.unlink()
    code, err = run_cli(capsys, "train", distill_argv(scene, tmp_path, teacher))
    assert_one_line(code, err, "train.py", "lacks 1", "precompute_teacher.py")


# ----------------------------------------------------------------------------- A: other tools

def test_evaluate_depth_missing_disps_and_truncated_gt(tmp_path, capsys):
    gt = tmp_path / "gt.npz"
    from litemono.evaluation import save_gt_depths
    save_gt_depths(gt, [np.ones((4, 6), np.float32)])
    code, err = run_cli(capsys, "evaluate_depth", ["--ext_disp_to_eval", str(tmp_path / "no.npy"),
                                                   "--gt_path", str(gt)])
    assert_one_line(code, err, "evaluate_depth.py", "--ext_disp_to_eval", tmp_path / "no.npy")
    gt.write_bytes(gt.read_bytes()[:40])
    io.save_npy(tmp_path / "d.npy", np.ones((1, 4, 6), np.float32))
    code, err = run_cli(capsys, "evaluate_depth", ["--ext_disp_to_eval", str(tmp_path / "d.npy"),
                                                   "--gt_path", str(gt)])
    assert_one_line(code, err, "evaluate_depth.py", "--gt_path", gt)


def test_export_gt_depth_malformed_and_empty_split(tmp_path, capsys):
    split = tmp_path / "test_files.txt"
    split.write_text("2011_09_26/2011_09_26_drive_0001_sync notanumber l\n")
    argv = ["--data_path", str(tmp_path), "--split", "eigen", "--split_file", str(split),
            "--output", str(tmp_path / "gt.npz")]
    code, err = run_cli(capsys, "export_gt_depth", argv)
    assert_one_line(code, err, "export_gt_depth.py", split, "line 1")
    split.write_text("")
    code, err = run_cli(capsys, "export_gt_depth", argv)
    assert_one_line(code, err, "export_gt_depth.py", "no lines", split)
    assert not (tmp_path / "gt.npz").exists()
