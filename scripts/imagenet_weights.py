"""Where the ImageNet-pretrained encoder weights of the KITTI recipe come from, and checks on them.

    python scripts/imagenet_weights.py                         # sources and where to put them
    python scripts/imagenet_weights.py check pretrained/lite-mono-pretrain.pth
    python scripts/imagenet_weights.py convert downloaded.pth pretrained/lite-mono-pretrain.pth \
        --allow_pickle                                         # a trusted pickled file, once

Upstream Lite-Mono's README (noahzn/Lite-Mono, table "KITTI", column "ImageNet Pretrained")
links the encoder weights per variant; they are agnostic to the image size. Save each as
``pretrained/<variant>-pretrain.pth`` and train with ``--mypretrain`` pointing at it
(configs/kitti/base.yaml). Nothing is downloaded here: the links are share pages, opened in a
browser. ``check`` loads a file into the variant's encoder as train.py will (strictly, without
unpickling) and says which variant it fits; ``convert`` rewrites a file that holds pickled
objects (e.g. a checkpoint from upstream's pretraining code with non-plain extras) as a plain
``{'model': state dict}`` tensor file, after you vouch for it with ``--allow_pickle``.
"""
import os
import pickle
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from litemono import io  # noqa: E402
from litemono.errors import OneLineParser, UserError, cli, first_sentence  # noqa: E402
from litemono.models.build import imagenet_file, load_imagenet_encoder  # noqa: E402
from litemono.models.encoder import VARIANTS, LiteMono  # noqa: E402

TOOL = "imagenet_weights.py"
UPSTREAM_README = "https://github.com/noahzn/Lite-Mono#kitti"
# the 'yes' links of upstream's README table (commit 4874b35); lite-mono-tiny's 'yes' has none
SOURCES = {
    "lite-mono": "https://surfdrive.surf.nl/files/index.php/s/InMMGd5ZP2fXuia",
    "lite-mono-small": "https://surfdrive.surf.nl/files/index.php/s/DYbWV4bsWImfJKu",
    "lite-mono-tiny": None,
    "lite-mono-8m": "https://surfdrive.surf.nl/files/index.php/s/oil2ME6ymoLGDlL",
}
NO_LINK = ("no public link (upstream's README says 'yes' without one): pretrain it with "
           "upstream's lite-mono-pretrain-code, or ask its authors")
NO_SOURCE = ("no source known (not an upstream variant; add its link to SOURCES in "
             "scripts/imagenet_weights.py): pretrain it with upstream's lite-mono-pretrain-code")


def sources_text(folder: str = "pretrained") -> str:
    """One line per Lite-Mono variant (``encoder.VARIANTS``; ``--mypretrain`` loads into those
    only): the file the recipe expects and where it comes from."""
    lines = [f"ImageNet encoder weights of the KITTI recipe (from {UPSTREAM_README}); save as:"]
    for variant in VARIANTS:
        source = SOURCES.get(variant, NO_SOURCE) or NO_LINK
        lines.append(f"  {folder}/{imagenet_file(variant):30s} {source}")
    lines.append("then train with --mypretrain <file>, e.g. python train.py --config "
                 "configs/kitti/01_baseline.yaml --mypretrain pretrained/lite-mono-pretrain.pth")
    return "\n".join(lines)


def check(path: str, allow_pickle: bool = False, command: str = "check") -> str:
    """Load ``path`` as train.py's ``--mypretrain`` does; returns the variant it fits.

    Args:
        command: the sub-command the user typed (``check`` or ``convert``), for messages.

    Raises:
        FileNotFoundError: no such file.
        ValueError: it fits no variant (the lite-mono attempt's message: missing, unexpected
            and wrongly shaped keys), or it needs unpickling without ``allow_pickle``.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"no such file, {command} {path}, check the path (run "
                                f"{TOOL} without arguments for where the weights come from)")
    errors = []
    for variant in VARIANTS:
        try:
            load_imagenet_encoder(LiteMono(variant), path, allow_pickle, flag=command,
                                  offer_allow_pickle=False)
            return variant
        except ValueError as exc:
            errors.append(exc)
    raise errors[0]


def convert(source: str, target: str) -> str:
    """Unpickle ``source`` (the caller vouched for it) and write its weights as plain tensors.

    The plain file is written and checked in a temporary folder beside ``target`` and renamed
    to ``target`` only when it fits a variant, so a failed conversion leaves no ``target``.
    """
    try:
        checkpoint = torch.load(source, map_location="cpu", weights_only=False)
    except (pickle.UnpicklingError, EOFError, RuntimeError) as exc:  # HTML page, truncated
        raise ValueError(f"{source}: not a readable torch file ({first_sentence(str(exc))}); "
                         "download it again") from None
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError(f"{source}: no state dict of tensors (nor a 'model' entry holding one)")
    folder = io.make_temp_dir(Path(target).parent, Path(target).name)
    try:
        plain = folder / Path(target).name
        io.save_torch({"model": {k: v.detach().clone() for k, v in state.items()}}, plain)
        try:
            variant = check(str(plain), command="convert")
        except ValueError as exc:  # name the user's file, not the temporary copy
            raise ValueError(str(exc).replace(str(plain), f"{source} (converted)")) from None
        os.replace(plain, target)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return variant


@cli("imagenet_weights.py")
def main(argv=None) -> int:
    p = OneLineParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command")
    c = sub.add_parser("check", help="say which variant a weights file fits (no unpickling)")
    c.add_argument("file")
    v = sub.add_parser("convert", help="rewrite a trusted pickled file as plain tensors")
    v.add_argument("source")
    v.add_argument("target")
    v.add_argument("--allow_pickle", action="store_true",
                   help="required: unpickling SOURCE runs code stored in it")
    args = p.parse_args(argv)
    try:
        if args.command is None:
            print(sources_text())
        elif args.command == "check":
            print(f"{args.file} fits --model {check(args.file)}")
        else:
            if not args.allow_pickle:
                p.error(f"convert unpickles {args.source}, which runs code stored in it; add "
                        "--allow_pickle if you trust the file")
            if not Path(args.source).is_file():
                raise FileNotFoundError(f"no such file, convert {args.source}, check the path")
            variant = convert(args.source, args.target)
            print(f"wrote {args.target} (plain tensors), fits --model {variant}")
    except (ValueError, RuntimeError) as exc:  # a file that is not the weights: the user's to fix
        raise UserError(str(exc)) from exc
    return 0


if __name__ == "__main__":
    sys.exit(main())
