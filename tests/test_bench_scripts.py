"""scripts/bench_*.py and litemono.benchmark: tiny runs print one JSON line with the expected
keys; the synthetic batch follows the sample schema. No timing is asserted."""
import importlib.util
import json
import math
import os

import pytest
import torch

from conftest import ROOT
from litemono import benchmark as bench

TINY = ["--height", "32", "--width", "64"]
# a checkout of noahzn/Lite-Mono's training code for scripts/bench_vs_upstream.py (optional)
UPSTREAM_DIR = os.environ.get("LITEMONO_UPSTREAM_DIR")


def load_script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(name, argv, capsys):
    module = load_script(name)
    returned = module.main(argv)
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


def test_bench_train_times_the_engine_step_with_a_phase_split(capsys):
    result, module = run_script("bench_train", [
        "--model", "lite-mono-tiny", *TINY, "--batch_size", "2", "--device", "cpu",
        "--distill", "--warmup", "0", "--repeats", "2", "--phase_repeats", "1"], capsys)
    assert result["benchmark"] == "train_step" and result["runs"] == 2
    assert list(result["phases_s"]) == sorted(module.PHASES)
    assert all(v > 0 for v in result["phases_s"].values())
    assert result["step_min_s"] <= result["step_s"] <= result["step_max_s"]
    assert result["options"]["distill_weight"] == module.DISTILL_SHORTCUT_WEIGHT
    assert result["options"]["scales"] == [0, 1, 2] and result["options"]["automasking"]
    assert math.isfinite(result["first_loss"]) and result["first_loss"] > 0
    assert result["samples_per_s"] == pytest.approx(2 / result["step_s"])
    assert result["peak_memory_mb"] > 0


def test_bench_train_rejects_bad_flags(capsys):
    with pytest.raises(SystemExit):
        run_script("bench_train", ["--model", "lite-mono-tiny", "--height", "30"], capsys)
    assert "--height must be a positive multiple of 32" in capsys.readouterr().err


def test_bench_infer_reports_every_variant_and_batch_size(capsys):
    result, _ = run_script("bench_infer", [
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
def test_bench_infer_runs_our_network_in_the_reported_layout(flag, expected, capsys, monkeypatch):
    module = load_script("bench_infer")
    layouts = _recording_layouts(module, monkeypatch)
    module.main(["--model", "lite-mono-tiny", *TINY, "--device", "cpu", "--warmup", "0",
                 "--repeats", "2", *flag])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["channels_last"] is expected
    assert layouts and set(layouts) == {expected}


@pytest.mark.skipif(not UPSTREAM_DIR, reason="LITEMONO_UPSTREAM_DIR (a Lite-Mono checkout) not set")
def test_bench_infer_times_upstream_beside_ours_from_the_same_weights(capsys, monkeypatch):
    result, _ = run_script("bench_infer", [
        "--upstream_dir", UPSTREAM_DIR, "--model", "lite-mono", "--height", "64", "--width", "192",
        "--batch_sizes", "1", "--device", "cpu", "--warmup", "0", "--repeats", "1",
        "--channels_last"], capsys)
    assert result["channels_last"] is True  # ours as asked; upstream's is NCHW
    assert result["upstream_encoder_size"] == [192, 640] and result["weights_shared"]
    module = load_script("bench_infer")
    layouts = _recording_layouts(module, monkeypatch)
    module.main(["--upstream_dir", UPSTREAM_DIR, "--model", "lite-mono", "--height", "64",
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
    (["--spatial_attention"], "--spatial_attention")])
def test_bench_infer_refuses_what_upstream_cannot_express(tmp_path, capsys, flags, name):
    # refused before the checkout is even looked at: any folder will do
    with pytest.raises(SystemExit) as exit_info:
        load_script("bench_infer").main(["--upstream_dir", str(tmp_path), *TINY, "--device", "cpu",
                                         *flags])
    assert exit_info.value.code == 2
    assert f"upstream's depth network has no equivalent of {name}" in capsys.readouterr().err


def test_bench_teacher_runs_the_precompute_loop(capsys):
    result, _ = run_script("bench_teacher", [
        "--frames", "3", "--batch_size", "2", "--input_size", "28", "--image_height", "40",
        "--image_width", "120", *TINY, "--warmup", "0", "--repeats", "1"], capsys)
    assert result["frames"] == 3 and result["output_size"] == [32, 64]
    assert result["fps"] == pytest.approx(3 / result["loop_s"])
    assert result["raw_float16_bytes"] == 2 * 32 * 64
    # a compressed float16 map plus the zip container: about the raw size, never far beyond it
    assert 0 < result["bytes_per_frame"] < result["raw_float16_bytes"] + 1024


def test_bench_data_times_every_mode_of_the_training_items(capsys):
    result, _ = run_script("bench_data", [
        "--native_height", "48", "--native_width", "160", *TINY, "--items", "3"], capsys)
    rates = result["samples_per_s_per_worker"]
    assert set(rates) == {"no_aug", "aug_per_frame", "aug_per_item", "aug_per_frame_cached",
                          "upstream_items_per_frame"}
    assert all(math.isfinite(rate) and rate > 0 for rate in rates.values())
    assert result["train_size"] == [32, 64] and result["native_size"] == [48, 160]


@pytest.mark.skipif(not UPSTREAM_DIR, reason="LITEMONO_UPSTREAM_DIR (a Lite-Mono checkout) not set")
def test_bench_vs_upstream_times_both_steps_from_the_same_weights(capsys):
    result, _ = run_script("bench_vs_upstream", [
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


@pytest.mark.parametrize("where, message", [
    (None, "--upstream_dir is required"), ("absent", "no such folder"),
    ("", "has no trainer.py")])
def test_bench_vs_upstream_names_a_missing_checkout(tmp_path, capsys, where, message):
    argv = [] if where is None else ["--upstream_dir", str(tmp_path / where)]
    with pytest.raises(SystemExit) as exit_info:
        load_script("bench_vs_upstream").main([*argv, *TINY, "--device", "cpu"])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("flags, name", [
    (["--bins", "8"], "--bins"), (["--spatial_attention"], "--spatial_attention"),
    (["--compile"], "--compile"), (["--distill_weight", "0.1"], "--distill_weight")])
def test_bench_vs_upstream_refuses_what_changes_the_objective(tmp_path, capsys, flags, name):
    with pytest.raises(SystemExit) as exit_info:
        load_script("bench_vs_upstream").main(["--upstream_dir", str(tmp_path), *TINY,
                                               "--device", "cpu", *flags])
    assert exit_info.value.code == 2
    assert f"no equivalent of {name}" in capsys.readouterr().err


def test_bench_cpu_script_parses_and_asks_for_the_checkout():
    import subprocess

    script = ROOT / "scripts" / "bench_cpu.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True)
    assert done.returncode == 2 and "UPSTREAM_DIR" in done.stderr
