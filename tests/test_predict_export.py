"""scripts/predict.py and scripts/export_onnx.py on a tiny lite-mono-tiny network."""
import hashlib
import importlib.util

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from conftest import ROOT
from litemono import io
from litemono.config import ModelConfig
from litemono.models.build import (build_depth_network, depth_state_dicts, load_depth_network,
                                   read_depth_range)

HEIGHT, WIDTH = 64, 192


def load_script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    net = build_depth_network(ModelConfig(model="lite-mono-tiny", height=HEIGHT, width=WIDTH))
    folder = tmp_path_factory.mktemp("weights")
    for name, state in depth_state_dicts(net, HEIGHT, WIDTH).items():
        io.save_torch(state, folder / f"{name}.pth")
    return folder


def expected_disp(net, image, min_depth=0.1, max_depth=100.0):
    """One image alone through the network, written without the script's helpers."""
    small = np.asarray(image.resize((WIDTH, HEIGHT), Image.LANCZOS), np.float32) / 255.0
    with torch.no_grad():
        disp = net(torch.from_numpy(small).permute(2, 0, 1)[None])[("disp", 0)]
    scaled = 1 / max_depth + (1 / min_depth - 1 / max_depth) * disp  # disp_to_depth
    return F.interpolate(scaled, size=(image.height, image.width), mode="bilinear",
                         align_corners=False)[0, 0].numpy()


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_predict_folder(weights, tmp_path):
    rng = np.random.default_rng(0)
    images = {"a.png": (50, 150), "b.jpg": (70, 210), "c.png": (64, 192)}
    for name, (h, w) in images.items():
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(tmp_path / name)
    inputs = {p.name: digest(p) for p in tmp_path.iterdir()}
    predict = load_script("predict")
    assert predict.main(["--load_weights_folder", str(weights), "--image_path", str(tmp_path),
                         "--batch_size", "2", "--device", "cpu"]) == 3
    net = load_depth_network(weights, "cpu")
    for name, (h, w) in images.items():
        stem = name.split(".")[0]
        disp = np.load(tmp_path / f"{stem}_disp.npy")
        want = expected_disp(net, Image.open(tmp_path / name).convert("RGB"))
        np.testing.assert_allclose(disp, want, atol=1e-5)
        with Image.open(tmp_path / f"{stem}_disp.png") as png:  # full range, scale in the text
            scale = float(png.text["scale"])
            assert np.asarray(png).max() == 65535 and scale == pytest.approx(disp.max() / 65535)
            np.testing.assert_array_equal(np.asarray(png), np.round(disp / scale))
        color = np.asarray(Image.open(tmp_path / f"{stem}_disp_color.png"))
        assert color.shape == (h, w, 3)
        brightest = disp >= np.percentile(disp, 95)
        assert np.all(color[brightest] == [252, 253, 191])  # the top of the magma ramp
        assert np.all(color[disp == disp.min()] == [0, 0, 4])
    # a second run skips its own outputs and leaves the inputs untouched
    before = sorted(p.name for p in tmp_path.iterdir())
    assert predict.main(["--load_weights_folder", str(weights), "--image_path", str(tmp_path),
                         "--device", "cpu", "--pred", "depth", "--vmin", "0", "--vmax", "1"]) == 3
    assert {p.name: digest(p) for p in tmp_path.iterdir() if p.name in inputs} == inputs
    depth = np.load(tmp_path / "a_depth.npy")
    np.testing.assert_allclose(depth, 1.0 / np.load(tmp_path / "a_disp.npy"), rtol=1e-6)
    assert len(list(tmp_path.iterdir())) == len(before) + 2 * 3  # depth npy + png per image


def test_predict_video_frames(weights, tmp_path):
    frames = [Image.new("RGB", (96, 32), (40 * i, 90, 200 - 40 * i)) for i in range(3)]
    frames[0].save(tmp_path / "clip.gif", save_all=True, append_images=frames[1:], duration=50)
    out = tmp_path / "out"
    predict = load_script("predict")
    assert predict.main(["--load_weights_folder", str(weights), "--image_path",
                         str(tmp_path / "clip.gif"), "--output_dir", str(out),
                         "--device", "cpu"]) == 3
    assert sorted(p.name for p in out.glob("*.npy")) == [f"clip_{i:06d}_disp.npy" for i in range(3)]
    assert np.load(out / "clip_000002_disp.npy").shape == (32, 96)


@pytest.mark.parametrize("flags", [[], ["--bins", "8", "--spatial_attention", "--all_outputs"]],
                         ids=["weights", "bins-attention-random"])
def test_onnx_parity_and_dynamic_batch(weights, tmp_path, flags):
    pytest.importorskip("onnxruntime")
    import onnx

    export = load_script("export_onnx")
    path = tmp_path / "net.onnx"
    source = (["--load_weights_folder", str(weights)] if not flags else
              ["--model", "lite-mono-tiny", "--height", str(HEIGHT), "--width", str(WIDTH)])
    difference = export.main(source + flags + ["--output", str(path)])
    assert difference <= 1e-4
    graph = onnx.load(str(path)).graph
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    names = [o.name for o in graph.output]
    assert names == (["disp_0"] if not flags else
                     ["disp_0", "disp_1", "disp_2", "bin_centers", "bin_probs"])


def run_predict(*argv):
    return load_script("predict").main([str(a) for a in argv])


def one_line_error(capsys, *argv):
    """Run predict.py, expect exit 2 with one ``predict.py: error:`` line; return it."""
    with pytest.raises(SystemExit) as exit_info:
        run_predict(*argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("predict.py: error: ") and "\n" not in err, err
    return err


def test_depth_png_keeps_the_precision_of_arbitrary_scale_depth(weights, tmp_path):
    from litemono.depth_png import read_png16

    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 192, 3), np.uint8)).save(
        tmp_path / "x.png")
    run_predict("--load_weights_folder", weights, "--image_path", tmp_path / "x.png",
                "--pred", "depth", "--device", "cpu")
    depth = np.load(tmp_path / "x_depth.npy")
    decoded = read_png16(tmp_path / "x_depth.png")
    # one step of 65536 levels over the map's range (x 256 left ~1/512 m steps: 1-2 levels here)
    assert np.abs(decoded - depth).max() <= depth.max() / 65535
    assert len(np.unique(decoded)) > 100
    # metric output: --pred_depth_scale_factor, KITTI's x256 PNG
    run_predict("--load_weights_folder", weights, "--image_path", tmp_path / "x.png",
                "--pred", "depth", "--pred_depth_scale_factor", "5.4", "--device", "cpu",
                "--output_dir", tmp_path / "metric")
    metric = np.load(tmp_path / "metric" / "x_depth.npy")
    np.testing.assert_allclose(metric, 5.4 * depth, rtol=1e-5)
    raw = np.asarray(Image.open(tmp_path / "metric" / "x_depth.png"))
    np.testing.assert_array_equal(raw, np.round(metric.astype(np.float64) * 256))


def test_predict_one_line_errors(weights, tmp_path, capsys):
    Image.new("RGB", (32, 16)).save(tmp_path / "x.png")
    base = ["--load_weights_folder", weights, "--image_path", tmp_path / "x.png"]
    err = one_line_error(capsys, *base, "--pred_depth_scale_factor", "5.4")
    assert "--pred depth" in err
    err = one_line_error(capsys, "--load_weights_folder", tmp_path, "--image_path",
                         tmp_path / "x.png", "--device", "cpu")
    assert "encoder.pth" in err and "--load_weights_folder" in err
    err = one_line_error(capsys, *base, "--vmin", "0")
    assert "--vmax" in err
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    for name in ("encoder.pth", "depth.pth"):
        data = (weights / name).read_bytes()
        (truncated / name).write_bytes(data[:len(data) // 2] if name == "depth.pth" else data)
    err = one_line_error(capsys, "--load_weights_folder", truncated, "--image_path",
                         tmp_path / "x.png", "--device", "cpu")
    assert f"cannot read {truncated / 'depth.pth'}" in err and "truncated" in err
    if not torch.cuda.is_available():
        err = one_line_error(capsys, *base, "--device", "cuda")
        assert "no CUDA device" in err and "--device cpu" in err


def test_predict_reads_16_bit_grayscale_by_its_range(weights, tmp_path):
    ramp = np.linspace(0, 65535, 96, dtype=np.float64)[None].repeat(32, 0)
    ramp[:, ::7] = 1000  # stripes, so the image is not a plain ramp
    Image.fromarray(ramp.astype(np.uint16)).save(tmp_path / "gray16.png")
    assert Image.open(tmp_path / "gray16.png").mode.startswith("I")
    run_predict("--load_weights_folder", weights, "--image_path", tmp_path / "gray16.png",
                "--device", "cpu", "--no_cuda")
    eight_bit = np.round(ramp / 65535 * 255).astype(np.uint8)
    want = expected_disp(load_depth_network(weights, "cpu"),
                         Image.fromarray(eight_bit).convert("RGB"))
    np.testing.assert_allclose(np.load(tmp_path / "gray16_disp.npy"), want, atol=1e-5)


def test_copied_weights_folder_keeps_its_depth_range(tmp_path, capsys):
    torch.manual_seed(0)
    net = build_depth_network(ModelConfig(model="lite-mono-tiny", height=HEIGHT, width=WIDTH))
    folder = tmp_path / "anywhere" / "weights_7"  # no run folder, no opt.json above it
    folder.mkdir(parents=True)
    for name, state in depth_state_dicts(net, HEIGHT, WIDTH, depth_range=(0.01, 80.0)).items():
        io.save_torch(state, folder / f"{name}.pth")
    assert read_depth_range(folder) == (0.01, 80.0)
    image = Image.fromarray(np.random.default_rng(2).integers(0, 255, (40, 120, 3), np.uint8))
    image.save(tmp_path / "x.png")
    run_predict("--load_weights_folder", folder, "--image_path", tmp_path / "x.png",
                "--device", "cpu")
    assert "0.01..80 m (from" in capsys.readouterr().out
    want = expected_disp(load_depth_network(folder), image, 0.01, 80.0)
    np.testing.assert_allclose(np.load(tmp_path / "x_disp.npy"), want, atol=1e-4)


def test_predict_writes_a_video_of_the_coloured_disparity(weights, tmp_path, capsys):
    import imageio.v3 as iio

    frames = [Image.new("RGB", (96, 32), (60 * i, 90, 200 - 60 * i)) for i in range(3)]
    frames[0].save(tmp_path / "clip.gif", save_all=True, append_images=frames[1:], duration=50)
    run_predict("--load_weights_folder", weights, "--image_path", tmp_path / "clip.gif",
                "--device", "cpu", "--output_dir", tmp_path / "out",
                "--color_video", tmp_path / "out" / "clip_disp.gif")
    video = iio.imread(tmp_path / "out" / "clip_disp.gif", index=None)
    assert video.shape[:3] == (3, 32, 96)
    first = np.asarray(Image.open(tmp_path / "out" / "clip_000000_disp_color.png"))
    assert np.abs(video[0][..., :3].astype(int) - first).mean() < 8  # GIF palette rounding
    if importlib.util.find_spec("av") is not None:  # pyav installed: mp4 out (even sizes)
        run_predict("--load_weights_folder", weights, "--image_path", tmp_path / "clip.gif",
                    "--device", "cpu", "--output_dir", tmp_path / "out",
                    "--color_video", tmp_path / "out" / "clip_disp.mp4")
        assert iio.imread(tmp_path / "out" / "clip_disp.mp4", plugin="pyav",
                          index=None).shape == (3, 32, 96, 3)
    else:  # mp4 needs pyav: one line naming the extra
        err = one_line_error(capsys, "--load_weights_folder", weights, "--image_path",
                             tmp_path / "clip.gif", "--color_video", tmp_path / "v.mp4")
        assert "pyav" in err and ".[video]" in err and "--color_video" in err
        (tmp_path / "drive.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
        err = one_line_error(capsys, "--load_weights_folder", weights, "--image_path",
                             tmp_path / "drive.mp4", "--device", "cpu")
        assert "pyav" in err and "--image_path" in err


def test_export_refuses_model_flags_that_contradict_the_weights(weights, tmp_path, capsys):
    export = load_script("export_onnx")
    with pytest.raises(SystemExit) as exit_info:
        export.main(["--load_weights_folder", str(weights), "--model", "lite-mono",
                     "--output", str(tmp_path / "x.onnx")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("export_onnx.py: error: ") and "\n" not in err
    assert "--model lite-mono (the weights are lite-mono-tiny)" in err
    assert not (tmp_path / "x.onnx").exists()


def test_export_stores_the_depth_range(tmp_path):
    onnx = pytest.importorskip("onnx")
    torch.manual_seed(0)
    net = build_depth_network(ModelConfig(model="lite-mono-tiny", height=HEIGHT, width=WIDTH))
    for name, state in depth_state_dicts(net, HEIGHT, WIDTH, depth_range=(0.01, 80.0)).items():
        io.save_torch(state, tmp_path / "w" / f"{name}.pth")
    load_script("export_onnx").main(["--load_weights_folder", str(tmp_path / "w"), "--model",
                                     "lite-mono-tiny", "--no_cuda", "--no-check",
                                     "--output", str(tmp_path / "x.onnx")])
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "x.onnx")).metadata_props}
    assert (float(meta["min_depth"]), float(meta["max_depth"])) == (0.01, 80.0)
