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
from litemono.models.build import build_depth_network, depth_state_dicts, load_depth_network

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


def expected_disp(net, image):
    """One image alone through the network, written without the script's helpers."""
    small = np.asarray(image.resize((WIDTH, HEIGHT), Image.LANCZOS), np.float32) / 255.0
    with torch.no_grad():
        disp = net(torch.from_numpy(small).permute(2, 0, 1)[None])[("disp", 0)]
    scaled = 0.01 + (10.0 - 0.01) * disp  # disp_to_depth with 0.1 .. 100 m
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
        png = np.asarray(Image.open(tmp_path / f"{stem}_disp.png"))
        np.testing.assert_array_equal(png, np.round(disp * 256).astype(np.uint16))
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


def test_predict_rejects_half_a_colour_range(weights, tmp_path):
    with pytest.raises(SystemExit):
        load_script("predict").main(["--load_weights_folder", str(weights), "--image_path",
                                     str(tmp_path), "--vmin", "0"])


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
