"""Every shipped config trains: one train.py step per ablation row on the synthetic scene.

The KITTI configs are run with the synthetic scene as their data (and a small size), so the
options they compose (attention, distillation, bins, Chamfer) are exercised end to end:
precompute_teacher.py --teacher synthetic -> train.py --config <row> -> a loadable checkpoint.
"""
import importlib.util

import pytest
import torch
import yaml

from litemono.config import PROJECT_ROOT, parse_config
from litemono.models.build import load_depth_network

CONFIGS = sorted((PROJECT_ROOT / "configs").glob("*/0*.yaml"))
HEIGHT, WIDTH = 64, 192


def _script(name):
    spec = importlib.util.spec_from_file_location(name, PROJECT_ROOT / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def teacher_dir(synthetic_kitti, tmp_path_factory):
    folder = tmp_path_factory.mktemp("teacher") / "maps"
    _script("precompute_teacher").main([
        "--teacher", "synthetic", "--teacher_dir", str(folder), "--data_path",
        str(synthetic_kitti.root), "--split", str(synthetic_kitti.split_dir),
        "--height", str(HEIGHT), "--width", str(WIDTH), "--num_workers", "0", "--no_progress"])
    return folder


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_config_trains_one_step(config, synthetic_kitti, teacher_dir, tmp_path):
    argv = ["--config", str(config), "--data_path", str(synthetic_kitti.root),
            "--split", str(synthetic_kitti.split_dir), "--height", str(HEIGHT),
            "--width", str(WIDTH), "--batch_size", "2", "--num_steps", "1", "--num_workers", "0",
            "--weights_init", "scratch", "--device", "cpu", "--log_dir", str(tmp_path)]
    if parse_config(["--config", str(config)]).data.teacher_dir is not None:
        argv += ["--teacher_dir", str(teacher_dir)]
    if config.parent.name == "kitti":  # the recipe's ImageNet weights are not available here
        argv += ["--mypretrain", "none"]
    assert _script("train").main(argv) == 0
    run = next(p for p in tmp_path.iterdir() if p.is_dir())
    net = load_depth_network(run / "models" / "weights_0")
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert net.config.bins == cfg["model"]["bins"]
    assert net.config.spatial_attention == cfg["model"]["spatial_attention"]
    with torch.no_grad():
        out = net(torch.rand(1, 3, HEIGHT, WIDTH))
    assert out[("disp", 0)].shape == (1, 1, HEIGHT, WIDTH)
    assert ("bin_centers" in out) == (cfg["model"]["bins"] > 0)
