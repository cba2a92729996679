"""Our training step beside upstream Lite-Mono's, from the same weights and batch, interleaved.

    python scripts/vs_upstream.py --upstream_dir /tmp/upstream_litemono --height 96 --width 320
    python scripts/vs_upstream.py --upstream_dir /tmp/upstream_litemono --channels_last --compile

Upstream's code is imported from a checkout of noahzn/Lite-Mono (never copied); its trainer is
built without ``__init__`` (which needs KITTI, tensorboardX and a git-only scheduler package).
Both sides start from upstream's initial weights and train on the same synthetic batch with the
same seed; each timed round runs one step of each side. Ours may run with ``--channels_last``,
``--amp`` and ``--compile``; upstream runs eager float32 NCHW. Options upstream has no
equivalent of are refused. ``--infer`` also times both depth networks' inference (batch 1).
The last stdout line is one JSON object (as in scripts/bench.py).
"""
import importlib
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (scripts/bench.py: timing, synthetic batch, training set-up)
from litemono import engine  # noqa: E402
from litemono.config import add_config_arguments, lr_schedule_params  # noqa: E402
from litemono.device import resolve_device  # noqa: E402
from litemono.errors import OneLineParser, UserError, cli  # noqa: E402
from litemono.losses.criterion import LOSS_TERMS  # noqa: E402
from litemono.models.build import load_state_strict  # noqa: E402
from litemono.models.encoder import VARIANTS, WIDE_INPUT  # noqa: E402

TOOL = "vs_upstream.py"
UPSTREAM_SIZES = ((192, 640), (320, 1024))  # (height, width) upstream has dilation rates for
POSE_FRAMES = 2  # upstream's pose network sees pairs


def refusals(cfg) -> list:
    """Options of ``cfg`` upstream's trainer cannot express (empty: comparable)."""
    m = cfg.model
    refused = [f"--model {m.model}"] if m.model not in VARIANTS else []
    if m.bins:
        refused.append("--bins")
    if m.attention_kind:  # as the user spelt it
        refused.append(f"--attention {m.attention}" if m.attention else "--spatial_attention")
    if m.pose_model_type != "separate_resnet":
        refused.append(f"--pose_model_type {m.pose_model_type}")
    return refused + [f"--{name}_weight" for name in LOSS_TERMS
                      if getattr(cfg.loss, f"{name}_weight") > 0]


def import_upstream(upstream_dir):
    """Upstream's ``trainer``, ``networks``, ``options`` and ``layers`` modules."""
    if upstream_dir is None:
        raise UserError("--upstream_dir is required: a checkout of noahzn/Lite-Mono's code")
    root = Path(upstream_dir).expanduser().resolve()
    if not root.is_dir():
        raise UserError(f"--upstream_dir {upstream_dir}: no such folder")
    if not (root / "trainer.py").is_file():
        raise UserError(f"--upstream_dir {root} has no trainer.py: not a checkout of "
                        "noahzn/Lite-Mono's training code")
    sys.path.insert(0, str(root))
    modules = {}
    for name in ("trainer", "networks", "options", "layers"):
        try:
            modules[name] = importlib.import_module(name)
        except ImportError as exc:
            raise UserError(f"importing upstream's {name} from {root} failed: {exc}",
                            todo="install the missing package, or put a stand-in module of "
                            "that name in the checkout (trainer.py imports tensorboardX and its "
                            "scheduler at the top but uses them only in __init__)") from None
        if root not in Path(modules[name].__file__).resolve().parents:
            raise UserError(f"module {name!r} came from {modules[name].__file__}, not {root}: "
                            "another module of that name shadows upstream's")
    return modules


def upstream_options(up, cfg, device):
    """Upstream's parsed options for ``cfg`` (its parser fills in the rest)."""
    m, data, loss, t = cfg.model, cfg.data, cfg.loss, cfg.train
    argv = ["--model", m.model, "--height", str(m.height), "--width", str(m.width),
            "--batch_size", str(t.batch_size), "--weights_init", "scratch",
            "--num_layers", str(m.num_layers), "--drop_path", str(m.drop_path),
            "--scales", *map(str, m.scales), "--frame_ids", *map(str, data.frame_ids),
            "--min_depth", str(loss.min_depth), "--max_depth", str(loss.max_depth),
            "--disparity_smoothness", str(loss.disparity_smoothness),
            "--weight_decay", str(t.weight_decay), "--lr", *map(str, lr_schedule_params(t.lr))]
    flags = {"--no_cuda": device.type != "cuda", "--use_stereo": data.use_stereo,
             "--no_ssim": not loss.ssim, "--disable_automasking": not loss.automasking,
             "--avg_reprojection": loss.avg_reprojection, "--v1_multiscale": loss.v1_multiscale}
    argv += [flag for flag, on in flags.items() if on]
    return up["options"].LiteMonoOptions().parser.parse_args(argv)


def build_upstream(up, opt, device):
    """Upstream's ``Trainer`` with what ``process_batch`` reads, as its ``__init__`` sets it up.
    The encoder is built at a size upstream has dilation rates for: ours pick them by width."""
    size = (opt.height, opt.width)
    if size not in UPSTREAM_SIZES:
        size = UPSTREAM_SIZES[1] if opt.width >= WIDE_INPUT else UPSTREAM_SIZES[0]
    nets, layers = up["networks"], up["layers"]
    trainer = up["trainer"].Trainer.__new__(up["trainer"].Trainer)
    trainer.opt, trainer.device, trainer.num_scales = opt, device, len(opt.scales)
    trainer.num_input_frames, trainer.num_pose_frames = len(opt.frame_ids), POSE_FRAMES
    trainer.use_pose_net = not (opt.use_stereo and opt.frame_ids == [0])
    if opt.use_stereo:
        opt.frame_ids.append("s")
    encoder = nets.LiteMono(model=opt.model, drop_path_rate=opt.drop_path, height=size[0],
                            width=size[1])
    trainer.models = {"encoder": encoder, "depth": nets.DepthDecoder(encoder.num_ch_enc,
                                                                     opt.scales)}
    trainer.models_pose = {}
    if trainer.use_pose_net:
        pose_encoder = nets.ResnetEncoder(opt.num_layers, False, num_input_images=POSE_FRAMES)
        trainer.models_pose = {"pose_encoder": pose_encoder, "pose": nets.PoseDecoder(
            pose_encoder.num_ch_enc, num_input_features=1, num_frames_to_predict_for=POSE_FRAMES)}
    groups = {"model_optimizer": (trainer.models, opt.lr[0]),
              "model_pose_optimizer": (trainer.models_pose, opt.lr[3])}
    for attribute, (group, lr) in groups.items():
        for net in group.values():
            net.to(device).train()
        params = [p for net in group.values() for p in net.parameters()]
        if params:
            optimizer = torch.optim.AdamW(params, lr, weight_decay=opt.weight_decay)
            setattr(trainer, attribute, optimizer)
    if not opt.no_ssim:
        trainer.ssim = layers.SSIM().to(device)
    trainer.backproject_depth, trainer.project_3d = {}, {}
    for scale in opt.scales:
        h, w = opt.height // 2 ** scale, opt.width // 2 ** scale
        trainer.backproject_depth[scale] = layers.BackprojectDepth(opt.batch_size, h, w).to(device)
        trainer.project_3d[scale] = layers.Project3D(opt.batch_size, h, w).to(device)
    return trainer, size


def upstream_step(trainer, inputs) -> float:
    """One optimisation step as upstream's ``run_epoch`` takes it; the loss."""
    _, losses = trainer.process_batch(inputs)
    optimizers = [trainer.model_optimizer] + (
        [trainer.model_pose_optimizer] if trainer.use_pose_net else [])
    for optimizer in optimizers:
        optimizer.zero_grad()
    losses["loss"].backward()
    for optimizer in optimizers:
        optimizer.step()
    return float(losses["loss"].detach())


def share_weights(trainer, parts):
    """Upstream's initial weights into our networks (strict: the key layouts are equal)."""
    pairs = [(parts.depth.encoder, trainer.models["encoder"]),
             (parts.depth.decoder, trainer.models["depth"])]
    if trainer.use_pose_net:
        pairs += [(parts.pose.encoder, trainer.models_pose["pose_encoder"]),
                  (parts.pose.decoder, trainer.models_pose["pose"])]
    for ours, theirs in pairs:
        load_state_strict(ours, theirs.state_dict(), f"upstream {type(theirs).__name__}")


@torch.no_grad()
def same_step_losses(trainer, up_batch, parts, model, criterion, batch, seed) -> dict:
    """One loss evaluation of each side without an update, same seed, pose networks in eval
    mode (train-mode BatchNorm statistics differ by how the pose pairs are batched)."""
    pose_nets = [*trainer.models_pose.values(), parts.pose]
    for net in pose_nets:
        net.eval()
    torch.manual_seed(seed)
    upstream = float(trainer.process_batch(up_batch)[1]["loss"])
    torch.manual_seed(seed)
    ours = float(criterion(batch, model(batch))[0])
    for net in pose_nets:
        net.train()
    return {"upstream": upstream, "ours": ours, "rel_diff": abs(ours - upstream) / abs(upstream)}


def interleaved(sides: dict, device, warmup: int, repeats: int, seed=None) -> dict:
    """Seconds of ``repeats`` timed rounds after ``warmup`` untimed ones; each round calls every
    side once, so both see the same machine state."""
    times = {side: [] for side in sides}
    for i in range(warmup + repeats):
        for side, fn in sides.items():
            if i == 0 and seed is not None:
                torch.manual_seed(seed)  # the same drop-path masks and automasking noise
            seconds = bench.time_call(fn, device)
            if i >= warmup:
                times[side].append(seconds)
    return {side: {"step_s": statistics.median(t), "step_min_s": min(t), "step_max_s": max(t),
                   "times_s": t} for side, t in times.items()}


def compare_inference(trainer, parts, cfg, args, device) -> dict:
    """Both depth networks in eval mode on one image: latency and largest disparity difference."""
    encoder, decoder = trainer.models["encoder"], trainer.models["depth"]
    ours = parts.depth
    for net in (encoder, decoder, ours):
        net.eval()
    image = torch.rand(1, 3, cfg.model.height, cfg.model.width, device=device)
    our_image = image.contiguous(memory_format=torch.channels_last
                                 if cfg.train.channels_last else torch.contiguous_format)
    with torch.inference_mode():
        a, b = decoder(encoder(image)), ours(our_image)
        diff = max(float((a[key] - b[key]).abs().max()) for key in a if key[0] == "disp")
        timed = interleaved({"upstream": lambda: decoder(encoder(image)),
                             "ours": lambda: ours(our_image)}, device, args.warmup, args.repeats)
    return {"max_abs_disp_diff": diff, "upstream_latency_s": timed["upstream"]["step_s"],
            "latency_s": timed["ours"]["step_s"],
            "ratio_upstream_over_ours": timed["upstream"]["step_s"] / timed["ours"]["step_s"]}


def build_parser():
    parser = OneLineParser(prog=TOOL, description=__doc__.splitlines()[0])
    add_config_arguments(parser)
    parser.add_argument("--upstream_dir", help="checkout of noahzn/Lite-Mono's training code")
    bench.add_timing(parser, warmup=2, repeats=8)
    parser.add_argument("--infer", action="store_true",
                        help="also time both depth networks' inference at batch 1")
    return parser


@cli(TOOL)
def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    bench.check_timing(args)
    cfg = bench.training_config(args)
    refused = refusals(cfg)
    if refused:  # before the checkout is looked at
        raise UserError(f"upstream's trainer has no equivalent of {', '.join(refused)}",
                        todo="drop that flag")
    up = import_upstream(args.upstream_dir)
    if cfg.train.compile:  # ours compiled: random numbers drawn as upstream's eager step draws
        import torch._inductor.config as inductor_config

        inductor_config.fallback_random = True
    device = resolve_device(cfg.train.device)
    parts, model, criterion = bench.build_training(cfg, device)
    trainer, encoder_size = build_upstream(up, upstream_options(up, cfg, device), device)
    rates = [list(r) for r in trainer.models["encoder"].dilation]
    if rates != parts.depth.encoder.dilations:
        raise UserError(f"dilation rates differ: upstream {rates} (built at {encoder_size[1]}x"
                        f"{encoder_size[0]}), ours {parts.depth.encoder.dilations}")
    share_weights(trainer, parts)
    m, t = cfg.model, cfg.train
    frames = list(cfg.data.frame_ids) + (["s"] if cfg.data.use_stereo else [])
    raw = bench.synthetic_batch(m.height, m.width, t.batch_size, frames, device, seed=t.seed)
    up_batch = {k: v for k, v in raw.items() if k != "index"}  # upstream's dataset keys
    batch = bench.training_batch(cfg, device)
    same_step = same_step_losses(trainer, up_batch, parts, model, criterion, batch, t.seed)
    losses = {"upstream": [], "ours": []}
    sides = interleaved({
        "upstream": lambda: losses["upstream"].append(upstream_step(trainer, up_batch)),
        "ours": lambda: losses["ours"].append(
            float(engine.train_step(parts, model, criterion, batch, 1)[0]))},
        device, args.warmup, args.repeats, seed=t.seed)
    for side, row in sides.items():
        row.update(first_loss=losses[side][0], samples_per_s=t.batch_size / row["step_s"])
    result = {
        "benchmark": "train_step_vs_upstream", "model": m.model, "height": m.height,
        "width": m.width, "batch_size": t.batch_size, "channels_last": t.channels_last,
        "amp": t.amp, "compile": t.compile, "upstream_dir": str(Path(args.upstream_dir).resolve()),
        "upstream_encoder_size": list(encoder_size), "dilations": rates, "weights_shared": True,
        "runs": args.repeats, "warmup": args.warmup, **sides,
        "ratio_upstream_over_ours": sides["upstream"]["step_s"] / sides["ours"]["step_s"],
        "first_loss_rel_diff": abs(losses["ours"][0] - losses["upstream"][0])
        / abs(losses["upstream"][0]), "same_step": same_step,
        "environment": bench.environment(device)}
    if args.infer:
        result["inference"] = compare_inference(trainer, parts, cfg, args, device)
    print(json.dumps(result, sort_keys=True), flush=True)
    return result


if __name__ == "__main__":
    main()
