"""Predict depth for an image, a folder of images or a video (successor of upstream test_simple.py).

    python scripts/predict.py --load_weights_folder W --image_path street.jpg
    python scripts/predict.py --load_weights_folder W --image_path frames/ --output_dir out/
    python scripts/predict.py --load_weights_folder W --image_path drive.mp4 --pred depth

Each image is resized (LANCZOS) to the network's training size, run in batches on any device,
and its disparity is resized back to the image's own size. Per image ``<name>_<pred>.npy``
(float32: the scaled disparity of ``disp_to_depth``, or depth = 1 / that), ``<name>_<pred>.png``
(uint16, value * 256, KITTI's convention) and ``<name>_disp_color.png`` (magma-like colours of
the disparity between its minimum and 95th percentile as upstream, or ``--vmin/--vmax``).
Upstream saved the .npy at network size; here every output has the image's size.
Outputs never replace an input, and files that look like this tool's outputs are skipped.
Videos are read with imageio (GIF always; mp4 and others need its pyav plugin: ``pip install av``).
"""
import argparse
import itertools
import sys
from io import BytesIO
from pathlib import Path
from typing import Iterator, List, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from litemono import io, load_depth_network  # noqa: E402
from litemono.geometry import disp_to_depth  # noqa: E402
from litemono.evaluation import depth_range  # noqa: E402
from litemono.errors import cli  # noqa: E402

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".gif"}
OUTPUT_MARKERS = ("_disp", "_depth", "_disp_color")  # stems ending so are our own outputs
PNG16_SCALE = 256.0
UPSTREAM_PERCENTILE = 95
# anchors of matplotlib's magma colormap at 0, 1/4, 1/2, 3/4, 1 (RGB in [0, 1])
MAGMA_ANCHORS = np.array([[0.001462, 0.000466, 0.013866], [0.316654, 0.071690, 0.485380],
                          [0.716387, 0.214982, 0.474720], [0.986700, 0.535582, 0.382210],
                          [0.987053, 0.991438, 0.749504]])


def is_own_output(path: Path) -> bool:
    return path.stem.endswith(OUTPUT_MARKERS)


def input_files(source: Path) -> List[Path]:
    """The files read: ``source`` itself, or a folder's images (sorted) minus our outputs."""
    if not source.is_dir():
        return [source]
    return [path for path in sorted(source.iterdir())
            if path.suffix.lower() in IMAGE_SUFFIXES and not is_own_output(path)]


def read_frames(source: Path) -> Iterator[Tuple[str, Image.Image]]:
    """(name, RGB image) for a file, every image of a folder or every video frame."""
    if source.is_dir():
        for path in input_files(source):
            yield path.stem, Image.open(path).convert("RGB")
    elif source.suffix.lower() in VIDEO_SUFFIXES:
        import imageio.v3 as iio

        for index, frame in enumerate(iio.imiter(source)):
            yield f"{source.stem}_{index:06d}", Image.fromarray(frame[..., :3])
    elif source.suffix.lower() in IMAGE_SUFFIXES:
        yield source.stem, Image.open(source).convert("RGB")
    else:
        raise ValueError(f"--image_path {source}: not an image ({sorted(IMAGE_SUFFIXES)}), "
                         f"a video ({sorted(VIDEO_SUFFIXES)}) or a folder")


def colorize(disp: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """(H, W) values -> (H, W, 3) uint8 colours, ``vmin`` dark and ``vmax`` bright."""
    t = np.clip((disp - vmin) / max(vmax - vmin, 1e-12), 0.0, 1.0)
    stops = np.linspace(0.0, 1.0, len(MAGMA_ANCHORS))
    rgb = np.stack([np.interp(t, stops, MAGMA_ANCHORS[:, c]) for c in range(3)], axis=-1)
    return np.round(rgb * 255).astype(np.uint8)


@torch.no_grad()
def predict_batch(net, images: List[Image.Image], device, min_depth: float, max_depth: float
                  ) -> List[np.ndarray]:
    """Scaled disparities (H_i, W_i) float32, one per image, at each image's own size."""
    size = (net.width, net.height)
    batch = np.stack([np.asarray(im.resize(size, Image.LANCZOS), np.float32) for im in images])
    batch = torch.from_numpy(batch).permute(0, 3, 1, 2).div(255).to(device)
    scaled, _ = disp_to_depth(net(batch)[("disp", 0)], min_depth, max_depth)
    return [F.interpolate(d[None], size=(im.height, im.width), mode="bilinear",
                          align_corners=False)[0, 0].float().cpu().numpy()
            for d, im in zip(scaled, images)]


def png16_bytes(values: np.ndarray) -> bytes:
    encoded = np.clip(np.round(values * PNG16_SCALE), 0, np.iinfo(np.uint16).max)
    buffer = BytesIO()
    Image.fromarray(encoded.astype(np.uint16)).save(buffer, format="PNG")
    return buffer.getvalue()


def write_outputs(out_dir: Path, name: str, disp: np.ndarray, args, inputs: set) -> None:
    values = disp if args.pred == "disp" else 1.0 / disp
    if args.vmin is not None:
        vmin, vmax = args.vmin, args.vmax
    else:
        vmin, vmax = float(disp.min()), float(np.percentile(disp, UPSTREAM_PERCENTILE))
    color = BytesIO()
    Image.fromarray(colorize(disp, vmin, vmax)).save(color, format="PNG")
    files = {f"{name}_{args.pred}.npy": None, f"{name}_{args.pred}.png": png16_bytes(values),
             f"{name}_disp_color.png": color.getvalue()}
    for filename, data in files.items():
        target = out_dir / filename
        if target.resolve() in inputs:
            raise SystemExit(f"error: refusing to overwrite the input {target}")
        if data is None:
            io.save_npy(target, values.astype(np.float32))
        else:
            io.write_bytes(target, data)


@cli("predict.py")
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--load_weights_folder", required=True)
    parser.add_argument("--image_path", required=True, help="an image, a folder or a video")
    parser.add_argument("--output_dir", help="default: the input's folder")
    parser.add_argument("--pred", default="disp", choices=("disp", "depth"),
                        help="what the .npy and 16-bit .png hold")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps")
    parser.add_argument("--min_depth", type=float,
                        help="disp_to_depth range (default: the training run's opt.json, else 0.1)")
    parser.add_argument("--max_depth", type=float, help="(default: the run's, else 100)")
    parser.add_argument("--vmin", type=float, help="fixed colour range (with --vmax)")
    parser.add_argument("--vmax", type=float)
    args = parser.parse_args(argv)
    if (args.vmin is None) != (args.vmax is None):
        parser.error("--vmin and --vmax go together (default: min to 95th percentile)")
    source = Path(args.image_path)
    if not source.exists():
        parser.error(f"--image_path {source} does not exist")
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu")
                          if args.device == "auto" else args.device)
    net = load_depth_network(args.load_weights_folder, device)
    min_depth, max_depth, note = depth_range(args.load_weights_folder, args.min_depth,
                                             args.max_depth)
    print(f"disp_to_depth range {min_depth:g}..{max_depth:g} m ({note})")
    out_dir = Path(args.output_dir or (source if source.is_dir() else source.parent))
    inputs = {path.resolve() for path in input_files(source)}
    count, pending = 0, []
    for item in itertools.chain(read_frames(source), [None]):  # None flushes the last batch
        if item is not None:
            pending.append(item)
        if pending and (item is None or len(pending) == args.batch_size):
            disps = predict_batch(net, [im for _, im in pending], device, min_depth, max_depth)
            for (name, _), disp in zip(pending, disps):
                write_outputs(out_dir, name, disp, args, inputs)
            count, pending = count + len(pending), []
    print(f"predicted {count} image(s) into {out_dir}")
    return count


if __name__ == "__main__":
    main()
