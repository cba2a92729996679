"""Depth evaluation: predict scaled disparities, score them against ground truth, gt file I/O.

monodepth2 / Lite-Mono protocol (Lite-Mono, CVPR 2023, section 4.1): full-resolution disparity
-> ``disp_to_depth``, optional flip post-processing (Godard et al., CVPR 2017, section 3.5),
bilinear resize to each gt map, inversion, :func:`litemono.metrics.evaluate_depth_map`.
:func:`save_gt_depths` writes a pickle-free ``.npz`` (maps flattened into one float32 vector plus
an (N, 2) shape table); upstream's ``gt_depths.npz`` is an object array that
:func:`load_gt_depths` reads only with ``allow_pickle=True`` (``--allow_pickle``)."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from . import io
from .errors import DataError
from .geometry import disp_to_depth
from .metrics import METRIC_NAMES, evaluate_depth_map

EVAL_SPLITS = ("eigen", "eigen_benchmark")
# test images per split (monodepth2's splits): how an unlabelled gt file is recognised
SPLIT_SIZES = {"eigen": 697, "eigen_benchmark": 652}
# upstream's --eval_stereo: stereo-trained depth is metric up to the baseline monodepth2 trains
# with (0.1 units) against KITTI's 0.54 m, so depth x 5.4 and no median scaling
STEREO_SCALE_FACTOR = 5.4
# width fraction, at each border, where post-processing trusts only one of the two predictions
POST_PROCESS_BORDER = 0.05


@dataclasses.dataclass
class EvalResult:
    """Outcome of :func:`evaluate_predictions`: ``mean`` (the seven metrics, ``METRIC_NAMES``
    order), ``per_image`` (one dict per image), ``ratios`` ((N,) median-scaling ratios or None)."""

    mean: Dict[str, float]
    per_image: List[Dict[str, float]]
    ratios: Optional[np.ndarray]


def batch_post_process_disparity(disp: torch.Tensor, flipped_disp: torch.Tensor) -> torch.Tensor:
    """Blend a disparity with the one of the mirrored image (monodepth v1 style).

    The mirrored prediction alone near the left border, the direct one near the right, ramps
    over :data:`POST_PROCESS_BORDER` of the width, the mean of both in between. ``disp`` and
    ``flipped_disp`` (already flipped back): (..., H, W); returns (..., H, W), dtype of ``disp``."""
    width = disp.shape[-1]
    x = torch.linspace(0.0, 1.0, width, dtype=torch.float64, device=disp.device)
    ramp = (1.0 - (x - POST_PROCESS_BORDER) / POST_PROCESS_BORDER).clamp(0.0, 1.0)
    weight_flipped = ramp.to(disp.dtype)  # 1 at the left border
    weight_direct = weight_flipped.flip(0)  # 1 at the right border
    weight_mean = 1.0 - weight_flipped - weight_direct
    return (weight_direct * disp + weight_flipped * flipped_disp
            + weight_mean * 0.5 * (disp + flipped_disp))


@torch.no_grad()
def predict_disparities(depth_net: torch.nn.Module, loader: Iterable, device: torch.device,
                        post_process: bool = False, min_depth: float = 0.1,
                        max_depth: float = 100.0) -> np.ndarray:
    """Run the depth network (set to eval) over a loader and collect scaled disparities.

    ``loader`` yields ``("color", 0, 0)`` (B, 3, H, W) in [0, 1]; ``post_process`` also predicts
    the flipped images (:func:`batch_post_process_disparity`, twice the cost); ``min_depth`` /
    ``max_depth``: the training ``disp_to_depth`` range. Returns (N, H, W) float32 in loader
    order."""
    depth_net.eval()
    chunks = []
    for batch in loader:
        images = batch[("color", 0, 0)].to(device)
        count = images.shape[0]
        if post_process:
            images = torch.cat([images, images.flip(-1)], dim=0)
        disp = depth_net(images)[("disp", 0)]
        scaled_disp = disp_to_depth(disp, min_depth, max_depth)[0][:, 0]  # (B, H, W)
        if post_process:
            scaled_disp = batch_post_process_disparity(scaled_disp[:count],
                                                       scaled_disp[count:].flip(-1))
        chunks.append(scaled_disp.float().cpu().numpy())
    return np.concatenate(chunks, axis=0)


def predict_split(weights_folder: str, data_path: str, split: str, splits_dir: str,
                  device: torch.device, batch_size: int = 16, num_workers: int = 2,
                  post_process: bool = False, png: bool = False, min_depth: float = 0.1,
                  max_depth: float = 100.0) -> Tuple[np.ndarray, torch.nn.Module]:
    """Load a weights folder and predict its test split at the network's training size.

    ``split``: ``eigen`` / ``eigen_benchmark`` (``<splits_dir>/<split>/test_files.txt``, checksum
    checked) or a folder with a ``test_files.txt``; other arguments as the training flags and
    :func:`predict_disparities`. Returns ((N, H, W) float32 scaled disparities, the network)."""
    from torch.utils.data import DataLoader

    from .config import from_dict
    from .data import build_dataset
    from .models.build import load_depth_network

    depth_net = load_depth_network(weights_folder, device)
    cfg = from_dict({"data_path": str(data_path), "split": str(split),
                     "splits_dir": str(splits_dir), "png": png,
                     "height": depth_net.height, "width": depth_net.width})
    loader = DataLoader(build_dataset(cfg, "test", is_train=False), batch_size=batch_size,
                        shuffle=False, num_workers=num_workers)
    return predict_disparities(depth_net, loader, device, post_process, min_depth,
                               max_depth), depth_net


DEFAULT_DEPTH_RANGE = (0.1, 100.0)  # upstream's --min_depth / --max_depth


def depth_range(weights_folder: Optional[str], min_depth: Optional[float] = None,
                max_depth: Optional[float] = None) -> Tuple[float, float, str]:
    """The ``disp_to_depth`` range to read a network's sigmoid with: ``(min, max, note)``.

    The wrong range changes relative depths, which median scaling cannot undo. Ours is stored in
    ``encoder.pth`` (:func:`~litemono.models.build.read_depth_range`); for upstream's folders the
    run's ``models/opt.json`` one folder up. Explicit values win; a mismatch is reported in
    ``note``."""
    import json

    from .models.build import ENCODER_FILE, read_depth_range

    trained, source = None, None
    if weights_folder:
        trained = read_depth_range(weights_folder)
        source = Path(weights_folder) / ENCODER_FILE
        options_file = Path(weights_folder).parent / "opt.json"
        if trained is None and options_file.is_file():
            source = options_file
            try:
                options = json.loads(options_file.read_text())
                trained = (float(options["min_depth"]), float(options["max_depth"]))
            except (ValueError, KeyError, TypeError):
                trained = None
    given = (min_depth, max_depth)
    base = trained or DEFAULT_DEPTH_RANGE
    chosen = tuple(g if g is not None else b for g, b in zip(given, base))
    if trained is None:
        note = "default" if given == (None, None) else "command line"
    elif chosen == trained:
        note = f"from {source}"
    else:
        note = (f"command line; WARNING: the network was trained with --min_depth {trained[0]:g} "
                f"--max_depth {trained[1]:g} ({source})")
    return chosen[0], chosen[1], note


def resize_to(disp: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize (half-pixel centres, as OpenCV's INTER_LINEAR) of a (h, w) map."""
    tensor = torch.from_numpy(np.ascontiguousarray(disp, dtype=np.float32))[None, None]
    resized = F.interpolate(tensor, size=(height, width), mode="bilinear", align_corners=False)
    return resized[0, 0].numpy()


def evaluate_predictions(pred_disps: np.ndarray, gt_depths: Sequence[np.ndarray],
                         eval_split: str = "eigen", median_scaling: bool = True,
                         scale_factor: float = 1.0) -> EvalResult:
    """Score (N, h, w) scaled disparities against N gt maps (H_i, W_i) in metres (0 = unknown).

    ``eval_split``: ``eigen`` (1e-3..80 m, Garg crop) or ``eigen_benchmark`` (gt > 0);
    ``median_scaling`` per image (off for stereo / metric models); ``scale_factor``:
    ``--pred_depth_scale_factor``. Returns an :class:`EvalResult`."""
    if eval_split not in EVAL_SPLITS:
        raise ValueError(f"--eval_split must be one of {list(EVAL_SPLITS)}, got {eval_split!r}")
    if len(pred_disps) != len(gt_depths):
        raise ValueError(f"{len(pred_disps)} predictions for {len(gt_depths)} ground-truth maps: "
                         "the predictions and --gt_path must come from the same split")
    per_image, ratios = [], []
    for disp, gt in zip(pred_disps, gt_depths):
        pred_depth = 1.0 / resize_to(disp, *gt.shape)
        metrics, ratio = evaluate_depth_map(gt, pred_depth, eigen_crop=eval_split == "eigen",
                                            median_scaling=median_scaling,
                                            scale_factor=scale_factor)
        per_image.append(metrics)
        ratios.append(ratio)
    mean = {name: float(np.mean([m[name] for m in per_image])) for name in METRIC_NAMES}
    return EvalResult(mean, per_image, np.array(ratios) if median_scaling else None)


def save_gt_depths(path: io.PathLike, maps: Sequence[np.ndarray],
                   split: Optional[str] = None) -> None:
    """Write N float maps (H_i, W_i) in metres to a pickle-free ``.npz`` atomically, labelled
    with ``split`` (read by :func:`gt_split`)."""
    shapes = np.array([m.shape for m in maps], dtype=np.int64).reshape(-1, 2)
    flat = (np.concatenate([np.asarray(m, dtype=np.float32).reshape(-1) for m in maps])
            if len(maps) else np.zeros(0, np.float32))
    labels = {} if split is None else {"split": np.array(split)}  # a str array: no pickle
    io.save_npz(path, depth=flat, shapes=shapes, **labels)


def gt_split(path: io.PathLike) -> Optional[str]:
    """The split a gt file was exported for (``save_gt_depths(split=...)``), else None."""
    with np.load(path, allow_pickle=False) as archive:
        return str(archive["split"]) if "split" in archive.files else None


def check_gt_split(gt_depths: Sequence[np.ndarray], eval_split: str,
                   stored_split: Optional[str], path: io.PathLike) -> None:
    """Refuse gt of the other split (eigen crops and caps at 80 m, eigen_benchmark does not), by
    the file's label or, unlabelled (upstream's), its number of maps.

    Raises:
        DataError: naming ``--eval_split`` and ``--gt_path``."""
    found = stored_split
    if found is None and len(gt_depths) != SPLIT_SIZES[eval_split]:
        found = next((name for name, size in SPLIT_SIZES.items() if size == len(gt_depths)),
                     None)
    if found is not None and found != eval_split:
        how = "is labelled" if stored_split else f"holds {len(gt_depths)} maps, the size of"
        raise DataError(f"the ground truth {path} {how} {found}, not {eval_split}, "
                        f"--eval_split / --gt_path, pass --eval_split {found} or the "
                        f"{eval_split} gt file (scripts/export_gt_depth.py --split {eval_split})")


def load_gt_depths(path: io.PathLike, allow_pickle: bool = False) -> List[np.ndarray]:
    """Read gt maps (N float32 (H_i, W_i)) from ours (``depth`` + ``shapes``) or upstream's
    ``.npz`` (``data``, an object array: needs ``allow_pickle``, which runs code from the file)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"--gt_path: no ground-truth file {path} (write it with "
                                "scripts/export_gt_depth.py)")
    with np.load(path, allow_pickle=allow_pickle) as archive:
        if {"depth", "shapes"} <= set(archive.files):
            flat, shapes = archive["depth"], archive["shapes"]
            ends = np.cumsum([h * w for h, w in shapes])
            if len(flat) != (ends[-1] if len(ends) else 0):
                raise ValueError(f"{path}: {len(flat)} depth values for shapes totalling "
                                 f"{int(ends[-1]) if len(ends) else 0}; the file is damaged")
            pieces = np.split(flat, ends[:-1])
            return [p.reshape(int(h), int(w)) for p, (h, w) in zip(pieces, shapes)]
        if "data" not in archive.files:
            raise ValueError(f"{path}: neither a litemono gt file (depth, shapes) nor an "
                             f"upstream one (data); found keys {archive.files}")
        try:
            data = archive["data"]
        except ValueError:
            raise ValueError(
                f"{path} is upstream's object-array gt_depths.npz, which can only be read by "
                "unpickling, and unpickling a file can run arbitrary code. Pass --allow_pickle "
                "if you trust this file, or re-export it with scripts/export_gt_depth.py") from None
    return [np.asarray(m, dtype=np.float32) for m in data]


def write_metrics_csv(path: io.PathLike, per_image: Sequence[Dict[str, float]],
                      names: Optional[Sequence[str]] = None) -> None:
    """Per-image metrics CSV, atomic: ``index``, ``image`` (split line, e.g.
    ``2011_09_26/2011_09_26_drive_0002_sync 0000000069 l``, or empty), :data:`METRIC_NAMES`."""
    lines = [",".join(("index", "image") + METRIC_NAMES)]
    for index, metrics in enumerate(per_image):
        name = names[index].replace(",", " ") if names else ""
        lines.append(",".join([str(index), name] + [f"{metrics[n]:.6f}" for n in METRIC_NAMES]))
    io.write_text(path, "\n".join(lines) + "\n")


def format_metrics_table(metrics: Dict[str, float], params: Optional[int] = None,
                         macs: Optional[float] = None) -> str:
    """Header and row of a Markdown table: the seven metrics, then params (M) and MACs (G)."""
    names = list(METRIC_NAMES)
    values = [f"{metrics[n]:.3f}" for n in METRIC_NAMES]
    for name, count, unit in (("params (M)", params, 1e6), ("MACs (G)", macs, 1e9)):
        if count is not None:
            names.append(name)
            values.append(f"{count / unit:.3f}")
    return "| " + " | ".join(names) + " |\n| " + " | ".join(values) + " |"
