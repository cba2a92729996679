"""Side-by-side predictions of several models on the same frames, as one PNG grid.

    python scripts/compare.py --models runs/a runs/b/models/weights_9 --frames street/
    python scripts/compare.py --models runs/ablation --seed 1 --data_path synthetic_kitti \
        --frames synthetic_kitti/splits/synthetic/test_files.txt --indices 0 5 --output ab.png

A row per frame: the input, each model's disparity and, for a split with ground truth, the true
disparity (1 / depth; black where unknown). ``--models`` takes weights folders (``encoder.pth``,
``depth.pth``), run folders (their last ``models/weights_N``) and ``run_ablation.py`` log dirs (a
column per row; ``seed_<s>/`` by ``--seed``). Each model sees a frame at its own training size
(as predict.py); cells are ``--cell_size``. All disparities of a row share one colour scale (their
minimum to 95th percentile). With ground truth each prediction is median-scaled to it, as
evaluate_depth.py scores it, and its abs_rel is written under it; ground truth is ``--gt_path``,
else a ``gt_depths.npz`` beside the split file, else a synthetic scene's true depth.
"""
import argparse
import dataclasses
import sys
from pathlib import Path
from typing import List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))  # predict.py's and run_ablation.py's helpers
import predict  # noqa: E402
from run_ablation import last_weights_folder  # noqa: E402
from litemono import io, load_depth_network  # noqa: E402
from litemono.data.kitti import raw_image_path  # noqa: E402
from litemono.data.splits import parse_split_line, read_split_lines  # noqa: E402
from litemono.device import DEVICE_HELP, resolve_device  # noqa: E402
from litemono.errors import OneLineParser, UserError, cli  # noqa: E402
from litemono.evaluation import (EVAL_SPLITS, depth_range, evaluate_predictions,  # noqa: E402
                                 load_gt_depths, resize_to)
from litemono.logging_utils import colourise  # noqa: E402
from litemono.models.build import ENCODER_FILE  # noqa: E402
from litemono.teacher.synthetic import true_depth_path  # noqa: E402

MAX_FRAMES = 8  # rows when --indices is not given
SCALE_PERCENTILE = 95  # a row's colour scale: its minimum to this percentile (upstream's 95)
TEXT_LINE = 14  # pixels of a line of labels or captions (PIL's default font is ~11 high)
MODELS_TODO = "pass a weights folder, a run folder or a run_ablation.py log dir"


class Model(NamedTuple):
    label: str
    folder: Path  # a weights folder


class Frame(NamedTuple):
    name: str
    image: Image.Image
    gt: Optional[np.ndarray]  # depth in metres, 0 = unknown


@dataclasses.dataclass
class Comparison:
    """What :func:`compare` draws: ``grid`` (H, W, 3) uint8; ``labels`` of the columns;
    ``abs_rel`` (frames, models) or None without ground truth; ``scales``: (low, high) per row;
    ``captions``: the text under each cell."""

    grid: np.ndarray
    labels: List[str]
    abs_rel: Optional[np.ndarray]
    scales: List[Tuple[float, float]]
    captions: List[List[str]]


def run_weights(run: Path) -> Path:
    try:
        return last_weights_folder(run)
    except FileNotFoundError:
        raise UserError(f"no weights_N folder in {run / 'models'}", f"--models {run}",
                        "train it first or leave it out") from None


def find_models(paths: Sequence[str], seed: int = 0) -> List[Model]:
    """The weights folder and column label of each of ``paths``, an ablation log dir giving
    one per row (sorted by name; rows without weights yet are left out, with a note)."""
    models = []
    for given in paths:
        path = Path(given)
        if not path.is_dir():
            raise UserError("no such folder", f"--models {path}", MODELS_TODO)
        if (path / ENCODER_FILE).is_file():  # a weights folder, maybe <run>/models/weights_N
            inside_run = path.parent.name == "models"
            label = f"{path.parent.parent.name}/{path.name}" if inside_run else path.name
            models.append(Model(label, path))
            continue
        if (path / "models").is_dir():
            models.append(Model(path.name, run_weights(path)))
            continue
        seeds = sorted(p.name for p in path.glob("seed_*") if p.is_dir())
        if seeds:
            if not (path / f"seed_{seed}").is_dir():
                raise UserError(f"no seed_{seed} in {path} (it has {', '.join(seeds)})",
                                f"--seed {seed}", "pick one of those")
            path = path / f"seed_{seed}"
        rows = sorted(p for p in path.iterdir() if (p / "models").is_dir())
        if not rows:
            raise UserError(f"neither a weights folder ({ENCODER_FILE}), a run folder "
                            "(models/weights_N) nor an ablation log dir (rows with models/)",
                            f"--models {path}", MODELS_TODO)
        for row in rows:
            try:
                models.append(Model(row.name, last_weights_folder(row)))
            except FileNotFoundError:
                print(f"leaving out {row}: no weights yet")
    return models


def pick(count: int, indices: Optional[Sequence[int]], what: str) -> List[int]:
    if indices is None:
        return list(range(min(count, MAX_FRAMES)))
    wrong = [i for i in indices if not 0 <= i < count]
    if wrong:
        raise UserError(f"index {wrong[0]} is not among the {count} {what}", "--indices",
                        f"give numbers from 0 to {count - 1}")
    return list(indices)


def split_gt(split_file: Path, lines: List[str], chosen: List[int], data_path: str,
             gt_path: Optional[str], allow_pickle: bool) -> Optional[List[np.ndarray]]:
    """Ground truth of the chosen lines: ``gt_path`` or ``gt_depths.npz`` beside the split file
    (a map per line), else a synthetic scene's true depth, else None."""
    path = Path(gt_path) if gt_path else split_file.parent / "gt_depths.npz"
    if gt_path or path.is_file():
        maps = load_gt_depths(path, allow_pickle)
        if len(maps) != len(lines):
            raise UserError(f"{len(maps)} ground-truth maps for the {len(lines)} lines of "
                            f"{split_file}", f"--gt_path {path}", "pass this split's gt file")
        return [maps[i] for i in chosen]
    frames = [parse_split_line(lines[i]) for i in chosen]
    if any(frame.side is None for frame in frames):
        return None
    paths = [true_depth_path(data_path, frame) for frame in frames]
    if not all(p.is_file() for p in paths):
        return None
    return [np.load(p, allow_pickle=False).astype(np.float32) for p in paths]


def split_frames(split_file: Path, data_path: Optional[str], indices, gt_path: Optional[str],
                 allow_pickle: bool = False) -> List[Frame]:
    """The chosen lines of a KITTI-raw split file (``<folder> <frame> [l|r]``) as frames."""
    if data_path is None:
        raise UserError(f"the split file {split_file} needs the dataset root", "--data_path",
                        "add --data_path")
    lines = read_split_lines(split_file)
    if not lines:
        raise UserError(f"the split file {split_file} has no lines", "--frames",
                        "pass a split file with lines '<folder> <frame> <l|r>'")
    chosen = pick(len(lines), indices, f"lines of {split_file}")
    gts = split_gt(split_file, lines, chosen, data_path, gt_path, allow_pickle)
    frames = []
    for k, index in enumerate(chosen):
        line = parse_split_line(lines[index])
        jpg = Path(raw_image_path(data_path, line.folder, line.frame_index, line.side or "l"))
        image = next((p for p in (jpg, jpg.with_suffix(".png")) if p.is_file()), None)
        if image is None:
            raise UserError(f"no image {jpg} (or .png) for line {index} ({lines[index]}) of "
                            f"{split_file}", f"--data_path {data_path}", "check the dataset root")
        name = f"#{index} {Path(line.folder).name} {line.frame_index} {line.side or ''}".strip()
        frames.append(Frame(name, predict.read_image(image), gts[k] if gts else None))
    return frames


def read_frames(paths: Sequence[str], data_path: Optional[str] = None, indices=None,
                gt_path: Optional[str] = None, allow_pickle: bool = False) -> List[Frame]:
    """Frames from image files, a folder of images, or one split file (``.txt``)."""
    for given in paths:
        if not Path(given).exists():
            raise UserError("no such file or folder", f"--frames {given}", "check the path")
    if len(paths) == 1 and Path(paths[0]).suffix == ".txt":
        return split_frames(Path(paths[0]), data_path, indices, gt_path, allow_pickle)
    files = []
    for path in map(Path, paths):
        if path.suffix.lower() not in predict.IMAGE_SUFFIXES and not path.is_dir():
            raise UserError(f"not an image ({', '.join(sorted(predict.IMAGE_SUFFIXES))}), a "
                            "folder or a split file (.txt)", f"--frames {path}",
                            "pass one of those (one split file alone)")
        found = predict.input_files(path)
        if not found:
            raise UserError("no images in the folder", f"--frames {path}", "check the path")
        files += found
    return [Frame(p.stem, predict.read_image(p), None)
            for p in (files[i] for i in pick(len(files), indices, "images"))]


def colour_cell(disp: np.ndarray, low: Optional[float] = None,
                high: Optional[float] = None) -> np.ndarray:
    """(h, w) disparity -> (h, w, 3) uint8 in the training logs' colours, ``low`` dark and
    ``high`` bright (default: the map's own minimum and maximum)."""
    rgb = colourise(torch.from_numpy(np.asarray(disp, np.float32)), low, high)
    return (rgb.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def true_disparity(gt: np.ndarray, height: int, width: int) -> np.ndarray:
    """1 / depth (0 where unknown), nearest-resized to (height, width)."""
    disp = np.where(gt > 0, 1.0 / np.maximum(gt, 1e-6), 0.0).astype(np.float32)
    resized = torch.nn.functional.interpolate(torch.from_numpy(disp)[None, None],
                                              size=(height, width), mode="nearest")
    return resized[0, 0].numpy()


def row_scale(disps: Sequence[np.ndarray]) -> Tuple[float, float]:
    """One colour range for a row: the minimum and :data:`SCALE_PERCENTILE` of all its
    disparities together (0, unknown truth, left out)."""
    values = np.concatenate([d[d > 0] for d in disps])
    return float(values.min()), float(np.percentile(values, SCALE_PERCENTILE))


def text_line(texts: Sequence[str], width: int) -> np.ndarray:
    """(TEXT_LINE, width * len(texts), 3) uint8: each text white on black in its own cell,
    cut at the cell's edge."""
    font = ImageFont.load_default()
    cells = []
    for text in texts:
        cell = Image.new("RGB", (width, TEXT_LINE))
        ImageDraw.Draw(cell).text((2, 1), text, fill=(255, 255, 255), font=font)
        cells.append(np.asarray(cell))
    return np.concatenate(cells, axis=1)


def draw_grid(rows: Sequence[Sequence[np.ndarray]], labels: Optional[Sequence[str]] = None,
              captions: Optional[Sequence[Sequence[str]]] = None) -> np.ndarray:
    """(h, w, 3) uint8 cells of one size as one picture, a list of cells per row: ``labels``
    in a line above the columns, ``captions[r]`` in a line under row r (each optional)."""
    width = rows[0][0].shape[1]
    parts = [] if labels is None else [text_line(labels, width)]
    for r, cells in enumerate(rows):
        parts.append(np.concatenate(cells, axis=1))
        if captions is not None:
            parts.append(text_line(captions[r], width))
    return np.concatenate(parts, axis=0)


def predict_frames(model: Model, frames: Sequence[Frame], device: torch.device,
                   batch_size: int = 8) -> Tuple[List[np.ndarray], Tuple[int, int]]:
    """The model's scaled disparity of each frame at the frame's own size (as predict.py), and
    the model's input size (height, width)."""
    try:
        net = load_depth_network(model.folder, device)
    except FileNotFoundError as exc:
        raise UserError(str(exc), f"--models {model.folder}", MODELS_TODO) from None
    min_depth, max_depth, _ = depth_range(str(model.folder))
    disps = []
    for start in range(0, len(frames), batch_size):
        images = [frame.image for frame in frames[start:start + batch_size]]
        disps += predict.predict_batch(net, images, device, min_depth, max_depth)
    return disps, (net.height, net.width)


def compare(models: Sequence[Model], frames: Sequence[Frame], device: torch.device,
            cell_size: Optional[Tuple[int, int]] = None, eval_split: str = "eigen",
            batch_size: int = 8) -> Comparison:
    """Predict every frame with every model and draw the grid (see the module docstring);
    ``cell_size`` (height, width) defaults to the first model's input size."""
    predictions, sizes = zip(*(predict_frames(m, frames, device, batch_size) for m in models))
    height, width = cell_size or sizes[0]
    with_gt = frames[0].gt is not None
    abs_rel = np.zeros((len(frames), len(models))) if with_gt else None
    rows, captions, scales = [], [], []
    for r, frame in enumerate(frames):
        shown, texts = [], [frame.name]
        for m, disps in enumerate(predictions):
            disp = resize_to(disps[r], height, width)
            if with_gt:
                result = evaluate_predictions([disps[r]], [frame.gt], eval_split)
                abs_rel[r, m] = result.per_image[0]["abs_rel"]
                disp = disp / result.ratios[0]  # the depth it is scored with: ratio / disp
            shown.append(disp)
            texts.append(f"abs_rel {abs_rel[r, m]:.3f}" if with_gt else "")
        if with_gt:
            shown.append(true_disparity(frame.gt, height, width))
            texts.append("")
        low, high = row_scale(shown)
        image = np.asarray(frame.image.resize((width, height), Image.LANCZOS))
        rows.append([image] + [colour_cell(d, low, high) for d in shown])
        scales.append((low, high))
        captions.append(texts)
    labels = ["input"] + [m.label for m in models] + (["true disparity"] if with_gt else [])
    return Comparison(draw_grid(rows, labels, captions), labels, abs_rel, scales, captions)


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", required=True, metavar="FOLDER",
                   help="weights folders, run folders (last weights_N) or run_ablation.py log "
                   "dirs (a column per row), in column order")
    p.add_argument("--frames", nargs="+", required=True, metavar="PATH",
                   help="image files, folders of images, or one split file (.txt, lines "
                   "'<folder> <frame> <l|r>' of KITTI raw under --data_path)")
    p.add_argument("--output", default="compare.png", help="the PNG to write (default: "
                   "compare.png)")
    p.add_argument("--data_path", help="dataset root of the split file's lines")
    p.add_argument("--indices", nargs="+", type=int, metavar="I",
                   help="which frames, 0-based (split lines, or the images in the order given, "
                   f"folders sorted); default: the first {MAX_FRAMES}")
    p.add_argument("--seed", type=int, default=0,
                   help="which seed_<s> folder of an ablation log dir made with --seeds "
                   "(default: 0)")
    p.add_argument("--gt_path", help="ground truth of the split file, a map per line "
                   "(default: gt_depths.npz beside it, else a synthetic scene's true depth)")
    p.add_argument("--allow_pickle", action="store_true", help="read upstream's object-array "
                   "gt_depths.npz (unpickling runs code from the file: only if you trust it)")
    p.add_argument("--eval_split", default="eigen", choices=EVAL_SPLITS,
                   help="abs_rel as evaluate_depth.py: eigen (Garg crop, 1e-3..80 m, default) "
                   "or eigen_benchmark (gt > 0)")
    p.add_argument("--cell_size", nargs=2, type=int, metavar=("HEIGHT", "WIDTH"),
                   help="each picture's size in the grid (default: the first model's input "
                   "size)")
    p.add_argument("--labels", nargs="+", help="column names of the models, one per model "
                   "found (default: run, ablation row or folder names)")
    p.add_argument("--batch_size", type=int, default=8, help="frames per forward pass")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--no_cuda", action="store_true", help="same as --device cpu")
    return p


def run(args) -> Comparison:
    device = resolve_device(args.device, args.no_cuda)
    models = find_models(args.models, args.seed)
    if args.labels is not None:
        if len(args.labels) != len(models):
            raise UserError(f"{len(args.labels)} labels for {len(models)} models "
                            f"({', '.join(m.label for m in models)})", "--labels",
                            "give one per model")
        models = [Model(label, m.folder) for label, m in zip(args.labels, models)]
    if args.cell_size is not None and min(args.cell_size) < 1:
        raise UserError("a cell needs a positive size", "--cell_size", "give HEIGHT WIDTH >= 1")
    frames = read_frames(args.frames, args.data_path, args.indices, args.gt_path,
                         args.allow_pickle)
    result = compare(models, frames, device, args.cell_size, args.eval_split, args.batch_size)
    with io.atomic_write(args.output) as handle:
        Image.fromarray(result.grid).save(handle, format="PNG", optimize=True)
    for m, model in enumerate(models):
        score = "" if result.abs_rel is None else f", abs_rel {result.abs_rel[:, m].mean():.4f}"
        print(f"{model.label}: {model.folder}{score}")
    print(f"wrote {args.output} ({len(frames)} frames x {len(models)} models)")
    return result


@cli("compare.py")
def main(argv=None) -> Comparison:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except ValueError as exc:  # weights that do not fit, a frame without valid ground truth
        raise UserError(str(exc)) from exc


if __name__ == "__main__":
    main()
