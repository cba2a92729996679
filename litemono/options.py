"""Every option of a run, with its default and ``--help`` text (monodepth2's ``options.py``).

Four frozen dataclasses (``model``, ``data``, ``loss``, ``train``: YAML sections and
:class:`litemono.config.Config` attributes), names unique across them and following monodepth2 /
Lite-Mono. ``valid`` and ``choices`` are checked by :func:`litemono.config.coerce`; registry names
(``--model``, ``--attention``) where the network is built. Registered terms' options live in
``LossConfig.extra``."""
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Lite-Mono's `--lr`: depth peak, floor, cycle (epochs), then the pose network's peak, floor, cycle
UPSTREAM_LR = (1e-4, 5e-6, 31.0, 1e-4, 1e-5, 31.0)
# torch.compile's modes --compile_mode accepts (litemono/compile.py says what each does)
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")


def option(default: Any, help: str, choices: Any = None,
           valid: Optional[Tuple[Callable[[Any], bool], str]] = None) -> Any:
    """A config field: its default, ``--help`` text, allowed values and
    ``valid = (predicate, "be ...")`` for set values."""
    meta = {"help": help, "choices": choices, "valid": valid}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def _at_least(low: int) -> Tuple[Callable[[Any], bool], str]:
    return (lambda v: v >= low), f"be >= {low}"


_UNIT = ((lambda v: 0 <= v < 1), "be in [0, 1)")
_NON_NEGATIVE = ((lambda v: v >= 0), "be >= 0")
_SIZE = ((lambda v: v > 0 and v % 32 == 0), "be a positive multiple of 32")


@dataclass(frozen=True)
class ModelConfig:
    """Networks: depth encoder variant, the report's additions (README), the pose network."""

    model: str = option("lite-mono", "depth encoder: a Lite-Mono variant (lite-mono, "
                        "lite-mono-small, lite-mono-tiny, lite-mono-8m) or a registered family")
    height: int = option(192, "input height (multiple of 32)", valid=_SIZE)
    width: int = option(640, "input width (multiple of 32)", valid=_SIZE)
    drop_path: float = option(0.2, "stochastic depth rate of the encoder", valid=_UNIT)
    dilations: Optional[List[List[int]]] = option(
        None, "override the CDC dilation rates: one list per stage (YAML / JSON)",
        valid=((lambda v: len(v) == 3), "have one list per stage (3)"))
    scales: List[int] = option([0, 1, 2], "decoder output scales used by the loss", valid=(
        lambda v: 0 in v and len(set(v)) == len(v) and set(v) <= {0, 1, 2},
        "be distinct values from 0, 1, 2, including 0 (the full-resolution output)"))
    spatial_attention: bool = option(False, "short for --attention spatial")
    attention: Optional[str] = option(None, "attention after the encoder stages: spatial (CBAM's "
                                      "Eq. 3, no BatchNorm), spatial_bn (BatchNorm after the "
                                      "conv, as CBAM's code) or a registered kind (unset: none)")
    attention_stages: List[int] = option([0, 1, 2], "encoder stages that get the attention",
                                         valid=(lambda v: set(v) <= {0, 1, 2}, "be from 0, 1, 2"))
    bins: int = option(0, "disparity bins at the full-resolution head (0 = sigmoid head)",
                       valid=((lambda v: v == 0 or v >= 2), "be 0 (off) or at least 2"))
    disp_init: Optional[float] = option(
        None, "initial output of the sigmoid disparity heads (their bias = logit of it); unset: "
        "upstream's zero bias, 0.5", valid=(lambda v: 0 < v < 1, "be in (0, 1) (a sigmoid output)"))
    bin_mode: str = option("adaptive", "bin centres: predicted per image or uniform",
                           ("adaptive", "fixed"))
    bin_head: str = option("light", "bin head: one conv (light) or AdaBins' mini-ViT, the report's "
                           "FLOPs (mvit)", ("light", "mvit"))
    pose_model_type: str = option("separate_resnet", "pose network", ("separate_resnet", "shared"))
    num_layers: int = option(18, "pose ResNet depth", (18, 34, 50, 101, 152))
    weights_init: str = option("pretrained", "pose ResNet initialisation", ("pretrained", "scratch"))
    pose_init_forward: float = option(
        0.0, "initial forward motion per frame of the pose decoder (its translation bias, network "
        "units); 0: upstream. A from-scratch pose network needs e.g. 0.005 to stay out of the "
        "sideways solution (docs/results_synthetic.md)", valid=_UNIT)
    mypretrain: Optional[str] = option(None, "ImageNet-pretrained encoder weights (.pth); 'none': "
                                       "train the encoder from scratch on purpose")
    mypretrain_required: bool = option(False, "refuse to train without --mypretrain (set by "
                                       "configs/kitti: the published recipe starts from ImageNet)")
    allow_pickle: bool = option(False, "let --mypretrain unpickle a file that is not plain tensors "
                                "(runs code stored in it: trusted files only)")

    @property
    def attention_kind(self) -> Optional[str]:
        """The attention in effect: ``--attention``, or ``spatial`` with --spatial_attention."""
        return self.attention or ("spatial" if self.spatial_attention else None)


@dataclass(frozen=True)
class DataConfig:
    """Data: where the frames are, which split, which frames and augmentation."""

    data_path: str = option(str(PROJECT_ROOT / "kitti_data"), "KITTI raw (or odometry) root")
    split: str = option("eigen_zhou", "split name in --splits_dir, or a folder with *_files.txt")
    splits_dir: str = option(str(PROJECT_ROOT / "splits"), "folder holding the named splits")
    dataset: str = option("kitti", "dataset layout", ("kitti", "kitti_odom", "folder"))
    png: bool = option(False, "read .png instead of .jpg frames")
    frame_ids: List[int] = option([0, -1, 1], "frames to load; the first must be 0", valid=(
        lambda v: v[:1] == [0] and len(set(v)) == len(v),
        "start with 0 (the target frame) and have no duplicates"))
    use_stereo: bool = option(False, "also use the other camera of the stereo pair ('s')")
    num_workers: int = option(min(12, os.cpu_count() or 1), "data loader worker processes "
                              "(upstream's 12, at most this machine's cores)", valid=_at_least(0))
    jitter: str = option("per_frame", "colour jitter drawn per frame and scale (Lite-Mono) or per "
                         "item (monodepth2)", ("per_frame", "per_item"))
    teacher_dir: Optional[str] = option(None, "precomputed teacher disparity folder")
    intrinsics: Optional[str] = option(None, "YAML with fx fy cx cy (normalised), --dataset folder")
    cache_dir: Optional[str] = option(None, "cache of every frame's scale pyramid at --height/"
                                      "--width (opt-in; the same tensors, ~4x faster loading)")


@dataclass(frozen=True)
class LossConfig:
    """Self-supervised photometric loss, distillation, Chamfer, and registered terms' options."""

    min_depth: float = option(0.1, "depth of disparity 1", valid=((lambda v: v > 0), "be > 0"))
    max_depth: float = option(100.0, "depth of disparity 0")
    disparity_smoothness: float = option(1e-3, "edge-aware smoothness weight")
    ssim: bool = option(True, "SSIM in the photometric error (--no_ssim: L1 only)")
    automasking: bool = option(True, "identity-reprojection automasking (--disable_automasking)")
    avg_reprojection: bool = option(False, "average the reprojection errors instead of the minimum")
    v1_multiscale: bool = option(False, "warp at each scale's resolution (monodepth v1)")
    distill_weight: float = option(0.0, "weight of the teacher distillation L1 (0 = off)",
                                   valid=_NON_NEGATIVE)
    distill_align: str = option("normalized", "teacher-to-student alignment (also the Chamfer "
                                "targets')", ("normalized", "minmax", "si", "ssi"))
    teacher_zero_below: float = option(0.0, "teacher disparity at or below this is sky / invalid "
                                       "for distillation and Chamfer", valid=_NON_NEGATIVE)
    teacher_mask: bool = option(True, "mask the teacher's sky / invalid pixels (--no_teacher_mask: "
                                "distillation and Chamfer use every pixel)")
    distill_scales: List[int] = option([0], "scales that receive the distillation term")
    chamfer_weight: float = option(0.0, "weight of the bin-centre Chamfer loss (0 = off)",
                                   valid=_NON_NEGATIVE)
    chamfer_points: int = option(1024, "teacher disparities sampled per image for the Chamfer "
                                 "loss", valid=_at_least(1))
    chamfer_reduction: str = option("mean", "Chamfer over points: mean, or sum (the report's "
                                    "Eq. 1)", ("mean", "sum"))
    extra: Dict[str, Any] = option({}, "options of loss terms registered outside the package "
                                   "(flat names, e.g. prior_weight)")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, logging, checkpoints and the execution engine."""

    log_dir: str = option("./tmp", "folder for runs")
    model_name: str = option("lite-mono", "run name: the run folder is <log_dir>/<model_name>")
    batch_size: int = option(16, "batch size (per process under torchrun)", valid=_at_least(1))
    num_epochs: int = option(50, "epochs", valid=_at_least(1))
    num_steps: Optional[int] = option(None, "stop after this many optimisation steps",
                                      valid=_at_least(1))
    lr: List[float] = option(list(UPSTREAM_LR), "six numbers (depth peak, floor, cycle, pose "
                             "peak, floor, cycle) or one peak for both nets", valid=(
        lambda v: len(v) in (1, 6) and min(v) > 0 and (len(v) == 1 or min(v[2], v[5]) >= 1),
        "be one number or six (depth peak, floor, cycle, pose peak, floor, cycle), positive, "
        "cycles >= 1 epoch"))
    weight_decay: float = option(1e-2, "AdamW weight decay (all parameters, as upstream)")
    seed: int = option(0, "random seed (CPU runs are repeatable)")
    log_frequency: int = option(250, "steps between tensorboard logs", valid=_at_least(1))
    save_frequency: int = option(1, "epochs between checkpoints", valid=_at_least(1))
    keep_weights: Optional[int] = option(None, "keep only the newest K models/weights_N folders",
                                         valid=_at_least(1))
    save_optimizer_in_weights: bool = option(False, "also put adam.pth / adam_pose.pth in "
                                             "weights_N (upstream's layout; checkpoints/ has them)")
    check_data: bool = option(False, "first decode every frame and teacher map the run reads")
    check_data_only: bool = option(False, "run --check_data, then exit")
    load_weights_folder: Optional[str] = option(None, "start from these weights")
    models_to_load: List[str] = option(["encoder", "depth", "pose_encoder", "pose"],
                                       "which networks --load_weights_folder loads", valid=(
        lambda v: set(v) <= {"encoder", "depth", "pose_encoder", "pose"},
        "be from encoder, depth, pose_encoder, pose"))
    resume: Optional[str] = option(None, "training state to resume: a path, or 'auto'")
    overwrite: bool = option(False, "start again from step 0 in a run folder with checkpoints")
    device: str = option("auto", "auto (CUDA when present, else CPU), cpu, cuda, cuda:N or mps",
                         valid=(lambda v: v in ("auto", "cpu", "cuda", "mps")
                                or v.startswith("cuda:"), "be auto, cpu, cuda, cuda:N or mps"))
    amp: str = option("off", "mixed precision for the networks", ("off", "bf16", "fp16"))
    channels_last: bool = option(False, "channels_last memory format for the networks and their "
                                        "inputs")
    compile: bool = option(False, "torch.compile the training step's forward and loss as one graph")
    compile_mode: str = option("default", "torch.compile mode of --compile: default, "
                               "reduce-overhead (CUDA graphs) or max-autotune", COMPILE_MODES)
    sync_bn: bool = option(False, "SyncBatchNorm under torchrun (CUDA devices only)")
    imports: List[str] = option([], "modules or .py files imported first (--import): they "
                                "register loss terms, attention kinds or encoder families")


# YAML / to_dict section -> its dataclass
SECTIONS: Dict[str, type] = {
    "model": ModelConfig, "data": DataConfig, "loss": LossConfig, "train": TrainConfig}
