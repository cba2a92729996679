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
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from litemono import checkpoint as ckpt
from litemono import engine, io, run
from litemono.data import synthetic
from litemono.data.teacher_store import MANIFEST_NAME, teacher_path
from litemono.errors import CheckpointError, DataError, UserError, cli, one_line

from conftest import ROOT
from test_train import NaNAtStep, tiny_config, use_tiny_scene
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


def test_one_line_drops_terminal_colour_codes(capsys):
    text = "load failed, \x1b[1mdo this only if you trust it\x1b[0m.\n\tmore \x1b[31;1mred\x1b[m"
    assert one_line(RuntimeError(text)) == "load failed, do this only if you trust it. more red"

    @cli("tool.py")
    def main(argv=None):
        raise UserError(text)

    with pytest.raises(SystemExit):
        main([])
    assert "\x1b" not in capsys.readouterr().err


class Opaque:
    """A Python object in a .pth: torch's weights-only loader refuses to rebuild it."""


def test_a_torch_file_holding_python_objects_is_not_called_truncated(tmp_path):
    from litemono.models.build import load_depth_network

    folder = tmp_path / "weights_0"
    folder.mkdir()
    torch.save({"w": torch.zeros(2), "note": Opaque()}, folder / "encoder.pth")
    torch.save({"w": torch.zeros(2)}, folder / "depth.pth")
    for load, flag in ((lambda: load_depth_network(folder), ""),
                       (lambda: ckpt.load_training_state(folder / "encoder.pth"), "--resume: ")):
        with pytest.raises(CheckpointError) as info:  # one error class for every torch file
            load()
        message = str(info.value)
        assert message.startswith(f"{flag}{folder / 'encoder.pth'} holds pickled Python objects")
        assert "Opaque" in message and "truncated" not in message and "\n" not in message


def test_torch_text_in_a_cut_file_error_is_a_whole_sentence(tmp_path):
    path = tmp_path / "last.pt"
    torch.save({"w": torch.zeros(1000)}, path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(RuntimeError) as raw:
        torch.load(path, weights_only=True)
    first = " ".join(str(raw.value).split()).split(". ")[0]  # torch's first sentence
    for load in (lambda: ckpt.load_training_state(path), lambda: io.read_torch_file(path)):
        with pytest.raises(UserError) as info:
            load()
        assert f"({first}), the file is truncated or not a torch file" in str(info.value)


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


def malformed_third_line(scene):
    """train_files.txt with a blank line 2 (an editor counts it) and the side 'x' on line 3."""
    path = scene.split_dir / "train_files.txt"
    good = first_line(scene)
    path.write_text(f"{good}\n\n{good.rsplit(' ', 1)[0]} x\n")
    return path


def test_train_malformed_split_line(scene, tmp_path, capsys):
    path = malformed_third_line(scene)
    code, err = run_cli(capsys, "train", train_argv(scene, tmp_path / "log"))
    assert_one_line(code, err, "train.py", f"{path}:3, fix that line", "'l' or 'r'")


@pytest.mark.parametrize("tool", ["precompute_teacher", "export_gt_depth"])
def test_other_tools_name_a_malformed_split_line_as_train_does(scene, tmp_path, capsys, tool):
    path = malformed_third_line(scene)
    argv = {"precompute_teacher": teacher_argv(scene, tmp_path / "teacher"),
            "export_gt_depth": ["--data_path", str(scene.root), "--split", "eigen",
                                "--split_file", str(path), "--output", str(tmp_path / "gt.npz")]}
    code, err = run_cli(capsys, tool, argv[tool])
    assert_one_line(code, err, f"{tool}.py", f"{path}:3, fix that line", "'l' or 'r'")


def test_precompute_names_a_split_line_without_a_side(scene, tmp_path, capsys):
    path = scene.split_dir / "val_files.txt"
    path.write_text(first_line(scene, "val").rsplit(" ", 1)[0] + "\n")
    code, err = run_cli(capsys, "precompute_teacher", teacher_argv(scene, tmp_path / "teacher"))
    assert_one_line(code, err, "precompute_teacher.py", "no side", "the teacher maps",
                    f"{path}:1")


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


def test_train_full_disk_while_saving_weights_names_the_weights_folder(scene, tmp_path, capsys,
                                                                       monkeypatch):
    real_fsync = io.os.fsync

    def full_in_weights(fd):  # only the weight files' disk is full
        if f"{io.TMP_PREFIX}weights_" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(io.os, "fsync", full_in_weights)
    code, err = run_cli(capsys, "train", train_argv(scene, tmp_path / "log"))
    weights = tmp_path / "log" / "r" / "models" / "weights_0"
    assert_one_line(code, err, "train.py", "no space left on device", weights / "encoder.pth",
                    "free some space")
    assert io.TMP_PREFIX not in err[-1]
    assert not [p for p in weights.parent.iterdir() if p.name.startswith(io.TMP_PREFIX)]


def _offline(monkeypatch):
    """torchvision cannot download (a compute node without internet, nothing in the cache)."""
    from torchvision.models._api import WeightsEnum

    def offline(self, *args, **kwargs):
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(WeightsEnum, "get_state_dict", offline)


def test_train_offline_pose_weights_is_one_line_naming_the_cache_file(scene, tmp_path, capsys,
                                                                      monkeypatch):
    _offline(monkeypatch)
    code, err = run_cli(capsys, "train", train_argv(scene, tmp_path / "log", "--weights_init",
                                                    "pretrained"))
    cached = Path(torch.hub.get_dir()) / "checkpoints" / "resnet18-f37072fd.pth"
    assert_one_line(code, err, "train.py", "could not get the pose ResNet's ImageNet weights",
                    f"torchvision reads them from {cached}",
                    "download https://download.pytorch.org/models/resnet18-f37072fd.pth",
                    "--weights_init scratch")


@pytest.mark.parametrize("flags, message", [
    (["--mypretrain_required"], "but --mypretrain is not set"),
    (["--mypretrain", "pretrained/absent.pth"], "--mypretrain: no such file pretrained/absent.pth"),
    (["--load_weights_folder", "absent_folder"], "--load_weights_folder absent_folder: no such")])
def test_train_checks_initial_weights_before_building_anything(scene, tmp_path, capsys,
                                                              monkeypatch, flags, message):
    _offline(monkeypatch)  # building the networks would fail: the refusal must come first
    code, err = run_cli(capsys, "train", train_argv(scene, tmp_path / "log", "--weights_init",
                                                    "pretrained", *flags))
    assert_one_line(code, err, "train.py", message)


def test_a_run_that_will_write_many_weight_folders_says_so_at_start(tmp_path, monkeypatch,
                                                                    capsys):
    # 300 steps over 9 samples in batches of 4: 2 steps per epoch, 150 epochs, 150 folders
    cfg = tiny_config(tmp_path, num_epochs=1000, num_steps=300, batch_size=4)
    assert engine.weights_folders_to_write(cfg, 0, 0, steps_per_epoch=2) == 150
    assert engine.weights_folders_to_write(cfg.replace(save_frequency=10), 0, 0, 2) == 15
    assert engine.weights_folders_to_write(cfg, 149, 298, 2) == 1  # resumed near the end
    assert engine.weights_folders_to_write(cfg.replace(num_steps=None), 998, 0, 2) == 2
    use_tiny_scene(monkeypatch, train_size=1, val_size=1)
    monkeypatch.setattr(io.os, "fsync", lambda fd: None)
    monkeypatch.setattr(engine, "MANY_WEIGHT_FOLDERS", 2)
    engine.train(tiny_config(tmp_path, "many", batch_size=1, num_epochs=3))
    out = capsys.readouterr().out
    assert "note: this run will write 3 weights folders under" in out
    assert "--keep_weights N keeps the newest N" in out
    engine.train(tiny_config(tmp_path, "kept", batch_size=1, num_epochs=3, keep_weights=1))
    assert "weights folders" not in capsys.readouterr().out


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


def teacher_argv(scene, root, shape=(32, 96), data_path=None):
    return ["--teacher", "synthetic", "--data_path", str(data_path or scene.root), "--split",
            str(scene.split_dir), "--height", str(shape[0]), "--width", str(shape[1]),
            "--teacher_dir", str(root), "--num_workers", "0", "--no_progress"]


def write_teacher(scene, root, shape=(32, 96), data_path=None):
    return load_script("precompute_teacher").main(teacher_argv(scene, root, shape, data_path))


def distill_argv(scene, tmp_path, teacher):
    return train_argv(scene, tmp_path / "log", "--teacher_dir", str(teacher), "--distill_weight",
                      "0.1")


def test_a_teacher_map_of_the_wrong_shape_is_named_by_its_file(scene, tmp_path):
    from litemono.config import from_dict
    from litemono.data import build_dataset

    teacher = tmp_path / "teacher"
    write_teacher(scene, teacher)
    line = first_line(scene).split()
    mine = teacher_path(teacher, line[0], int(line[1]), line[2])
    io.save_npz(mine, disp=np.zeros((16, 48), np.float16))
    cfg = from_dict({"data_path": str(scene.root), "split": str(scene.split_dir), "height": 32,
                     "width": 96, "teacher_dir": str(teacher)})
    dataset = build_dataset(cfg, "train", False)
    with pytest.raises(DataError) as info:  # found mid-training, as a DataLoader worker would
        dataset[0]
    message = str(info.value)
    assert f"teacher map {mine} has shape (16, 48)" in message
    assert "train_files.txt line 1" in message  # the split line is kept after the file


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


def test_evaluate_depth_missing_gt_says_what_to_do_once(tmp_path, capsys):
    io.save_npy(tmp_path / "d.npy", np.ones((1, 4, 6), np.float32))
    missing = tmp_path / "none.npz"
    code, err = run_cli(capsys, "evaluate_depth", ["--ext_disp_to_eval", str(tmp_path / "d.npy"),
                                                   "--gt_path", str(missing)])
    assert_one_line(code, err, "evaluate_depth.py", "no ground-truth file",
                    f"--gt_path {missing}", "export_gt_depth.py")
    assert err[-1].count("export_gt_depth.py") == 1 and err[-1].count(str(missing)) == 1


@pytest.fixture
def predict_weights(tmp_path):
    """A lite-mono-tiny weights folder (random weights) for scripts/predict.py."""
    from litemono.config import ModelConfig
    from litemono.models.build import build_depth_network, depth_state_dicts

    net = build_depth_network(ModelConfig(model="lite-mono-tiny", height=32, width=96))
    folder = tmp_path / "weights"
    folder.mkdir()
    for name, state in depth_state_dicts(net, 32, 96).items():
        io.save_torch(state, folder / f"{name}.pth")
    return folder


def predict_argv(weights):
    return ["--load_weights_folder", str(weights), "--device", "cpu", "--image_path"]


def test_predict_empty_folder_is_named(predict_weights, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, err = run_cli(capsys, "predict", predict_argv(predict_weights) + [str(empty)])
    assert_one_line(code, err, "predict.py", "no images", f"--image_path {empty}",
                    "put images there")


def test_predict_truncated_image_is_named(predict_weights, tmp_path, capsys):
    from PIL import Image

    argv = predict_argv(predict_weights)
    cut = tmp_path / "photo.jpg"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(cut, quality=95)
    cut.write_bytes(cut.read_bytes()[:-400])
    for source in (cut, tmp_path):  # the file itself, and the folder holding it
        code, err = run_cli(capsys, "predict", argv + [str(source)])
        assert_one_line(code, err, "predict.py", "truncated", f", {cut}, replace or remove")


def test_download_splits_offline_is_one_line(tmp_path, capsys, monkeypatch):
    import urllib.error
    import urllib.request

    def offline(*args, **kwargs):
        raise urllib.error.URLError(OSError(errno.ENETUNREACH, "Network is unreachable"))

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    code, err = run_cli(capsys, "download_splits", ["--dest", str(tmp_path / "splits"),
                                                    "--split", "eigen"])
    assert_one_line(code, err, "download_splits.py", "could not download eigen/test_files.txt",
                    "Network is unreachable", "--from DIR")
    assert not (tmp_path / "splits").exists()


def test_export_gt_depth_malformed_and_empty_split(tmp_path, capsys):
    split = tmp_path / "test_files.txt"
    split.write_text("2011_09_26/2011_09_26_drive_0001_sync notanumber l\n")
    argv = ["--data_path", str(tmp_path), "--split", "eigen", "--split_file", str(split),
            "--output", str(tmp_path / "gt.npz")]
    code, err = run_cli(capsys, "export_gt_depth", argv)
    assert_one_line(code, err, "export_gt_depth.py", f"{split}:1", "frame index")
    split.write_text("")
    code, err = run_cli(capsys, "export_gt_depth", argv)
    assert_one_line(code, err, "export_gt_depth.py", "no lines", split)
    assert not (tmp_path / "gt.npz").exists()


# ----------------------------------------------------------------------------- B: save order

class _Killed(BaseException):
    """Stands for a kill: nothing in the code under test catches a BaseException subclass
    except cleanup handlers (which a SIGKILL skips; the subprocess test below covers that)."""


def _prepared_run(tmp_path, monkeypatch):
    """A run stopped by --num_steps mid-epoch 0 (its weights_0 holds step 1): the next save
    replaces weights_0, the one after writes weights_1."""
    use_tiny_scene(monkeypatch, train_size=2, val_size=1)
    monkeypatch.setattr(io.os, "fsync", lambda fd: None)  # speed: the order is what is tested
    engine.train(_resume_cfg(tmp_path, "base").replace(num_steps=1, resume=None))
    return tmp_path / "base"


def _resume_cfg(log_dir, name, keep_weights=None):
    # the pose network shares the depth encoder: small files, fast saves
    return tiny_config(log_dir, name, batch_size=1, num_epochs=2, resume="auto",
                       pose_model_type="shared", keep_weights=keep_weights)


def _write_ops(monkeypatch, kill_at=None):
    """Count (and optionally kill at) every write of a save: files, renames, deletions."""
    ops = []
    real = {"save_torch": io.save_torch, "rename": Path.rename, "rmtree": shutil.rmtree}

    def op(name, *args):
        ops.append(f"{name} {Path(str(args[-1])).name if name != 'save_torch' else args[1]}")
        if kill_at is not None and len(ops) - 1 == kill_at:
            raise _Killed(ops[-1])

    def save_torch(obj, path):
        op("save_torch", obj, Path(path).name)
        real["save_torch"](obj, path)

    def rename(self, target):
        op("rename", self, target)
        return real["rename"](self, target)

    def rmtree(path, *args, **kwargs):
        try:
            op("rmtree", path)
        except _Killed:  # killed mid-deletion: one file is already gone
            first = next((f for f in sorted(Path(path).rglob("*")) if f.is_file()), None)
            if first is not None:
                first.unlink()
            raise
        return real["rmtree"](path, *args, **kwargs)

    monkeypatch.setattr(io, "save_torch", save_torch)
    monkeypatch.setattr(Path, "rename", rename)
    monkeypatch.setattr(ckpt.shutil, "rmtree", rmtree)
    return ops


def _run_files(run):
    """{relative path: tensors} of checkpoints/ and models/ (every file must be loadable)."""
    out = {}
    for path in sorted(list((run / "checkpoints").rglob("*")) + list((run / "models").rglob("*"))):
        rel = str(path.relative_to(run))
        assert not path.name.startswith(io.TMP_PREFIX), f"leftover {rel}"
        if path.suffix in (".pt", ".pth"):
            data = torch.load(path, weights_only=True)
            if path.suffix == ".pt":
                data = {"step": data["step"], "epoch": data["epoch"], **{
                    f"{net}.{k}": v for net in ("depth", "pose")
                    for k, v in data["models"][net].items()}}
            out[rel] = data
    return out


def _assert_same_files(got, want):
    assert sorted(got) == sorted(want)
    for rel, data in want.items():
        for key, value in data.items():
            if torch.is_tensor(value):
                assert torch.equal(got[rel][key], value), (rel, key)
            elif key in ("step", "epoch", "height", "width"):
                assert got[rel][key] == value, (rel, key)


@pytest.mark.slow
@pytest.mark.parametrize("keep", [None, 1], ids=["keep_all", "keep_1"])
def test_kill_at_every_write_point_of_save_then_resume_matches(tmp_path, monkeypatch, keep):
    """A kill at every file write, rename and deletion of the saves (with ``--keep_weights 1``
    also of the pruning: after the last commit, and mid-deletion of the old folder), then the
    same command again: the run folder ends as an uninterrupted run's."""
    base = _prepared_run(tmp_path, monkeypatch)
    shutil.copytree(base, tmp_path / "reference")
    with monkeypatch.context() as patch:
        ops = _write_ops(patch)
        engine.train(_resume_cfg(tmp_path, "reference", keep))
    want = _run_files(tmp_path / "reference")
    kept = {"models/weights_1/encoder.pth"} | (set() if keep else {"models/weights_0/encoder.pth"})
    assert {f for f in want if f.startswith("models/")} >= kept
    assert ("models/weights_0/encoder.pth" in want) == (keep is None)
    assert {"checkpoints/last.pt", "checkpoints/best.pt"} <= set(want)
    assert any(o.startswith("rename") for o in ops) and len(ops) >= 10, ops
    kill_points = range(len(ops))
    if keep:  # the last save: before its commit, after it (before pruning), mid-deletion
        assert ops[-3] == "save_torch last.pt" and ops[-2] == "rename weights_0", ops
        assert ops[-1].startswith("rmtree .tmp-pruned-weights_0."), ops
        kill_points = range(len(ops) - 3, len(ops))
    for kill_at in kill_points:
        run = tmp_path / f"killed{kill_at}"
        shutil.copytree(base, run)
        with monkeypatch.context() as patch:
            _write_ops(patch, kill_at)
            with pytest.raises(_Killed):
                engine.train(_resume_cfg(tmp_path, run.name, keep))
        state = ckpt.load_training_state(run / "checkpoints" / "last.pt")
        # what the state says is done is on disk (with --keep_weights 1: the newest finished
        # epoch's folder or a newer one), and no weights folder is ever partial
        folders = {int(f.name.split("_")[1]): f for f in ckpt.weights_folders(run / "models")}
        for folder in folders.values():
            assert sorted(p.name for p in folder.iterdir()) == [
                "depth.pth", "encoder.pth", "pose.pth"], ops[kill_at]  # shared pose: no encoder
        finished = list(range(state["epoch"]))
        if keep is None:
            assert set(finished) <= set(folders), (ops[kill_at], sorted(folders))
        elif finished:
            assert folders and max(folders) >= finished[-1], (ops[kill_at], sorted(folders))
        engine.train(_resume_cfg(tmp_path, run.name, keep))  # --resume auto repairs / continues
        _assert_same_files(_run_files(run), want)


KILL_BETWEEN_RENAMES = """
import os, signal, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from test_train import TinyScene, tiny_config
from litemono import engine
engine.build_dataset = lambda cfg, part, is_train, **kw: TinyScene(
    2 if part == "train" else 1, cfg.model.height, cfg.model.width)
real_rename, calls = Path.rename, []
def rename(self, target):  # SIGKILL after the old weights_0 moved away, before the new one lands
    calls.append(target)
    if self.name.startswith(".tmp-weights_0"):
        os.kill(os.getpid(), signal.SIGKILL)
    return real_rename(self, target)
Path.rename = rename
import torch
torch.set_num_threads(1)
engine.train(tiny_config(sys.argv[1], "run", batch_size=1, num_epochs=2, resume="auto",
                         pose_model_type="shared"))
"""


@pytest.mark.slow
def test_sigkill_mid_replacement_leaves_leftovers_that_the_rerun_removes(tmp_path, monkeypatch):
    base = _prepared_run(tmp_path, monkeypatch)
    shutil.copytree(base, tmp_path / "reference")
    engine.train(_resume_cfg(tmp_path, "reference"))
    shutil.copytree(base, tmp_path / "run")
    done = subprocess.run([sys.executable, "-c", KILL_BETWEEN_RENAMES, str(tmp_path),
                           str(ROOT / "tests")], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == -signal.SIGKILL, done.stderr
    models = tmp_path / "run" / "models"
    left = sorted(".".join(p.name.split(".")[:2]) for p in models.iterdir()
                  if p.name.startswith(io.TMP_PREFIX))
    assert left == [".tmp-old", ".tmp-weights_0"], left  # a real kill skips every cleanup
    assert not (models / "weights_0").exists()  # gone, never stale ...
    state = ckpt.load_training_state(tmp_path / "run" / "checkpoints" / "last.pt")
    assert state["epoch"] == 0  # ... and the state does not claim epoch 0 is done
    engine.train(_resume_cfg(tmp_path, "run"))
    _assert_same_files(_run_files(tmp_path / "run"), _run_files(tmp_path / "reference"))


KILL_WHILE_PRUNING = """
import os, shutil, signal, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from test_train import TinyScene, tiny_config
from litemono import engine
engine.build_dataset = lambda cfg, part, is_train, **kw: TinyScene(
    2 if part == "train" else 1, cfg.model.height, cfg.model.width)
real_rename, real_rmtree = Path.rename, shutil.rmtree
def rename(self, target):  # after epoch 1's commit, as the pruning starts
    if sys.argv[3] == "after_commit" and Path(target).parent.name.startswith(".tmp-pruned-"):
        os.kill(os.getpid(), signal.SIGKILL)
    return real_rename(self, target)
def rmtree(path, *args, **kwargs):  # part-way through deleting the old folder
    if sys.argv[3] == "mid_delete" and Path(path).name.startswith(".tmp-pruned-weights_0"):
        next(p for p in sorted(Path(path).rglob("*")) if p.is_file()).unlink()
        os.kill(os.getpid(), signal.SIGKILL)
    return real_rmtree(path, *args, **kwargs)
Path.rename, shutil.rmtree = rename, rmtree
import torch
torch.set_num_threads(1)
engine.train(tiny_config(sys.argv[1], "run", batch_size=1, num_epochs=2, resume="auto",
                         pose_model_type="shared", keep_weights=1))
"""


@pytest.mark.slow
@pytest.mark.parametrize("when", ["after_commit", "mid_delete"])
def test_sigkill_while_pruning_then_the_same_command_finishes_the_pruning(tmp_path, monkeypatch,
                                                                         when):
    monkeypatch.setattr(io.os, "fsync", lambda fd: None)
    done = subprocess.run([sys.executable, "-c", KILL_WHILE_PRUNING, str(tmp_path),
                           str(ROOT / "tests"), when], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == -signal.SIGKILL, done.stderr
    run = tmp_path / "run"
    assert ckpt.load_training_state(run / "checkpoints" / "last.pt")["epoch"] == 2  # committed
    left = sorted(p.name.split(".")[1] if p.name.startswith(".") else p.name
                  for p in (run / "models").iterdir() if p.is_dir())
    # the kill leaves the pruning's own temporary folder (empty after_commit), never a partial
    # weights_0
    expected = ["tmp-pruned-weights_0", "weights_1"] + (["weights_0"] if when == "after_commit"
                                                        else [])
    assert left == sorted(expected), left
    use_tiny_scene(monkeypatch, train_size=2, val_size=1)
    result = engine.train(_resume_cfg(tmp_path, "run", keep_weights=1))  # the same command
    assert (result.epoch, result.step) == (2, 4)  # nothing left to train ...
    models = run / "models"  # ... but the pruning is redone, and nothing half-deleted remains
    assert sorted(p.name for p in models.iterdir() if p.is_dir()) == ["weights_1"]
    assert not [p for p in models.iterdir() if p.name.startswith(io.TMP_PREFIX)]


@pytest.mark.slow
def test_keep_weights_and_optimizer_files(tmp_path, monkeypatch):
    use_tiny_scene(monkeypatch, train_size=1, val_size=1)
    monkeypatch.setattr(io.os, "fsync", lambda fd: None)
    engine.train(tiny_config(tmp_path, "k", batch_size=1, num_epochs=3, keep_weights=2))
    models = tmp_path / "k" / "models"
    assert sorted(p.name for p in models.iterdir() if p.is_dir()) == ["weights_1", "weights_2"]
    assert sorted(p.name for p in (models / "weights_2").iterdir()) == [
        "depth.pth", "encoder.pth", "pose.pth", "pose_encoder.pth"]  # no adam*.pth by default
    engine.train(tiny_config(tmp_path, "u", batch_size=1, num_epochs=1,
                             save_optimizer_in_weights=True))
    assert {"adam.pth", "adam_pose.pth"} <= {
        p.name for p in (tmp_path / "u" / "models" / "weights_0").iterdir()}
    with pytest.raises(Exception, match="--keep_weights must be >= 1"):
        tiny_config(tmp_path, keep_weights=0)


# ----------------------------------------------------------------------------- C: umask

@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_written_files_and_folders_respect_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        with open(tmp_path / "plain.txt", "w"):
            pass
        (tmp_path / "plain_dir").mkdir()
        io.write_text(tmp_path / "atomic.txt", "x")
        ckpt.save_weights_folder(tmp_path / "weights_0", {"encoder": {"a": torch.zeros(1)}})
        ckpt.save_weights_folder(tmp_path / "weights_0", {"encoder": {"a": torch.ones(1)}})
    finally:
        os.umask(old)
    mode = lambda p: (tmp_path / p).stat().st_mode & 0o777  # noqa: E731
    assert mode("atomic.txt") == mode("plain.txt") == 0o666 & ~umask
    assert mode("weights_0") == mode("plain_dir") == 0o777 & ~umask
    assert mode("weights_0/encoder.pth") == 0o666 & ~umask


# ----------------------------------------------------------------------------- D: leftovers

def test_remove_leftovers_only_touches_its_own_naming(tmp_path):
    (tmp_path / ".tmp-last.pt.abc").write_bytes(b"x")
    (tmp_path / ".tmp-weights_3.def").mkdir()
    (tmp_path / ".tmp-other.npz.1").write_bytes(b"x")
    (tmp_path / "last.pt").write_bytes(b"keep")
    (tmp_path / "tmp-not-ours").write_bytes(b"keep")
    io.remove_leftovers(tmp_path, ["last.pt"])
    assert not (tmp_path / ".tmp-last.pt.abc").exists() and (tmp_path / ".tmp-other.npz.1").exists()
    io.remove_leftovers(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "tmp-not-ours"]


def test_precompute_and_gt_export_remove_their_leftovers(scene, tmp_path, capsys):
    teacher = tmp_path / "teacher"
    write_teacher(scene, teacher)
    line = first_line(scene).split()
    target = teacher_path(teacher, line[0], int(line[1]), line[2])
    stale = target.parent / f".tmp-{target.name}.killed"
    stale.write_bytes(b"half a map")
    (teacher / ".tmp-manifest.json.killed").write_bytes(b"{")
    write_teacher(scene, teacher)
    assert not stale.exists() and not (teacher / ".tmp-manifest.json.killed").exists()
    out = tmp_path / "gt" / "gt_depths.npz"
    out.parent.mkdir()
    (out.parent / ".tmp-gt_depths.npz.killed").write_bytes(b"x")
    load_script("export_gt_depth").main([
        "--data_path", str(scene.root), "--split", "eigen", "--split_file",
        str(scene.split_dir / "test_files.txt"), "--output", str(out)])
    assert sorted(p.name for p in out.parent.iterdir()) == ["gt_depths.npz"]


# ----------------------------------------------------------------------------- E: --check_data

def test_check_data_lists_every_bad_file_at_once(scene, tmp_path, capsys):
    lines = (scene.split_dir / "train_files.txt").read_text().split("\n")
    first, second = frame_file(scene, lines[0]), frame_file(scene, lines[-2] or lines[-3], 1)
    first.write_bytes(b"not a jpeg")
    second.write_bytes(second.read_bytes()[:200])
    code, err = run_cli(capsys, "train", train_argv(scene, tmp_path / "log", "--check_data_only",
                                                    "--num_workers", "2"))
    assert_one_line(code, err, "train.py", "2 bad file(s)")
    assert not (tmp_path / "log" / "r" / "checkpoints").exists()  # nothing trained


def test_check_data_prints_each_bad_file_with_its_line(scene, tmp_path, capsys):
    from litemono.config import from_dict
    from litemono.data import build_dataset
    from litemono.data.check import check_datasets

    lines = (scene.split_dir / "train_files.txt").read_text().split("\n")
    bad = [frame_file(scene, lines[0]), frame_file(scene, lines[1], -1)]
    for path in bad:
        path.write_bytes(b"garbage")
    cfg = from_dict({"data_path": str(scene.root), "split": str(scene.split_dir), "height": 32,
                     "width": 96})
    sets = [build_dataset(cfg, "train", True), build_dataset(cfg, "val", False)]
    printed = []
    with pytest.raises(DataError, match=r"2 bad file\(s\) of \d+"):
        check_datasets(sets, workers=2, progress=False, report=printed.append)
    assert sorted(line.split()[2] for line in printed) == sorted(str(p) for p in bad)
    assert all("train_files.txt line" in line for line in printed)
    for path in bad:  # repaired: the check passes and counts every frame once
        shutil.copy(frame_file(scene, lines[2]), path)
    assert check_datasets(sets, workers=2, progress=False, report=printed.append) > len(lines)


# ----------------------------------------------------------------------------- F: teacher manifest

def test_teacher_split_spellings_and_the_printed_command_works(scene, tmp_path, capsys,
                                                                monkeypatch):
    import shlex

    monkeypatch.chdir(scene.split_dir.parent)
    teacher = tmp_path / "teacher"
    write_teacher(scene, teacher)
    name = scene.split_dir.name
    for spelling in (f"./{name}", name + "/", str(scene.split_dir)):  # one split, three ways
        argv = train_argv(scene, tmp_path / "log", "--teacher_dir", str(teacher),
                          "--distill_weight", "0.1", "--check_data_only")
        argv[argv.index("--split") + 1] = spelling
        assert load_script("train").main(argv) == 0
    # another size: the printed command makes a folder the run accepts
    argv = train_argv(scene, tmp_path / "log", "--teacher_dir", str(teacher), "--distill_weight",
                      "0.1", "--height", "64", "--check_data_only")
    code, err = run_cli(capsys, "train", argv)
    assert_one_line(code, err, "train.py", "32x96")
    command = err[-1].split("with: ")[1].split(", then train with --teacher_dir ")
    words = shlex.split(command[0])
    assert words[:2] == ["python", "precompute_teacher.py"]
    load_script("precompute_teacher").main(words[2:] + ["--num_workers", "0", "--no_progress"])
    argv[argv.index("--teacher_dir") + 1] = command[1]
    assert load_script("train").main(argv) == 0


def test_precompute_rerun_accepts_any_spelling_of_the_data_path(scene, tmp_path, capsys,
                                                                monkeypatch):
    import json

    root = Path(scene.root).resolve()
    monkeypatch.chdir(root.parent)
    teacher = tmp_path / "teacher"
    write_teacher(scene, teacher, data_path=root.name)  # relative
    for spelling in (str(root), f"./{root.name}/"):  # the same folder: accepted, nothing to do
        assert write_teacher(scene, teacher, data_path=spelling)["computed"] == 0
    manifest = json.loads((teacher / MANIFEST_NAME).read_text())
    assert f"--data_path {root}" in manifest["teacher_args"]
    # a manifest that stored the path as typed (older versions) still matches from its folder
    manifest["teacher_args"] = manifest["teacher_args"].replace(str(root), root.name)
    io.write_json(teacher / MANIFEST_NAME, manifest)
    assert write_teacher(scene, teacher, data_path=str(root))["computed"] == 0
    # another folder is another setting
    other = tmp_path / "copy"
    shutil.copytree(root, other)
    code, err = run_cli(capsys, "precompute_teacher",
                        teacher_argv(scene, teacher, data_path=other))
    assert_one_line(code, err, "precompute_teacher.py", "made with other settings", other)


def test_precompute_validates_size_and_writes_no_manifest_on_failure(scene, tmp_path, capsys):
    teacher = tmp_path / "teacher"
    code, err = run_cli(capsys, "precompute_teacher", [
        "--teacher", "synthetic", "--data_path", str(scene.root), "--split", str(scene.split_dir),
        "--height", "30", "--width", "96", "--teacher_dir", str(teacher), "--no_progress"])
    assert_one_line(code, err, "precompute_teacher.py", "--height", "multiple of 32")
    assert not teacher.exists()
    code, err = run_cli(capsys, "precompute_teacher", [
        "--teacher", "synthetic", "--data_path", str(tmp_path / "wrong"), "--split",
        str(scene.split_dir), "--height", "32", "--width", "96", "--teacher_dir", str(teacher),
        "--num_workers", "0", "--no_progress"])
    assert_one_line(code, err, "precompute_teacher.py", tmp_path / "wrong")
    assert not (teacher / MANIFEST_NAME).exists()
    write_teacher(scene, teacher)  # the corrected rerun is accepted
    assert (teacher / MANIFEST_NAME).is_file()


# ----------------------------------------------------------------------------- G: smaller

@pytest.mark.slow
def test_empty_val_split_trains_with_one_notice(scene, tmp_path, capsys):
    (scene.split_dir / "val_files.txt").write_text("")
    argv = train_argv(scene, tmp_path / "log", "--num_epochs", "2")
    argv[argv.index("--num_steps"):argv.index("--num_steps") + 2] = []
    (scene.split_dir / "train_files.txt").write_text(first_line(scene) + "\n")
    assert load_script("train").main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("no validation") == 1


@pytest.mark.slow
def test_resume_purges_replayed_events_and_warns_about_threads(tmp_path, monkeypatch, capsys):
    use_tiny_scene(monkeypatch, train_size=4, val_size=1)
    monkeypatch.setattr(io.os, "fsync", lambda fd: None)
    cfg = tiny_config(tmp_path, "tb", batch_size=1, num_epochs=1, num_steps=2,
                      pose_model_type="shared")
    engine.train(cfg)
    state_path = tmp_path / "tb" / "checkpoints" / "last.pt"
    state = ckpt.load_training_state(state_path)
    assert state["threads"] == torch.get_num_threads() == 1
    # events the interrupted run wrote after its last save (a kill after step 3's log)
    from torch.utils.tensorboard import SummaryWriter
    with SummaryWriter(str(tmp_path / "tb" / "train")) as writer:
        writer.add_scalar("loss", 123.0, 3)
    torch.set_num_threads(2)
    capsys.readouterr()
    engine.train(cfg.replace(num_steps=None, resume="auto"))
    assert "started with 1 CPU threads and resumes with 2" in capsys.readouterr().out
    events = EventAccumulator(str(tmp_path / "tb" / "train"))
    events.Reload()
    steps = [e.step for e in events.Scalars("loss")]
    assert steps == [1, 2, 3, 4] and 123.0 not in [e.value for e in events.Scalars("loss")]


@pytest.mark.parametrize("bad_step, kept", [(1, False), (3, True)])
def test_diverged_message_says_whether_a_checkpoint_exists(tmp_path, monkeypatch, bad_step, kept):
    # 2 steps per epoch: a NaN at step 1 stops before any save, one at step 3 after epoch 1's
    use_tiny_scene(monkeypatch, train_size=2, val_size=1)
    real_build = engine.build_criterion
    monkeypatch.setattr(engine, "build_criterion",
                        lambda cfg: NaNAtStep(real_build(cfg), bad_step))
    with pytest.raises(engine.TrainingDiverged) as caught:  # the tracker reads every step
        engine.train(tiny_config(tmp_path, "nan", batch_size=1, num_epochs=2))
    message = str(caught.value)
    assert message.startswith(f"step {bad_step}: non-finite loss nan (")
    last = tmp_path / "nan" / "checkpoints" / "last.pt"
    if kept:
        assert message.endswith(f"the last saved checkpoint {last} is kept") and last.is_file()
    else:
        assert message.endswith("no checkpoint was saved yet") and not last.exists()


def test_scene_rerun_removes_leftovers_of_a_killed_render(tmp_path):
    scene = synthetic.make_synthetic_kitti(tmp_path / "s", **TINY_SCENE)
    frame = scene.image_path(scene.drives[0], 2, "l")
    stale = frame.parent / f".tmp-{frame.name}.killed"
    stale.write_bytes(b"half a jpeg")
    manifest = scene.root / synthetic.MANIFEST
    manifest.rename(scene.root / synthetic.PENDING)  # as if killed mid-render
    synthetic.make_synthetic_kitti(tmp_path / "s", **TINY_SCENE)
    assert not stale.exists() and frame.is_file()


def test_new_run_control_options_do_not_count_as_changed_on_resume(tmp_path):
    cfg = tiny_config(tmp_path)
    later = cfg.replace(keep_weights=2, save_optimizer_in_weights=True, check_data=True,
                        check_data_only=True, cache_dir=str(tmp_path / "cache"))
    assert ckpt.changed_options(cfg.to_dict(), later) == []
    assert ckpt.changed_options(cfg.to_dict(), later.replace(seed=9)) == ["--seed: 3 -> 9"]
