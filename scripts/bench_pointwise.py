"""The two forms of the encoder's linear layers (``ChannelLinear``), timed side by side.

    python scripts/bench_pointwise.py --model lite-mono --height 96 --width 320 --batch_size 4
    python scripts/bench_pointwise.py --model lite-mono --height 192 --width 640 --batch_size 2

Lite-Mono's point-wise MLPs (Linear(C, 6C) -> GELU -> Linear(6C, C)) and XCA projections are
``nn.Linear`` layers. ``litemono.models.blocks.ChannelLinear`` runs them on CPU as 1x1 oneDNN
convolutions over the channels_last maps and on CUDA as ``F.linear`` on the channels-last view
(upstream's computation: torch's matrix product). This times both forms on ``--device``:

- ``mlp``: per encoder stage, the median forward + backward of one MLP (under ``--amp``'s
  autocast) at that stage's size (B, C, H / 4, W / 4 for stage 0, then / 8, / 16) in each
  form, and their ratio;
- ``step``: the median full training step (``litemono.engine.train_step``, synthetic batch, as
  ``bench_train.py``) with the ``F.linear`` form patched in on every other step, interleaved
  in one process, and the ratio.

The last stdout line is a JSON object.
"""
import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import prepare  # noqa: E402

from litemono import benchmark as bench  # noqa: E402
from litemono import engine  # noqa: E402
from litemono.config import add_config_arguments  # noqa: E402
from litemono.models import blocks  # noqa: E402
from litemono.models.encoder import VARIANTS  # noqa: E402

FORMS = ("conv1x1", "linear")
STAGE_STRIDES = (4, 8, 16)  # encoder stage resolutions relative to the input


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser)
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs of each form first")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs of each form")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (CPU)")
    parser.set_defaults(distill=False)  # bench_train.py's shortcut flag, not offered here
    return parser


LIBRARY_CHOICE = blocks._runs_as_convolution  # CPU: conv1x1, CUDA: linear


def use_form(form) -> None:
    """Make every ChannelLinear take ``form`` from now on (None: the library's own choice)."""
    if form is None:
        blocks._runs_as_convolution = LIBRARY_CHOICE
    else:
        blocks._runs_as_convolution = lambda x, conv=form == "conv1x1": conv


def interleaved(run, warmup: int, repeats: int, device: torch.device) -> dict:
    """Median seconds of ``run(form)`` per form, the forms alternating run by run."""
    times = {form: [] for form in FORMS}
    try:
        for index in range(2 * (warmup + repeats)):
            form = FORMS[index % 2]
            use_form(form)
            bench.synchronize(device)
            start = time.perf_counter()
            run(form)
            bench.synchronize(device)
            if index >= 2 * warmup:
                times[form].append(time.perf_counter() - start)
    finally:
        use_form(None)
    result = {form: bench.summarise(seconds)["median_s"] for form, seconds in times.items()}
    result["linear_over_conv1x1"] = result["linear"] / result["conv1x1"]
    return result


def mlp_times(cfg, device: torch.device, channels_last: bool, amp_dtype, warmup: int,
              repeats: int) -> list:
    """One MLP's forward + backward per encoder stage, both forms (under ``--amp``'s autocast)."""
    rows = []
    memory = torch.channels_last if channels_last else torch.contiguous_format
    for stage, (dim, stride) in enumerate(zip(VARIANTS[cfg.model.model].dims, STAGE_STRIDES)):
        block = blocks.CDCBlock(dim, dilation=1, layer_scale_init=1.0).to(device)
        shape = (cfg.train.batch_size, dim, cfg.model.height // stride, cfg.model.width // stride)
        x = torch.randn(shape, device=device).contiguous(memory_format=memory).requires_grad_()

        def run(form, x=x, block=block):
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                out = blocks._pointwise_mlp(block, x)
            out.float().backward(torch.ones(out.shape, device=device))

        rows.append({"stage": stage, "shape": list(shape),
                     **interleaved(run, warmup, repeats, device)})
    return rows


def main(argv=None) -> dict:
    args, cfg, device, parts, criterion, _, channels_last, batch = prepare(build_parser(), argv)
    amp_dtype = engine.AMP_DTYPES[cfg.train.amp]
    steps = [0]

    def step(form):
        steps[0] += 1
        engine.train_step(parts, criterion, batch, steps[0], amp_dtype, 1)

    mlp = mlp_times(cfg, device, channels_last, amp_dtype, args.warmup, args.repeats)
    result = {
        "benchmark": "pointwise_forms", "model": cfg.model.model, "height": cfg.model.height,
        "width": cfg.model.width, "batch_size": cfg.train.batch_size, "amp": cfg.train.amp,
        "channels_last": channels_last, "mlp": mlp,
        "step": interleaved(step, args.warmup, args.repeats, device),
        "environment": bench.environment(device)}
    bench.print_json(result)
    return result


if __name__ == "__main__":
    main()
