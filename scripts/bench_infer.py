"""Latency and throughput of the depth network (encoder + decoder) per variant and batch size.

    python scripts/bench_infer.py --device cpu --height 192 --width 640
    python scripts/bench_infer.py --variants lite-mono lite-mono-tiny --batch_sizes 1 8 --device cuda --amp bf16

The protocol of ``shared/spec/measurements.md`` section 5 (upstream lite-mono at 640x192,
batch 1, CPU: 0.096-0.162 s): the network is in eval mode under ``torch.inference_mode``, a
random batch is built once, ``--warmup`` untimed forwards, then the median of ``--repeats``
timed forwards (CUDA events on GPU). ``latency_s`` is the time of one batch; ``fps`` is images
per second (batch / latency). The other network options (``--spatial_attention``, ``--bins``,
``--scales`` ...) apply to every variant. The last stdout line is a JSON object.
"""
import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from litemono import benchmark as bench  # noqa: E402
from litemono.config import (VARIANT_NAMES, ConfigError, add_config_arguments,  # noqa: E402
                             config_from_namespace)
from litemono.engine import AMP_DTYPES  # noqa: E402
from litemono.models.build import build_depth_network  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser, sections=("net",))
    parser.add_argument("--variants", nargs="+", choices=VARIANT_NAMES,
                        help="variants to time (default: --model)")
    parser.add_argument("--batch_sizes", nargs="+", type=int, default=[1])
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--amp", choices=tuple(AMP_DTYPES), default="off")
    parser.add_argument("--channels_last", action="store_true")
    parser.add_argument("--compile", action="store_true", help="torch.compile the network")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (CPU)")
    return parser


def time_network(cfg, batch_size: int, args, device: torch.device) -> dict:
    """Latency of one variant at one batch size (a fresh network with the seed's weights)."""
    torch.manual_seed(0)
    net = build_depth_network(cfg).eval()
    memory = torch.channels_last if args.channels_last else torch.preserve_format
    net = net.to(device, memory_format=memory)
    run = torch.compile(net) if args.compile else net
    image = torch.rand(batch_size, 3, cfg.height, cfg.width, device=device)
    image = image.contiguous(memory_format=memory)
    amp_dtype = AMP_DTYPES[args.amp]

    def forward():
        with torch.inference_mode(), torch.autocast(device.type, dtype=amp_dtype or torch.float32,
                                                    enabled=amp_dtype is not None):
            run(image)

    summary = bench.summarise(bench.measure(forward, device, args.warmup, args.repeats))
    return {"model": cfg.model, "batch_size": batch_size, "latency_s": summary["median_s"],
            "latency_min_s": summary["min_s"], "latency_max_s": summary["max_s"],
            "runs": summary["runs"], "fps": batch_size / summary["median_s"]}


def main(argv=None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg = config_from_namespace(args).model
        device = bench.resolve_device(args.device)
        if any(b < 1 for b in args.batch_sizes):
            raise ValueError(f"--batch_sizes must be >= 1, got {args.batch_sizes}")
    except (ConfigError, ValueError) as exc:
        parser.error(str(exc))
    if args.threads:
        torch.set_num_threads(args.threads)
    results = []
    for variant in args.variants or [cfg.model]:
        for batch_size in args.batch_sizes:
            variant_cfg = type(cfg)(**{**vars(cfg), "model": variant, "mypretrain": None})
            results.append(time_network(variant_cfg, batch_size, args, device))
            print(f"{variant} batch {batch_size}: {results[-1]['latency_s'] * 1000:.1f} ms, "
                  f"{results[-1]['fps']:.1f} images/s", flush=True)
    result = {"benchmark": "inference", "height": cfg.height, "width": cfg.width,
              "amp": args.amp, "channels_last": args.channels_last, "compile": args.compile,
              "spatial_attention": cfg.spatial_attention, "bins": cfg.bins,
              "results": results, "environment": bench.environment(device)}
    bench.print_json(result)
    return result


if __name__ == "__main__":
    main()
