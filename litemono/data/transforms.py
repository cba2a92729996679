"""Training image transforms: colour jitter, the LANCZOS scale pyramid, to-tensor.

monodepth2's pipeline (ICCV 2019, section 4) as Lite-Mono uses it: LANCZOS (upstream's
``Image.ANTIALIAS``) to ``(H / 2^s, W / 2^s)``, each scale from the previous; torchvision's
``ColorJitter`` (brightness, contrast, saturation in [0.8, 1.2], hue in [-0.1, 0.1], random
order), new draws per frame and scale (``--jitter per_frame``, Lite-Mono) or one per item
(``per_item``, monodepth2's intent), from torch's global RNG in upstream's order.
:func:`adjust_hue` reads PIL's HSV conversions from tables filled once per process: byte for
byte torchvision's, ~3.7x faster at 640x192."""
from __future__ import annotations

import sys
import threading
from typing import List, NamedTuple, Optional

import numpy as np
import torch
import torchvision.transforms as tv_transforms
import torchvision.transforms.functional as tv_functional
from PIL import Image

RESAMPLE = Image.Resampling.LANCZOS
# ColorJitter ranges of monodepth2 / Lite-Mono (brightness, contrast, saturation factors; hue shift)
BRIGHTNESS = (0.8, 1.2)
CONTRAST = (0.8, 1.2)
SATURATION = (0.8, 1.2)
HUE = (-0.1, 0.1)
JITTER_MODES = ("per_frame", "per_item")
COLOURS = 1 << 24  # 24-bit RGB (or HSV) triples, the size of each hue table


class JitterParams(NamedTuple):
    """One draw of ``ColorJitter``: operation order (0 brightness, 1 contrast, 2 saturation,
    3 hue) and the four factors."""

    order: List[int]
    brightness: float
    contrast: float
    saturation: float
    hue: float


class CorruptImageError(OSError):
    """An image file exists but cannot be decoded; the message names the file."""


def read_rgb(path: str) -> Image.Image:
    """Decode an image file to a loaded RGB PIL image.

    Raises:
        FileNotFoundError: no such file. CorruptImageError: truncated or not an image (named)."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")  # convert() forces the full decode inside the try
    except FileNotFoundError:
        raise FileNotFoundError(f"image file {path} not found") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise CorruptImageError(f"cannot decode image file {path}: {exc}") from exc


def draw_jitter() -> JitterParams:
    """Draw jitter factors from torch's RNG exactly as one ``ColorJitter`` call does."""
    order, b, c, s, h = tv_transforms.ColorJitter.get_params(
        list(BRIGHTNESS), list(CONTRAST), list(SATURATION), list(HUE))
    return JitterParams([int(i) for i in order], b, c, s, h)


class _HueTables:
    """PIL's RGB <-> HSV for every 24-bit triple, indexed by an RGBX buffer viewed as uint32;
    2 x 64 MiB, ~0.7 s to build, shared by workers forked after :func:`prepare_hue_tables`."""

    _lock = threading.Lock()
    rgb_to_hsv: Optional[np.ndarray] = None
    hsv_to_rgb: Optional[np.ndarray] = None

    @classmethod
    def get(cls):
        if cls.rgb_to_hsv is None:
            with cls._lock:
                if cls.rgb_to_hsv is None:
                    cls._build()
        return cls.rgb_to_hsv, cls.hsv_to_rgb

    @classmethod
    def _build(cls) -> None:
        side = 1 << 12  # a 4096 x 4096 image holds every triple once
        triples = np.arange(COLOURS, dtype="<u4").view(np.uint8).reshape(side, side, 4)
        every = Image.frombuffer("RGBX", (side, side), triples, "raw", "RGBX", 0, 1).convert("RGB")

        def packed(image: Image.Image) -> np.ndarray:
            return np.frombuffer(image.tobytes("raw", "RGBX"), dtype="<u4") & np.uint32(0xFFFFFF)

        # read as HSV, every triple is an HSV value; read as RGB, every triple is a colour
        # (rgb_to_hsv last: get() takes it being set as the sign that both tables are ready)
        cls.hsv_to_rgb = packed(Image.merge("HSV", every.split()).convert("RGB"))
        cls.rgb_to_hsv = packed(Image.merge("RGB", every.convert("HSV").split()))


def prepare_hue_tables() -> None:
    """Build the hue tables now (e.g. before DataLoader workers fork, so they share them)."""
    _HueTables.get()


def adjust_hue(image: Image.Image, hue_factor: float) -> Image.Image:
    """torchvision's ``adjust_hue`` for PIL images by table look-up: 8-bit HSV, H += int(hue_factor
    * 255) modulo 256, back to RGB; non-RGB images go to torchvision."""
    if not -0.5 <= hue_factor <= 0.5:
        raise ValueError(f"hue_factor ({hue_factor}) is not in [-0.5, 0.5]")
    if image.mode != "RGB" or sys.byteorder != "little":
        return tv_functional.adjust_hue(image, hue_factor)
    rgb_to_hsv, hsv_to_rgb = _HueTables.get()
    shift = np.uint32(np.int32(hue_factor * 255).astype(np.uint8))
    width, height = image.size
    codes = np.frombuffer(image.tobytes("raw", "RGBX"), dtype="<u4") & np.uint32(0xFFFFFF)
    hsv = rgb_to_hsv[codes]
    hsv = (hsv & np.uint32(0xFFFF00)) | ((hsv + shift) & np.uint32(0xFF))  # H wraps mod 256
    rgb = hsv_to_rgb[hsv]
    return Image.frombuffer("RGBX", (width, height), rgb, "raw", "RGBX", 0, 1).convert("RGB")


def apply_jitter(image: Image.Image, params: JitterParams) -> Image.Image:
    """Apply the four colour operations of ``params`` in their drawn order (consumes no RNG)."""
    operations = ((tv_functional.adjust_brightness, params.brightness),
                  (tv_functional.adjust_contrast, params.contrast),
                  (tv_functional.adjust_saturation, params.saturation),
                  (adjust_hue, params.hue))
    for index in params.order:
        adjust, factor = operations[index]
        image = adjust(image, factor)
    return image


class ColorAugmenter:
    """Colour augmentation of one item: ``per_frame`` (new draw per call) or ``per_item`` (one draw
    at construction); disabled: identity, no RNG consumed."""

    def __init__(self, mode: str = "per_frame", enabled: bool = True):
        if mode not in JITTER_MODES:
            raise ValueError(f"--jitter must be one of {list(JITTER_MODES)}, got {mode!r}")
        self.mode = mode
        self.enabled = enabled
        self._shared = draw_jitter() if enabled and mode == "per_item" else None

    def skip(self) -> None:
        """Consume the draw that upstream spends on an image whose result it throws away
        (its native-resolution frames), so the following draws match upstream's stream."""
        if self.enabled and self.mode == "per_frame":
            draw_jitter()

    def __call__(self, image: Image.Image) -> Image.Image:
        if not self.enabled:
            return image
        return apply_jitter(image, self._shared if self._shared is not None else draw_jitter())


def resize_pyramid(image: Image.Image, height: int, width: int,
                   num_scales: int) -> List[Image.Image]:
    """``num_scales`` LANCZOS images ``(height // 2^s, width // 2^s)``, largest first, each from the
    previous; one already at size is passed on unchanged."""
    pyramid = []
    current = image
    for scale in range(num_scales):
        size = (width // 2 ** scale, height // 2 ** scale)  # PIL sizes are (w, h)
        if current.size != size:
            current = current.resize(size, RESAMPLE)
        pyramid.append(current)
    return pyramid


def to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> float32 (3, H, W) in [0, 1] (same values as torchvision's ToTensor)."""
    array = np.array(image, dtype=np.uint8)  # (H, W, 3), a writable copy
    # contiguous (3, H, W) in uint8 first: float ops on the strided view are several times slower
    chw = torch.from_numpy(array).permute(2, 0, 1).contiguous()
    return chw.float().div_(255)


def flip_image(image: Image.Image) -> Image.Image:
    """Mirror left-right."""
    return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)

