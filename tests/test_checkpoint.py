"""Checkpoint files: atomic saves, RNG capture, data order, --mypretrain key mapping."""
import random
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from litemono import io
from litemono.checkpoint import (changed_options, load_training_state, load_weights_folder,
                                 save_training_state, save_weights_folder)
from litemono.errors import CheckpointError
from litemono.run import capture_rng, resolve_resume, restore_rng, write_run_config
from litemono.config import from_dict

ROOT = Path(__file__).resolve().parent.parent


def _draws():
    return (torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)])


def test_rng_state_round_trips_through_a_weights_only_file(tmp_path):
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    state = capture_rng()
    expected = _draws()
    save_training_state(tmp_path / "s.pt", {"rng": state})
    _draws()  # move every generator on
    restore_rng(load_training_state(tmp_path / "s.pt")["rng"])
    assert _draws() == expected


class _Killed(BaseException):
    """Stands in for a kill arriving during a write."""


def test_interrupted_state_save_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "last.pt"
    save_training_state(path, {"step": 1, "w": torch.ones(4)})

    def dying_fsync(fd):
        raise _Killed()

    monkeypatch.setattr(io.os, "fsync", dying_fsync)
    with pytest.raises(_Killed):
        save_training_state(path, {"step": 2, "w": torch.zeros(4)})
    monkeypatch.undo()
    state = load_training_state(path)
    assert state["step"] == 1 and torch.equal(state["w"], torch.ones(4))
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"]


def test_interrupted_weights_folder_save_keeps_previous_folder(tmp_path, monkeypatch):
    folder = tmp_path / "models" / "weights_0"
    old = {"encoder": {"a": torch.ones(2), "height": 64}, "depth": {"b": torch.ones(1)}}
    save_weights_folder(folder, old)
    real_save = io.save_torch
    calls = []

    def dies_on_second_file(obj, path):
        calls.append(path)
        if len(calls) == 2:
            raise _Killed()
        real_save(obj, path)

    monkeypatch.setattr(io, "save_torch", dies_on_second_file)
    with pytest.raises(_Killed):
        save_weights_folder(folder, {"encoder": {"a": torch.zeros(2)},
                                     "depth": {"b": torch.zeros(1)}})
    monkeypatch.undo()
    loaded = load_weights_folder(str(folder), ["encoder", "depth"])
    assert torch.equal(loaded["encoder"]["a"], torch.ones(2)) and loaded["encoder"]["height"] == 64
    assert [p.name for p in folder.parent.iterdir()] == ["weights_0"]  # no staging left
    # a complete re-save replaces the folder whole
    save_weights_folder(folder, {"encoder": {"a": torch.zeros(2)}})
    assert sorted(p.name for p in folder.iterdir()) == ["encoder.pth"]


def test_missing_weights_and_resume_files_name_the_flag(tmp_path):
    with pytest.raises(CheckpointError, match="--load_weights_folder .*pose.pth"):
        load_weights_folder(str(tmp_path), ["pose"])
    cfg = from_dict({"log_dir": str(tmp_path), "model_name": "run", "resume": "auto"})
    assert resolve_resume(cfg) is None  # auto without a previous run: fresh start
    save_training_state(tmp_path / "run" / "checkpoints" / "last.pt", {"step": 3})
    assert resolve_resume(cfg) == tmp_path / "run" / "checkpoints" / "last.pt"
    assert resolve_resume(cfg.replace(resume=str(tmp_path / "run"))).name == "last.pt"
    with pytest.raises(CheckpointError, match="--resume"):
        resolve_resume(cfg.replace(resume=str(tmp_path / "nowhere.pt")))
    io.save_torch({"model": {}}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a litemono training state"):
        load_training_state(tmp_path / "foreign.pt")


def test_run_config_files(tmp_path):
    cfg = from_dict({"log_dir": str(tmp_path), "model_name": "r", "ssim": False, "bins": 8})
    write_run_config(cfg)
    assert from_dict(yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())) == cfg
    opt = yaml.safe_load((tmp_path / "r" / "models" / "opt.json").read_text())
    assert opt["no_ssim"] is True and opt["disable_automasking"] is False and opt["bins"] == 8


def test_changed_options_lists_only_options_that_change_the_numbers(tmp_path):
    cfg = from_dict({"log_dir": str(tmp_path), "seed": 1, "num_steps": 10})
    later = cfg.replace(num_steps=20, resume="auto", num_workers=0)
    assert changed_options(cfg.to_dict(), later) == []
    changed = changed_options(cfg.to_dict(), later.replace(seed=2, batch_size=4))
    assert sorted(changed) == ["--batch_size: 16 -> 4", "--seed: 1 -> 2"]


KILLED_SAVE = """
import os, signal, sys
import torch
from litemono import io
from litemono.checkpoint import save_training_state

def killed_before_rename(fd):  # the bytes are written, the rename has not happened
    os.kill(os.getpid(), signal.SIGKILL)

io.os.fsync = killed_before_rename
save_training_state(sys.argv[1], {"step": 2, "w": torch.zeros(1000)})
"""


def test_killed_process_leaves_previous_state_trusted(tmp_path):
    run = tmp_path / "run"
    last = run / "checkpoints" / "last.pt"
    save_training_state(last, {"step": 1, "w": torch.ones(1000)})
    done = subprocess.run([sys.executable, "-c", KILLED_SAVE, str(last)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr
    leftovers = [p.name for p in last.parent.iterdir() if p.name != "last.pt"]
    assert len(leftovers) == 1 and leftovers[0].startswith(io.TMP_PREFIX)  # the killed write
    cfg = from_dict({"log_dir": str(tmp_path), "model_name": "run", "resume": "auto"})
    state = load_training_state(resolve_resume(cfg))
    assert state["step"] == 1 and torch.equal(state["w"], torch.ones(1000))
