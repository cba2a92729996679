"""Predict depth for an image, a folder of images or a video (successor of upstream test_simple.py).

    python scripts/predict.py --load_weights_folder W --image_path street.jpg
    python scripts/predict.py --load_weights_folder W --image_path frames/ --output_dir out/
    python scripts/predict.py --load_weights_folder W --image_path drive.mp4 --pred depth \
        --color_video out/drive_disp.mp4

Each image is resized (LANCZOS) to the network's training size, run in batches on any device,
and its disparity is resized back to the image's own size. Per image:

- ``<name>_<pred>.npy``: float32, the scaled disparity of ``disp_to_depth`` (``--pred disp``)
  or depth = 1 / that (``--pred depth``), times ``--pred_depth_scale_factor`` for metric depth.
- ``<name>_<pred>.png``: the same values in a 16-bit PNG, value = pixel * scale, where the
  scale is stored in the PNG's text chunk ``scale`` (``litemono.depth_png.read_png16``).
  By default the map's maximum maps to 65535, so even a monocular model's arbitrary-scale
  depth keeps 65536 levels; with ``--pred_depth_scale_factor`` (metric depth) the scale is
  KITTI's 1/256 m, which KITTI's tools read as they are.
- ``<name>_disp_color.png``: magma-like colours of the disparity between its minimum and 95th
  percentile as upstream, or ``--vmin/--vmax``. ``--color_video`` also writes these frames as
  one video (.gif always; .mp4 and other formats need pyav).

Upstream saved the .npy at network size; here every output has the image's size. Outputs never
replace an input, and files that look like this tool's outputs are skipped. 16-bit grayscale
PNG inputs are scaled to [0, 1] by their full range (not clipped to white). Videos are read with
imageio (GIF always; mp4 and others need pyav: ``pip install -e ".[video]"``).
"""
import argparse
import importlib.util
import itertools
import os
import sys
from io import BytesIO
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from litemono import io, load_depth_network  # noqa: E402
from litemono.depth_png import KITTI_SCALE, PNG16_MAX, encode_png16  # noqa: E402
from litemono.device import DEVICE_HELP, resolve_device  # noqa: E402
from litemono.evaluation import depth_range  # noqa: E402
from litemono.errors import OneLineParser, UserError, cli  # noqa: E402
from litemono.geometry import disp_to_depth  # noqa: E402

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".gif"}
OUTPUT_MARKERS = ("_disp", "_depth", "_disp_color")  # stems ending so are our own outputs
UPSTREAM_PERCENTILE = 95
VIDEO_FPS = 10
# anchors of matplotlib's magma colormap at 0, 1/4, 1/2, 3/4, 1 (RGB in [0, 1])
MAGMA_ANCHORS = np.array([[0.001462, 0.000466, 0.013866], [0.316654, 0.071690, 0.485380],
                          [0.716387, 0.214982, 0.474720], [0.986700, 0.535582, 0.382210],
                          [0.987053, 0.991438, 0.749504]])
PYAV_INSTALL = 'pip install -e ".[video]" (or pip install av)'


def is_own_output(path: Path) -> bool:
    return path.stem.endswith(OUTPUT_MARKERS)


def input_files(source: Path) -> List[Path]:
    """The files read: ``source`` itself, or a folder's images (sorted) minus our outputs."""
    if not source.is_dir():
        return [source]
    return [path for path in sorted(source.iterdir())
            if path.suffix.lower() in IMAGE_SUFFIXES and not is_own_output(path)]


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB; 16- and 32-bit grayscale are scaled by their full range first (PIL's own
    ``convert("RGB")`` clips them at 255, which turns a 16-bit image white)."""
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float64)
        if image.mode == "F":
            full = 1.0  # float images are taken to be in [0, 1]
        else:  # mode "I" holds 16-bit PNGs on older Pillow, and 32-bit images
            full = PNG16_MAX if values.max() <= PNG16_MAX else np.iinfo(np.uint32).max
        gray = np.clip(np.round(values / full * 255), 0, 255).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    return image.convert("RGB")


def read_image(path: Path) -> Image.Image:
    """The RGB image in ``path``; a file PIL cannot decode (cut short, not an image) is a
    :class:`UserError` naming it (PIL's own message names no file)."""
    try:
        with Image.open(path) as image:
            return to_rgb(image)
    except (OSError, ValueError) as exc:  # not an image, "image file is truncated", a bad chunk
        if isinstance(exc, OSError) and exc.errno is not None:
            raise  # missing, no permission: the system's message names the file already
        raise UserError(f"cannot decode the image ({exc})", str(path),
                        "replace or remove that file") from exc


def read_frames(source: Path) -> Iterator[Tuple[str, Image.Image]]:
    """(name, RGB image) for a file, every image of a folder or every video frame."""
    if source.is_dir():
        for path in input_files(source):
            yield path.stem, read_image(path)
    elif source.suffix.lower() in VIDEO_SUFFIXES:
        import imageio.v3 as iio

        if source.suffix.lower() != ".gif" and importlib.util.find_spec("av") is None:
            raise UserError(f"reading {source.suffix} video needs pyav, --image_path {source}, "
                            f"{PYAV_INSTALL}, or give the frames as a folder or a .gif")
        for index, frame in enumerate(iio.imiter(source)):
            yield f"{source.stem}_{index:06d}", Image.fromarray(frame[..., :3])
    elif source.suffix.lower() in IMAGE_SUFFIXES:
        yield source.stem, read_image(source)
    else:
        raise UserError(f"not an image ({', '.join(sorted(IMAGE_SUFFIXES))}), a video "
                        f"({', '.join(sorted(VIDEO_SUFFIXES))}) or a folder, --image_path "
                        f"{source}, pass one of those")


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


class VideoWriter:
    """Frames to one video file that appears whole on :meth:`close` (GIF through Pillow,
    anything else streamed through pyav into a temporary file next to it)."""

    def __init__(self, path: Path):
        if path.suffix.lower() != ".gif" and importlib.util.find_spec("av") is None:
            raise UserError(f"writing {path.suffix or 'a suffix-less'} video needs pyav, "
                            f"--color_video {path}, {PYAV_INSTALL}, or write a .gif")
        self.path, self.frames, self.stream = path, [], None
        # pyav picks the container from the suffix, so the temporary name keeps it
        self.partial = path.with_name(io.TMP_PREFIX + path.name)

    def write(self, frame: np.ndarray) -> None:
        if self.path.suffix.lower() == ".gif":
            self.frames.append(frame)  # Pillow writes a GIF in one go
            return
        if self.stream is None:
            import imageio.v3 as iio

            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.stream = iio.imopen(self.partial, "w", plugin="pyav")
            self.stream.init_video_stream("libx264", fps=VIDEO_FPS)
        even = frame[:frame.shape[0] // 2 * 2, :frame.shape[1] // 2 * 2]  # x264 needs even sizes
        self.stream.write_frame(even)

    def close(self) -> None:
        if self.frames:
            import imageio.v3 as iio

            size = self.frames[0].shape[1::-1]  # GIF frames share one size
            frames = [f if f.shape[1::-1] == size else np.asarray(Image.fromarray(f).resize(size))
                      for f in self.frames]
            io.write_bytes(self.path, iio.imwrite("<bytes>", np.stack(frames), extension=".gif",
                                                  duration=1000 / VIDEO_FPS, loop=0))
        elif self.stream is not None:
            self.stream.close()
            os.replace(self.partial, self.path)


def output_values(disp: np.ndarray, args) -> np.ndarray:
    if args.pred == "disp":
        return disp
    return args.pred_depth_scale_factor / disp if args.pred_depth_scale_factor else 1.0 / disp


def write_outputs(out_dir: Path, name: str, disp: np.ndarray, args, inputs: set,
                  video: Optional[VideoWriter]) -> None:
    values = output_values(disp, args)
    if args.vmin is not None:
        vmin, vmax = args.vmin, args.vmax
    else:
        vmin, vmax = float(disp.min()), float(np.percentile(disp, UPSTREAM_PERCENTILE))
    colours = colorize(disp, vmin, vmax)
    color = BytesIO()
    Image.fromarray(colours).save(color, format="PNG")
    png_scale = KITTI_SCALE if args.pred_depth_scale_factor else None
    files = {f"{name}_{args.pred}.npy": None,
             f"{name}_{args.pred}.png": encode_png16(values, png_scale),
             f"{name}_disp_color.png": color.getvalue()}
    for filename, data in files.items():
        target = out_dir / filename
        if target.resolve() in inputs:
            raise UserError(f"refusing to overwrite the input {target}, --output_dir, "
                            "choose another folder")
        if data is None:
            io.save_npy(target, values.astype(np.float32))
        else:
            io.write_bytes(target, data)
    if video is not None:
        video.write(colours)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("--load_weights_folder", required=True,
                        help="folder with encoder.pth and depth.pth (ours or upstream's)")
    parser.add_argument("--image_path", required=True, help="an image, a folder or a video")
    parser.add_argument("--output_dir", help="where outputs go (default: the input's folder)")
    parser.add_argument("--pred", default="disp", choices=("disp", "depth"),
                        help="what the .npy and 16-bit .png hold (default: disp)")
    parser.add_argument("--pred_depth_scale_factor", type=float,
                        help="with --pred depth: multiply depth by this for metric output "
                        "(5.4 for stereo-trained models; the .png then uses KITTI's x256)")
    parser.add_argument("--color_video", help="also write the coloured disparities as one "
                        "video (.gif; .mp4 and others need pyav)")
    parser.add_argument("--batch_size", type=int, default=8, help="images per forward pass")
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)
    parser.add_argument("--no_cuda", action="store_true", help="same as --device cpu")
    parser.add_argument("--min_depth", type=float, help="disp_to_depth range (default: the "
                        "weights folder's, else its run's opt.json, else 0.1)")
    parser.add_argument("--max_depth", type=float,
                        help="disp_to_depth range (default: as --min_depth, else 100)")
    parser.add_argument("--vmin", type=float, help="fixed colour range (with --vmax)")
    parser.add_argument("--vmax", type=float, help="fixed colour range (with --vmin)")
    return parser


def run(args) -> int:
    if (args.vmin is None) != (args.vmax is None):
        raise UserError("--vmin and --vmax go together, --vmin/--vmax, give both or neither "
                        "(default: minimum to 95th percentile)")
    if args.pred_depth_scale_factor is not None and args.pred != "depth":
        raise UserError("a depth scale factor needs depth output, --pred_depth_scale_factor, "
                        "add --pred depth")
    source = Path(args.image_path)
    if not source.exists():
        raise UserError(f"no such file or folder, --image_path {source}, check the path")
    device = resolve_device(args.device, args.no_cuda)
    if source.is_dir() and not input_files(source):  # before the network is loaded
        raise UserError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in the folder, "
                        f"--image_path {source}, put images there or pass an image, a video or "
                        "another folder (this tool's own outputs are not read as inputs)")
    try:
        net = load_depth_network(args.load_weights_folder, device)
    except FileNotFoundError as exc:
        raise UserError(f"{exc}, --load_weights_folder, pass a folder with encoder.pth and "
                        "depth.pth (a weights_N folder of a run, or upstream's)") from None
    min_depth, max_depth, note = depth_range(args.load_weights_folder, args.min_depth,
                                             args.max_depth)
    print(f"disp_to_depth range {min_depth:g}..{max_depth:g} m ({note})")
    out_dir = Path(args.output_dir or (source if source.is_dir() else source.parent))
    inputs = {path.resolve() for path in input_files(source)}
    video = VideoWriter(Path(args.color_video)) if args.color_video else None
    count, pending = 0, []
    for item in itertools.chain(read_frames(source), [None]):  # None flushes the last batch
        if item is not None:
            pending.append(item)
        if pending and (item is None or len(pending) == args.batch_size):
            disps = predict_batch(net, [im for _, im in pending], device, min_depth, max_depth)
            for (name, _), disp in zip(pending, disps):
                write_outputs(out_dir, name, disp, args, inputs, video)
            count, pending = count + len(pending), []
    if video is not None:
        video.close()
        print(f"wrote {args.color_video}")
    print(f"predicted {count} image(s) into {out_dir}")
    return count


@cli("predict.py")
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except ValueError as exc:  # weights that do not fit: the message names them
        raise UserError(str(exc)) from exc


if __name__ == "__main__":
    main()
