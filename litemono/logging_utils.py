"""Training logs: tensorboard scalars and images, a tqdm bar, per-epoch console lines.

Events go to ``<run>/train`` and ``<run>/val`` as upstream's ``Trainer.log`` (loss terms, learning
rates, per logged batch the image, colour-mapped disparity and automask; with bins, histograms of
the bin centres and Chamfer's teacher points); only rank 0 logs."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Optional

import torch

# Anchors of a black-purple-orange-yellow map close to magma: low disparity (far) dark, high bright
COLOUR_ANCHORS = torch.tensor([[0.00, 0.00, 0.02], [0.23, 0.06, 0.44], [0.55, 0.16, 0.51],
                               [0.87, 0.29, 0.41], [0.99, 0.62, 0.36], [0.99, 0.99, 0.75]])
IMAGES_PER_LOG = 4  # upstream logs min(4, batch) samples


def colourise(disp: torch.Tensor, low: Optional[float] = None,
              high: Optional[float] = None) -> torch.Tensor:
    """Disparity (1, H, W) or (H, W) -> (3, H, W) float32 RGB in [0, 1], ``low`` dark to ``high``
    bright, clipped (default: its minimum and maximum, as upstream's ``normalize_image``)."""
    value = disp.detach().float().reshape(disp.shape[-2:])
    low = value.min() if low is None else low
    high = value.max() if high is None else high
    value = ((value - low) / torch.as_tensor(high - low).clamp_min(1e-8)).clamp(0, 1)  # (H, W)
    position = value * (len(COLOUR_ANCHORS) - 1)
    lower = position.floor().long().clamp(max=len(COLOUR_ANCHORS) - 2)
    frac = (position - lower).unsqueeze(-1)  # (H, W, 1)
    anchors = COLOUR_ANCHORS.to(value.device)
    rgb = anchors[lower] * (1 - frac) + anchors[lower + 1] * frac  # (H, W, 3)
    return rgb.permute(2, 0, 1).clamp(0, 1)


class RunLogger:
    """Tensorboard writers in ``root/train`` and ``root/val``; a no-op unless ``enabled``.
    ``purge_step``: on resume, drop events from that step on so replayed steps appear once."""

    def __init__(self, root: Path, enabled: bool = True, purge_step: Optional[int] = None) -> None:
        self.enabled = enabled
        self.writers: Dict[str, Any] = {}
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.writers = {part: SummaryWriter(str(Path(root) / part), purge_step=purge_step)
                            for part in ("train", "val")}

    def scalars(self, part: str, values: Mapping[str, float], step: int) -> None:
        """Log named scalars (loss terms, metrics, learning rates) to ``part`` at ``step``."""
        if not self.enabled:
            return
        for name, value in values.items():
            self.writers[part].add_scalar(name, float(value), step)

    def images(self, part: str, inputs: Mapping[Any, Any], outputs: Mapping[Any, Any],
               step: int) -> None:
        """Log the target image, its disparity (colour map) and automask for a few samples."""
        if not self.enabled:
            return
        writer = self.writers[part]
        count = min(IMAGES_PER_LOG, inputs[("color", 0, 0)].shape[0])
        for j in range(count):
            image = inputs[("color", 0, 0)][j].detach().float().cpu()
            writer.add_image(f"color_0_0/{j}", image, step)
            disp = outputs[("disp", 0)][j].detach().cpu()
            writer.add_image(f"disp_0/{j}", colourise(disp), step)
            if ("automask", 0) in outputs:
                mask = outputs[("automask", 0)][j].detach().float().cpu()
                mask = mask.reshape(1, *disp.shape[-2:])
                writer.add_image(f"automask_0/{j}", mask, step)

    def bins(self, part: str, outputs: Mapping[Any, Any], step: int) -> None:
        """Histograms ``bins/centers`` (every image's bin centres) and ``bins/teacher_points``
        (Chamfer's aligned teacher samples, when that term runs); scalars ``bins/centers_mean`` and
        ``bins/centers_std`` (the spread of one image's centres, averaged over the batch)."""
        if not self.enabled or "bin_centers" not in outputs:
            return
        writer = self.writers[part]
        centres = outputs["bin_centers"].detach().float().cpu()  # (B, K)
        writer.add_histogram("bins/centers", centres, step)
        writer.add_scalar("bins/centers_mean", float(centres.mean()), step)
        writer.add_scalar("bins/centers_std", float(centres.std(dim=1).mean()), step)
        if "chamfer_points" in outputs:
            points = outputs["chamfer_points"].detach().float().cpu()
            points = points[outputs["chamfer_point_mask"].cpu()]
            if points.numel():
                writer.add_histogram("bins/teacher_points", points, step)

    def print(self, text: str) -> None:
        if self.enabled:
            print(text, flush=True)

    def progress(self, iterable: Iterable, total: int, description: str) -> Iterable:
        """Wrap ``iterable`` in a tqdm bar on rank 0 (speed in it/s; loss via :meth:`postfix`)."""
        if not self.enabled:
            return iterable
        from tqdm import tqdm

        return tqdm(iterable, total=total, desc=description, dynamic_ncols=True, leave=False)

    @staticmethod
    def postfix(bar: Iterable, loss: float) -> None:
        """Show the latest loss on a bar made by :meth:`progress` (no-op on plain iterables)."""
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()


def epoch_summary(epoch: int, step: int, train_loss: float, val: Mapping[str, float],
                  lrs: Mapping[str, float], seconds: float, samples: int,
                  best: Optional[float] = None) -> str:
    """One console line per epoch, e.g.
    ``epoch 3 | step 120 | train 0.1423 | val loss 0.1391 abs_rel 0.121 | lr depth 9.9e-05 ...``."""
    val_text = " ".join(f"{k} {v:.4g}" for k, v in val.items())
    lr_text = " ".join(f"{k} {v:.3g}" for k, v in lrs.items())
    speed = samples / seconds if seconds > 0 else float("nan")
    text = (f"epoch {epoch} | step {step} | train {train_loss:.4f} | val {val_text} | "
            f"lr {lr_text} | {seconds:.1f} s ({speed:.1f} samples/s)")
    if best is not None:
        text += f" | best {best:.4g}"
    return text


class Timer:
    """Seconds since construction or the last :meth:`restart`."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def restart(self) -> float:
        now = time.perf_counter()
        elapsed, self.start = now - self.start, now
        return elapsed
