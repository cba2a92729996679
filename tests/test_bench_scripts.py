"""scripts/bench.py and scripts/vs_upstream.py: tiny runs print one JSON line with the expected
keys; the GPU plan, its summary and failure handling; the synthetic batch follows the sample
schema. No timing is asserted."""
import argparse
import dataclasses
import importlib.util
import json
import math
import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT

TINY = ["--height", "32", "--width", "64"]
# a checkout of noahzn/Lite-Mono's training code for scripts/vs_upstream.py (optional)
UPSTREAM_DIR = os.environ.get("LITEMONO_UPSTREAM_DIR")
needs_upstream = pytest.mark.skipif(not UPSTREAM_DIR,
                                    reason="LITEMONO_UPSTREAM_DIR (a Lite-Mono checkout) not set")


def load_script(name="bench"):
    spec = importlib.util.spec_from_file_location(f"{name}_script", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(argv, capsys, name="bench"):
    """``main(argv)`` of a script: its last stdout line, parsed, equals what main returned."""
    module = load_script(name)
    returned = module.main(argv)
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed == json.loads(json.dumps(returned, sort_keys=True))
    return printed, module


def test_synthetic_batch_follows_the_sample_schema():
    bench = load_script()
    batch = bench.synthetic_batch(32, 64, 3, [0, -1, 1, "s"], torch.device("cpu"), teacher=True)
    for frame in (0, -1, 1, "s"):
        for scale in range(4):
            for kind in ("color", "color_aug"):
                image = batch[(kind, frame, scale)]
                assert image.shape == (3, 3, 32 >> scale, 64 >> scale)
                assert image.min() >= 0 and image.max() <= 1
    for scale in range(4):
        K, inv_K = batch[("K", scale)], batch[("inv_K", scale)]
        assert K.shape == (3, 4, 4) and K.dtype == torch.float32
        torch.testing.assert_close(K @ inv_K, torch.eye(4).expand(3, 4, 4))
        assert K[0, 0, 2] == pytest.approx(0.5 * (64 >> scale))  # cx in pixels
        assert K[0, 1, 1] == pytest.approx(1.92 * (32 >> scale))
    assert batch["stereo_T"].shape == (3, 4, 4) and batch["teacher_disp"].shape == (3, 1, 32, 64)
    assert (batch["teacher_disp"] > 0).all()
    # neighbouring frames are shifted copies of the target: column c of frame 1 = column c+2 of 0
    torch.testing.assert_close(batch[("color", 1, 0)][..., :-2], batch[("color", 0, 0)][..., 2:])
    again = bench.synthetic_batch(32, 64, 3, [0, -1, 1, "s"], torch.device("cpu"), teacher=True)
    assert all(torch.equal(batch[k], again[k]) for k in batch)


def test_timings_count_every_call_and_interleave_sides():
    bench = load_script()
    calls = []
    timed = bench.timings(lambda: calls.append(1), torch.device("cpu"), warmup=2, repeats=3)
    assert len(calls) == 5 and timed["runs"] == len(timed["times_s"]) == 3
    assert 0 <= timed["step_min_s"] <= timed["step_s"] <= timed["step_max_s"]
    sides = bench.timings({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                          torch.device("cpu"), warmup=1, repeats=2, name="latency")
    assert calls[5:] == ["a", "b"] * 3  # one call of each side per round
    assert set(sides) == {"a", "b"} and all(row["runs"] == 2 for row in sides.values())
    assert sides["a"]["latency_min_s"] <= sides["a"]["latency_s"] <= sides["a"]["latency_max_s"]


def test_train_prints_the_step_time_last(capsys):
    result, _ = run_script(["train", "--model", "lite-mono-tiny", *TINY, "--batch_size", "2",
                            "--device", "cpu", "--distill_weight", "0.1", "--warmup", "0",
                            "--repeats", "2"], capsys)
    (row,) = result["modes"].values()
    assert result["benchmark"] == "train_step" and row["runs"] == 2 and row["ok"]
    assert row["step_min_s"] <= result["step_s"] <= row["step_max_s"]
    assert len(row["losses"]) == 3  # the first step, then two timed
    assert math.isfinite(result["first_loss"]) and result["first_loss"] > 0
    assert result["samples_per_s"] == pytest.approx(2 / result["step_s"])
    assert result["peak_memory_mb"] > 0 and row["first_step_s"] > 0


@pytest.fixture
def uncompiled(monkeypatch):
    """``torch.compile`` hands the step back as it is (compilation itself is not under test
    here); inductor's random-number setting starts False and is restored after the test through
    the config's own ``patch`` (a monkeypatch of the config module deletes the key on undo)."""
    import torch._inductor.config as inductor_config

    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: fn)
    with inductor_config.patch(fallback_random=False):
        yield inductor_config


def test_train_with_compile_draws_random_numbers_as_eager(capsys, uncompiled):
    result, _ = run_script(["train", "--model", "lite-mono-tiny", *TINY, "--batch_size", "1",
                            "--device", "cpu", "--compile", "--warmup", "0", "--repeats", "1"],
                           capsys)
    assert result["modes"]["as_given"]["compile"] and result["modes"]["as_given"]["ok"]
    assert uncompiled.fallback_random  # compiled drop-path masks drawn as eager's


def test_train_rejects_bad_flags_in_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_script().main(["train", "--model", "lite-mono-tiny", "--height", "30"])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and "\n" not in err
    assert err.startswith("bench.py: error: ") and "--height must be a positive multiple of 32" in err


@pytest.mark.usefixtures("uncompiled")  # bf16_graphs: its options reach training; no compile
def test_modes_train_from_the_same_weights_in_every_mode(capsys):
    result, bench = run_script(["train", "--model", "lite-mono-tiny", *TINY, "--batch_size", "2",
                                "--device", "cpu", "--warmup", "1", "--repeats", "2", "--modes",
                                "fp32", "bf16_cl", "bf16_graphs", "--profile_steps", "1"], capsys)
    modes = result["modes"]
    fp32, bf16, graphs = modes["fp32"], modes["bf16_cl"], modes["bf16_graphs"]
    for row in modes.values():
        assert row["ok"] and len(row["losses"]) == 3 and row["runs"] == 2
        assert row["epochs_30_h"] == pytest.approx(30 * 39810 / row["samples_per_s"] / 3600)
    # the last mode alone is profiled, after its timed steps: top operators, launches per step
    assert [mode for mode, row in modes.items() if "profile" in row] == ["bf16_graphs"]
    profile = graphs["profile"]
    assert profile["steps"] == 1 and profile["kernel_launches_per_step"] == 0  # no CUDA here
    assert "Self CPU" in profile["top_kernels"]
    assert result["step_s"] == fp32["step_s"]  # the headline is the first mode's
    assert bf16["amp"] == "bf16" and bf16["channels_last"] and not fp32["channels_last"]
    assert graphs["compile"] and graphs["compile_mode"] == "reduce-overhead"
    # the first fp32 loss is a plain run's first loss: same seed, weights and batch
    plain, _ = run_script(["train", "--model", "lite-mono-tiny", *TINY, "--batch_size", "2",
                           "--device", "cpu", "--warmup", "0", "--repeats", "1"], capsys)
    assert fp32["losses"][0] == plain["first_loss"]
    # bf16 follows fp32 within the stated tolerance, step by step
    assert bf16["vs_fp32"]["rel_diff"] == pytest.approx(
        [abs(a - b) / b for a, b in zip(bf16["losses"], fp32["losses"])])
    assert bf16["vs_fp32"]["within_rtol"] and bf16["vs_fp32"]["rtol"] == bench.LOSS_RTOL
    assert bf16["speedup_over_fp32"] == pytest.approx(fp32["step_s"] / bf16["step_s"])
    assert graphs["losses"] == bf16["losses"]  # torch.compile is the identity here


def test_compare_losses_reports_each_steps_relative_difference():
    bench = load_script()
    compared = bench.compare_losses([1.01, 2.4, 3.0, 9.0], [1.0, 2.0, 3.0, 1.0], steps=3)
    assert compared["steps"] == 3
    assert compared["rel_diff"] == pytest.approx([0.01, 0.2, 0.0])
    assert compared["max_rel_diff"] == pytest.approx(0.2)
    assert compared["within_rtol"] is (0.2 <= bench.LOSS_RTOL)
    assert bench.compare_losses([1.0], [1.0])["within_rtol"]


def test_the_compile_backend_reaches_the_engines_step(monkeypatch):
    bench = load_script()
    calls = []
    monkeypatch.setattr(bench.engine, "compile_step",
                        lambda fn, mode, **kwargs: calls.append((type(fn).__name__, mode, kwargs))
                        or fn)
    cfg = bench.config_from_namespace(argparse.Namespace(model="lite-mono-tiny", height=32,
                                                         width=64, compile=True,
                                                         compile_mode="reduce-overhead",
                                                         weights_init="scratch"))
    bench.build_training(cfg, torch.device("cpu"), compile_backend="eager")
    # as train.py: the model, then the criterion (which does not start a new CUDA-graph step)
    assert calls == [("DepthPoseModel", "reduce-overhead", {"backend": "eager"}),
                     ("Criterion", "reduce-overhead", {"backend": "eager", "new_step": False})]


def test_infer_reports_every_variant_and_batch_size(capsys):
    result, _ = run_script(["infer", "--variants", "lite-mono-tiny", "lite-mono", *TINY,
                            "--batch_sizes", "1", "2", "--device", "cpu", "--warmup", "0",
                            "--repeats", "1"], capsys)
    rows = [(r["model"], r["batch_size"]) for r in result["results"]]
    assert rows == [("lite-mono-tiny", 1), ("lite-mono-tiny", 2), ("lite-mono", 1), ("lite-mono", 2)]
    for row in result["results"]:
        assert row["fps"] == pytest.approx(row["batch_size"] / row["latency_s"])
    assert result["channels_last"] is False  # off unless asked for, as in training


@pytest.mark.parametrize("flag, expected", [([], False), (["--channels_last"], True)])
def test_infer_runs_the_network_in_the_reported_layout(flag, expected, capsys, monkeypatch):
    bench = load_script()
    layouts = []
    build = bench.build_depth_network

    def recording_build(cfg):
        net = build(cfg)
        net.register_forward_pre_hook(lambda _, inputs: layouts.append(
            inputs[0].is_contiguous(memory_format=torch.channels_last)))
        return net

    monkeypatch.setattr(bench, "build_depth_network", recording_build)
    bench.main(["infer", "--model", "lite-mono-tiny", *TINY, "--device", "cpu", "--warmup", "0",
                "--repeats", "2", *flag])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["channels_last"] is expected
    assert layouts and set(layouts) == {expected}


def test_data_times_every_mode_of_the_training_items(capsys):
    result, _ = run_script(["data", "--native_height", "48", "--native_width", "160", *TINY,
                            "--items", "3"], capsys)
    rates = result["samples_per_s_per_worker"]
    assert set(rates) == {"no_aug", "aug_per_frame", "aug_per_item", "aug_per_frame_cached",
                          "upstream_items_per_frame"}
    assert all(math.isfinite(rate) and rate > 0 for rate in rates.values())
    assert result["train_size"] == [32, 64] and result["native_size"] == [48, 160]


# --- the GPU run ------------------------------------------------------------------------------

def planned(bench, argv):
    return bench.gpu_plan(bench.build_parser().parse_args(["gpu", *argv]))


def test_gpu_plan_covers_every_row_and_every_command_parses():
    bench = load_script()
    plan = planned(bench, ["out"])
    names = [name for name, _, _ in plan]
    rows = sorted(p.stem for p in (ROOT / "configs" / "kitti").glob("0*.yaml"))
    assert names == ([f"row_{r}" for r in rows] + ["compiled_01_baseline", "infer", "data",
                                                   "teacher", "compiled_05_full"])
    parser = bench.build_parser()
    for name, argv, timeout_s in plan:
        args = parser.parse_args(argv)  # every planned command is a valid bench.py command
        assert 0 < timeout_s <= 150
        if argv[0] == "train":
            assert (args.height, args.width, args.batch_size) == (192, 640, 12)
            assert args.device == "cuda" and args.weights_init == "scratch"
            assert args.mypretrain == "none" and args.compile_backend is None
            assert args.modes == (["fp32", "bf16_cl"] if name.startswith("row_")
                                  else ["fp32", bench.COMPILED_MODE])
            # what limits the fastest mode: the compiled baseline is profiled
            assert args.profile_steps == (3 if name == "compiled_01_baseline" else 0)
        if argv[0] == "teacher":  # DA-V2 Small at precompute_teacher.py's input size
            assert args.architecture == "small" and args.device == "cuda"
            assert args.input_size == 518 and (args.native_height, args.native_width) == (375, 1242)
    assert bench.TIME_LIMIT_S <= 8 * 60  # the run's own target; later measurements are skipped
    dry = planned(bench, ["out", "--dry_run", "--rows", "configs/kitti/05_full.yaml"])
    assert [name for name, _, _ in dry] == ["row_05_full", "compiled_05_full", "infer", "data",
                                            "teacher"]
    for _, argv, _ in dry:
        args = parser.parse_args(argv)
        assert (args.height, args.width) == (32, 64)
        if argv[0] != "data":
            assert args.device == "cpu"
        if argv[0] == "train":
            assert args.compile_backend == "eager" and args.repeats == 1


def test_gpu_summary_flattens_every_mode_and_fails_on_any_failure():
    bench = load_script()

    def mode(step_s, within=None, ok=True):
        row = {"ok": ok, "step_s": step_s, "samples_per_s": 12 / step_s, "peak_memory_mb": 100.0}
        if within is not None:
            row.update(vs_fp32={"within_rtol": within}, speedup_over_fp32=0.1 / step_s)
        return row

    measurements = {
        "row_01_baseline": {"ok": True, "result": {"modes": {
            "fp32": mode(0.1), "bf16_cl": mode(0.05, within=True)}}},
        "compiled_01_baseline": {"ok": True, "result": {"modes": {
            "fp32": mode(0.1), "bf16_graphs": mode(0.025, within=True)}}},
        "infer": {"ok": True, "result": {"results": []}}}
    summary = bench.gpu_summary(measurements)
    table = {(line["measurement"], line["mode"]): line for line in summary["table"]}
    assert len(table) == 4 and summary["all_ok"]
    assert table[("compiled_01_baseline", "bf16_graphs")]["speedup_over_fp32"] == pytest.approx(4)
    measurements["row_01_baseline"]["result"]["modes"]["bf16_cl"]["vs_fp32"]["within_rtol"] = False
    assert not bench.gpu_summary(measurements)["all_ok"]  # bf16 strayed from fp32
    measurements["row_01_baseline"]["result"]["modes"]["bf16_cl"] = mode(0.05, within=True)
    measurements["data"] = {"ok": False, "error": "timed out"}
    assert not bench.gpu_summary(measurements)["all_ok"]


def test_a_failing_or_hanging_measurement_becomes_json():
    bench = load_script()
    failed = bench.run_measurement(["train", "--height", "30", "--device", "cpu"], 120)
    assert not failed["ok"] and failed["error"] == "exit status 2"
    assert "bench.py: error: " in failed["tail"]
    hung = bench.run_measurement(["data", "--items", "100000000"], 1)
    assert hung["error"] == "timed out" and not hung["ok"] and hung["seconds"] < 30


def test_gpu_run_past_its_time_limit_records_every_measurement_as_skipped(tmp_path, capsys):
    result, bench = run_script(["gpu", str(tmp_path), "--dry_run", "--time_limit_s", "0"], capsys)
    saved = json.loads((tmp_path / "gpu.json").read_text())
    names = [name for name, _, _ in planned(bench, [str(tmp_path), "--dry_run"])]
    assert sorted(saved["measurements"]) == sorted(names) == sorted(result["measurements"])
    for measurement in saved["measurements"].values():
        assert not measurement["ok"] and measurement["error"].startswith("skipped")
    assert saved["all_ok"] is False and result["all_ok"] is False


@pytest.mark.slow
def test_gpu_dry_run_exercises_every_measurement_on_the_cpu(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench.py"), "gpu",
                           str(tmp_path), "--dry_run", "--rows", "configs/kitti/01_baseline.yaml"],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["all_ok"], done.stdout[-3000:]
    saved = json.loads((tmp_path / "gpu.json").read_text())
    assert sorted(saved["measurements"]) == ["compiled_01_baseline", "data", "infer",
                                             "row_01_baseline", "teacher"]
    lines = {(line["measurement"], line["mode"]): line for line in saved["table"]}
    assert set(lines) == {("row_01_baseline", "fp32"), ("row_01_baseline", "bf16_cl"),
                          ("compiled_01_baseline", "fp32"), ("compiled_01_baseline", "bf16_graphs")}
    for key in (("row_01_baseline", "bf16_cl"), ("compiled_01_baseline", "bf16_graphs")):
        assert lines[key]["ok"] and lines[key]["losses_within_rtol"], key
    infer = saved["measurements"]["infer"]["result"]["results"]
    assert {row["model"] for row in infer} == set(load_script().VARIANT_NAMES)
    # the teacher: a tiny random Depth Anything V2 through the precompute's predictor and loop
    teacher = saved["measurements"]["teacher"]["result"]
    assert teacher["architecture"] == "tiny" and teacher["frames"] == 2
    assert teacher["output_size"] == [32, 64] and teacher["input_size"] == [28, 98]
    assert teacher["frames_per_s"] > 0 and teacher["teacher_frames_per_s"] > 0
    assert teacher["map_bytes"] > 0 and teacher["peak_memory_mb"] > 0


def test_every_subcommand_option_has_help():
    parser = load_script().build_parser()
    (subparsers,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(subparsers.choices) == {"train", "infer", "data", "teacher", "gpu"}
    for name, sub in subparsers.choices.items():
        silent = [a.option_strings[0] for a in sub._actions if a.option_strings and not a.help]
        assert not silent, f"bench.py {name}: options without help text: {silent}"
        flags = {flag for action in sub._actions for flag in action.option_strings}
        assert "--device" not in flags or "--no_cuda" in flags, f"bench.py {name}: no --no_cuda"


# --- scripts/vs_upstream.py -------------------------------------------------------------------

@needs_upstream
def test_vs_upstream_times_both_steps_from_the_same_weights(capsys):
    result, _ = run_script([
        "--upstream_dir", UPSTREAM_DIR, "--model", "lite-mono", "--height", "64", "--width", "192",
        "--batch_size", "1", "--device", "cpu", "--warmup", "0", "--repeats", "1", "--infer"],
        capsys, name="vs_upstream")
    assert result["benchmark"] == "train_step_vs_upstream" and result["weights_shared"]
    assert result["runs"] == 1 and result["upstream_encoder_size"] == [192, 640]
    for side in ("upstream", "ours"):
        row = result[side]
        assert row["step_min_s"] <= row["step_s"] <= row["step_max_s"] and len(row["times_s"]) == 1
        assert math.isfinite(row["first_loss"]) and row["first_loss"] > 0
    assert result["ratio_upstream_over_ours"] == pytest.approx(
        result["upstream"]["step_s"] / result["ours"]["step_s"])
    # same weights, batch and seed: one loss evaluation agrees to float rounding (pose BatchNorm
    # in eval mode) ...
    same = result["same_step"]
    assert same["ours"] == pytest.approx(same["upstream"], rel=1e-4) and same["rel_diff"] < 1e-4
    # ... and so do the first training steps (both run the pose pairs one by one, so train-mode
    # BatchNorm statistics are per pair on both sides)
    assert result["first_loss_rel_diff"] < 1e-4
    assert set(result["environment"]) >= {"torch", "device", "threads"}
    inference = result["inference"]  # the depth networks alone, same weights, same image
    assert 0 <= inference["max_abs_disp_diff"] < 1e-5 and inference["latency_s"] > 0
    assert inference["ratio_upstream_over_ours"] == pytest.approx(
        inference["upstream_latency_s"] / inference["latency_s"])


@needs_upstream
def test_vs_upstream_compares_a_compiled_step_from_the_same_random_numbers(capsys, uncompiled):
    result, _ = run_script([
        "--upstream_dir", UPSTREAM_DIR, "--model", "lite-mono", "--height", "64", "--width", "192",
        "--batch_size", "1", "--device", "cpu", "--warmup", "0", "--repeats", "1", "--compile"],
        capsys, name="vs_upstream")
    assert result["compile"] and uncompiled.fallback_random
    assert result["first_loss_rel_diff"] < 1e-4


@pytest.mark.parametrize("where, message", [
    (None, "--upstream_dir is required"), ("absent", "no such folder"),
    ("", "has no trainer.py")])
def test_vs_upstream_names_a_missing_checkout(tmp_path, capsys, where, message):
    argv = [] if where is None else ["--upstream_dir", str(tmp_path / where)]
    with pytest.raises(SystemExit) as exit_info:
        load_script("vs_upstream").main([*argv, *TINY, "--device", "cpu"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.startswith("vs_upstream.py: error: ") and "\n" not in err


@pytest.mark.parametrize("flags, name", [
    (["--bins", "8"], "--bins"), (["--spatial_attention"], "--spatial_attention"),
    (["--attention", "spatial"], "--attention spatial"),
    (["--attention", "spatial_bn"], "--attention spatial_bn"),
    (["--distill_weight", "0.1"], "--distill_weight"),
    (["--bins", "8", "--chamfer_weight", "0.1", "--teacher_dir", "t"],
     "--bins, --chamfer_weight")])
def test_vs_upstream_refuses_what_changes_the_objective(tmp_path, capsys, flags, name):
    # refused before the checkout is even looked at: any folder will do
    with pytest.raises(SystemExit) as exit_info:
        load_script("vs_upstream").main(["--upstream_dir", str(tmp_path), *TINY, "--device",
                                         "cpu", *flags])
    assert exit_info.value.code == 2
    assert f"no equivalent of {name}" in capsys.readouterr().err


def test_refusals_cover_registered_encoder_families_and_loss_terms(monkeypatch):
    """An encoder family or any registered loss term is not upstream's network or objective."""
    from litemono.config import from_dict
    from litemono.losses.criterion import LOSS_TERMS
    from litemono.models.build import ENCODER_FAMILIES

    refusals = load_script("vs_upstream").refusals
    assert refusals(from_dict({})) == []  # the defaults are upstream's
    monkeypatch.setitem(ENCODER_FAMILIES, "toy-family", lambda cfg: None)
    assert refusals(from_dict({"model": "toy-family"})) == ["--model toy-family"]
    # every registered term's weight is checked, not a fixed list of names
    assert {"distill", "chamfer"} <= set(LOSS_TERMS)
    for name in LOSS_TERMS:
        cfg = from_dict({})  # the weight alone (unvalidated: a term's own checks need more)
        cfg = dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss,
                                                                **{f"{name}_weight": 0.5}))
        assert refusals(cfg) == [f"--{name}_weight"]


def test_profile_model_shows_the_attention_in_effect_and_counts_its_batchnorm(capsys):
    """The header names ``cfg.attention_kind`` (``--spatial_attention`` = ``spatial``); the exact
    MAC total of ``spatial_bn`` is ``spatial``'s + 4 per gate pixel (32x64: 8x16 + 4x8 + 2x4)."""
    profile = load_script("profile_model")
    printed = {}
    for flags in (["--spatial_attention"], ["--attention", "spatial_bn"]):
        profile.main(["--model", "lite-mono-tiny", *TINY, *flags])
        header, _, macs, _ = capsys.readouterr().out.strip().splitlines()
        printed[flags[-1]] = header, int(macs.rsplit("(", 1)[1].rstrip(")").replace(",", ""))
    assert printed["--spatial_attention"][0].endswith("eval attention spatial [0, 1, 2]")
    assert printed["spatial_bn"][0].endswith("eval attention spatial_bn [0, 1, 2]")
    assert printed["spatial_bn"][1] - printed["--spatial_attention"][1] == 4 * (128 + 32 + 8)
    with pytest.raises(SystemExit):
        profile.main([*TINY, "--attention", "nonsense"])
    err = capsys.readouterr().err.strip()
    assert err.startswith("profile_model.py: error: --attention 'nonsense' is not one of ")
    assert "choose one" in err and "\n" not in err
