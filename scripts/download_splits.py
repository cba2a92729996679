"""Fetch the public KITTI split files (monodepth2, pinned commit) into ``splits/``, verified.

    python scripts/download_splits.py                      # download from monodepth2
    python scripts/download_splits.py --from ~/monodepth2/splits   # copy a local copy
    python scripts/download_splits.py --check              # only verify what is there

Every file is checked against its published SHA-256 before it is written (atomically).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from litemono.data import splits  # noqa: E402
from litemono.errors import OneLineParser, cli  # noqa: E402


@cli("download_splits.py")
def main(argv=None) -> int:
    parser = OneLineParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", default=str(Path(__file__).resolve().parent.parent / "splits"),
                        help="folder to write (default: the project's splits/)")
    parser.add_argument("--from", dest="source", default=None,
                        help="copy from this folder (a monodepth2 splits/ copy) instead of downloading")
    parser.add_argument("--split", action="append", choices=splits.KNOWN_SPLITS,
                        help="only this split (repeatable; default: all)")
    parser.add_argument("--check", action="store_true", help="verify only, write nothing")
    args = parser.parse_args(argv)
    names = None
    if args.split:
        names = [rel for rel in splits.SPLIT_SHA256 if rel.split("/")[0] in args.split]
    # a missing, altered or undownloadable file raises SplitError: one line through @cli
    if args.check:
        checked = splits.verify_splits(args.dest, names)
        print(f"{len(checked)} split files in {args.dest} match their checksums")
        return 0
    written = splits.fetch_splits(args.dest, source=args.source, names=names)
    total = len(names) if names is not None else len(splits.SPLIT_SHA256)
    print(f"{len(written)} written, {total - len(written)} already present and verified, in {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
