"""scripts/compare.py: the grid's pixels and abs_rel against an independent prediction, the
ablation log dir's rows and seeds, one-line errors."""
import importlib.util

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from conftest import ROOT
from litemono.checkpoint import save_weights_folder
from litemono.config import ModelConfig
from litemono.data import synthetic
from litemono.data.splits import parse_split_line, read_split_lines
from litemono.logging_utils import COLOUR_ANCHORS, colourise
from litemono.metrics import evaluate_depth_map
from litemono.models.build import build_depth_network, depth_state_dicts, load_depth_network
from litemono.teacher.synthetic import true_depth_path

HEIGHT, WIDTH = 32, 96  # the scene's frames and the small model's input
CELL = (24, 72)  # the grid's cells in the split test: every picture is resized


def load_compare():
    spec = importlib.util.spec_from_file_location("script_compare", ROOT / "scripts" / "compare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def save_tiny(folder, height, width, seed):
    torch.manual_seed(seed)
    net = build_depth_network(ModelConfig(model="lite-mono-tiny", height=height, width=width))
    save_weights_folder(folder, depth_state_dicts(net, height, width))
    return folder


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("scene")
    synthetic.make_synthetic_kitti(root, drives=1, frames_per_drive=5, height=HEIGHT,
                                   width=WIDTH, workers=1)
    return root


@pytest.fixture(scope="module")
def ablation(tmp_path_factory):
    """An ablation log dir made with seeds: rows 01_small (32x96; weights_2 is the last) and
    02_big (64x192) under seed_0, a row under seed_1."""
    log = tmp_path_factory.mktemp("ablation")
    save_tiny(log / "seed_0" / "01_small" / "models" / "weights_0", HEIGHT, WIDTH, seed=1)
    save_tiny(log / "seed_0" / "01_small" / "models" / "weights_2", HEIGHT, WIDTH, seed=2)
    save_tiny(log / "seed_0" / "02_big" / "models" / "weights_1", 2 * HEIGHT, 2 * WIDTH, seed=3)
    save_tiny(log / "seed_1" / "01_small" / "models" / "weights_0", HEIGHT, WIDTH, seed=4)
    return log


def expected_disp(weights, image):
    """Scaled disparity at the image's size, without the script's or predict.py's helpers."""
    net = load_depth_network(weights, "cpu")
    small = np.asarray(image.resize((net.width, net.height), Image.LANCZOS), np.float32) / 255
    with torch.no_grad():
        disp = net(torch.from_numpy(small).permute(2, 0, 1)[None])[("disp", 0)]
    scaled = 1 / 100.0 + (1 / 0.1 - 1 / 100.0) * disp  # disp_to_depth, range 0.1..100
    return F.interpolate(scaled, size=(image.height, image.width), mode="bilinear",
                         align_corners=False)[0, 0].numpy()


def resized(values, size, mode="bilinear"):
    tensor = torch.from_numpy(values)[None, None]
    if mode == "nearest":
        return F.interpolate(tensor, size=size, mode="nearest")[0, 0].numpy()
    return F.interpolate(tensor, size=size, mode=mode, align_corners=False)[0, 0].numpy()


def colours(disp, low, high):
    return (colourise(torch.from_numpy(disp), low, high).permute(1, 2, 0).numpy() * 255
            ).round().astype(np.uint8)


def test_grid_matches_independent_predictions(scene, ablation, tmp_path):
    compare = load_compare()
    split = scene / synthetic.SPLIT_FOLDER / "train_files.txt"  # lines of both cameras
    output = tmp_path / "grid.png"
    result = compare.main(["--models", str(ablation), "--frames", str(split), "--data_path",
                           str(scene), "--indices", "0", "2", "--output", str(output),
                           "--cell_size", *map(str, CELL), "--device", "cpu"])

    assert result.labels == ["input", "01_small", "02_big", "true disparity"]
    line = compare.TEXT_LINE
    grid = np.asarray(Image.open(output))
    np.testing.assert_array_equal(grid, result.grid)
    height, width = CELL
    assert grid.shape == (line + 2 * (height + line), 4 * width, 3)
    weights = [ablation / "seed_0" / "01_small" / "models" / "weights_2",
               ablation / "seed_0" / "02_big" / "models" / "weights_1"]
    lines = read_split_lines(split)
    for r, index in enumerate([0, 2]):
        frame = parse_split_line(lines[index])
        camera = {"l": "image_02", "r": "image_03"}[frame.side]
        path = scene / frame.folder / camera / "data" / f"{frame.frame_index:010d}.jpg"
        image = Image.open(path).convert("RGB")
        gt = np.load(true_depth_path(scene, frame))
        top = line + r * (height + line)
        cells = [grid[top:top + height, c * width:(c + 1) * width] for c in range(4)]
        np.testing.assert_array_equal(cells[0], np.asarray(image.resize((width, height),
                                                                        Image.LANCZOS)))
        shown = []
        for m, folder in enumerate(weights):
            disp = expected_disp(folder, image)  # at the image's size, which is the gt's
            metrics, ratio = evaluate_depth_map(gt, 1.0 / disp)  # eigen crop, median scaling
            assert result.abs_rel[r, m] == pytest.approx(metrics["abs_rel"], rel=1e-4)
            assert result.captions[r][1 + m] == f"abs_rel {result.abs_rel[r, m]:.3f}"
            shown.append(resized(disp, CELL) / ratio)
        truth = np.where(gt > 0, 1.0 / np.maximum(gt, 1e-6), 0).astype(np.float32)
        shown.append(resized(truth, CELL, "nearest"))
        values = np.concatenate([d[d > 0] for d in shown])
        low, high = values.min(), np.percentile(values, 95)
        assert result.scales[r] == pytest.approx((low, high), rel=1e-4)
        for c, disp in enumerate(shown, start=1):
            # at most one colour step apart: a batch of two frames may round differently
            difference = np.abs(cells[c].astype(int) - colours(disp, low, high).astype(int))
            assert difference.max() <= 1 and difference.mean() < 0.05
        # one scale for the row: a cell coloured over its own range would differ
        own = np.abs(cells[1].astype(int) - colours(shown[0], None, None).astype(int))
        assert own.max() > 1
        assert result.captions[r][0].startswith(f"#{index} ")
        assert grid[top + height:top + height + line, width:2 * width].max() > 200  # its text
    assert grid[:line, width:2 * width].max() > 200  # the label 01_small


def test_image_folder_without_ground_truth(ablation, tmp_path):
    rng = np.random.default_rng(0)
    for name in ("b.png", "a.jpg"):
        Image.fromarray(rng.integers(0, 255, (40, 120, 3), dtype=np.uint8)).save(tmp_path / name)
    compare = load_compare()
    big = ablation / "seed_0" / "02_big" / "models" / "weights_1"
    result = compare.main(["--models", str(big), "--frames", str(tmp_path), "--cell_size",
                           str(HEIGHT), str(WIDTH), "--labels", "big", "--output",
                           str(tmp_path / "out" / "grid.png"), "--no_cuda"])
    assert result.labels == ["input", "big"] and result.abs_rel is None
    line = compare.TEXT_LINE
    assert result.grid.shape == (line + 2 * (HEIGHT + line), 2 * WIDTH, 3)
    assert [texts[0] for texts in result.captions] == ["a", "b"]
    image = Image.open(tmp_path / "a.jpg").convert("RGB")
    np.testing.assert_array_equal(result.grid[line:line + HEIGHT, :WIDTH],
                                  np.asarray(image.resize((WIDTH, HEIGHT), Image.LANCZOS)))
    disp = resized(expected_disp(big, image), (HEIGHT, WIDTH))
    low, high = disp.min(), np.percentile(disp, 95)
    assert result.scales[0] == pytest.approx((low, high), rel=1e-4)
    cell = result.grid[line:line + HEIGHT, WIDTH:]
    assert np.abs(cell.astype(int) - colours(disp, low, high).astype(int)).max() <= 1


def test_ablation_log_dir_rows_and_seeds(tmp_path):
    compare = load_compare()
    for path in ["seed_0/01_base/models/weights_3", "seed_0/01_base/models/weights_12",
                 "seed_0/02_attention/models/weights_5", "seed_0/03_unfinished/models",
                 "seed_2/01_base/models/weights_0", "flat/01_a/models/weights_1",
                 "run/models/weights_4"]:
        (tmp_path / path).mkdir(parents=True)
    (tmp_path / "upstream").mkdir()
    (tmp_path / "upstream" / "encoder.pth").touch()
    (tmp_path / "run" / "models" / "weights_4" / "encoder.pth").touch()

    found = compare.find_models([str(tmp_path)])
    assert found == [("01_base", tmp_path / "seed_0/01_base/models/weights_12"),
                     ("02_attention", tmp_path / "seed_0/02_attention/models/weights_5")]
    assert compare.find_models([str(tmp_path)], seed=2) == [
        ("01_base", tmp_path / "seed_2/01_base/models/weights_0")]
    assert compare.find_models([str(tmp_path / "flat"), str(tmp_path / "run"),
                                str(tmp_path / "run/models/weights_4"),
                                str(tmp_path / "upstream")]) == [
        ("01_a", tmp_path / "flat/01_a/models/weights_1"),
        ("run", tmp_path / "run/models/weights_4"),
        ("run/weights_4", tmp_path / "run/models/weights_4"),
        ("upstream", tmp_path / "upstream")]


@pytest.mark.parametrize("case, expected", [
    ("missing_models", "no such folder, --models"),
    ("no_weights", "neither a weights folder"),
    ("run_without_weights", "no weights_N folder in"),
    ("missing_seed", "no seed_5 in"),
    ("missing_frames", "no such file or folder, --frames"),
    ("split_without_data_path", "needs the dataset root, --data_path"),
    ("missing_split_image", "for line 1 (drive 7 l)"),
])
def test_mistakes_end_in_one_line(case, expected, tmp_path, capsys):
    weights = tmp_path / "w"
    weights.mkdir()
    (weights / "encoder.pth").touch()  # enough to be found; errors come before loading
    (tmp_path / "image.png").touch()
    (tmp_path / "empty").mkdir()
    (tmp_path / "run" / "models").mkdir(parents=True)
    (tmp_path / "log" / "seed_0" / "01_a" / "models" / "weights_0").mkdir(parents=True)
    split = tmp_path / "test_files.txt"
    split.write_text("drive 3 l\ndrive 7 l\n")
    (tmp_path / "drive" / "image_02" / "data").mkdir(parents=True)
    Image.new("RGB", (WIDTH, HEIGHT)).save(tmp_path / "drive/image_02/data/0000000003.jpg")
    argv = {
        "missing_models": ["--models", str(tmp_path / "nowhere"), "--frames", str(split)],
        "no_weights": ["--models", str(tmp_path / "empty"), "--frames", str(split)],
        "run_without_weights": ["--models", str(tmp_path / "run"), "--frames", str(split)],
        "missing_seed": ["--models", str(tmp_path / "log"), "--seed", "5", "--frames",
                         str(split)],
        "missing_frames": ["--models", str(weights), "--frames", str(tmp_path / "none.png")],
        "split_without_data_path": ["--models", str(weights), "--frames", str(split)],
        "missing_split_image": ["--models", str(weights), "--frames", str(split),
                                "--data_path", str(tmp_path)],
    }[case]
    with pytest.raises(SystemExit) as stopped:
        load_compare().main(argv + ["--device", "cpu", "--output", str(tmp_path / "g.png")])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("compare.py: error: "), err
    assert expected in err, err
    assert not (tmp_path / "g.png").exists()


def test_colourise_over_a_given_range():
    disp = torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0]])
    rgb = colourise(disp, 1.0, 3.0)  # 0 and 4 lie outside: clipped to the ends of the map
    for column, anchor in ((0, COLOUR_ANCHORS[0]), (1, COLOUR_ANCHORS[0]),
                           (3, COLOUR_ANCHORS[-1]), (4, COLOUR_ANCHORS[-1])):
        assert torch.allclose(rgb[:, 0, column], anchor)
    middle = colourise(torch.tensor([[5.0, 6.0, 7.0]]))[:, 0, 1]  # its own range, halfway
    assert torch.allclose(rgb[:, 0, 2], middle)
