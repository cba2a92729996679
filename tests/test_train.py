"""The training engine and train.py: exact resume, checkpoints, NaN guard, initial weights."""
import importlib.util
import random

import numpy as np
import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from litemono import checkpoint as ckpt
from litemono import engine
from litemono.config import from_dict
from litemono.data import build_dataset
from litemono.data.sampling import ResumableSampler
from litemono.geometry import transformation_from_parameters
from litemono.logging_utils import RunLogger, colourise, epoch_summary
from litemono.models.build import load_depth_network
from litemono.schedule import cosine_restart_lr

from conftest import ROOT, no_host_reads, reference_params
NORMALISED_K = [[0.58, 0, 0.5, 0], [0, 1.92, 0.5, 0], [0, 0, 1, 0], [0, 0, 0, 1]]


class TinyScene(torch.utils.data.Dataset):
    """In-memory samples in the dataset schema; the flip and the jitter draw from the *global*
    python / torch generators, as the real datasets do, so the data-order machinery is tested."""

    def __init__(self, size, height, width, frames=(0, -1, 1)):
        self.size, self.height, self.width, self.frames = size, height, width, frames

    def __len__(self):
        return self.size

    def __getitem__(self, index):
        generator = torch.Generator().manual_seed(index)
        base = torch.rand(3, self.height, self.width, generator=generator)
        flip = random.random() > 0.5
        sample = {"index": index}
        for f in self.frames:
            shift = 3 if f == "s" else 2 * f  # 2 px sideways per frame, the other camera 3 px
            image = torch.roll(base, shifts=shift, dims=2)
            image = image.flip(-1) if flip else image
            for s in range(4):
                scaled = torch.nn.functional.interpolate(image[None], scale_factor=0.5 ** s)[0]
                sample[("color", f, s)] = scaled
                sample[("color_aug", f, s)] = (scaled * (0.8 + 0.4 * torch.rand(1))).clamp(0, 1)
        if "s" in self.frames:
            sample["stereo_T"] = torch.eye(4)
            sample["stereo_T"][0, 3] = -0.1
        for s in range(4):
            K = torch.tensor(NORMALISED_K)
            K[0] *= self.width // 2 ** s
            K[1] *= self.height // 2 ** s
            sample[("K", s)], sample[("inv_K", s)] = K, torch.linalg.pinv(K)
        return sample


def use_tiny_scene(monkeypatch, train_size=4, val_size=2):
    def build(cfg, part, is_train, **options):
        # the training items hold what a step reads: scale-0 jittered frames, no depth_gt
        assert options == (engine.TRAIN_ITEMS if part == "train" else {}), (part, options)
        assert engine.TRAIN_ITEMS == dict(augmented_scales=(0,), with_depth_gt=False)
        size = train_size if part == "train" else val_size
        return TinyScene(size, cfg.model.height, cfg.model.width)

    monkeypatch.setattr(engine, "build_dataset", build)


def tiny_config(tmp_path, name="run", **changes):
    options = dict(log_dir=str(tmp_path), model_name=name, height=32, width=64, batch_size=2,
                   num_workers=0, model="lite-mono-tiny", weights_init="scratch", device="cpu",
                   seed=3, log_frequency=1)
    return from_dict({**options, **changes})


def final_weights(run_dir):
    state = ckpt.load_training_state(run_dir / "checkpoints" / "last.pt")
    return {**{f"depth.{k}": v for k, v in state["models"]["depth"].items()},
            **{f"pose.{k}": v for k, v in state["models"]["pose"].items()}}


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


@pytest.mark.slow
def test_resume_continues_bit_identically(tmp_path, monkeypatch):
    use_tiny_scene(monkeypatch)  # 2 steps per epoch
    whole = engine.train(tiny_config(tmp_path, "whole", num_steps=3))
    assert whole.step == 3 and whole.epoch == 1 and len(whole.losses) == 3

    # interrupted mid-epoch (after step 1), resumed with --mypretrain, which must not apply
    encoder = engine.build_training(tiny_config(tmp_path), torch.device("cpu"), 1).depth.encoder
    junk = {k: torch.zeros_like(v) for k, v in encoder.state_dict().items()}
    torch.save({"model": junk}, tmp_path / "imagenet.pth")
    first = engine.train(tiny_config(tmp_path, "cut", num_steps=1))
    assert (tmp_path / "cut" / "models" / "weights_0" / "encoder.pth").is_file()
    rest = engine.train(tiny_config(tmp_path, "cut", num_steps=3, resume="auto",
                                    mypretrain=str(tmp_path / "imagenet.pth")))
    assert first.losses + rest.losses == whole.losses
    assert_same_weights(final_weights(tmp_path / "cut"), final_weights(tmp_path / "whole"))

    # interrupted at the epoch boundary, resumed by path
    engine.train(tiny_config(tmp_path, "edge", num_steps=2))
    tail = engine.train(tiny_config(tmp_path, "edge", num_steps=3,
                                    resume=str(tmp_path / "edge" / "checkpoints" / "last.pt")))
    assert tail.losses == whole.losses[2:]
    assert_same_weights(final_weights(tmp_path / "edge"), final_weights(tmp_path / "whole"))


def events_value(folder, tag):
    events = EventAccumulator(str(folder))
    events.Reload()
    return events.Scalars(tag)[-1].value


def _load_train_script():
    spec = importlib.util.spec_from_file_location("train_script", ROOT / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class NaNAtStep:
    """Wraps a criterion; poisons the loss of one step (counting calls in training mode)."""

    def __init__(self, criterion, bad_call):
        self.criterion, self.bad_call, self.calls = criterion, bad_call, 0
        self.source_frames = criterion.source_frames

    def __call__(self, inputs, outputs):
        total, terms = self.criterion(inputs, outputs)
        if torch.is_grad_enabled():
            self.calls += 1
            if self.calls == self.bad_call:
                total = total * float("nan")
        return total, terms


@pytest.mark.slow
def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    use_tiny_scene(monkeypatch, train_size=2)  # 1 step per epoch: last.pt after step 1
    real_build = engine.build_criterion
    monkeypatch.setattr(engine, "build_criterion", lambda cfg: NaNAtStep(real_build(cfg), 2))
    argv = ["--log_dir", str(tmp_path), "--model_name", "nan", "--height", "32", "--width", "64",
            "--batch_size", "2", "--num_workers", "0", "--model", "lite-mono-tiny",
            "--weights_init", "scratch", "--no_cuda", "--num_steps", "4"]
    assert _load_train_script().main(argv) == 3
    err = capsys.readouterr().err
    assert "step 2: non-finite loss nan" in err and "photometric=" in err and "loss/scale0=" in err
    state = ckpt.load_training_state(tmp_path / "nan" / "checkpoints" / "last.pt")
    assert state["step"] == 1 and state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["models"]["depth"].values()
               if v.is_floating_point())


@pytest.mark.slow
def test_nan_mid_epoch_stops_at_the_next_read_naming_the_first_bad_step(tmp_path, monkeypatch):
    use_tiny_scene(monkeypatch, train_size=8)  # 4 steps per epoch; --log_frequency 3 reads at 3
    real_build = engine.build_criterion
    monkeypatch.setattr(engine, "build_criterion", lambda cfg: NaNAtStep(real_build(cfg), 2))
    totals, finite_weights = [], []
    real_step = engine.train_step

    def recording_step(parts, *args):
        total, terms, outputs = real_step(parts, *args)
        totals.append(float(total))
        finite_weights.append(all(torch.isfinite(p).all() for p in parts.depth.parameters()))
        return total, terms, outputs

    monkeypatch.setattr(engine, "train_step", recording_step)
    with pytest.raises(engine.TrainingDiverged) as caught:
        engine.train(tiny_config(tmp_path, "nan", log_frequency=3, num_steps=8))
    message = str(caught.value)
    assert message.startswith("step 2: non-finite loss nan (")
    assert "photometric=" in message and "loss/scale0=" in message
    assert message.endswith("no checkpoint was saved yet")
    assert len(totals) == 3  # the read at step 3 stopped the run: step 4 never ran
    # step 2's update was skipped, so the weights stayed finite and step 3's loss is finite
    assert np.isnan(totals[1]) and np.isfinite(totals[0]) and np.isfinite(totals[2])
    assert all(finite_weights)
    assert not (tmp_path / "nan" / "checkpoints" / "last.pt").exists()
    assert not list((tmp_path / "nan" / "models").glob("weights_*"))


def test_train_step_never_reads_a_tensor_on_the_host(tmp_path, monkeypatch):
    cfg = tiny_config(tmp_path)
    parts = engine.build_training(cfg, torch.device("cpu"), 1)
    criterion = engine.build_criterion(cfg)
    scene = TinyScene(2, 32, 64)
    batch = torch.utils.data.default_collate([scene[0], scene[1]])
    weight = parts.depth.decoder.state_dict()["decoder.0.conv.conv.weight"]
    before = weight.clone()
    tracker = engine.LossTracker()
    with no_host_reads(monkeypatch):
        for step in (1, 2):
            total, terms, _ = engine.train_step(parts, parts.model, criterion, batch, 1)
            tracker.update(step, total, terms)
    assert not torch.equal(before, weight)
    steps = {float(state["step"]) for optimizer in parts.optimizers.values()
             for state in optimizer.state.values()}
    assert steps == {2.0}  # both updates ran for every parameter (none skipped)
    tracker.check()
    assert len(tracker.losses) == 2 and tracker.losses[1] == float(total)



def test_a_non_finite_step_leaves_weights_and_optimiser_state_unchanged(tmp_path):
    cfg = tiny_config(tmp_path)
    parts = engine.build_training(cfg, torch.device("cpu"), 1)
    criterion = NaNAtStep(engine.build_criterion(cfg), 2)
    scene = TinyScene(2, 32, 64)
    batch = torch.utils.data.default_collate([scene[0], scene[1]])
    engine.train_step(parts, parts.model, criterion, batch, 1)
    good = {k: v.detach().clone() for k, v in parts.depth.named_parameters()}
    moments = [{k: v.clone() for k, v in state.items()}
               for state in parts.optimizers["depth"].state.values()]
    total, terms, _ = engine.train_step(parts, parts.model, criterion, batch, 1)
    assert torch.isnan(total)
    assert_same_weights(dict(parts.depth.named_parameters()), good)  # BatchNorm stats move
    for saved, state in zip(moments, parts.optimizers["depth"].state.values()):
        assert all(torch.equal(saved[k], state[k]) for k in saved)  # step count included
    engine.train_step(parts, parts.model, criterion, batch, 1)  # finite again: the update runs
    assert not torch.equal(parts.depth.decoder.state_dict()["decoder.0.conv.conv.weight"],
                           good["decoder.decoder.0.conv.conv.weight"])

@pytest.mark.slow
def test_run_folder_config_and_upstream_layout(tmp_path, monkeypatch):
    use_tiny_scene(monkeypatch, train_size=2)
    cfg = tiny_config(tmp_path, "layout", num_steps=1, save_optimizer_in_weights=True)
    engine.train(cfg)  # upstream's layout asked for: the optimiser files too
    run = tmp_path / "layout"
    assert from_dict(yaml.safe_load((run / "config.yaml").read_text())) == cfg
    assert ckpt.load_training_state(run / "checkpoints" / "last.pt")["config"] == cfg.to_dict()
    assert (run / "checkpoints" / "best.pt").is_file()  # one validation so far: the best
    assert yaml.safe_load((run / "models" / "opt.json").read_text())["model"] == "lite-mono-tiny"
    for part, scalars, images in (
            ("train", {"loss", "photometric", "smoothness", "loss/scale2", "lr/depth", "lr/pose"},
             {"color_0_0/0", "disp_0/0", "automask_0/0"}),
            ("val", {"loss", "photometric", "loss/scale0"}, {"disp_0/0"})):
        events = EventAccumulator(str(run / part))
        events.Reload()
        assert scalars <= set(events.Tags()["scalars"]), part
        assert images <= set(events.Tags()["images"]), part
    lr = events_value(run / "train", "lr/depth")
    assert lr == pytest.approx(cosine_restart_lr(0, 1e-4, 5e-6, 31), rel=1e-6)
    folder = run / "models" / "weights_0"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        f"{n}.pth" for n in ("encoder", "depth", "pose_encoder", "pose", "adam", "adam_pose"))
    encoder_file = torch.load(folder / "encoder.pth", weights_only=True)
    extras = (encoder_file["height"], encoder_file["width"], encoder_file["use_stereo"])
    assert extras == (32, 64, False)
    net = load_depth_network(folder)  # strict
    saved = final_weights(run)
    assert all(torch.equal(v, saved[f"depth.{k}"]) for k, v in net.state_dict().items())

    # --load_weights_folder brings every listed network back, strictly
    parts = engine.build_training(tiny_config(tmp_path, seed=99), torch.device("cpu"), 1)
    ckpt.load_initial_weights(tiny_config(tmp_path, load_weights_folder=str(folder)), parts, print)
    assert all(torch.equal(v, saved[f"pose.{k}"]) for k, v in parts.pose.state_dict().items())
    assert all(torch.equal(v, saved[f"depth.{k}"]) for k, v in parts.depth.state_dict().items())
    assert parts.optimizers["depth"].state_dict()["state"]  # adam.pth restored


def test_mypretrain_applies_after_loaded_weights(tmp_path):
    parts = engine.build_training(tiny_config(tmp_path), torch.device("cpu"), 1)
    imagenet = {k: torch.full_like(v, 0.5) if v.is_floating_point() else v
                for k, v in parts.depth.encoder.state_dict().items()}
    imagenet.update({"head.weight": torch.ones(1000, 4), "norm.weight": torch.ones(4)})
    torch.save({"model": imagenet}, tmp_path / "imagenet.pth")
    decoder_before = {k: v.clone() for k, v in parts.depth.decoder.state_dict().items()}
    ckpt.load_initial_weights(tiny_config(tmp_path, mypretrain=str(tmp_path / "imagenet.pth")),
                              parts, print)
    assert all(torch.all(v == 0.5) for v in parts.depth.encoder.state_dict().values()
               if v.is_floating_point())
    decoder_after = parts.depth.decoder.state_dict()
    assert all(torch.equal(v, decoder_before[k]) for k, v in decoder_after.items())


def test_train_script_rejects_bad_resume(tmp_path, monkeypatch, capsys):
    use_tiny_scene(monkeypatch)
    argv = ["--log_dir", str(tmp_path), "--height", "32", "--width", "64", "--no_cuda",
            "--model", "lite-mono-tiny", "--weights_init", "scratch", "--num_workers", "0",
            "--batch_size", "2", "--resume", str(tmp_path / "missing.pt")]
    with pytest.raises(SystemExit) as exit_info:  # one line, no traceback (litemono.errors)
        _load_train_script().main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("train.py: error: --resume")


@pytest.fixture(scope="module")
def smoke_run(synthetic_kitti, tmp_path_factory):
    """``train.py`` for 2 steps on the synthetic scene (upstream's flags, tiny sizes)."""
    log_dir = tmp_path_factory.mktemp("smoke")
    argv = ["--data_path", str(synthetic_kitti.root), "--split", str(synthetic_kitti.split_dir),
            "--height", "64", "--width", "192", "--batch_size", "2", "--num_workers", "0",
            "--model", "lite-mono-tiny", "--weights_init", "scratch", "--num_steps", "2",
            "--log_dir", str(log_dir), "--model_name", "smoke", "--no_cuda"]
    assert _load_train_script().main(argv) == 0
    return log_dir / "smoke"


@pytest.mark.slow
def test_train_script_smoke_run_writes_loadable_checkpoints(smoke_run):
    state = ckpt.load_training_state(smoke_run / "checkpoints" / "last.pt")
    assert state["step"] == 2 and state["epoch"] == 0 and state["position"] == 4
    cfg = from_dict(state["config"])
    parts = engine.build_training(cfg, torch.device("cpu"), 1)
    ckpt.restore_state(state, parts, "last.pt")  # strict
    folder = smoke_run / "models" / "weights_0"
    net = load_depth_network(folder)
    assert all(torch.equal(v, state["models"]["depth"][k]) for k, v in net.state_dict().items())
    assert list((smoke_run / "train").iterdir()), "no tensorboard events"


def _reference_keys(path):
    rows = [line.split("\t") for line in path.read_text().splitlines() if line.strip()]
    return {key: list(yaml.safe_load(shape)) for key, shape in rows}


@pytest.mark.upstream
@pytest.mark.parametrize("reference", reference_params(
    "litemono_tiny_encoder_keys.txt", "litemono_tiny_decoder_keys.txt", "pose_encoder_keys.txt",
    "pose_decoder_keys.txt", "encoder_checkpoint_extra_keys.txt"))
def test_weight_folder_has_upstream_keys_and_shapes(smoke_run, reference):
    folder = smoke_run / "models" / "weights_0"
    expected_files = {"encoder": "litemono_tiny_encoder_keys.txt",
                      "depth": "litemono_tiny_decoder_keys.txt",
                      "pose_encoder": "pose_encoder_keys.txt", "pose": "pose_decoder_keys.txt"}
    extras = [line.split("\t")[0] for line in
              (reference / "encoder_checkpoint_extra_keys.txt").read_text().splitlines() if line]
    for name, listing in expected_files.items():
        saved = torch.load(folder / f"{name}.pth", weights_only=True)
        tensors = {k: list(v.shape) for k, v in saved.items() if torch.is_tensor(v)}
        assert tensors == _reference_keys(reference / listing), f"{name}.pth differs from {listing}"
        if name == "encoder":
            assert set(extras) <= set(saved) and isinstance(saved["height"], int)


def test_amp_runs_networks_in_bf16_and_losses_in_float32(tmp_path):
    cfg = tiny_config(tmp_path, amp="bf16")
    parts = engine.build_training(cfg, torch.device("cpu"), 1)
    criterion = engine.build_criterion(cfg)
    scene = TinyScene(2, 32, 64)
    batch = torch.utils.data.default_collate([scene[0], scene[1]])
    network_dtypes, loss_dtypes = [], []
    parts.depth.decoder.register_forward_hook(
        lambda module, args, out: network_dtypes.append(out[("disp", 0)].dtype))

    def recording_criterion(inputs, outputs):
        loss_dtypes.extend({outputs[("disp", 0)].dtype, outputs[("cam_T_cam", 0, -1)].dtype})
        return criterion(inputs, outputs)

    before = parts.depth.decoder.state_dict()["decoder.0.conv.conv.weight"].clone()
    assert parts.model.amp_dtype == torch.bfloat16  # --amp bf16 reaches the model
    loss, terms, outputs = engine.train_step(parts, parts.model, recording_criterion, batch, 1)
    assert network_dtypes == [torch.bfloat16] and loss_dtypes == [torch.float32]
    pose_fp32 = transformation_from_parameters(outputs[("axisangle", 0, -1)][:, 0],
                                               outputs[("translation", 0, -1)][:, 0], invert=True)
    assert torch.equal(outputs[("cam_T_cam", 0, -1)], pose_fp32)  # not built under autocast
    assert torch.isfinite(loss) and set(terms) >= {"photometric", "smoothness"}
    assert not torch.equal(before, parts.depth.decoder.state_dict()["decoder.0.conv.conv.weight"])


@pytest.mark.slow
def test_validation_reports_losses_and_depth_metrics(synthetic_kitti, tmp_path):
    cfg = from_dict(dict(data_path=str(synthetic_kitti.root), split=str(synthetic_kitti.split_dir),
                         height=64, width=192, batch_size=2, num_workers=0, device="cpu",
                         model="lite-mono-tiny", weights_init="scratch", log_dir=str(tmp_path)))
    cpu = torch.device("cpu")
    parts = engine.build_training(cfg, cpu, 1)
    criterion = engine.build_criterion(cfg)
    val_set = build_dataset(cfg, "val", is_train=False)
    loader = engine._loader(val_set, ResumableSampler(len(val_set), 0, shuffle=False), cfg,
                            cpu, 0, drop_last=False)
    val = engine.validate(parts, criterion, loader, cpu, False, 1,
                          RunLogger(tmp_path, enabled=False), 0)
    assert {"loss", "photometric", "smoothness", "abs_rel", "a1"} <= set(val)
    assert parts.depth.training  # back in training mode

    # abs_rel by hand: batch-wise median scaling inside the Garg crop, 1e-3..80 m
    parts.depth.eval()
    per_batch = []
    with torch.no_grad():
        for batch in torch.utils.data.DataLoader(val_set, batch_size=2):
            disp = parts.depth(batch[("color", 0, 0)])[("disp", 0)]
            near, far = 1 / cfg.loss.min_depth, 1 / cfg.loss.max_depth
            depth = 1 / (far + (near - far) * disp)
            gt = batch["depth_gt"].numpy()
            pred = torch.nn.functional.interpolate(depth, size=gt.shape[-2:], mode="bilinear",
                                                   align_corners=False).numpy()
            h, w = gt.shape[-2:]
            crop = np.zeros_like(gt, dtype=bool)
            rows = slice(int(0.40810811 * h), int(0.99189189 * h))
            crop[..., rows, int(0.03594771 * w):int(0.96405229 * w)] = True
            mask = crop & (gt > 1e-3) & (gt < 80)
            g, p = gt[mask], pred[mask]
            p = np.clip(p * np.median(g) / np.median(p), 1e-3, 80)
            per_batch.append(np.mean(np.abs(g - p) / g))
    assert val["abs_rel"] == pytest.approx(np.mean(per_batch), rel=1e-5)


def test_colour_map_and_epoch_line():
    disp = torch.linspace(0.2, 0.9, 12).reshape(1, 3, 4)
    rgb = colourise(disp)
    assert rgb.shape == (3, 3, 4) and rgb.min() >= 0 and rgb.max() <= 1
    brightness = rgb.sum(0).flatten()
    assert torch.all(brightness[1:] > brightness[:-1])  # near (high disparity) is brighter
    assert torch.allclose(rgb[:, 0, 0], torch.tensor([0.0, 0.0, 0.02]))  # the map's first colour
    line = epoch_summary(3, 120, 0.25, {"loss": 0.2, "abs_rel": 0.125}, {"depth": 9.9e-5},
                         seconds=10.0, samples=240, best=0.125)
    assert line == ("epoch 3 | step 120 | train 0.2500 | val loss 0.2 abs_rel 0.125 | "
                    "lr depth 9.9e-05 | 10.0 s (24.0 samples/s) | best 0.125")


@pytest.mark.parametrize("options,frames", [
    ({"pose_model_type": "shared"}, (0, -1, 1)),
    ({"frame_ids": [0], "use_stereo": True}, (0, "s")),
    ({"frame_ids": [0, -1, 1], "use_stereo": True}, (0, -1, 1, "s")),
], ids=["shared_pose", "stereo_only", "mono_and_stereo"])
def test_train_step_reaches_every_depth_parameter(tmp_path, options, frames):
    cfg = tiny_config(tmp_path, **options)
    parts = engine.build_training(cfg, torch.device("cpu"), 1)
    criterion = engine.build_criterion(cfg)
    scene = TinyScene(2, 32, 64, frames)
    batch = torch.utils.data.default_collate([scene[0], scene[1]])
    loss, _, outputs = engine.train_step(parts, parts.model, criterion, batch, 1)
    assert np.isfinite(loss)
    assert all(("cam_T_cam", 0, f) in outputs for f in frames[1:])
    if "s" in frames:
        assert torch.equal(outputs[("cam_T_cam", 0, "s")], batch["stereo_T"])
    names = [n for n, _ in parts.depth.named_parameters()]
    # upstream's CDC blocks own a LayerNorm their forward never uses (upstream.md section 1)
    cdc_blocks = {n.split(".ddwconv.")[0] for n in names if ".ddwconv." in n}
    unused = {f"{block}.norm.{p}" for block in cdc_blocks for p in ("weight", "bias")}
    missing = [n for n, p in parts.depth.named_parameters() if p.grad is None]
    assert sorted(set(missing) - unused) == [], f"no gradient for {missing[:5]}"


def test_channels_last_is_off_unless_asked_for(tmp_path):
    # as upstream: NCHW networks by default on every device; --channels_last is explicit
    from litemono.config import from_dict

    assert from_dict({}).train.channels_last is False
    for asked in (False, True):
        cfg = tiny_config(tmp_path, channels_last=asked)
        parts = engine.build_training(cfg, torch.device("cpu"), 1)
        # 3x3+ kernels over several input channels: the weights whose two layouts differ
        convs = [m.weight for net in (parts.depth, parts.pose) for m in net.modules()
                 if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1)
                 and m.weight.shape[1] > 1]
        assert all(w.is_contiguous(memory_format=torch.channels_last) is asked for w in convs)


def test_to_device_makes_only_the_network_inputs_channels_last():
    from litemono.model import to_device

    batch = {("color_aug", 0, 0): torch.rand(2, 3, 8, 16), ("color", 0, 0): torch.rand(2, 3, 8, 16),
             ("color", 1, 2): torch.rand(2, 3, 2, 4), ("K", 0): torch.eye(4).expand(2, 4, 4),
             "depth_gt": torch.rand(2, 1, 8, 16), "index": 3}
    moved = to_device(batch, torch.device("cpu"), channels_last=True)
    cl = torch.channels_last
    assert moved[("color_aug", 0, 0)].is_contiguous(memory_format=cl)
    assert not moved[("color_aug", 0, 0)].is_contiguous()
    for key in (("color", 0, 0), ("color", 1, 2)):  # what the loss reads stays NCHW
        assert moved[key].is_contiguous() and not moved[key].is_contiguous(memory_format=cl)
    assert moved["index"] == 3 and all(torch.equal(moved[k], v) for k, v in batch.items()
                                        if torch.is_tensor(v))
    plain = to_device(batch, torch.device("cpu"), channels_last=False)
    assert plain[("color_aug", 0, 0)].is_contiguous()


def test_optimisers_make_upstreams_adamw_update(tmp_path):
    # the fused kernel must give the update of torch's plain AdamW with upstream's settings
    # (channels_last parameters, and gradients laid out like them as autograd does: torch's
    # fused CPU kernel pairs elements in memory order)
    cfg = tiny_config(tmp_path, channels_last=True)
    parts = engine.build_training(cfg, torch.device("cpu"), 1)
    generator = torch.Generator().manual_seed(5)
    for name, module in (("depth", parts.depth), ("pose", parts.pose)):
        params = [p for p in module.parameters()]
        reference = [torch.nn.Parameter(p.detach().clone()) for p in params]
        optimizer = parts.optimizers[name]
        group = optimizer.param_groups[0]
        assert group["weight_decay"] == cfg.train.weight_decay and group["fused"]
        plain = torch.optim.AdamW(reference, lr=group["lr"], weight_decay=group["weight_decay"])
        for _ in range(2):
            for p, r in zip(params, reference):
                p.grad = torch.randn(p.shape, generator=generator).to(memory_format=torch.channels_last) if p.dim() == 4 else torch.randn(p.shape, generator=generator)
                r.grad = p.grad.clone()
            optimizer.step()
            plain.step()
        for p, r in zip(params, reference):
            torch.testing.assert_close(p.detach(), r.detach(), rtol=1e-5, atol=1e-7)


def test_optimiser_state_from_an_nchw_network_steps_a_channels_last_one_correctly(tmp_path):
    # upstream's adam.pth comes from an NCHW network; its moments must be laid out like the
    # channels_last parameters before the fused kernel (which walks memory order) uses them
    import io

    from litemono.checkpoint import load_optimizer_state

    cpu = torch.device("cpu")
    nchw = engine.build_training(tiny_config(tmp_path, channels_last=False), cpu, 1)
    nhwc = engine.build_training(tiny_config(tmp_path, channels_last=True), cpu, 1)
    nhwc.depth.load_state_dict(nchw.depth.state_dict())
    params_a, params_b = list(nchw.depth.parameters()), list(nhwc.depth.parameters())
    assert any(p.stride() != q.stride() for p, q in zip(params_a, params_b))
    generator = torch.Generator().manual_seed(2)
    grads = [torch.randn(p.shape, generator=generator) for p in params_a]
    for p, g in zip(params_a, grads):
        p.grad = g.clone()
    nchw.optimizers["depth"].step()  # moments now exist, in NCHW layout
    nhwc.depth.load_state_dict(nchw.depth.state_dict())
    saved = io.BytesIO()  # as adam.pth: a file, not the live optimiser's tensors
    torch.save(nchw.optimizers["depth"].state_dict(), saved)
    saved.seek(0)
    load_optimizer_state(nhwc.optimizers["depth"], torch.load(saved, weights_only=True))
    for p in params_b:
        for value in nhwc.optimizers["depth"].state[p].values():
            if value.shape == p.shape:
                assert value.stride() == p.stride()
    for p, q, g in zip(params_a, params_b, grads):
        p.grad = g.clone()
        q.grad = torch.empty_like(q).copy_(g)  # as autograd lays gradients out: like the param
    nchw.optimizers["depth"].step()
    nhwc.optimizers["depth"].step()
    for p, q in zip(params_a, params_b):
        torch.testing.assert_close(q.detach(), p.detach(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("pose_model_type", ["separate_resnet", "shared"])
def test_pose_init_forward_starts_every_pair_moving_along_the_true_motion(synthetic_kitti,
                                                                          pose_model_type):
    """``--pose_init_forward``: the untrained networks' cam_T_cam point where the camera went.

    Compared with the synthetic scene's true relative poses (target -> source camera, from its
    poses.txt), for both source frames, so a sign error in the bias or in the f = -1 inversion
    fails here. Without the option the start is a small motion in a random direction.
    """
    distance = 0.01
    cfg = from_dict(dict(data_path=str(synthetic_kitti.root), split=str(synthetic_kitti.split_dir),
                         height=64, width=192, model="lite-mono-tiny", weights_init="scratch",
                         pose_model_type=pose_model_type, pose_init_forward=distance))
    torch.manual_seed(0)
    parts = engine.build_training(cfg, torch.device("cpu"), 1)
    dataset = build_dataset(cfg, "train", is_train=False)
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=4, shuffle=False)))
    with torch.no_grad():
        outputs = parts.model(batch)
    for f in (-1, 1):
        for i, index in enumerate(batch["index"].tolist()):
            line = dataset.entries[index].line
            poses = np.loadtxt(synthetic_kitti.root / line.folder / "poses.txt").reshape(-1, 3, 4)
            to_world = [np.vstack([poses[k], [0, 0, 0, 1]]) for k in (line.frame_index,
                                                                       line.frame_index + f)]
            true = (np.linalg.inv(to_world[1]) @ to_world[0])[:3, 3]
            predicted = outputs[("cam_T_cam", 0, f)][i, :3, 3].numpy()
            cosine = predicted @ true / np.linalg.norm(predicted) / np.linalg.norm(true)
            assert cosine > 0.95, (f, line, predicted, true)
            assert np.linalg.norm(predicted) == pytest.approx(distance, rel=0.3)


def test_pose_init_forward_is_checked():
    with pytest.raises(Exception, match="pose_init_forward"):
        from_dict(dict(pose_init_forward=-0.01))


class TeacherScene(TinyScene):
    """TinyScene with a teacher disparity map whose top rows are sky (0)."""

    def __getitem__(self, index):
        sample = super().__getitem__(index)
        generator = torch.Generator().manual_seed(100 + index)
        teacher = torch.rand(1, self.height, self.width, generator=generator) + 0.1
        teacher[:, :4] = 0.0
        sample["teacher_disp"] = teacher
        return sample


def _histogram(folder, tag):
    events = EventAccumulator(str(folder), size_guidance={"histograms": 0})
    events.Reload()
    return [event.histogram_value for event in events.Histograms(tag)]


def test_bin_histograms_read_back_from_the_event_file(tmp_path):
    gen = torch.Generator().manual_seed(0)
    centres = torch.rand(3, 8, generator=gen)
    points = torch.rand(3, 5, generator=gen)
    point_mask = torch.rand(3, 5, generator=gen) > 0.3
    logger = RunLogger(tmp_path)
    logger.bins("train", {"bin_centers": centres, "chamfer_points": points,
                          "chamfer_point_mask": point_mask}, step=7)
    logger.bins("train", {("disp", 0): centres}, step=8)  # no bins: nothing logged
    logger.close()
    (logged,) = _histogram(tmp_path / "train", "bins/centers")
    values = centres.double().numpy()
    assert (logged.num, logged.min, logged.max) == (24, pytest.approx(values.min()),
                                                    pytest.approx(values.max()))
    assert logged.sum == pytest.approx(values.sum(), rel=1e-6)
    (logged,) = _histogram(tmp_path / "train", "bins/teacher_points")
    kept = points.double().numpy()[point_mask.numpy()]
    assert logged.num == point_mask.sum() and logged.sum == pytest.approx(kept.sum(), rel=1e-6)
    assert events_value(tmp_path / "train", "bins/centers_mean") == pytest.approx(values.mean())
    assert events_value(tmp_path / "train", "bins/centers_std") == pytest.approx(
        values.std(axis=1, ddof=1).mean(), rel=1e-5)


@pytest.mark.slow
def test_training_with_bins_logs_the_centres_and_chamfer_points(tmp_path, monkeypatch):
    monkeypatch.setattr(engine, "build_dataset", lambda cfg, part, is_train, **options:
                        TeacherScene(4 if part == "train" else 2, cfg.model.height,
                                     cfg.model.width))
    cfg = tiny_config(tmp_path, "bins", num_steps=2, bins=8, bin_mode="adaptive",
                      bin_head="light", teacher_dir="unused", chamfer_weight=0.1,
                      chamfer_points=16, distill_align="minmax")
    engine.train(cfg)
    centres = _histogram(tmp_path / "bins" / "train", "bins/centers")
    points = _histogram(tmp_path / "bins" / "train", "bins/teacher_points")
    assert [h.num for h in centres] == [2 * 8] * 2  # every log step: batch x bins
    assert [h.num for h in points] == [2 * 16] * 2  # the sampled teacher pixels
    assert all(0 <= h.min and h.max <= 1 for h in centres + points)  # minmax targets in [0, 1]
