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


def test_include_chain_cycle_and_missing_file(tmp_path):
    """A base may include its own base; a cycle, a missing file or a list of bases is an error."""
    (tmp_path / "base.yaml").write_text("batch_size: 3\nwidth: 320\n")
    (tmp_path / "mid.yaml").write_text("include: base.yaml\nwidth: 640\n")
    (tmp_path / "top.yaml").write_text("include: mid.yaml\nheight: 96\n")
    assert C.load_yaml(str(tmp_path / "top.yaml")) == dict(batch_size=3, width=640, height=96)
    (tmp_path / "a.yaml").write_text("include: b.yaml\n")
    (tmp_path / "b.yaml").write_text("include: a.yaml\n")
    with pytest.raises(C.ConfigError, match="include cycle at .*a.yaml"):
        C.load_yaml(str(tmp_path / "a.yaml"))
    with pytest.raises(C.ConfigError, match="--config: no such file .*c.yaml"):
        C.load_yaml(str(tmp_path / "c.yaml"))
    (tmp_path / "two.yaml").write_text("include: [a.yaml, base.yaml]\n")
    with pytest.raises(C.ConfigError, match="include takes one file name, got \\['a.yaml'"):
        C.load_yaml(str(tmp_path / "two.yaml"))


def test_yaml_exponent_without_dot_is_a_number(tmp_path):
    """PyYAML (YAML 1.1) reads 1e-4 as the string '1e-4'; it is accepted as the number."""
    yml = tmp_path / "lr.yaml"
    yml.write_text("lr: [1e-4, 5e-6, 31, 1e-4, 1e-5, 31]\nweight_decay: 1e-2\nmin_depth: 1e-1\n")
    cfg = C.parse_config(["--config", str(yml)])
    assert cfg.train.lr == [1e-4, 5e-6, 31.0, 1e-4, 1e-5, 31.0] and cfg.train.weight_decay == 0.01
    assert cfg.loss.min_depth == 0.1 and all(type(v) is float for v in cfg.train.lr)


def test_help_lists_every_option_with_its_default(capsys):
    with pytest.raises(SystemExit) as exc:
        C.parse_config(["--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for name, (_, field, _) in C.FIELDS.items():
        assert f"--{name if name != 'imports' else 'import'}" in text, name
        assert " ".join(field.metadata["help"].split())[:30] in text, name
    assert "--no_ssim" in text and "--disable_automasking" in text and "--no_cuda" in text
    assert "(default: [0, -1, 1])" in text and "lite-mono-8m" in text


def test_attention_kind_and_its_shorthand():
    assert C.parse_config([]).model.attention_kind is None
    assert C.parse_config(["--spatial_attention"]).model.attention_kind == "spatial"
    assert C.parse_config(["--attention", "spatial"]).model.attention_kind == "spatial"
    assert C.parse_config(["--attention", "spatial_bn"]).model.attention_kind == "spatial_bn"
    with pytest.raises(C.ConfigError, match="short for --attention spatial, which contradicts "
                       "--attention spatial_bn, drop --spatial_attention"):
        C.from_dict({"spatial_attention": True, "attention": "spatial_bn"})


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


def test_teacher_mask_flags():
    loss = C.parse_config([]).loss
    assert loss.teacher_mask and loss.teacher_zero_below == 0.0  # exact zero is sky, as before
    assert not C.parse_config(["--no_teacher_mask"]).loss.teacher_mask
    assert not C.parse_config(["--no-teacher_mask"]).loss.teacher_mask
    loss = C.parse_config(["--teacher_zero_below", "0.02", "--distill_align", "minmax"]).loss
    assert loss.teacher_zero_below == 0.02 and loss.distill_align == "minmax"


@pytest.mark.parametrize("argv, message", [
    (["--height", "100"], "--height must be a positive multiple of 32"),
    (["--frame_ids", "-1", "0", "1"], "--frame_ids must start with 0"),
    (["--scales", "0", "3"], "--scales"),
    (["--lr", "1e-4", "1e-5"], "--lr must be one number or six"),
    (["--lr", "1e-4", "5e-6", "0.5", "1e-4", "1e-5", "31"], "cycles >= 1 epoch"),
    (["--frame_ids", "0", "1", "1"], "have no duplicates"),
    (["--frame_ids", "0"], "--frame_ids [0] needs --use_stereo"),
    (["--min_depth", "10", "--max_depth", "5"], "--min_depth 10.0 must be < --max_depth 5.0"),
    (["--num_workers", "-1"], "--num_workers must be >= 0"),
    (["--models_to_load", "encoder", "decoder"], "--models_to_load must be from encoder"),
    (["--chamfer_points", "0"], "--chamfer_points must be >= 1"),
    (["--distill_weight", "-1"], "--distill_weight must be >= 0"),
    (["--chamfer_weight", "0.1"], "--chamfer_weight > 0 needs the bin head"),
    (["--chamfer_weight", "0.1", "--bins", "64", "--bin_mode", "fixed", "--teacher_dir", "x"],
     "--bin_mode fixed"),
    (["--chamfer_weight", "0.1", "--bins", "64"], "--chamfer_weight > 0 needs --teacher_dir"),
    (["--distill_weight", "1"], "--distill_weight > 0 needs --teacher_dir"),
    (["--batch_size", "two"], "invalid int value"),
    (["--dataset", "folder"], "--intrinsics"),
    (["--device", "foo"], "--device must be auto, cpu, cuda, cuda:N or mps"),
    (["--bins", "1"], "--bins"),
    (["--disp_init", "1.0"], "--disp_init must be in (0, 1) (a sigmoid output)"),
    (["--teacher_zero_below", "-0.1"], "--teacher_zero_below must be >= 0"),
    (["--no_teacher_mask", "--teacher_zero_below", "0.01"],
     "--no_teacher_mask uses every pixel, which contradicts --teacher_zero_below 0.01"),
    (["--distill_align", "median"], "invalid choice"),
])
def test_cli_errors_name_the_flag(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        C.parse_config(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:1", "mps"])
def test_device_option_takes_every_name_resolve_device_knows(device):
    # the config only checks the name; litemono.device.resolve_device checks it exists here
    assert C.parse_config(["--device", device]).train.device == device


@pytest.mark.parametrize("text, message", [
    ("batch_sise: 4\n", "unknown option 'batch_sise' (did you mean '--batch_size'?)"),
    ("batch_size: four\n", "--batch_size: expected int"),
    ("png: 1\n", "--png: expected bool"),
    ("scales: 0\n", "--scales: expected"),
    ("net:\n  batch_size: 4\n", "unknown option 'net'"),
    ("model:\n  batch_size: 4\n", "model.batch_size: --batch_size belongs to the train section"),
    ("weight_decay: 1e-x\n", "--weight_decay: expected float"),
    ("bins: 2.5\n", "--bins: expected int"),
    ("- 1\n- 2\n", "expected a mapping"),
])
def test_yaml_errors_name_the_key(tmp_path, text, message):
    yml = tmp_path / "bad.yaml"
    yml.write_text(text)
    with pytest.raises(C.ConfigError, match=None) as exc:
        C.config_from_namespace(type("A", (), {"config": [str(yml)]})())
    assert message in str(exc.value)


def test_coerce_checks_one_value_type_choice_and_rule():
    """coerce (used for stored weight folders too) normalises a value or names the flag."""
    assert C.coerce("lr", ["1e-4"]) == [1e-4] and C.coerce("bins", 64.0) == 64
    assert C.coerce("dilations", ((1, 2), (1,), (3,))) == [[1, 2], [1], [3]]
    for name, value, message in (("bins", True, "--bins: expected int"),
                                 ("amp", "fp8", "--amp: 'fp8' is not one of"),
                                 ("height", 100, "--height must be a positive multiple of 32"),
                                 ("heigth", 96, "unknown option '--heigth' (did you mean")):
        with pytest.raises(C.ConfigError, match=None) as exc:
            C.coerce(name, value)
        assert message in str(exc.value)


@pytest.mark.parametrize("options, message", [
    ({"attention": "spatial_typo"}, "--attention 'spatial_typo' is not one of ['spatial', "
     "'spatial_bn'], choose one"),
    ({"model": "lite-mono-huge"}, "--model 'lite-mono-huge' is not one of ['lite-mono', "),
])
def test_registry_names_are_checked_where_the_network_is_built(options, message):
    from litemono.models.build import build_depth_network

    cfg = C.from_dict(options)  # the registries are not the config's: no import of models
    with pytest.raises(C.ConfigError) as exc:
        build_depth_network(cfg.model)
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
def test_ablation_configs_are_the_reports_rows(folder):
    """Each row is the shared base plus exactly its parts (the report's FLOPs column: rows 02-04
    add one part each to the baseline, 05 has them all); no row includes another."""
    rows = sorted((C.PROJECT_ROOT / "configs" / folder).glob("0*.yaml"))
    assert [r.stem for r in rows] == ["01_baseline", "02_spatial_attention", "03_pseudo_label",
                                      "04_fixed_bins", "05_full"]
    assert all("include: base.yaml" in r.read_text().splitlines() for r in rows)
    base, attn, distill, fixed, full = (C.parse_config(["--config", str(r)]).flat() for r in rows)
    changed = lambda row: {k for k in base if base[k] != row[k]} - {"model_name"}
    assert not base["spatial_attention"] and base["bins"] == 0 and base["distill_weight"] == 0
    assert changed(attn) == {"spatial_attention"}
    assert changed(distill) - {"distill_align"} == {"teacher_dir", "distill_weight"}
    assert changed(fixed) >= {"bins", "bin_mode"} and fixed["bin_mode"] == "fixed"
    assert not {"spatial_attention", "distill_weight", "chamfer_weight"} & changed(fixed)
    assert full["spatial_attention"] and full["distill_weight"] > 0 and full["bins"] == 64
    assert full["bin_mode"] == "adaptive" and full["chamfer_weight"] > 0
    assert full["distill_align"] == distill["distill_align"]
    names = {r["model_name"] for r in (base, attn, distill, fixed, full)}
    assert len(names) == 5 and all(n.startswith(folder + "_") for n in names)
    if folder == "kitti":
        assert (base["batch_size"], base["num_epochs"], base["height"], base["width"]) == (12, 30, 192, 640)
        assert distill["distill_align"] == "normalized" and full["chamfer_reduction"] == "sum"
        assert fixed["bin_head"] == full["bin_head"] == "mvit"
    else:  # rows 03 and 05 with the other reading of the report's alignment
        for stem, row in (("03_pseudo_label", distill), ("05_full", full)):
            minmax = C.parse_config(["--config", str(rows[0].parent / "minmax" / f"{stem}.yaml")])
            differ = {k for k, v in minmax.flat().items() if v != row[k]}
            assert differ == {"model_name", "distill_align"} and minmax.loss.distill_align == "minmax"
