"""Our training step against upstream Lite-Mono's, timed side by side on the same machine.

    python scripts/bench_vs_upstream.py --upstream_dir /tmp/upstream_litemono \\
        --model lite-mono --height 96 --width 320 --batch_size 4 \\
        [--repeats 8 --warmup 2 --threads N]

``--upstream_dir`` is a checkout of noahzn/Lite-Mono's training code (``trainer.py``,
``layers.py``, ``options.py``, ``networks/``, ...). It is imported, never copied: its
``trainer.Trainer`` is created *without* ``__init__`` (which needs KITTI on disk, tensorboardX
and the git-only learning-rate scheduler package) and given what ``process_batch``,
``generate_images_pred`` and ``compute_losses`` read, built as ``__init__`` builds it: options
from upstream's own parser, the ``networks.LiteMono`` encoder and ``networks.DepthDecoder``, the
ResNet pose encoder (scratch, no download) and ``networks.PoseDecoder``, back-projection and
projection per scale, SSIM, and the two AdamW optimisers (depth nets at ``lr[0]``, pose nets at
``lr[3]``, both with ``--weight_decay``). Upstream's step is ``run_epoch``'s body: process_batch,
zero_grad both, backward, step both. Ours is :func:`litemono.engine.train_step`, built as
``scripts/bench_train.py`` builds it (its parser and config resolution are reused, so every
config flag means the same here).

Both start from the *same* weights (upstream's initial state dicts are loaded into ours: the key
layouts are equal) and see the same synthetic batch (``litemono.benchmark.synthetic_batch``; for
upstream without ``"index"``, which its dataset does not emit). The first step of each is seeded
identically (drop-path masks, tie-breaking noise), so the first training losses
(``first_loss_rel_diff``) agree to float rounding: both run the pose pairs one by one.
``same_step`` also reports one loss evaluation of each with the pose networks in eval mode. One
thing differs by design:

* upstream's encoder defines dilation rates for 640x192 and 1024x320 only (any other size
  raises); at other sizes its encoder is built with the size whose rates our dilation rule picks
  (``upstream_encoder_size``), and the rates of both encoders are checked to be equal.

Timing is interleaved: ``--warmup`` untimed pairs, then ``--repeats`` times one upstream step
followed by one of ours, so both see the same machine state. Reported: medians, min and max per
side, the ratio upstream / ours, the first losses, ``same_step`` and the environment. The last
stdout line is a JSON object. ``--amp`` and ``--channels_last`` (off unless given, as in
training) are choices of our side only (upstream's step runs in float32 NCHW, as its code does;
``same_step`` stays float32 on both sides). Options that change the objective or that upstream cannot express (bins, spatial
attention, distillation, Chamfer, other pose models) and ``--compile`` are refused.
"""
import importlib
import sys
from pathlib import Path
from types import SimpleNamespace

import torch

SCRIPTS = Path(__file__).resolve().parent
sys.path.insert(0, str(SCRIPTS.parent))
sys.path.insert(0, str(SCRIPTS))
import bench_train  # noqa: E402  (its parser, resolve_config and build_training)
from litemono import benchmark as bench  # noqa: E402
from litemono import engine  # noqa: E402
from litemono.config import ConfigError, lr_schedule_params  # noqa: E402
from litemono.models.build import load_state_strict  # noqa: E402
from litemono.models.encoder import WIDE_INPUT  # noqa: E402

UPSTREAM_MODULES = ("trainer", "networks", "options", "layers")
UPSTREAM_SIZES = ((192, 640), (320, 1024))  # (height, width) with dilation rates upstream
POSE_FRAMES = 2  # upstream's --pose_model_input pairs


class UpstreamError(RuntimeError):
    """The upstream checkout is missing, incomplete or cannot be imported."""


def import_upstream(upstream_dir) -> SimpleNamespace:
    """Upstream's ``trainer``, ``networks``, ``options`` and ``layers`` modules from the checkout.

    Raises:
        UpstreamError: the folder or its ``trainer.py`` is missing, an import fails, or a module
            of the same name from elsewhere shadows upstream's.
    """
    if upstream_dir is None:
        raise UpstreamError("--upstream_dir is required: a checkout of noahzn/Lite-Mono's training "
                            "code (trainer.py, layers.py, options.py, networks/, ...)")
    root = Path(upstream_dir).expanduser().resolve()
    if not root.is_dir():
        raise UpstreamError(f"--upstream_dir {upstream_dir}: no such folder (expected a checkout "
                            "of noahzn/Lite-Mono's training code)")
    if not (root / "trainer.py").is_file():
        raise UpstreamError(f"--upstream_dir {root} has no trainer.py: it is not a checkout of "
                            "noahzn/Lite-Mono's training code")
    sys.path.insert(0, str(root))
    modules = {}
    for name in UPSTREAM_MODULES:
        try:
            modules[name] = importlib.import_module(name)
        except ImportError as exc:
            raise UpstreamError(
                f"importing upstream's {name} from {root} failed: {exc}. Upstream's trainer.py "
                "imports tensorboardX and "
                "linear_warmup_cosine_annealing_warm_restarts_weight_decay at module level; both "
                "are used only in Trainer.__init__, which this benchmark bypasses, so an "
                "installed package or a stand-in module of that name in the checkout is "
                "enough") from exc
        origin = Path(getattr(modules[name], "__file__", "") or "").resolve()
        if root not in origin.parents:
            raise UpstreamError(f"module {name!r} was imported from {origin}, not from {root}: "
                                "another module of that name shadows upstream's")
    return SimpleNamespace(**modules)


def upstream_encoder_size(height: int, width: int) -> tuple:
    """(height, width) to build upstream's encoder with: the input size when upstream defines
    rates for it, else the size whose rates our dilation rule uses at ``width``."""
    if (height, width) in UPSTREAM_SIZES:
        return height, width
    return UPSTREAM_SIZES[1] if width >= WIDE_INPUT else UPSTREAM_SIZES[0]


def unsupported(cfg) -> list:
    """Options of ``cfg`` that upstream's trainer cannot express (empty: comparable)."""
    m, loss, t = cfg.model, cfg.loss, cfg.train
    checks = {"--bins": m.bins != 0, "--spatial_attention": m.spatial_attention,
              "--pose_model_type " + m.pose_model_type: m.pose_model_type != "separate_resnet",
              "--distill_weight": loss.distill_weight > 0,
              "--chamfer_weight": loss.chamfer_weight > 0,
              "--compile": t.compile}
    return [name for name, hit in checks.items() if hit]


def upstream_argv(cfg, device: torch.device) -> list:
    """Upstream's command line for the options of ``cfg`` (its parser fills the rest)."""
    m, data, loss, t = cfg.model, cfg.data, cfg.loss, cfg.train
    argv = ["--model", m.model, "--height", str(m.height), "--width", str(m.width),
            "--batch_size", str(t.batch_size), "--weights_init", "scratch",
            "--num_layers", str(m.num_layers), "--drop_path", str(m.drop_path),
            "--pose_model_type", m.pose_model_type,
            "--scales", *map(str, m.scales), "--frame_ids", *map(str, data.frame_ids),
            "--min_depth", str(loss.min_depth), "--max_depth", str(loss.max_depth),
            "--disparity_smoothness", str(loss.disparity_smoothness),
            "--weight_decay", str(t.weight_decay), "--lr", *map(str, lr_schedule_params(t.lr))]
    flags = {"--no_cuda": device.type != "cuda", "--use_stereo": data.use_stereo,
             "--no_ssim": not loss.ssim, "--disable_automasking": not loss.automasking,
             "--avg_reprojection": loss.avg_reprojection, "--v1_multiscale": loss.v1_multiscale}
    return argv + [flag for flag, on in flags.items() if on]


def build_upstream_depth(up: SimpleNamespace, model: str, drop_path: float, encoder_size: tuple,
                         scales) -> tuple:
    """Upstream's ``networks.LiteMono`` encoder (built at ``encoder_size``, (height, width)) and
    ``networks.DepthDecoder`` at ``scales``, as its ``Trainer.__init__`` builds them, on the
    CPU."""
    encoder = up.networks.LiteMono(model=model, drop_path_rate=drop_path,
                                   height=encoder_size[0], width=encoder_size[1])
    return encoder, up.networks.DepthDecoder(encoder.num_ch_enc, list(scales))


def check_dilations(upstream_encoder, our_encoder, encoder_size: tuple) -> list:
    """The dilation rates of both encoders (equal) as lists.

    Raises:
        ValueError: they differ (naming the size upstream's encoder was built at).
    """
    upstream_rates = [list(rates) for rates in upstream_encoder.dilation]
    if upstream_rates != our_encoder.dilations:
        raise ValueError(f"dilation rates differ: upstream {upstream_rates} (built at "
                         f"{encoder_size[1]}x{encoder_size[0]}), ours {our_encoder.dilations}")
    return upstream_rates


def build_upstream(up: SimpleNamespace, opt, device: torch.device, encoder_size: tuple):
    """An upstream ``Trainer`` ready for ``process_batch``, built without ``__init__``."""
    trainer = up.trainer.Trainer.__new__(up.trainer.Trainer)
    trainer.opt = opt
    trainer.device = device
    trainer.num_scales = len(opt.scales)
    trainer.num_input_frames = len(opt.frame_ids)
    trainer.num_pose_frames = POSE_FRAMES
    trainer.use_pose_net = not (opt.use_stereo and opt.frame_ids == [0])
    if opt.use_stereo:
        opt.frame_ids.append("s")  # as __init__ does: the stereo partner is a source frame
    nets = up.networks
    encoder, decoder = build_upstream_depth(up, opt.model, opt.drop_path, encoder_size, opt.scales)
    trainer.models = {"encoder": encoder, "depth": decoder}
    trainer.models_pose = {}
    if trainer.use_pose_net:
        pose_encoder = nets.ResnetEncoder(opt.num_layers, opt.weights_init == "pretrained",
                                          num_input_images=POSE_FRAMES)
        trainer.models_pose = {"pose_encoder": pose_encoder,
                               "pose": nets.PoseDecoder(pose_encoder.num_ch_enc,
                                                        num_input_features=1,
                                                        num_frames_to_predict_for=POSE_FRAMES)}
    for net in (*trainer.models.values(), *trainer.models_pose.values()):
        net.to(device)
        net.train()

    def parameters(group):
        return [p for net in group.values() for p in net.parameters()]

    trainer.model_optimizer = torch.optim.AdamW(parameters(trainer.models), opt.lr[0],
                                                weight_decay=opt.weight_decay)
    if trainer.use_pose_net:
        trainer.model_pose_optimizer = torch.optim.AdamW(parameters(trainer.models_pose),
                                                         opt.lr[3], weight_decay=opt.weight_decay)
    if not opt.no_ssim:
        trainer.ssim = up.layers.SSIM().to(device)
    trainer.backproject_depth, trainer.project_3d = {}, {}
    for scale in opt.scales:
        h, w = opt.height // 2 ** scale, opt.width // 2 ** scale
        trainer.backproject_depth[scale] = up.layers.BackprojectDepth(
            opt.batch_size, h, w).to(device)
        trainer.project_3d[scale] = up.layers.Project3D(opt.batch_size, h, w).to(device)
    return trainer


def upstream_step(trainer, inputs) -> float:
    """One optimisation step as upstream's ``run_epoch`` does it; returns the loss."""
    _, losses = trainer.process_batch(inputs)
    trainer.model_optimizer.zero_grad()
    if trainer.use_pose_net:
        trainer.model_pose_optimizer.zero_grad()
    losses["loss"].backward()
    trainer.model_optimizer.step()
    if trainer.use_pose_net:
        trainer.model_pose_optimizer.step()
    return float(losses["loss"].detach())


def share_depth_weights(upstream_encoder, upstream_decoder, depth) -> None:
    """Load upstream's encoder and depth decoder state dicts into our depth network ``depth``
    (strict: the key layouts are equal)."""
    load_state_strict(depth.encoder, upstream_encoder.state_dict(), "upstream encoder")
    load_state_strict(depth.decoder, upstream_decoder.state_dict(), "upstream depth")


def share_weights(trainer, parts: engine.Parts) -> None:
    """Load upstream's initial state dicts into our networks (strict: the layouts are equal)."""
    share_depth_weights(trainer.models["encoder"], trainer.models["depth"], parts.depth)
    if trainer.use_pose_net:
        load_state_strict(parts.pose.encoder, trainer.models_pose["pose_encoder"].state_dict(),
                          "upstream pose_encoder")
        load_state_strict(parts.pose.decoder, trainer.models_pose["pose"].state_dict(),
                          "upstream pose")


@torch.no_grad()
def same_step_losses(trainer, up_batch, parts, criterion, batch, seed: int) -> dict:
    """One loss evaluation of each side (no update), same seed, pose networks in eval mode."""
    pose_nets = [*trainer.models_pose.values(), parts.pose]
    for net in pose_nets:
        net.eval()
    try:
        torch.manual_seed(seed)
        upstream = float(trainer.process_batch(up_batch)[1]["loss"])
        torch.manual_seed(seed)
        outputs = engine.run_networks(parts.run_depth, parts.run_pose, batch,
                                      criterion.source_frames)
        ours = float(criterion(batch, outputs)[0])
    finally:
        for net in pose_nets:
            net.train()
    return {"upstream": upstream, "ours": ours, "rel_diff": abs(ours - upstream) / abs(upstream),
            "pose_batchnorm": "eval"}


def main(argv=None) -> dict:
    parser = bench_train.build_parser()
    parser.description = __doc__
    parser.add_argument("--upstream_dir", help="checkout of noahzn/Lite-Mono's training code")
    parser.set_defaults(phase_repeats=0)
    args = parser.parse_args(argv)
    if args.phase_repeats or args.profile or args.distill:
        parser.error("--phase_repeats, --profile and --distill belong to bench_train.py")
    if args.repeats < 1 or args.warmup < 0:
        parser.error(f"--repeats must be >= 1 and --warmup >= 0, got {args.repeats}, {args.warmup}")
    try:
        cfg = bench_train.resolve_config(args)
        refused = unsupported(cfg)
        if refused:  # before the checkout is looked at
            raise ValueError(f"upstream's trainer has no equivalent of {', '.join(refused)}")
        up = import_upstream(args.upstream_dir)
        device = bench.resolve_device(cfg.train.device)
    except (UpstreamError, ConfigError, ValueError) as exc:
        parser.error(str(exc))
    parts, criterion = bench_train.build_training(cfg, device, args.threads)
    m = cfg.model
    opt = up.options.LiteMonoOptions().parser.parse_args(upstream_argv(cfg, device))
    encoder_size = upstream_encoder_size(m.height, m.width)
    trainer = build_upstream(up, opt, device, encoder_size)
    try:
        upstream_rates = check_dilations(trainer.models["encoder"], parts.depth.encoder,
                                         encoder_size)
    except ValueError as exc:
        parser.error(str(exc))
    share_weights(trainer, parts)

    frame_ids = list(cfg.data.frame_ids) + (["s"] if cfg.data.use_stereo else [])
    batch = bench.synthetic_batch(m.height, m.width, cfg.train.batch_size, frame_ids, device,
                                  seed=cfg.train.seed)
    up_batch = {k: v for k, v in batch.items() if k != "index"}  # upstream's dataset keys
    channels_last = cfg.train.channels_last
    batch = engine.to_device(batch, device, channels_last)
    same_step = same_step_losses(trainer, up_batch, parts, criterion, batch, cfg.train.seed)

    losses = {"upstream": [], "ours": []}
    steps = {
        "upstream": lambda: losses["upstream"].append(upstream_step(trainer, up_batch)),
        "ours": lambda: losses["ours"].append(engine.train_step(
            parts, criterion, batch, len(losses["ours"]) + 1, engine.AMP_DTYPES[cfg.train.amp],
            1)[0]),
    }
    times = {"upstream": [], "ours": []}
    for i in range(args.warmup + args.repeats):
        for side, step in steps.items():
            if i == 0:
                torch.manual_seed(cfg.train.seed)  # the same drop-path masks and noise
            seconds = bench.time_once(step, device)
            if i >= args.warmup:
                times[side].append(seconds)

    sides = {}
    for side in steps:
        summary = bench.summarise(times[side])
        sides[side] = {"step_s": summary["median_s"], "step_min_s": summary["min_s"],
                       "step_max_s": summary["max_s"], "times_s": times[side],
                       "samples_per_s": cfg.train.batch_size / summary["median_s"],
                       "first_loss": float(losses[side][0])}
    result = {
        "benchmark": "train_step_vs_upstream", "model": m.model, "height": m.height,
        "width": m.width, "batch_size": cfg.train.batch_size, "channels_last": channels_last,
        "amp": cfg.train.amp,
        "options": {"scales": m.scales, "frame_ids": frame_ids, "ssim": cfg.loss.ssim,
                    "automasking": cfg.loss.automasking, "drop_path": m.drop_path},
        "upstream_dir": str(Path(args.upstream_dir).expanduser().resolve()),
        "upstream_encoder_size": list(encoder_size), "dilations": upstream_rates,
        "weights_shared": True, "runs": args.repeats, "warmup": args.warmup,
        "upstream": sides["upstream"], "ours": sides["ours"],
        "ratio_upstream_over_ours": sides["upstream"]["step_s"] / sides["ours"]["step_s"],
        "first_loss_rel_diff": abs(float(losses["ours"][0]) - losses["upstream"][0])
        / abs(losses["upstream"][0]),
        "same_step": same_step, "environment": bench.environment(device)}
    bench.print_json(result)
    return result


if __name__ == "__main__":
    main()
