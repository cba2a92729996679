"""train.py launched by torchrun, then resumed with ``--resume auto`` through the same launcher."""
import subprocess
import sys

import pytest

from conftest import ROOT
from litemono import checkpoint as ckpt


@pytest.mark.slow
def test_torchrun_trains_and_resumes_on_a_synthetic_scene(synthetic_kitti, tmp_path):
    scene = synthetic_kitti
    argv = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1",
            "--master_port", "0", "train.py", "--data_path", str(scene.root),
            "--split", str(scene.split_dir), "--png" if scene.png else "--no-png",
            "--height", "32", "--width", "96", "--batch_size", "2", "--num_workers", "0",
            "--model", "lite-mono-tiny", "--weights_init", "scratch", "--mypretrain", "none",
            "--log_dir", str(tmp_path), "--model_name", "run", "--device", "cpu",
            "--log_frequency", "1"]
    for steps, extra in ((1, []), (2, ["--resume", "auto"])):
        done = subprocess.run([*argv, "--num_steps", str(steps), *extra], cwd=ROOT,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    state = ckpt.load_training_state(tmp_path / "run" / "checkpoints" / "last.pt")
    assert state["step"] == 2  # one step, then resumed to two
    assert sorted((tmp_path / "run" / "models").glob("weights_*"))
