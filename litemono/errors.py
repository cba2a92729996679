"""One way for every command-line tool to report a mistake the user can fix.

A user error (bad flag, missing or corrupt file, full disk, no write permission) ends in one
stderr line, ``train.py: error: <what>, <which file or flag>, <what to do>``, and a non-zero
exit; bugs keep their traceback (``--debug`` or ``LITEMONO_DEBUG=1`` shows it for user errors).
Tools decorate ``main`` with ``@cli("train.py")``. Library code raises :class:`UserError` or a
subclass (``ConfigError``, ``CheckpointError``, :class:`DataError`); ``OSError`` counts as one."""
from __future__ import annotations

import argparse
import errno
import functools
import os
import re
import sys
from typing import Any, Callable, List, Optional, Sequence

EXIT_USER_ERROR = 2  # as argparse's own usage errors
DEBUG_FLAG = "--debug"
DEBUG_ENV = "LITEMONO_DEBUG"
# what to do about the operating-system errors a user meets
OS_ADVICE = {errno.ENOSPC: "free some space or write elsewhere",
             errno.EACCES: "check its permissions or choose another folder",
             errno.EROFS: "the file system is read-only: choose another folder",
             errno.ENOENT: "check the path"}
# terminal colour and style codes (ESC [ ... letter) that torch puts in some messages
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


class UserError(Exception):
    """A problem the user can fix: ``what`` went wrong, ``where`` (file or flag), ``todo``."""

    def __init__(self, what: str, where: Optional[str] = None, todo: Optional[str] = None):
        super().__init__(", ".join(str(p) for p in (what, where, todo) if p))


class ConfigError(UserError, ValueError):
    """A configuration value or combination is invalid; the message names the flag."""


class CheckpointError(UserError, ValueError):
    """A weights file or training state is missing, unreadable or does not fit; the message
    names the flag and the file."""


class DataError(UserError, ValueError):
    """An input file (frame, split line, teacher map, ground truth) is missing or unreadable."""


class OneLineParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose usage errors (an unknown flag, a bad value) are one
    line too, ``<tool>: error: <what>, see <tool> --help``, instead of the usage block."""

    def error(self, message: str):  # type: ignore[override]
        print(f"{self.prog}: error: {' '.join(message.split())}, see {self.prog} --help",
              file=sys.stderr, flush=True)
        raise SystemExit(EXIT_USER_ERROR)


def one_line(exc: BaseException) -> str:
    """``exc``'s message on one line: a DataLoader worker's wrapped traceback reduced to its last
    line, terminal colour codes removed."""
    text = ANSI_ESCAPE.sub("", str(exc))
    if isinstance(exc, OSError) and exc.strerror and exc.errno in OS_ADVICE:
        # torch / numpy / os phrase these "[Errno 28] No space left on device: 'x'"
        where = exc.filename if exc.filename is not None else "(no file named)"
        text = f"{exc.strerror.lower()}, {where}, {OS_ADVICE[exc.errno]}"
    if "Original Traceback" in text:
        last = [line for line in text.strip().splitlines() if line.strip()][-1]
        text = last.split(": ", 1)[1] if ": " in last else last
    return " ".join(text.split())  # newlines and runs of spaces -> one space


def first_sentence(text: str) -> str:
    """A message's first sentence, one line, no colour codes or final full stop (for quoting
    torch's paragraph-long messages)."""
    text = " ".join(ANSI_ESCAPE.sub("", text).split())
    end = re.search(r"[.!?](?=\s|$)", text)
    sentence = text[:end.end()] if end else text
    return sentence[:-1] if sentence.endswith(".") else sentence


def cli(tool: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate ``main(argv=None)``: user errors -> one stderr line, ``SystemExit(2)``; ``--debug``
    (removed from ``argv``) or ``LITEMONO_DEBUG=1`` re-raises; everything else passes through."""

    def decorate(main: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(main)
        def wrapper(argv: Optional[Sequence[str]] = None, *args: Any, **kwargs: Any) -> Any:
            arguments: List[str] = list(sys.argv[1:] if argv is None else argv)
            debug = DEBUG_FLAG in arguments or os.environ.get(DEBUG_ENV, "") not in ("", "0")
            arguments = [a for a in arguments if a != DEBUG_FLAG]
            try:
                return main(arguments, *args, **kwargs)
            except Exception as exc:  # noqa: BLE001 -- filtered just below
                if debug or not isinstance(exc, (UserError, OSError)):
                    raise
                print(f"{tool}: error: {one_line(exc)}", file=sys.stderr, flush=True)
                raise SystemExit(EXIT_USER_ERROR) from None

        return wrapper

    return decorate
