"""Export the depth network to ONNX with a dynamic batch axis, checked against PyTorch.

    python scripts/export_onnx.py --load_weights_folder W --output lite-mono.onnx
    python scripts/export_onnx.py --model lite-mono-tiny --bins 64 --spatial_attention \
        --output random.onnx          # any variant / flag combination, random weights

The graph takes ``image`` (B, 3, H, W) in [0, 1] at the network's training size and returns
``disp_0`` (B, 1, H, W), the sigmoid disparity (before ``disp_to_depth``); ``--all_outputs``
adds the other scales and, with a bin head, ``bin_centers`` and ``bin_probs``. When onnxruntime
is installed (``pip install -e ".[onnx]"``) the exported graph is run on a batch of a different
size than the export batch and compared with PyTorch (max abs difference <= ``--atol``).
With ``--load_weights_folder`` the network is the one stored there (variant, attention, bins);
a model flag that contradicts it (``--model lite-mono`` for lite-mono-tiny weights) is refused,
and the folder's ``disp_to_depth`` range goes into the graph's metadata (``min_depth``,
``max_depth``) when the onnx package is installed.
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
from litemono.config import (FIELDS, ConfigError, ModelConfig, add_config_arguments,  # noqa: E402
                             coerce, config_from_namespace)
from litemono.evaluation import depth_range  # noqa: E402
from litemono.errors import OneLineParser, UserError, cli  # noqa: E402
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


def conflicting_flags(args: argparse.Namespace, stored: ModelConfig) -> List[str]:
    """Model flags given on the command line that differ from the loaded network's."""
    given = {name: value for name, value in vars(args).items()
             if name in FIELDS and FIELDS[name][0] == "model" and name != "mypretrain"}
    return [f"--{name} {coerce(name, value)} (the weights are {getattr(stored, name)})"
            for name, value in given.items() if coerce(name, value) != getattr(stored, name)]


def add_depth_range(path: Path, weights_folder: str) -> None:
    """Store the folder's ``disp_to_depth`` range in the graph's metadata (needs onnx)."""
    try:
        import onnx
    except ImportError:
        return
    min_depth, max_depth, _ = depth_range(weights_folder)
    model = onnx.load(str(path))
    for key, value in (("min_depth", min_depth), ("max_depth", max_depth)):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, repr(float(value))
    io.write_bytes(path, model.SerializeToString())


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("--load_weights_folder", help="weights to export (default: random init "
                        "of the network described by the model flags)")
    parser.add_argument("--output", required=True, help="the .onnx file to write")
    parser.add_argument("--all_outputs", action="store_true",
                        help="export every scale's disparity (and bin_centers / bin_probs) "
                        "instead of disp_0 alone")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset version (default: 17)")
    parser.add_argument("--atol", type=float, default=1e-4,
                        help="largest |onnxruntime - PyTorch| the check accepts (default: 1e-4)")
    parser.add_argument("--check", action=argparse.BooleanOptionalAction, default=True,
                        help="compare with PyTorch in onnxruntime (when installed)")
    parser.add_argument("--no_cuda", action="store_true",
                        help="accepted for upstream habits; the export always runs on the CPU")
    add_config_arguments(parser, ["model"])
    return parser


def run(args) -> float:
    cfg = config_from_namespace(args)
    if args.load_weights_folder:
        try:
            depth_net = load_depth_network(args.load_weights_folder, "cpu")
        except FileNotFoundError as exc:
            raise ConfigError(f"{exc}, --load_weights_folder, pass a folder with encoder.pth "
                              "and depth.pth") from None
        conflicts = conflicting_flags(args, depth_net.config)
        if conflicts:
            raise ConfigError(f"{'; '.join(conflicts)}, --load_weights_folder "
                              f"{args.load_weights_folder}, drop the model flags (the weights "
                              "define the network) or export other weights")
    else:
        depth_net = build_depth_network(cfg.model)
    wrapper = export(depth_net.eval(), Path(args.output), args.all_outputs, args.opset)
    if args.load_weights_folder:
        add_depth_range(Path(args.output), args.load_weights_folder)
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
        raise ConfigError(f"onnxruntime differs from PyTorch by {difference:.2e}, --atol "
                          f"{args.atol}, raise it or try another --opset")
    return difference


@cli("export_onnx.py")
def main(argv=None) -> float:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except ValueError as exc:  # weights that do not fit the network: the message names them
        raise UserError(str(exc)) from exc


if __name__ == "__main__":
    main()
