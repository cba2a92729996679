"""Print the depth network's parameters and compute at a given input size.

    python scripts/profile_model.py --model lite-mono --height 192 --width 640
    python scripts/profile_model.py --model lite-mono --spatial_attention --bins 64
    python scripts/profile_model.py --model lite-mono --attention spatial_bn

Counting convention (litemono.models.profile): "MACs" are multiply-accumulates counted as thop
counts them, which is what Lite-Mono's paper calls "FLOPs" (lite-mono at 640x192: 5.032 G);
"FLOPs" are real floating-point operations (torch FlopCounterMode, about 2 per MAC). Our encoder
pools the input pyramid once per level instead of upstream's repeated chains (and skips its
unused 1/16 level), so thop counts 0.33 M fewer encoder MACs than for the upstream code at
640x192 (encoder 4.313 G vs 4.314 G; the 5.032 G total is unchanged at 3 decimals).
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from litemono.config import ConfigError, add_config_arguments, config_from_namespace  # noqa: E402
from litemono.errors import OneLineParser, cli  # noqa: E402
from litemono.models.build import build_depth_network  # noqa: E402
from litemono.models.profile import count_macs, count_parameters  # noqa: E402


@cli("profile_model.py")
def main(argv=None) -> None:
    parser = OneLineParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser, sections=("model",))
    parser.add_argument("--no-thop", dest="use_thop", action="store_false",
                        help="use the built-in hook counter even when thop is installed")
    args = parser.parse_args(argv)
    try:
        cfg = config_from_namespace(args).model
    except ConfigError as exc:
        parser.error(str(exc))
    net = build_depth_network(cfg)
    whole = count_macs(net, cfg.height, cfg.width, use_thop=args.use_thop)
    encoder = count_macs(net.encoder, cfg.height, cfg.width, use_thop=args.use_thop)
    kind = cfg.attention_kind  # --attention, or spatial for --spatial_attention
    extras = [f"attention {kind} {cfg.attention_stages}" if kind else "",
              f"bins {cfg.bins} ({cfg.bin_mode}, {cfg.bin_head} head)" if cfg.bins else ""]
    print(f"{cfg.model} at {cfg.width}x{cfg.height}, batch 1, eval "
          f"{' '.join(e for e in extras if e)}".rstrip())
    print(f"parameters: encoder {count_parameters(net.encoder):,}  decoder "
          f"{count_parameters(net.decoder):,}  total {count_parameters(net):,}")
    print(f"MACs (thop convention = the paper's 'FLOPs', counted by {whole['counter']}): encoder "
          f"{encoder['macs'] / 1e9:.3f} G + decoder {(whole['macs'] - encoder['macs']) / 1e9:.3f} G"
          f" = {whole['macs'] / 1e9:.3f} G ({whole['macs']:,.0f})")
    print(f"FLOPs (torch.utils.flop_counter, 2 per multiply-add, all matmuls): "
          f"{whole['true_flops'] / 1e9:.3f} G")


if __name__ == "__main__":
    main()
