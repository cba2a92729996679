"""Data-loading speed: training samples per second of one loader worker (issue 9).

Runs the real dataset (``litemono.data.build_dataset``) on a synthetic KITTI scene in one
process with one torch thread, which is what each DataLoader worker does, and times
``dataset[i]``. The training items are built as ``train.py`` builds them
(``litemono.engine.TRAIN_ITEMS``: jittered frames at scale 0 only, no ``depth_gt``), timed
without augmentation, with Lite-Mono's per-frame jitter, with monodepth2's per-item jitter, and
with the resized-frame cache (read after one warm-up pass); ``upstream_items_per_frame`` times
items of upstream's full schema (every scale jittered, ``depth_gt`` projected) for comparison.
Multiply by ``--num_workers`` for the loader's throughput. The last line printed is a JSON
object.

    python scripts/bench_data.py --items 48 --height 192 --width 640
"""
import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from litemono.config import from_dict  # noqa: E402
from litemono.data import build_dataset  # noqa: E402
from litemono.data.synthetic import load_scene, make_synthetic_kitti  # noqa: E402
from litemono.engine import TRAIN_ITEMS  # noqa: E402


def samples_per_second(dataset, items: int) -> float:
    random.seed(0)
    torch.manual_seed(0)
    dataset[0]  # warm-up: lazy imports (skimage for depth_gt)
    start = time.perf_counter()
    for i in range(items):
        dataset[i % len(dataset)]
    return items / (time.perf_counter() - start)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scene", help="existing synthetic scene root (default: render one)")
    parser.add_argument("--native_height", type=int, default=375,
                        help="height of the synthetic source frames (KITTI's 375)")
    parser.add_argument("--native_width", type=int, default=1242,
                        help="width of the synthetic source frames (KITTI's 1242)")
    parser.add_argument("--height", type=int, default=192, help="training height")
    parser.add_argument("--width", type=int, default=640, help="training width")
    parser.add_argument("--items", type=int, default=32, help="items timed per mode")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # as in a DataLoader worker

    with tempfile.TemporaryDirectory() as tmp:
        if args.scene:
            scene = load_scene(args.scene)
        else:
            scene = make_synthetic_kitti(Path(tmp) / "scene", drives=1, frames_per_drive=12,
                                         height=args.native_height, width=args.native_width)
        cfg = from_dict({"data_path": str(scene.root), "split": str(scene.split_dir),
                         "height": args.height, "width": args.width, "png": scene.png})
        modes = {
            "no_aug": dict(cfg=cfg, is_train=False, **TRAIN_ITEMS),
            "aug_per_frame": dict(cfg=cfg, is_train=True, **TRAIN_ITEMS),
            "aug_per_item": dict(cfg=cfg.replace(jitter="per_item"), is_train=True, **TRAIN_ITEMS),
            "aug_per_frame_cached": dict(cfg=cfg, is_train=True, cache_dir=str(Path(tmp) / "cache"),
                                         **TRAIN_ITEMS),
            "upstream_items_per_frame": dict(cfg=cfg, is_train=True),
        }
        rates = {}
        for name, options in modes.items():
            dataset = build_dataset(part="train", **options)
            if "cache_dir" in options:
                samples_per_second(dataset, len(dataset))  # builds the cache
            rates[name] = round(samples_per_second(dataset, args.items), 2)
    result = {"samples_per_s_per_worker": rates, "items": args.items,
              "train_size": [args.height, args.width],
              "native_size": [scene.height, scene.width], "frame_ids": cfg.data.frame_ids}
    for name, rate in rates.items():
        print(f"{name:>22}: {rate:7.2f} samples/s per worker")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
