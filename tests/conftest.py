"""Shared test fixtures: the upstream reference folder and small helpers."""
import contextlib
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"


def reference_dir() -> Path:
    """``$LITEMONO_REFERENCE_DIR`` when set, else ``../shared/upstream_reference``."""
    return Path(os.environ.get("LITEMONO_REFERENCE_DIR", SHARED / "upstream_reference"))


def reference_folders(*marker_files: str):
    """Every folder under the reference dir that holds all of ``marker_files`` (sorted)."""
    root = reference_dir()
    if not root.is_dir():
        return []
    found = {p.parent for p in root.rglob(marker_files[0])}
    return sorted(f for f in found if all((f / m).exists() for m in marker_files))


def reference_params(*marker_files: str):
    """pytest params over the reference folders; one skipped param when there are none."""
    folders = reference_folders(*marker_files)
    if not folders:
        return [pytest.param(None, marks=pytest.mark.skip(
            reason=f"no reference folder with {marker_files} under {reference_dir()}"))]
    return [pytest.param(f, id=f.name) for f in folders]


# every way a tensor's value reaches the host (a GPU step would wait for the device there)
HOST_READS = ("item", "tolist", "numpy", "cpu", "__float__", "__int__", "__bool__", "__index__")


@contextlib.contextmanager
def no_host_reads(monkeypatch):
    """Inside the block, reading a tensor on the host (``HOST_READS``: ``.item()``, ``float()``,
    ``bool()``, ``.cpu()`` ...) raises ``AssertionError``; the guard is checked to be armed."""
    import torch

    def host_read(self, *args, **kwargs):
        raise AssertionError("a host read of a tensor inside the training step")

    with monkeypatch.context() as patch:
        for name in HOST_READS:
            patch.setattr(torch.Tensor, name, host_read)
        with pytest.raises(AssertionError, match="host read"):
            float(torch.ones(()))  # the guard is armed
        yield


@pytest.fixture(autouse=True)
def _few_threads():
    import torch

    # one thread: tiny tensors run faster without intra-op threading, and CI has 2 cores
    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="session")
def synthetic_kitti(tmp_path_factory):
    """A tiny synthetic KITTI raw scene (2 drives x 12 frames, 96x320, stereo), rendered once.

    Returns a :class:`litemono.data.synthetic.SceneInfo`: ``.root`` is the data_path,
    ``.split_dir`` holds train/val/test_files.txt, ``.height``/``.width`` the native size;
    ``.true_depth_path(drive, frame, side)`` etc. locate the known depth.
    """
    from litemono.data.synthetic import make_synthetic_kitti

    return make_synthetic_kitti(tmp_path_factory.mktemp("synthetic_kitti"), drives=2,
                                frames_per_drive=12, height=96, width=320, seed=0, workers=2)
