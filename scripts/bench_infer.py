"""Latency and throughput of the depth network (encoder + decoder) per variant and batch size.

    python scripts/bench_infer.py --device cpu --height 192 --width 640
    python scripts/bench_infer.py --variants lite-mono lite-mono-tiny --batch_sizes 1 8 --device cuda --amp bf16

The protocol of ``shared/spec/measurements.md`` section 5 (upstream lite-mono at 640x192,
batch 1, CPU): the network is in eval mode under ``torch.inference_mode``, a
random batch is built once, ``--warmup`` untimed forwards, then the median of ``--repeats``
timed forwards (CUDA events on GPU). ``latency_s`` is the time of one batch; ``fps`` is images
per second (batch / latency). The other network options (``--spatial_attention``, ``--bins``,
``--scales`` ...) apply to every variant. ``--channels_last`` (off unless given, as in training)
puts the network and the batch in NHWC memory; the JSON reports it. The last stdout line is a
JSON object.

``--upstream_dir PATH`` (a checkout of noahzn/Lite-Mono's code, imported through
``scripts/bench_vs_upstream.py``'s helpers, never copied) also times upstream's
``networks.LiteMono`` + ``networks.DepthDecoder`` for every variant and batch size: its encoder
is built at the size whose dilation rates our rule picks (``upstream_encoder_size``; the rates
are checked to be equal), upstream's initial weights are loaded into our network (same key
layout), the disparities of one forward of each on the same batch are compared
(``max_abs_disp_diff``, over every scale), then ``--warmup`` untimed pairs and ``--repeats``
timed pairs run interleaved (one upstream forward, then one of ours). Each row gains
``upstream_latency_s`` (median), ``upstream_latency_min_s``, ``upstream_latency_max_s``,
``ratio_upstream_over_ours`` and ``max_abs_disp_diff``. Upstream has no AMP, compile, bins or
spatial attention: those flags are refused with ``--upstream_dir``. ``--channels_last`` is a
choice of our side only (upstream runs NCHW, as its code does).
"""
import argparse
import sys
from pathlib import Path

import torch

SCRIPTS = Path(__file__).resolve().parent
sys.path.insert(0, str(SCRIPTS.parent))
sys.path.insert(0, str(SCRIPTS))
import bench_vs_upstream as upstream_bench  # noqa: E402  (upstream import and loading helpers)
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
    parser.add_argument("--batch_sizes", nargs="+", type=int, default=[1],
                        help="batch sizes to time, one row each")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--no_cuda", dest="device", action="store_const", const="cpu",
                        help="same as --device cpu")
    parser.add_argument("--amp", choices=tuple(AMP_DTYPES), default="off",
                        help="autocast dtype for the forward pass")
    parser.add_argument("--channels_last", action=argparse.BooleanOptionalAction, default=False,
                        help="NHWC network and batch, ours only")
    parser.add_argument("--compile", action="store_true", help="torch.compile the network")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs first")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs (median reported)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (CPU)")
    parser.add_argument("--upstream_dir",
                        help="checkout of noahzn/Lite-Mono's code: also time its depth network, "
                        "interleaved with ours, from the same weights")
    return parser


def upstream_refusals(args, cfg) -> list:
    """Options that upstream's depth network cannot express (empty: comparable)."""
    checks = {"--amp " + args.amp: args.amp != "off",
              "--compile": args.compile, "--bins": cfg.bins != 0,
              "--spatial_attention": cfg.spatial_attention}
    return [name for name, hit in checks.items() if hit]


def time_network(cfg, batch_size: int, args, device: torch.device, channels_last: bool) -> dict:
    """Latency of one variant at one batch size (a fresh network with the seed's weights)."""
    torch.manual_seed(0)
    net = build_depth_network(cfg).eval()
    memory = torch.channels_last if channels_last else torch.preserve_format
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


def time_beside_upstream(cfg, batch_size: int, args, device: torch.device, up,
                         channels_last: bool) -> dict:
    """Latency of ours and upstream's depth network (same weights, same batch), interleaved;
    ours in channels_last memory when ``channels_last`` (upstream's code runs NCHW)."""
    torch.manual_seed(0)
    net = build_depth_network(cfg).eval()
    encoder_size = upstream_bench.upstream_encoder_size(cfg.height, cfg.width)
    up_encoder, up_decoder = upstream_bench.build_upstream_depth(
        up, cfg.model, cfg.drop_path, encoder_size, cfg.scales)
    upstream_bench.check_dilations(up_encoder, net.encoder, encoder_size)
    upstream_bench.share_depth_weights(up_encoder, up_decoder, net)
    up_encoder.to(device).eval()
    up_decoder.to(device).eval()
    memory = torch.channels_last if channels_last else torch.contiguous_format
    net.to(device, memory_format=memory)
    image = torch.rand(batch_size, 3, cfg.height, cfg.width, device=device)
    our_image = image.contiguous(memory_format=memory)  # the same values

    def upstream_forward():
        with torch.inference_mode():
            return up_decoder(up_encoder(image))

    def our_forward():
        with torch.inference_mode():
            return net(our_image)

    reference, ours = upstream_forward(), our_forward()
    diff = max(float((ours[("disp", s)] - reference[("disp", s)]).abs().max()) for s in cfg.scales)
    times = {"upstream": [], "ours": []}
    for i in range(args.warmup + args.repeats):
        for side, forward in (("upstream", upstream_forward), ("ours", our_forward)):
            seconds = bench.time_once(forward, device)
            if i >= args.warmup:
                times[side].append(seconds)
    summary = {side: bench.summarise(seconds) for side, seconds in times.items()}
    ours_s, upstream_s = summary["ours"], summary["upstream"]
    return {"model": cfg.model, "batch_size": batch_size, "latency_s": ours_s["median_s"],
            "latency_min_s": ours_s["min_s"], "latency_max_s": ours_s["max_s"],
            "runs": ours_s["runs"], "fps": batch_size / ours_s["median_s"],
            "upstream_latency_s": upstream_s["median_s"],
            "upstream_latency_min_s": upstream_s["min_s"],
            "upstream_latency_max_s": upstream_s["max_s"],
            "ratio_upstream_over_ours": upstream_s["median_s"] / ours_s["median_s"],
            "max_abs_disp_diff": diff}


def main(argv=None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg = config_from_namespace(args).model
        device = bench.resolve_device(args.device)
        if any(b < 1 for b in args.batch_sizes):
            raise ValueError(f"--batch_sizes must be >= 1, got {args.batch_sizes}")
        if args.repeats < 1 or args.warmup < 0:
            raise ValueError(f"--repeats must be >= 1 and --warmup >= 0, got {args.repeats}, "
                             f"{args.warmup}")
        up = None
        if args.upstream_dir is not None:
            refused = upstream_refusals(args, cfg)
            if refused:
                raise ValueError(f"--upstream_dir: upstream's depth network has no equivalent of "
                                 f"{', '.join(refused)}")
            up = upstream_bench.import_upstream(args.upstream_dir)
    except (ConfigError, ValueError, upstream_bench.UpstreamError) as exc:
        parser.error(str(exc))
    channels_last = args.channels_last
    if args.threads:
        torch.set_num_threads(args.threads)
    results = []
    for variant in args.variants or [cfg.model]:
        for batch_size in args.batch_sizes:
            variant_cfg = type(cfg)(**{**vars(cfg), "model": variant, "mypretrain": None})
            if up is None:
                row = time_network(variant_cfg, batch_size, args, device, channels_last)
            else:
                try:
                    row = time_beside_upstream(variant_cfg, batch_size, args, device, up,
                                               channels_last)
                except ValueError as exc:  # dilation rates or state dict layouts differ
                    parser.error(str(exc))
            results.append(row)
            line = (f"{variant} batch {batch_size}: {row['latency_s'] * 1000:.1f} ms, "
                    f"{row['fps']:.1f} images/s")
            if up is not None:
                line += (f"; upstream {row['upstream_latency_s'] * 1000:.1f} ms (upstream / ours "
                         f"{row['ratio_upstream_over_ours']:.2f}), max |disp diff| "
                         f"{row['max_abs_disp_diff']:.2e}")
            print(line, flush=True)
    result = {"benchmark": "inference", "height": cfg.height, "width": cfg.width,
              "amp": args.amp, "channels_last": channels_last,
              "compile": args.compile, "spatial_attention": cfg.spatial_attention,
              "bins": cfg.bins, "results": results, "environment": bench.environment(device)}
    if up is not None:
        encoder_size = upstream_bench.upstream_encoder_size(cfg.height, cfg.width)
        result.update(upstream_dir=str(Path(args.upstream_dir).expanduser().resolve()),
                      upstream_encoder_size=list(encoder_size), warmup=args.warmup,
                      interleaved=True, weights_shared=True)
    bench.print_json(result)
    return result


if __name__ == "__main__":
    main()
