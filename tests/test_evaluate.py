"""Evaluation library, evaluate_depth.py and the gt export on hand-made and synthetic data."""
import importlib.util
import json

import numpy as np
import pytest
import torch
from PIL import Image

import evaluate_depth
from conftest import ROOT
from litemono.evaluation import (batch_post_process_disparity, evaluate_predictions,
                                 load_gt_depths, resize_to, save_gt_depths)

GT_SHAPES = [(40, 130), (38, 124), (42, 128)]


def make_gt(seed=0):
    """Sparse ground truth (about a third of the pixels) between 2 and 70 m."""
    rng = np.random.default_rng(seed)
    maps = []
    for h, w in GT_SHAPES:
        depth = rng.uniform(2, 70, (h, w)).astype(np.float32)
        depth[rng.random((h, w)) < 0.66] = 0.0
        maps.append(depth)
    return maps


def test_gt_round_trip_is_pickle_free(tmp_path):
    maps = make_gt()
    path = tmp_path / "gt_depths.npz"
    save_gt_depths(path, maps)
    with np.load(path, allow_pickle=False) as archive:  # readable without unpickling
        assert all(archive[k].dtype != object for k in archive.files)
    loaded = load_gt_depths(path)
    assert [m.shape for m in loaded] == GT_SHAPES
    for a, b in zip(maps, loaded):
        np.testing.assert_array_equal(a, b)


def test_object_array_gt_needs_allow_pickle(tmp_path):
    maps = make_gt()
    path = tmp_path / "upstream.npz"
    np.savez(path, data=np.array(maps, dtype=object))
    with pytest.raises(ValueError, match="--allow_pickle"):
        load_gt_depths(path)
    for a, b in zip(maps, load_gt_depths(path, allow_pickle=True)):
        np.testing.assert_array_equal(a, b)


def test_missing_gt_names_the_export_script(tmp_path):
    with pytest.raises(FileNotFoundError, match="export_gt_depth.py"):
        load_gt_depths(tmp_path / "nope.npz")


def perfect_disps(maps, height=16, width=48):
    """Disparities at network size that resize back to exactly 1 / gt: a constant per map."""
    disps = []
    for depth in maps:
        depth[depth > 0] = 12.5  # constant depth so the bilinear resize is exact
        disps.append(np.full((height, width), 1.0 / 12.5, np.float32))
    return np.stack(disps)


def test_ext_disp_perfect_prediction(tmp_path, capsys):
    maps = make_gt()
    disps = perfect_disps(maps)
    save_gt_depths(tmp_path / "gt.npz", maps)
    np.save(tmp_path / "disps.npy", disps * 3.0)  # depth a third too small: ratio 3
    csv = tmp_path / "per_image.csv"
    evaluate_depth.main(["--ext_disp_to_eval", str(tmp_path / "disps.npy"),
                         "--gt_path", str(tmp_path / "gt.npz"), "--per_image_csv", str(csv)])
    out = capsys.readouterr().out.strip().splitlines()
    result = json.loads(out[-1])
    assert result["abs_rel"] == pytest.approx(0, abs=1e-6) and result["a1"] == 1.0
    assert any(line.startswith("scaling ratios | median: 3.000") for line in out)
    rows = csv.read_text().splitlines()
    assert rows[0].startswith("index,image,abs_rel") and len(rows) == 1 + len(maps)


def test_ext_disp_count_mismatch_is_an_error(tmp_path, capsys):
    maps = make_gt()
    save_gt_depths(tmp_path / "gt.npz", maps)
    np.save(tmp_path / "disps.npy", perfect_disps(maps)[:2])
    with pytest.raises(SystemExit):
        evaluate_depth.main(["--ext_disp_to_eval", str(tmp_path / "disps.npy"),
                             "--gt_path", str(tmp_path / "gt.npz")])
    assert "same split" in capsys.readouterr().err


def test_mean_is_over_images_not_pixels():
    maps = make_gt()
    disps = perfect_disps(maps)
    disps[0] *= 2.0  # only image 0 is wrong (depth halved) when median scaling is off
    result = evaluate_predictions(disps, maps, "eigen_benchmark", median_scaling=False)
    assert result.per_image[0]["abs_rel"] == pytest.approx(0.5)
    assert result.mean["abs_rel"] == pytest.approx(0.5 / 3)
    assert result.ratios is None


def test_resize_matches_half_pixel_bilinear():
    src = np.arange(6, dtype=np.float32).reshape(2, 3)
    out = resize_to(src, 4, 6)
    # output pixel x samples source x' = (x + 0.5) / 2 - 0.5, clamped to the border
    xs = np.clip((np.arange(6) + 0.5) / 2 - 0.5, 0, 2)
    np.testing.assert_allclose(out[0], np.interp(xs, np.arange(3), src[0]), atol=1e-6)
    np.testing.assert_allclose(out[:, 0], np.interp(np.clip((np.arange(4) + 0.5) / 2 - 0.5, 0, 1),
                                                    [0, 1], src[:, 0]), atol=1e-6)


def test_post_process_independent():
    rng = np.random.default_rng(3)
    left = rng.random((2, 5, 41)).astype(np.float32)
    right = rng.random((2, 5, 41)).astype(np.float32)
    got = batch_post_process_disparity(torch.from_numpy(left), torch.from_numpy(right)).numpy()
    for x in range(41):
        u = x / 40
        w_right = min(max(20 * (0.1 - u), 0.0), 1.0)  # 1 for u <= 5 %, 0 from 10 % on
        w_left = min(max(20 * (u - 0.9), 0.0), 1.0)
        mix = (w_left * left[..., x] + w_right * right[..., x]
               + (1 - w_left - w_right) * (left[..., x] + right[..., x]) / 2)
        np.testing.assert_allclose(got[..., x], mix, atol=1e-6)


def load_script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_export_eigen_gt_is_true_depth_at_velodyne_points(synthetic_kitti, tmp_path):
    """Exported depth = the velodyne forward distance of the true surface point, one pixel
    up-left of the pixel it was sampled at (KITTI's projection quirk)."""
    from litemono.data.synthetic import camera2_to_velodyne
    from litemono.data.synthetic_world import intrinsics

    info = synthetic_kitti
    out = tmp_path / "gt_depths.npz"
    load_script("export_gt_depth").main([
        "--data_path", str(info.root), "--split", "eigen",
        "--split_file", str(info.split_dir / "test_files.txt"), "--output", str(out)])
    lines = (info.split_dir / "test_files.txt").read_text().split("\n")
    lines = [line.split() for line in lines if line.strip()]
    maps = load_gt_depths(out)
    assert len(maps) == len(lines)
    fx, fy, cx, cy = intrinsics(info.height, info.width)
    for (drive, frame, _), gt in zip(lines, maps):
        assert gt.shape == (info.height, info.width)
        true = np.load(info.true_depth_path(drive, int(frame)))
        rows, cols = np.nonzero(gt)
        assert len(rows) > 50
        z = true[rows + 1, cols + 1].astype(np.float64)
        camera = np.stack([(cols + 1 - cx) / fx * z, (rows + 1 - cy) / fy * z, z], axis=1)
        forward = camera2_to_velodyne(camera)[:, 0]
        np.testing.assert_allclose(gt[rows, cols], forward, rtol=1e-4)


def test_export_benchmark_gt_reads_pngs(tmp_path):
    folder = "2011_01_01/2011_01_01_drive_0001_sync"
    png_dir = tmp_path / folder / "proj_depth" / "groundtruth" / "image_02"
    png_dir.mkdir(parents=True)
    raw = np.random.default_rng(0).integers(0, 20000, (12, 30)).astype(np.uint16)
    Image.fromarray(raw).save(png_dir / "0000000005.png")
    (tmp_path / "test_files.txt").write_text(f"{folder} 0000000005 l\n")
    out = tmp_path / "gt.npz"
    load_script("export_gt_depth").main([
        "--data_path", str(tmp_path), "--split", "eigen_benchmark",
        "--split_file", str(tmp_path / "test_files.txt"), "--output", str(out)])
    (gt,) = load_gt_depths(out)
    np.testing.assert_array_equal(gt, raw.astype(np.float32) / 256.0)


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    from litemono import io
    from litemono.config import ModelConfig
    from litemono.models.build import build_depth_network, depth_state_dicts

    torch.manual_seed(0)
    net = build_depth_network(ModelConfig(model="lite-mono-tiny", height=64, width=192))
    folder = tmp_path_factory.mktemp("tiny_weights")
    for name, state in depth_state_dicts(net, 64, 192).items():
        io.save_torch(state, folder / f"{name}.pth")
    return folder


def network_disps(weights, info, flip=False):
    """Scaled disparities of the synthetic test frames, one image at a time."""
    from litemono.models.build import load_depth_network

    net = load_depth_network(weights, "cpu")
    out = []
    for line in (info.split_dir / "test_files.txt").read_text().split("\n"):
        if not line.strip():
            continue
        drive, frame, _ = line.split()
        image = Image.open(info.image_path(drive, int(frame))).convert("RGB")
        small = np.asarray(image.resize((192, 64), Image.LANCZOS), np.float32) / 255.0
        tensor = torch.from_numpy(small).permute(2, 0, 1)[None]
        with torch.no_grad():
            disp = net(tensor.flip(-1) if flip else tensor)[("disp", 0)][0, 0]
        disp = 0.01 + (10.0 - 0.01) * disp  # disp_to_depth, 0.1 .. 100 m
        out.append((disp.flip(-1) if flip else disp).numpy())
    return np.stack(out)


@pytest.mark.parametrize("post_process", [False, True], ids=["plain", "post_process"])
def test_model_path_on_synthetic_scene(synthetic_kitti, tiny_weights, tmp_path, capsys,
                                       post_process):
    from litemono.models.build import load_depth_network
    from litemono.models.profile import count_parameters

    info = synthetic_kitti
    lines = [line.split() for line in (info.split_dir / "test_files.txt").read_text().split("\n")
             if line.strip()]
    save_gt_depths(tmp_path / "gt.npz",
                   [np.load(info.true_depth_path(d, int(f))) for d, f, _ in lines])
    common = ["--gt_path", str(tmp_path / "gt.npz"), "--eval_split", "eigen"]
    evaluate_depth.main(common + [
        "--load_weights_folder", str(tiny_weights), "--data_path", str(info.root),
        "--split_folder", str(info.split_dir), "--device", "cpu", "--batch_size", "3",
        "--num_workers", "0", "--save_pred_disps"] + (["--post_process"] if post_process else []))
    out = capsys.readouterr().out.strip().splitlines()
    saved = np.load(tiny_weights / "disps_eigen_split.npy")
    want = network_disps(tiny_weights, info)
    if post_process:
        want = batch_post_process_disparity(torch.from_numpy(want),
                                            torch.from_numpy(network_disps(tiny_weights, info,
                                                                           flip=True))).numpy()
    np.testing.assert_allclose(saved, want, atol=1e-5)
    params = count_parameters(load_depth_network(tiny_weights, "cpu"))
    header, row = out[-3].split("|"), out[-2].split("|")
    assert float(row[header.index(" params (M) ")]) == pytest.approx(params / 1e6, abs=1e-3)
    # the saved disparities evaluate to the same numbers through --ext_disp_to_eval
    evaluate_depth.main(common + ["--ext_disp_to_eval",
                                  str(tiny_weights / "disps_eigen_split.npy")])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == json.loads(out[-1])


def test_depth_range_comes_from_the_training_run(tmp_path):
    from litemono.evaluation import depth_range

    weights = tmp_path / "run" / "models" / "weights_3"
    weights.mkdir(parents=True)
    assert depth_range(str(weights)) == (0.1, 100.0, "default")
    assert depth_range(None, 0.5, None) == (0.5, 100.0, "command line")
    (weights.parent / "opt.json").write_text(json.dumps({"min_depth": 0.01, "max_depth": 80.0}))
    low, high, note = depth_range(str(weights))
    assert (low, high) == (0.01, 80.0) and "opt.json" in note and "WARNING" not in note
    assert depth_range(str(weights), 0.01, 80.0)[:2] == (0.01, 80.0)
    low, high, note = depth_range(str(weights), 0.1, None)
    assert (low, high) == (0.1, 80.0) and "WARNING" in note and "--min_depth 0.01" in note


def test_evaluate_reads_the_sigmoid_with_the_runs_depth_range(synthetic_kitti, tiny_weights,
                                                              tmp_path, capsys):
    import shutil

    info = synthetic_kitti
    lines = [line.split() for line in (info.split_dir / "test_files.txt").read_text().split("\n")
             if line.strip()]
    save_gt_depths(tmp_path / "gt.npz",
                   [np.load(info.true_depth_path(d, int(f))) for d, f, _ in lines])
    weights = tmp_path / "run" / "models" / "weights_0"
    shutil.copytree(tiny_weights, weights)
    (weights / "disps_eigen_split.npy").unlink(missing_ok=True)
    args = ["--gt_path", str(tmp_path / "gt.npz"), "--load_weights_folder", str(weights),
            "--data_path", str(info.root), "--split_folder", str(info.split_dir), "--device", "cpu",
            "--num_workers", "0", "--save_pred_disps"]
    evaluate_depth.main(args)
    assert "(default)" in capsys.readouterr().out
    default = np.load(weights / "disps_eigen_split.npy")
    (weights.parent / "opt.json").write_text(json.dumps({"min_depth": 0.01, "max_depth": 100.0}))
    evaluate_depth.main(args)
    assert "0.01..100 m (from" in capsys.readouterr().out
    sigmoid = (default - 1 / 100.0) / (1 / 0.1 - 1 / 100.0)
    np.testing.assert_allclose(np.load(weights / "disps_eigen_split.npy"),
                               1 / 100.0 + (1 / 0.01 - 1 / 100.0) * sigmoid, rtol=1e-4)


def evaluate_error(capsys, argv):
    """Run evaluate_depth.py, expect exit 2 with one ``evaluate_depth.py: error:`` line."""
    with pytest.raises(SystemExit) as exit_info:
        evaluate_depth.main([str(a) for a in argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("evaluate_depth.py: error: ") and "\n" not in err, err
    return err


def test_eval_stereo_is_fixed_scale_without_median_scaling(tmp_path, capsys):
    maps = make_gt()
    disps = perfect_disps(maps) * 5.4  # depth = gt / 5.4: a stereo model's units
    save_gt_depths(tmp_path / "gt.npz", maps)
    np.save(tmp_path / "disps.npy", disps)
    common = ["--ext_disp_to_eval", str(tmp_path / "disps.npy"), "--gt_path",
              str(tmp_path / "gt.npz"), "--eval_split", "eigen_benchmark"]
    stereo = evaluate_depth.main(common + ["--eval_stereo"])
    out = capsys.readouterr().out
    assert stereo["abs_rel"] == pytest.approx(0, abs=1e-6) and "scaling ratios" not in out
    unscaled = evaluate_depth.main(common + ["--disable_median_scaling", "--eval_mono"])
    assert unscaled["abs_rel"] == pytest.approx(1 - 1 / 5.4, rel=1e-5)
    with pytest.raises(SystemExit):
        evaluate_depth.main(common + ["--eval_stereo", "--eval_mono"])
    assert "not allowed with" in capsys.readouterr().err
    err = evaluate_error(capsys, common + ["--eval_stereo", "--pred_depth_scale_factor", "2"])
    assert "--eval_stereo" in err and "--pred_depth_scale_factor" in err


def test_gt_of_the_other_split_is_refused(tmp_path, capsys):
    maps = make_gt()
    save_gt_depths(tmp_path / "eigen.npz", maps, split="eigen")
    np.save(tmp_path / "disps.npy", perfect_disps(maps))
    args = ["--ext_disp_to_eval", tmp_path / "disps.npy", "--gt_path", tmp_path / "eigen.npz"]
    evaluate_depth.main([str(a) for a in args])  # --eval_split eigen: accepted
    err = evaluate_error(capsys, args + ["--eval_split", "eigen_benchmark"])
    assert "labelled eigen" in err and "--eval_split eigen" in err
    # upstream's unlabelled file: recognised by its 697 maps (eigen's test split)
    small = [np.full((2, 3), 10.0, np.float32)] * 697
    save_gt_depths(tmp_path / "upstream.npz", small)
    np.save(tmp_path / "small.npy", np.full((697, 2, 3), 0.1, np.float32))
    err = evaluate_error(capsys, ["--ext_disp_to_eval", tmp_path / "small.npy", "--gt_path",
                                  tmp_path / "upstream.npz", "--eval_split", "eigen_benchmark"])
    assert "697 maps" in err and "--gt_path" in err


def test_per_image_csv_names_the_images(tmp_path):
    maps = make_gt()
    save_gt_depths(tmp_path / "gt.npz", maps)
    np.save(tmp_path / "disps.npy", perfect_disps(maps))
    lines = [f"2011_09_26/2011_09_26_drive_0002_sync {i:010d} l" for i in (5, 69, 7)]
    (tmp_path / "test_files.txt").write_text("\n".join(lines) + "\n")
    evaluate_depth.main(["--ext_disp_to_eval", str(tmp_path / "disps.npy"), "--gt_path",
                         str(tmp_path / "gt.npz"), "--split_folder", str(tmp_path),
                         "--per_image_csv", str(tmp_path / "rows.csv")])
    rows = [row.split(",") for row in (tmp_path / "rows.csv").read_text().splitlines()]
    assert rows[0][:2] == ["index", "image"]
    assert [row[1] for row in rows[1:]] == lines


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_missing_cuda_is_one_line_before_loading(tiny_weights, tmp_path, capsys):
    save_gt_depths(tmp_path / "gt.npz", make_gt())
    err = evaluate_error(capsys, ["--load_weights_folder", tiny_weights, "--gt_path",
                                  tmp_path / "gt.npz", "--device", "cuda"])
    assert "--device cuda: no CUDA device here; use --device cpu" in err


def test_weights_folder_range_wins_over_opt_json(tmp_path):
    from litemono import io
    from litemono.config import ModelConfig
    from litemono.evaluation import depth_range
    from litemono.models.build import build_depth_network, depth_state_dicts

    net = build_depth_network(ModelConfig(model="lite-mono-tiny", height=32, width=64))
    weights = tmp_path / "run" / "models" / "weights_0"
    for name, state in depth_state_dicts(net, 32, 64, depth_range=(0.05, 60.0)).items():
        io.save_torch(state, weights / f"{name}.pth")
    (weights.parent / "opt.json").write_text(json.dumps({"min_depth": 0.1, "max_depth": 100.0}))
    low, high, note = depth_range(str(weights))
    assert (low, high) == (0.05, 60.0) and "encoder.pth" in note
