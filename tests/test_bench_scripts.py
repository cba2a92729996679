"""scripts/bench.py and litemono.benchmark: tiny runs of each subcommand print one JSON line with
the expected keys; the GPU run's plan, summary and failure handling; the synthetic batch follows
the sample schema. No timing is asserted."""
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
from litemono import benchmark as bench

TINY = ["--height", "32", "--width", "64"]
# a checkout of noahzn/Lite-Mono's training code for the vs-upstream / infer comparisons (optional)
UPSTREAM_DIR = os.environ.get("LITEMONO_UPSTREAM_DIR")


def load_script():
    spec = importlib.util.spec_from_file_location("bench_script", ROOT / "scripts" / "bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(command, argv, capsys):
    module = load_script()
    returned = module.main([command, *argv])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    printed = json.loads(last)
    assert printed == json.loads(json.dumps(returned, sort_keys=True))
    return printed, module


def test_synthetic_batch_follows_the_sample_schema():
    batch = bench.synthetic_batch(32, 64, 3, [0, -1, 1, "s"], torch.device("cpu"), teacher=True)
    for frame in (0, -1, 1, "s"):
        for scale in range(4):
            for kind in ("color", "color_aug"):
                image = batch[(kind, frame, scale)]
                assert image.shape == (3, 3, 32 >> scale, 64 >> scale)
                assert image.min() >= 0 and image.max() <= 1
    for scale in range(4):
        K, inv_K = batch[("K", scale)], batch[("inv_K", scale)]
        assert K.shape == (3, 4, 4)
        torch.testing.assert_close(K @ inv_K, torch.eye(4).expand(3, 4, 4))
        assert K[0, 0, 2] == pytest.approx(0.5 * (64 >> scale))  # cx in pixels
        assert K[0, 1, 1] == pytest.approx(1.92 * (32 >> scale))
    assert batch["stereo_T"].shape == (3, 4, 4) and batch["teacher_disp"].shape == (3, 1, 32, 64)
    assert (batch["teacher_disp"] > 0).all()
    # neighbouring frames are shifted copies of the target: column c of frame 1 = column c+2 of 0
    torch.testing.assert_close(batch[("color", 1, 0)][..., :-2], batch[("color", 0, 0)][..., 2:])
    again = bench.synthetic_batch(32, 64, 3, [0, -1, 1, "s"], torch.device("cpu"), teacher=True)
    assert all(torch.equal(batch[k], again[k]) for k in batch)


def test_timeline_and_measure_count_every_call():
    calls = []
    times = bench.measure(lambda: calls.append(1), torch.device("cpu"), warmup=2, repeats=3)
    assert len(calls) == 5 and len(times) == 3 and all(t >= 0 for t in times)
    summary = bench.summarise([3.0, 1.0, 2.0])
    assert summary == {"median_s": 2.0, "min_s": 1.0, "max_s": 3.0, "runs": 3}
    assert bench.median_per_key([{"a": 1.0}, {"a": 5.0}, {"a": 2.0}]) == {"a": 2.0}
    timeline = bench.Timeline(torch.device("cpu"))
    for name in ("start", "x", "y", "x"):
        timeline.mark(name)
    durations = timeline.durations()
    assert list(durations) == ["x", "y"]  # repeated names add up
    assert durations["x"] + durations["y"] == pytest.approx(timeline.stamps[-1] - timeline.stamps[0])
    with pytest.raises(ValueError, match="--repeats"):
        bench.measure(lambda: None, torch.device("cpu"), repeats=0)


def test_train_times_the_engine_step_with_a_phase_split(capsys):
    result, module = run_script("train", [
        "--model", "lite-mono-tiny", *TINY, "--batch_size", "2", "--device", "cpu",
        "--distill", "--warmup", "0", "--repeats", "2", "--phase_repeats", "1"], capsys)
    assert result["benchmark"] == "train_step" and result["runs"] == 2
    assert list(result["phases_s"]) == sorted(bench.PHASES)
    assert all(v > 0 for v in result["phases_s"].values())
    assert result["step_min_s"] <= result["step_s"] <= result["step_max_s"]
    assert result["options"]["distill_weight"] == bench.DISTILL_SHORTCUT_WEIGHT
    assert result["options"]["scales"] == [0, 1, 2] and result["options"]["automasking"]
    assert math.isfinite(result["first_loss"]) and result["first_loss"] > 0
    assert result["samples_per_s"] == pytest.approx(2 / result["step_s"])
    assert result["peak_memory_mb"] > 0


@pytest.fixture
def uncompiled(monkeypatch):
    """``torch.compile`` hands the step back as it is (compilation itself is not under test
    here); inductor's random-number setting starts False and is restored after the test through
    the config's own ``patch`` (a monkeypatch of the config module deletes the key on undo)."""
    import torch._inductor.config as inductor_config

    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: fn)
    with inductor_config.patch(fallback_random=False):
        yield inductor_config


def test_train_with_compile_has_no_phase_split(capsys, uncompiled):
    inductor_config = uncompiled
    result, _ = run_script("train", [
        "--model", "lite-mono-tiny", *TINY, "--batch_size", "1", "--device", "cpu",
        "--compile", "--warmup", "0", "--repeats", "1", "--phase_repeats", "2"], capsys)
    # the phase hooks cannot see inside one compiled graph: no split rather than a wrong one
    assert result["compile"] and result["phases_s"] == {}
    assert inductor_config.fallback_random  # compiled drop-path masks drawn as eager's


def test_train_rejects_bad_flags_in_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_script("train", ["--model", "lite-mono-tiny", "--height", "30"], capsys)
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and "\n" not in err
    assert err.startswith("bench.py: error: ") and "--height must be a positive multiple of 32" in err


def test_infer_reports_every_variant_and_batch_size(capsys):
    result, _ = run_script("infer", [
        "--variants", "lite-mono-tiny", "lite-mono", *TINY, "--batch_sizes", "1", "2",
        "--device", "cpu", "--warmup", "0", "--repeats", "1"], capsys)
    rows = [(r["model"], r["batch_size"]) for r in result["results"]]
    assert rows == [("lite-mono-tiny", 1), ("lite-mono-tiny", 2), ("lite-mono", 1), ("lite-mono", 2)]
    for row in result["results"]:
        assert row["fps"] == pytest.approx(row["batch_size"] / row["latency_s"])
    assert result["channels_last"] is False  # off unless asked for, as in training


def _recording_layouts(module, monkeypatch):
    """Make ``module``'s depth networks record whether each input they get is channels_last."""
    layouts = []
    build = module.build_depth_network

    def recording_build(cfg):
        net = build(cfg)
        net.register_forward_pre_hook(lambda _, inputs: layouts.append(
            inputs[0].is_contiguous(memory_format=torch.channels_last)))
        return net

    monkeypatch.setattr(module, "build_depth_network", recording_build)
    return layouts


@pytest.mark.parametrize("flag, expected", [([], False), (["--channels_last"], True)])
def test_infer_runs_our_network_in_the_reported_layout(flag, expected, capsys, monkeypatch):
    module = load_script()
    layouts = _recording_layouts(module, monkeypatch)
    module.main(["infer", "--model", "lite-mono-tiny", *TINY, "--device", "cpu", "--warmup", "0",
                 "--repeats", "2", *flag])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["channels_last"] is expected
    assert layouts and set(layouts) == {expected}


@pytest.mark.skipif(not UPSTREAM_DIR, reason="LITEMONO_UPSTREAM_DIR (a Lite-Mono checkout) not set")
def test_infer_times_upstream_beside_ours_from_the_same_weights(capsys, monkeypatch):
    result, _ = run_script("infer", [
        "--upstream_dir", UPSTREAM_DIR, "--model", "lite-mono", "--height", "64", "--width", "192",
        "--batch_sizes", "1", "--device", "cpu", "--warmup", "0", "--repeats", "1",
        "--channels_last"], capsys)
    assert result["channels_last"] is True  # ours as asked; upstream's is NCHW
    assert result["upstream_encoder_size"] == [192, 640] and result["weights_shared"]
    module = load_script()
    layouts = _recording_layouts(module, monkeypatch)
    module.main(["infer", "--upstream_dir", UPSTREAM_DIR, "--model", "lite-mono", "--height", "64",
                 "--width", "192", "--batch_sizes", "1", "--device", "cpu", "--warmup", "0",
                 "--repeats", "1", "--channels_last"])
    assert layouts and all(layouts)  # ours really ran channels_last (upstream: NCHW)
    (row,) = result["results"]
    assert row["model"] == "lite-mono" and row["batch_size"] == 1 and row["runs"] == 1
    for prefix in ("", "upstream_"):
        assert (row[f"{prefix}latency_min_s"] <= row[f"{prefix}latency_s"]
                <= row[f"{prefix}latency_max_s"])
        assert row[f"{prefix}latency_s"] > 0
    assert row["ratio_upstream_over_ours"] == pytest.approx(
        row["upstream_latency_s"] / row["latency_s"])
    assert 0 <= row["max_abs_disp_diff"] < 1e-5  # same weights, same batch


@pytest.mark.parametrize("flags, name", [
    (["--amp", "bf16"], "--amp bf16"),
    (["--compile"], "--compile"), (["--bins", "8"], "--bins"),
    (["--spatial_attention"], "--spatial_attention"),
    (["--attention", "spatial"], "--attention spatial")])
def test_infer_refuses_what_upstream_cannot_express(tmp_path, capsys, flags, name):
    # refused before the checkout is even looked at: any folder will do
    with pytest.raises(SystemExit) as exit_info:
        load_script().main(["infer", "--upstream_dir", str(tmp_path), *TINY, "--device", "cpu",
                                         *flags])
    assert exit_info.value.code == 2
    assert f"upstream's depth network has no equivalent of {name}" in capsys.readouterr().err


def test_teacher_runs_the_precompute_loop(capsys):
    result, _ = run_script("teacher", [
        "--frames", "3", "--batch_size", "2", "--input_size", "28", "--image_height", "40",
        "--image_width", "120", *TINY, "--warmup", "0", "--repeats", "1"], capsys)
    assert result["frames"] == 3 and result["output_size"] == [32, 64]
    assert result["fps"] == pytest.approx(3 / result["loop_s"])
    assert result["raw_float16_bytes"] == 2 * 32 * 64
    # a compressed float16 map plus the zip container: about the raw size, never far beyond it
    assert 0 < result["bytes_per_frame"] < result["raw_float16_bytes"] + 1024


def test_data_times_every_mode_of_the_training_items(capsys):
    result, _ = run_script("data", [
        "--native_height", "48", "--native_width", "160", *TINY, "--items", "3"], capsys)
    rates = result["samples_per_s_per_worker"]
    assert set(rates) == {"no_aug", "aug_per_frame", "aug_per_item", "aug_per_frame_cached",
                          "upstream_items_per_frame"}
    assert all(math.isfinite(rate) and rate > 0 for rate in rates.values())
    assert result["train_size"] == [32, 64] and result["native_size"] == [48, 160]


@pytest.mark.skipif(not UPSTREAM_DIR, reason="LITEMONO_UPSTREAM_DIR (a Lite-Mono checkout) not set")
def test_vs_upstream_times_both_steps_from_the_same_weights(capsys):
    result, _ = run_script("vs-upstream", [
        "--upstream_dir", UPSTREAM_DIR, "--model", "lite-mono", "--height", "64", "--width", "192",
        "--batch_size", "1", "--device", "cpu", "--warmup", "0", "--repeats", "1"], capsys)
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


@pytest.mark.skipif(not UPSTREAM_DIR, reason="LITEMONO_UPSTREAM_DIR (a Lite-Mono checkout) not set")
def test_vs_upstream_compares_a_compiled_step_from_the_same_random_numbers(capsys, uncompiled):
    inductor_config = uncompiled
    result, _ = run_script("vs-upstream", [
        "--upstream_dir", UPSTREAM_DIR, "--model", "lite-mono", "--height", "64", "--width", "192",
        "--batch_size", "1", "--device", "cpu", "--warmup", "0", "--repeats", "1", "--compile"],
        capsys)
    assert result["compile"] and inductor_config.fallback_random
    assert result["first_loss_rel_diff"] < 1e-4


@pytest.mark.parametrize("where, message", [
    (None, "--upstream_dir is required"), ("absent", "no such folder"),
    ("", "has no trainer.py")])
def test_vs_upstream_names_a_missing_checkout(tmp_path, capsys, where, message):
    argv = [] if where is None else ["--upstream_dir", str(tmp_path / where)]
    with pytest.raises(SystemExit) as exit_info:
        load_script().main(["vs-upstream", *argv, *TINY, "--device", "cpu"])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("flags, name", [
    (["--bins", "8"], "--bins"), (["--spatial_attention"], "--spatial_attention"),
    (["--attention", "spatial"], "--attention spatial"),
    (["--distill_weight", "0.1"], "--distill_weight"),
    (["--bins", "8", "--chamfer_weight", "0.1", "--teacher_dir", "t"],
     "--bins, --chamfer_weight")])
def test_vs_upstream_refuses_what_changes_the_objective(tmp_path, capsys, flags, name):
    with pytest.raises(SystemExit) as exit_info:
        load_script().main(["vs-upstream", "--upstream_dir", str(tmp_path), *TINY,
                                               "--device", "cpu", *flags])
    assert exit_info.value.code == 2
    assert f"no equivalent of {name}" in capsys.readouterr().err




def test_refusals_cover_registered_encoder_families_and_loss_terms(monkeypatch):
    """An encoder family or any registered loss term is not upstream's network or objective."""
    from litemono.config import from_dict
    from litemono.losses.criterion import LOSS_TERMS
    from litemono.models.build import ENCODER_FAMILIES

    assert bench.upstream_refusals(from_dict({})) == []  # the defaults are upstream's
    monkeypatch.setitem(ENCODER_FAMILIES, "toy-family", lambda cfg: None)
    family = from_dict({"model": "toy-family"})
    assert bench.upstream_refusals(family) == ["--model toy-family"]
    assert bench.depth_network_refusals(from_dict({}).model, ["lite-mono", "toy-family"]) \
        == ["--model toy-family"]
    # every registered term's weight is checked, not a fixed list of names
    assert {"distill", "chamfer"} <= set(LOSS_TERMS)
    for name in LOSS_TERMS:
        cfg = from_dict({})  # the weight alone (unvalidated: a term's own checks need more)
        cfg = dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss,
                                                                **{f"{name}_weight": 0.5}))
        assert bench.upstream_refusals(cfg) == [f"--{name}_weight"]


def test_compare_losses_reports_each_steps_relative_difference():
    module = load_script()
    compared = module.compare_losses([1.01, 2.4, 3.0, 9.0], [1.0, 2.0, 3.0, 1.0], steps=3)
    assert compared["steps"] == 3
    assert compared["rel_diff"] == pytest.approx([0.01, 0.2, 0.0])
    assert compared["max_rel_diff"] == pytest.approx(0.2)
    assert compared["within_rtol"] is (0.2 <= module.BF16_LOSS_RTOL)
    assert module.compare_losses([1.0], [1.0])["within_rtol"]


@pytest.mark.usefixtures("uncompiled")  # bf16_graphs: its options reach training; no compile
def test_modes_train_from_the_same_weights_in_every_mode(capsys):
    result, module = run_script("modes", [
        "--model", "lite-mono-tiny", *TINY, "--batch_size", "2", "--device", "cpu",
        "--steps", "3", "--timed_steps", "2", "--modes", "fp32", "bf16_cl", "bf16_graphs",
        "--profile_mode", "bf16_cl", "--profile_steps", "1"], capsys)
    fp32, bf16 = result["modes"]["fp32"], result["modes"]["bf16_cl"]
    for row in (fp32, bf16):
        assert row["ok"] and row["finite"] and len(row["losses"]) == 3 and row["timed_steps"] == 2
        assert row["images_per_s"] == pytest.approx(2 / row["step_s"])
        assert row["epochs_30_h"] == pytest.approx(
            30 * 39810 / row["images_per_s"] / 3600)
    assert bf16["amp"] == "bf16" and bf16["channels_last"] and not fp32["channels_last"]
    # the first fp32 loss is the train subcommand's first loss: same seed, weights and batch
    train, _ = run_script("train", ["--model", "lite-mono-tiny", *TINY, "--batch_size", "2",
                                    "--device", "cpu", "--warmup", "0", "--repeats", "1",
                                    "--phase_repeats", "0"], capsys)
    assert fp32["losses"][0] == train["first_loss"]
    # bf16 follows fp32 within the stated tolerance, step by step
    assert bf16["vs_fp32"]["rel_diff"] == pytest.approx(
        [abs(a - b) / b for a, b in zip(bf16["losses"], fp32["losses"])])
    assert bf16["vs_fp32"]["within_rtol"] and bf16["vs_fp32"]["rtol"] == module.BF16_LOSS_RTOL
    assert bf16["profile"]["steps"] == 1 and "Self CPU" in bf16["profile"]["top_kernels"]
    graphs = result["modes"]["bf16_graphs"]
    assert graphs["ok"] and graphs["finite"] and len(graphs["losses"]) == 3
    assert graphs["compile"] and graphs["compile_mode"] == "reduce-overhead"
    assert graphs["amp"] == "bf16" and graphs["channels_last"]
    assert graphs["vs_fp32"]["within_rtol"]
    assert graphs["losses"] == bf16["losses"]  # torch.compile is the identity here


def _planned(module, argv):
    return module.gpu_plan(module.build_parser().parse_args(["gpu", *argv]))


def test_gpu_plan_covers_issue_22_and_every_command_parses():
    module = load_script()
    plan = _planned(module, ["out"])
    names = [name for name, _, _ in plan]
    rows = sorted(p.stem for p in (ROOT / "configs" / "kitti").glob("0*.yaml"))
    assert names[:len(rows) + 1] == [f"row_{r}" for r in rows] + ["compiled_01_baseline"]
    assert names[len(rows) + 1:] == ["pipeline", "teacher", "compiled_05_full"]
    parser = module.build_parser()
    for name, argv, timeout_s in plan:
        args = parser.parse_args(argv)  # every planned command is a valid bench.py command
        assert 0 < timeout_s <= 180
        if name.startswith(("row_", "compiled_")):
            assert (args.height, args.width, args.batch_size, args.steps) == (192, 640, 12, 50)
            assert args.device == "cuda" and args.weights_init == "scratch"
            assert args.mypretrain == "none" and args.compile_backend is None
            expected = ["fp32", "bf16_cl"] if name.startswith("row_") else [module.COMPILED_MODE]
            assert args.modes == expected
        if name.endswith(module.BASELINE):
            assert args.profile_mode == args.modes[-1]
    teacher = parser.parse_args(dict((n, a) for n, a, _ in plan)["teacher"])
    assert teacher.random_size == "small" and teacher.device == "cuda"
    dry = _planned(module, ["out", "--dry_run", "--rows", "configs/kitti/05_full.yaml"])
    assert [name for name, _, _ in dry] == ["row_05_full", "pipeline", "teacher",
                                            "compiled_05_full"]
    for _, argv, _ in dry:
        args = parser.parse_args(argv)
        assert args.device == "cpu"
        if argv[0] == "modes":
            assert (args.height, args.width, args.steps) == (32, 64, 2)


def _mode(images_per_s, losses, **extra):
    return {"ok": True, "finite": True, "losses": losses, "images_per_s": images_per_s,
            "step_s": 12 / images_per_s, "peak_memory_mb": 100.0,
            "epochs_30_h": 30 * 39810 / images_per_s / 3600, **extra}


def test_gpu_summary_compares_modes_across_processes():
    module = load_script()
    profile = {"steps": 3, "kernel_launches_per_step": 900.0, "top_kernels": "table"}
    measurements = {
        "row_01_baseline": {"ok": True, "result": {"modes": {
            "fp32": _mode(150.0, [1.0, 2.0]),
            "bf16_cl": _mode(300.0, [1.01, 2.0], mode="bf16_cl", profile=profile)}}},
        "compiled_01_baseline": {"ok": True, "result": {"modes": {
            "bf16_compile": _mode(600.0, [1.0, 2.5], mode="bf16_compile",
                                  profile={**profile, "kernel_launches_per_step": 300.0})}}},
        "teacher": {"ok": False, "error": "timed out"}}
    summary = module.gpu_summary(measurements)
    speed = {(r["row"], r["mode"]): r for r in summary["speed"]}
    assert speed[("01_baseline", "bf16_compile")]["speedup_over_fp32"] == pytest.approx(4.0)
    assert speed[("01_baseline", "fp32")]["speedup_over_fp32"] == pytest.approx(1.0)
    checks = summary["correctness"]
    assert checks["01_baseline/bf16_cl"]["vs_fp32"]["max_rel_diff"] == pytest.approx(0.01)
    # the compiled process's losses are compared with the eager process's fp32 losses
    assert checks["01_baseline/bf16_compile"]["vs_fp32"]["max_rel_diff"] == pytest.approx(0.25)
    assert not checks["01_baseline/bf16_compile"]["vs_fp32"]["within_rtol"]
    assert summary["profile"]["mode"] == "bf16_compile"  # the fastest profiled mode
    assert summary["profile"]["kernel_launches_per_step"] == 300.0
    assert summary["all_ok"] is False  # the teacher failed


def test_a_failing_or_hanging_measurement_becomes_json():
    module = load_script()
    failed = module.measure_in_process(["train", "--height", "30", "--device", "cpu"], 120)
    assert not failed["ok"] and failed["error"] == "exit status 2"
    assert "bench.py: error: " in failed["tail"]
    hung = module.run_tool([sys.executable, "-c", "import time; time.sleep(60)"], 1)
    assert hung["timed_out"] and not hung["ok"] and hung["seconds"] < 30


def test_gpu_run_past_its_budget_records_every_measurement_as_skipped(tmp_path, capsys):
    result, module = run_script("gpu", [str(tmp_path), "--dry_run", "--budget_s", "0"], capsys)
    summary = json.loads((tmp_path / "summary.json").read_text())
    names = [name for name, _, _ in _planned(module, [str(tmp_path), "--dry_run"])]
    assert sorted(summary["measurements"]) == sorted(names) == sorted(result["measurements"])
    for name in names:
        saved = json.loads((tmp_path / "measurements" / f"{name}.json").read_text())
        assert not saved["ok"] and saved["error"].startswith("skipped")
    assert summary["all_ok"] is False and result["all_ok"] is False


@pytest.mark.slow
def test_gpu_dry_run_exercises_every_measurement_on_the_cpu(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench.py"), "gpu",
                           str(tmp_path), "--dry_run", "--rows", "configs/kitti/01_baseline.yaml"],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["all_ok"], done.stdout[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert sorted(summary["measurements"]) == ["compiled_01_baseline", "pipeline",
                                               "row_01_baseline", "teacher"]
    compiled = load_script().COMPILED_MODE
    modes = ("fp32", "bf16_cl", compiled)
    assert set(summary["correctness"]) == {f"01_baseline/{mode}" for mode in modes}
    for name, check in summary["correctness"].items():
        assert check["ok"] and check["finite"], name
        if not name.endswith("fp32"):  # compared with fp32 eager over both steps
            assert check["vs_fp32"]["steps"] == 2 and check["vs_fp32"]["within_rtol"], name
    assert summary["profile"]["steps"] == 1 and summary["profile"]["top_kernels"]
    pipeline = json.loads((tmp_path / "measurements" / "pipeline.json").read_text())["result"]
    assert set(pipeline["steps"]) == {"render_scene", "torchrun_train", "torchrun_resume",
                                      "resume_check", "evaluate", "predict"}
    assert pipeline["steps"]["resume_check"]["step_after_resume"] == 2  # 1 step, then resumed to 2
    assert "abs_rel" in pipeline["steps"]["evaluate"]["tail"]
    teacher = json.loads((tmp_path / "measurements" / "teacher.json").read_text())["result"]
    assert teacher["frames"] == 2 and teacher["fps"] > 0


def test_cpu_run_names_a_missing_checkout_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_script().main(["cpu", str(tmp_path / "absent"), str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and err.startswith("bench.py: error: --upstream_dir")
    assert "no such folder" in err and "\n" not in err
    assert not (tmp_path / "out").exists()  # nothing started


def test_cpu_plan_commands_parse():
    module = load_script()
    parser = module.build_parser()
    plan = module.cpu_plan("/some/checkout")
    assert [name for name, _ in plan] == [
        "train_320x96_b4_off", "train_320x96_b4_off_compile", "train_320x96_b4_bf16",
        "train_640x192_b2_off", "train_640x192_b2_off_compile", "train_640x192_b2_bf16",
        "infer_640x192", "data_640x192"]
    for name, argv in plan:
        args = parser.parse_args(argv)
        if name.startswith("train"):
            assert args.command == "vs-upstream" and args.channels_last
            assert args.upstream_dir == "/some/checkout"
            # config flags have no argparse default: only the ones given are present
            assert getattr(args, "compile", False) == name.endswith("_compile")
            assert args.amp == ("bf16" if name.endswith("bf16") else "off")


def test_every_subcommand_option_has_help():
    parser = load_script().build_parser()
    (subparsers,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(subparsers.choices) >= {"train", "infer", "data", "teacher", "vs-upstream",
                                       "learning", "modes", "pipeline", "gpu", "cpu"}
    for name, sub in subparsers.choices.items():
        silent = [a.option_strings[0] for a in sub._actions if a.option_strings and not a.help]
        assert not silent, f"bench.py {name}: options without help text: {silent}"
        flags = {flag for action in sub._actions for flag in action.option_strings}
        assert "--device" not in flags or "--no_cuda" in flags, f"bench.py {name}: no --no_cuda"


def test_a_long_json_result_is_read_whole():
    module = load_script()
    printed = {"losses": list(range(2000)), "table": "x" * 5000}
    code = f"import json; print('progress'); print(json.dumps({printed!r}))"
    run = module.run_tool([sys.executable, "-c", code], 60, keep_output=True)
    assert run["ok"] and len(run["tail"]) == 1500  # the tail alone would cut the JSON
    assert json.loads(run["output"].splitlines()[-1]) == printed


def test_learning_names_a_malformed_option_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_script().main(["learning", "--log_dir", str(tmp_path), "--set", "num_workers"])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and "\n" not in err
    assert err.startswith("bench.py: error: --set expects KEY=VALUE, got 'num_workers'")


def test_the_dry_runs_compile_backend_wins_over_the_callers(monkeypatch):
    calls = []
    monkeypatch.setattr(torch, "compile", lambda *args, **kwargs: calls.append((args, kwargs)))
    load_script().force_compile_backend("eager")  # monkeypatch restores torch.compile afterwards
    torch.compile("fn", mode="reduce-overhead", backend="inductor", fullgraph=True)
    assert calls == [(("fn",), {"backend": "eager", "fullgraph": True})]
