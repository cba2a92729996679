"""Our training step beside upstream Lite-Mono's: same weights, batch and seed, interleaved.

    python scripts/vs_upstream.py --upstream_dir /tmp/upstream_litemono --channels_last [--compile]

Upstream's code is imported from a checkout of noahzn/Lite-Mono (never copied); its trainer is
built without ``__init__`` (which needs KITTI, tensorboardX and a git-only scheduler). Both sides
start from upstream's initial weights; a timed round steps each once (bench.py's timings). Ours
may add ``--channels_last``, ``--amp``, ``--compile``; upstream runs eager float32 NCHW; options
it cannot express are refused. ``--infer`` also times both depth networks at batch 1.
"""
import importlib
import json
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


def refusals(cfg) -> list:
    """The options of ``cfg`` upstream's trainer cannot express (empty: comparable)."""
    m = cfg.model
    refused = [f"--model {m.model}"] * (m.model not in VARIANTS) + ["--bins"] * bool(m.bins)
    if m.attention_kind:  # as the user spelt it
        refused.append(f"--attention {m.attention}" if m.attention else "--spatial_attention")
    if m.pose_model_type != "separate_resnet":
        refused.append(f"--pose_model_type {m.pose_model_type}")
    return refused + [f"--{name}_weight" for name in LOSS_TERMS
                      if getattr(cfg.loss, f"{name}_weight") > 0]


def import_upstream(upstream_dir) -> dict:
    """Upstream's ``trainer``, ``networks``, ``options`` and ``layers`` modules."""
    root = Path(upstream_dir or ".").expanduser().resolve()
    if upstream_dir is None or not (root / "trainer.py").is_file():
        raise UserError("--upstream_dir is required" if upstream_dir is None else
                        f"{upstream_dir}: no such folder" if not root.is_dir() else
                        f"{root} has no trainer.py", upstream_dir and "--upstream_dir",
                        "give a checkout of noahzn/Lite-Mono's training code")
    sys.path.insert(0, str(root))
    modules = {}
    for name in ("trainer", "networks", "options", "layers"):
        try:
            modules[name] = importlib.import_module(name)
        except ImportError as exc:
            raise UserError(f"importing upstream's {name} failed: {exc}", "--upstream_dir",
                            "install it, or put a stand-in module of that name in the checkout "
                            "(trainer.py uses tensorboardX and its scheduler only in __init__)"
                            ) from None
        if root not in Path(modules[name].__file__).resolve().parents:
            raise UserError(f"module {name!r} came from {modules[name].__file__}, not {root}",
                            "--upstream_dir", "rename the module that shadows upstream's")
    return modules


def build_upstream(up, cfg, device):
    """Upstream's ``Trainer`` with its parsed options for ``cfg`` and what ``process_batch``
    reads, set up as its ``__init__`` does; the encoder at a size upstream has dilation rates
    for (ours pick them by width)."""
    m, data, loss, t = cfg.model, cfg.data, cfg.loss, cfg.train
    opt = up["options"].LiteMonoOptions().parser.parse_args([])  # upstream's defaults, then ours
    vars(opt).update(
        model=m.model, height=m.height, width=m.width, batch_size=t.batch_size,
        scales=list(m.scales), frame_ids=list(data.frame_ids), use_stereo=data.use_stereo,
        drop_path=m.drop_path, weights_init="scratch", num_layers=m.num_layers,
        no_cuda=device.type != "cuda", min_depth=loss.min_depth, max_depth=loss.max_depth,
        disparity_smoothness=loss.disparity_smoothness, no_ssim=not loss.ssim,
        disable_automasking=not loss.automasking, avg_reprojection=loss.avg_reprojection,
        v1_multiscale=loss.v1_multiscale, lr=list(lr_schedule_params(t.lr)),
        weight_decay=t.weight_decay)
    size = (m.height, m.width) if (m.height, m.width) in UPSTREAM_SIZES else UPSTREAM_SIZES[
        m.width >= WIDE_INPUT]
    nets, layers = up["networks"], up["layers"]
    trainer = up["trainer"].Trainer.__new__(up["trainer"].Trainer)
    trainer.opt, trainer.device, trainer.num_scales = opt, device, len(opt.scales)
    trainer.num_input_frames, trainer.num_pose_frames = len(opt.frame_ids), 2  # pairs
    trainer.use_pose_net = not (opt.use_stereo and opt.frame_ids == [0])
    opt.frame_ids += ["s"] * opt.use_stereo
    encoder = nets.LiteMono(model=opt.model, drop_path_rate=opt.drop_path, height=size[0],
                            width=size[1])
    trainer.models = {"encoder": encoder, "depth": nets.DepthDecoder(encoder.num_ch_enc,
                                                                     opt.scales)}
    trainer.models_pose = {}
    if trainer.use_pose_net:
        pose_encoder = nets.ResnetEncoder(opt.num_layers, False, num_input_images=2)
        trainer.models_pose = {"pose_encoder": pose_encoder, "pose": nets.PoseDecoder(
            pose_encoder.num_ch_enc, num_input_features=1, num_frames_to_predict_for=2)}
    for attribute, group, lr in (("model_optimizer", trainer.models, opt.lr[0]),
                                 ("model_pose_optimizer", trainer.models_pose, opt.lr[3])):
        params = [p for net in group.values() for p in net.to(device).train().parameters()]
        if params:
            setattr(trainer, attribute, torch.optim.AdamW(params, lr,
                                                          weight_decay=opt.weight_decay))
    if not opt.no_ssim:
        trainer.ssim = layers.SSIM().to(device)
    b, h, w = opt.batch_size, opt.height, opt.width
    trainer.backproject_depth = {s: layers.BackprojectDepth(b, h >> s, w >> s).to(device)
                                 for s in opt.scales}
    trainer.project_3d = {s: layers.Project3D(b, h >> s, w >> s).to(device) for s in opt.scales}
    return trainer, size


def upstream_step(trainer, inputs) -> float:
    """One optimisation step as upstream's ``run_epoch`` takes it; the loss."""
    loss = trainer.process_batch(inputs)[1]["loss"]
    optimizers = [trainer.model_optimizer] + [trainer.model_pose_optimizer] * trainer.use_pose_net
    for optimizer in optimizers:
        optimizer.zero_grad()
    loss.backward()
    for optimizer in optimizers:
        optimizer.step()
    return float(loss.detach())


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


def compare_inference(trainer, parts, cfg, args, device) -> dict:
    """Both depth networks in eval mode on one image: latency, largest disparity difference."""
    encoder, decoder, ours = trainer.models["encoder"], trainer.models["depth"], parts.depth
    for net in (encoder, decoder, ours):
        net.eval()
    image = torch.rand(1, 3, cfg.model.height, cfg.model.width, device=device)
    our_image = image.contiguous(memory_format=torch.channels_last
                                 if cfg.train.channels_last else torch.contiguous_format)
    with torch.inference_mode():
        a, b = decoder(encoder(image)), ours(our_image)
        diff = max(float((a[key] - b[key]).abs().max()) for key in a if key[0] == "disp")
        timed = bench.timings({"upstream": lambda: decoder(encoder(image)),
                               "ours": lambda: ours(our_image)},
                              device, args.warmup, args.repeats, "latency")
    up_s, ours_s = timed["upstream"]["latency_s"], timed["ours"]["latency_s"]
    return {"max_abs_disp_diff": diff, "upstream_latency_s": up_s, "latency_s": ours_s,
            "ratio_upstream_over_ours": up_s / ours_s}


@cli(TOOL)
def main(argv=None) -> dict:
    """Build both sides, compare one loss evaluation, time the steps; print the JSON last."""
    parser = OneLineParser(prog=TOOL, description=__doc__.splitlines()[0])
    add_config_arguments(parser)
    parser.add_argument("--upstream_dir", help="checkout of noahzn/Lite-Mono's training code")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first (the first "
                        "step of each side from --seed)")
    parser.add_argument("--repeats", type=int, default=8, help="timed rounds (median)")
    parser.add_argument("--infer", action="store_true", help="also time both depth networks' "
                        "inference at batch 1")
    args = parser.parse_args(argv)
    bench.check_counts(args)
    cfg = bench.training_config(args)
    refused = refusals(cfg)
    if refused:  # before the checkout is looked at
        raise UserError(f"upstream's trainer has no equivalent of {', '.join(refused)}",
                        todo="drop that flag")
    up = import_upstream(args.upstream_dir)
    if cfg.train.compile:  # ours compiled: random numbers drawn as upstream's eager step draws
        bench.inductor_config.fallback_random = True
    device = resolve_device(cfg.train.device)
    parts, model, criterion, batch = bench.build_training(cfg, device)
    trainer, encoder_size = build_upstream(up, cfg, device)
    rates = [list(r) for r in trainer.models["encoder"].dilation]
    if rates != parts.depth.encoder.dilations:
        raise UserError(f"dilation rates differ: upstream {rates} (built at {encoder_size[1]}x"
                        f"{encoder_size[0]}), ours {parts.depth.encoder.dilations}")
    ours = {"encoder": parts.depth.encoder, "depth": parts.depth.decoder,
            "pose_encoder": parts.pose.encoder, "pose": parts.pose.decoder}
    for name, theirs in {**trainer.models, **trainer.models_pose}.items():  # their weights
        load_state_strict(ours[name], theirs.state_dict(), f"upstream {type(theirs).__name__}")
    m, t = cfg.model, cfg.train
    up_batch = {k: v.contiguous() for k, v in batch.items() if k != "index"}  # NCHW, its keys
    same_step = same_step_losses(trainer, up_batch, parts, model, criterion, batch, t.seed)
    losses = {"upstream": [], "ours": []}
    steps = {"upstream": lambda: upstream_step(trainer, up_batch),
             "ours": lambda: float(engine.train_step(parts, model, criterion, batch, 1)[0])}

    def seeded(side):  # each side's first step from the seed: the same masks and noise
        return lambda: (losses[side] or torch.manual_seed(t.seed),
                        losses[side].append(steps[side]()))

    rows = bench.timings({side: seeded(side) for side in steps}, device, args.warmup, args.repeats)
    for side, row in rows.items():
        row.update(first_loss=losses[side][0], samples_per_s=t.batch_size / row["step_s"])
    up_loss, our_loss = losses["upstream"][0], losses["ours"][0]
    result = {
        "benchmark": "train_step_vs_upstream", "model": m.model, "height": m.height,
        "width": m.width, "batch_size": t.batch_size, "channels_last": t.channels_last,
        "amp": t.amp, "compile": t.compile, "upstream_dir": str(Path(args.upstream_dir).resolve()),
        "upstream_encoder_size": list(encoder_size), "dilations": rates, "weights_shared": True,
        "runs": args.repeats, "warmup": args.warmup, **rows, "same_step": same_step,
        "ratio_upstream_over_ours": rows["upstream"]["step_s"] / rows["ours"]["step_s"],
        "first_loss_rel_diff": abs(our_loss - up_loss) / abs(up_loss),
        **({"inference": compare_inference(trainer, parts, cfg, args, device)} if args.infer
           else {}), "environment": bench.environment(device)}
    print(json.dumps(result, sort_keys=True), flush=True)
    return result


if __name__ == "__main__":
    main()
