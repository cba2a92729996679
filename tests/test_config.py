"""Config precedence (defaults < YAML < CLI) and every config error."""
import os

import pytest

from litemono import config as C


def test_defaults_match_upstream():
    cfg = C.parse_config([])
    assert cfg.model.model == "lite-mono" and (cfg.model.height, cfg.model.width) == (192, 640)
    assert cfg.train.batch_size == 16 and cfg.train.num_epochs == 50
    assert cfg.train.lr == [1e-4, 5e-6, 31.0, 1e-4, 1e-5, 31.0]
    assert cfg.model.scales == [0, 1, 2] and cfg.data.frame_ids == [0, -1, 1]
    assert cfg.loss.disparity_smoothness == 1e-3 and cfg.train.weight_decay == 1e-2
    assert cfg.model.drop_path == 0.2 and cfg.data.num_workers == min(12, os.cpu_count())
    assert cfg.loss.ssim and cfg.loss.automasking and not cfg.loss.avg_reprojection


def test_precedence(tmp_path):
    yml = tmp_path / "a.yaml"
    yml.write_text("batch_size: 4\nheight: 96\nloss:\n  disparity_smoothness: 0.01\n")
    cfg = C.parse_config(["--config", str(yml)])
    assert cfg.train.batch_size == 4 and cfg.model.height == 96
    assert cfg.loss.disparity_smoothness == 0.01
    cfg = C.parse_config(["--config", str(yml), "--batch_size", "2"])
    assert cfg.train.batch_size == 2 and cfg.model.height == 96
    # flag order does not matter: the CLI always wins over the YAML
    cfg = C.parse_config(["--batch_size", "2", "--config", str(yml)])
    assert cfg.train.batch_size == 2


def test_include(tmp_path):
    (tmp_path / "base.yaml").write_text("batch_size: 4\nwidth: 320\n")
    (tmp_path / "child.yaml").write_text("include: base.yaml\nbatch_size: 8\n")
    cfg = C.parse_config(["--config", str(tmp_path / "child.yaml")])
    assert cfg.train.batch_size == 8 and cfg.model.width == 320


def test_upstream_flag_spellings():
    cfg = C.parse_config(["--no_ssim", "--disable_automasking", "--no_cuda", "--png",
                          "--avg_reprojection", "--v1_multiscale", "--use_stereo",
                          "--lr", "1e-4", "5e-6", "31", "1e-4", "1e-5", "31",
                          "--frame_ids", "0", "-1", "1", "--scales", "0", "1"])
    assert not cfg.loss.ssim and not cfg.loss.automasking and cfg.train.device == "cpu"
    assert cfg.data.png and cfg.loss.avg_reprojection and cfg.loss.v1_multiscale
    assert cfg.model.scales == [0, 1]
    cfg = C.parse_config(["--no-ssim", "--no-png"])
    assert not cfg.loss.ssim and not cfg.data.png
    assert C.lr_schedule_params(C.parse_config(["--lr", "2e-4"]).train.lr)[0::3] == (2e-4, 2e-4)


@pytest.mark.parametrize("argv, message", [
    (["--height", "100"], "--height must be a positive multiple of 32"),
    (["--frame_ids", "-1", "0", "1"], "--frame_ids must start with 0"),
    (["--scales", "0", "3"], "--scales"),
    (["--lr", "1e-4", "1e-5"], "--lr takes one number or six"),
    (["--chamfer_weight", "0.1"], "--chamfer_weight > 0 needs the bin head"),
    (["--chamfer_weight", "0.1", "--bins", "64", "--bin_mode", "fixed", "--teacher_dir", "x"],
     "--bin_mode fixed"),
    (["--chamfer_weight", "0.1", "--bins", "64"], "--chamfer_weight > 0 needs --teacher_dir"),
    (["--distill_weight", "1"], "--distill_weight > 0 needs --teacher_dir"),
    (["--distill_align", "ssi", "--distill_relative"], "already invariant to the student's scale"),
    (["--model", "lite-mono-huge"], "invalid choice"),
    (["--batch_size", "two"], "invalid int value"),
    (["--dataset", "folder"], "--intrinsics"),
    (["--device", "tpu"], "--device"),
    (["--bins", "1"], "--bins"),
    (["--disp_init", "1.0"], "--disp_init is a sigmoid output, in (0, 1)"),
])
def test_cli_errors_name_the_flag(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        C.parse_config(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("text, message", [
    ("batch_sise: 4\n", "unknown option 'batch_sise' (did you mean '--batch_size'?)"),
    ("batch_size: four\n", "--batch_size: expected int"),
    ("png: 1\n", "--png: expected bool"),
    ("scales: 0\n", "--scales: expected"),
    ("net:\n  batch_size: 4\n", "unknown option net.batch_size"),
    ("- 1\n- 2\n", "expected a mapping"),
])
def test_yaml_errors_name_the_key(tmp_path, text, message):
    yml = tmp_path / "bad.yaml"
    yml.write_text(text)
    with pytest.raises(C.ConfigError, match=None) as exc:
        C.config_from_namespace(type("A", (), {"config": [str(yml)]})())
    assert message in str(exc.value)


def test_round_trip_through_dict_and_yaml(tmp_path):
    import yaml

    cfg = C.parse_config(["--bins", "64", "--spatial_attention", "--dilations", "[[1,2],[1,2],[1,2,3]]"])
    again = C.from_dict(yaml.safe_load(cfg.dump_yaml()))
    assert again == cfg
    assert cfg.replace(batch_size=3).train.batch_size == 3
    with pytest.raises(C.ConfigError, match="--height"):
        cfg.replace(height=33)


@pytest.mark.parametrize("folder", ["kitti", "synthetic"])
def test_ablation_configs_compose(folder):
    """Each row of the ablation adds exactly its own change to the previous row."""
    rows = sorted((C.PROJECT_ROOT / "configs" / folder).glob("0*.yaml"))
    assert [r.stem for r in rows] == ["01_baseline", "02_spatial_attention", "03_pseudo_label",
                                      "04_fixed_bins", "05_full"]
    cfgs = [C.parse_config(["--config", str(r)]) for r in rows]
    base, attn, distill, fixed, full = (c.flat() for c in cfgs)
    assert not base["spatial_attention"] and base["bins"] == 0 and base["distill_weight"] == 0
    changed = lambda a, b: {k for k in a if a[k] != b[k]} - {"model_name"}
    assert changed(base, attn) == {"spatial_attention"}
    assert changed(attn, distill) == {"teacher_dir", "distill_weight", "distill_align"}
    assert changed(distill, fixed) == {"bins", "bin_mode"} and fixed["bin_mode"] == "fixed"
    assert changed(fixed, full) == {"bin_mode", "chamfer_weight"} and full["bins"] == 64
    assert len({c["model_name"] for c in (base, attn, distill, fixed, full)}) == 5
    if folder == "kitti":
        assert (base["batch_size"], base["num_epochs"], base["height"], base["width"]) == (12, 30, 192, 640)
