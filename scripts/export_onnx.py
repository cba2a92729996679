"""Export the depth network to ONNX with a dynamic batch axis, checked against PyTorch.

    python scripts/export_onnx.py --load_weights_folder W --output lite-mono.onnx
    python scripts/export_onnx.py --model lite-mono-tiny --bins 64 --spatial_attention \
        --output random.onnx          # any variant / flag combination, random weights

The graph takes ``image`` (B, 3, H, W) in [0, 1] at the network's training size and returns
``disp_0`` (B, 1, H, W), the sigmoid disparity (before ``disp_to_depth``); ``--all_outputs``
adds the other scales and, with a bin head, ``bin_centers`` and ``bin_probs``. When onnxruntime
is installed (``pip install -e ".[onnx]"``) the exported graph is run on a batch of a different
size than the export batch and compared with PyTorch (max abs difference <= ``--atol``).
"""
import argparse
import sys
import warnings
from io import BytesIO
from pathlib import Path
from typing import List, Tuple

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from litemono import io  # noqa: E402
from litemono.config import ConfigError, add_config_arguments, config_from_namespace  # noqa: E402
from litemono.errors import cli  # noqa: E402
from litemono.models.build import build_depth_network, load_depth_network  # noqa: E402

EXPORT_BATCH, CHECK_BATCH = 1, 2  # different sizes, so the check exercises the dynamic axis


class TensorOutputs(nn.Module):
    """Wraps a DepthNetwork so that it returns a tuple of tensors in ``names`` order."""

    def __init__(self, depth_net: nn.Module, all_outputs: bool):
        super().__init__()
        self.depth_net = depth_net
        cfg = depth_net.config
        scales = sorted(cfg.scales) if all_outputs else [0]
        self.keys: List = [("disp", s) for s in scales]
        if all_outputs and cfg.bins:
            self.keys += ["bin_centers", "bin_probs"]
        self.names = [k if isinstance(k, str) else f"disp_{k[1]}" for k in self.keys]

    def forward(self, image: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        outputs = self.depth_net(image)
        return tuple(outputs[k] for k in self.keys)


def export(depth_net: nn.Module, path: Path, all_outputs: bool = False, opset: int = 17
           ) -> TensorOutputs:
    """Write ``depth_net`` (eval mode) to ``path`` atomically; returns the exported wrapper."""
    wrapper = TensorOutputs(depth_net, all_outputs).eval()  # export restores this mode after
    image = torch.rand(EXPORT_BATCH, 3, depth_net.height, depth_net.width)
    dynamic = {name: {0: "batch"} for name in ["image"] + wrapper.names}
    buffer = BytesIO()
    # The TorchScript-based exporter: the torch.export one needs onnxscript, which the onnx
    # extra does not install. Its deprecation and constant-folding notes are not actionable.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (DeprecationWarning, UserWarning))
        torch.onnx.export(wrapper, (image,), buffer, input_names=["image"],
                          output_names=wrapper.names, dynamic_axes=dynamic,
                          opset_version=opset, dynamo=False)
    io.write_bytes(path, buffer.getvalue())
    return wrapper


def max_difference(wrapper: TensorOutputs, path: Path) -> float:
    """Largest |onnxruntime - PyTorch| over all outputs on a random batch of CHECK_BATCH."""
    import onnxruntime

    image = torch.rand(CHECK_BATCH, 3, wrapper.depth_net.height, wrapper.depth_net.width)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(wrapper.names, {"image": image.numpy()})
    with torch.no_grad():
        want = wrapper(image)
    return max(float(np.abs(g - w.numpy()).max()) for g, w in zip(got, want))


@cli("export_onnx.py")
def main(argv=None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--load_weights_folder", help="weights to export (default: random init "
                        "of the network described by the model flags)")
    parser.add_argument("--output", required=True, help="the .onnx file to write")
    parser.add_argument("--all_outputs", action="store_true")
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--atol", type=float, default=1e-4)
    parser.add_argument("--check", action=argparse.BooleanOptionalAction, default=True,
                        help="compare with PyTorch in onnxruntime (when installed)")
    add_config_arguments(parser, ["net"])
    args = parser.parse_args(argv)
    try:
        cfg = config_from_namespace(args)
    except ConfigError as exc:
        parser.error(str(exc))
    if args.load_weights_folder:
        depth_net = load_depth_network(args.load_weights_folder, "cpu")
    else:
        depth_net = build_depth_network(cfg.model)
    wrapper = export(depth_net.eval(), Path(args.output), args.all_outputs, args.opset)
    print(f"wrote {args.output}: outputs {wrapper.names}, input 'image' "
          f"(batch, 3, {depth_net.height}, {depth_net.width})")
    if not args.check:
        return float("nan")
    try:
        difference = max_difference(wrapper, Path(args.output))
    except ImportError:
        print('onnxruntime is not installed (pip install -e ".[onnx]"): parity not checked')
        return float("nan")
    print(f"onnxruntime vs PyTorch, batch {CHECK_BATCH}: max abs difference {difference:.2e}")
    if not difference <= args.atol:
        parser.exit(1, f"error: difference {difference:.2e} exceeds --atol {args.atol}\n")
    return difference


if __name__ == "__main__":
    main()
