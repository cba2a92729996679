"""One way for every command-line tool to report a mistake the user can fix.

A user error (a bad flag, a missing or corrupt file, a full disk, a folder without write
permission) ends in one line on stderr and a non-zero exit status::

    train.py: error: <what>, <which file or flag>, <what to do>

and never in a traceback; a genuine bug (anything else) still raises with its traceback.
``--debug`` on any tool's command line, or ``LITEMONO_DEBUG=1`` in the environment, shows the
traceback of a user error too. Each tool's ``main`` is decorated with :func:`cli`::

    @cli("train.py")
    def main(argv=None): ...

Library code raises :class:`UserError` (or a subclass: ``ConfigError``, ``CheckpointError``,
:class:`DataError`); ``OSError`` (missing file, permission, ``ENOSPC``) counts as a user error
as well, since it describes the machine, not the code.
"""
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
    """A problem the user can fix; its message names the file or flag and what to do.

    Args:
        what: what went wrong (or the whole message when ``where``/``todo`` are omitted).
        where: the file or flag concerned.
        todo: what to do about it.
    """

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
    """The message of ``exc`` as one line.

    A DataLoader worker's exception arrives with the worker's traceback in its message
    ("Caught DataError in DataLoader worker process 0. Original Traceback ..."); its last
    line holds the original message, which is what the user needs. Terminal colour codes
    (torch marks words bold in some messages) are removed.
    """
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
    """The first sentence of a library's message, on one line, without colour codes and
    without its closing full stop (it is quoted inside another sentence).

    Some of torch's messages run to a paragraph of advice that does not apply here; quoting
    their first sentence keeps an error line short without cutting a sentence in half.
    """
    text = " ".join(ANSI_ESCAPE.sub("", text).split())
    end = re.search(r"[.!?](?=\s|$)", text)
    sentence = text[:end.end()] if end else text
    return sentence[:-1] if sentence.endswith(".") else sentence


def _is_user_error(exc: BaseException) -> bool:
    return isinstance(exc, (UserError, OSError))


def cli(tool: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a tool's ``main(argv=None)``: user errors become one stderr line and
    ``SystemExit(2)``; ``--debug`` (removed from ``argv`` before ``main`` sees it) or
    ``LITEMONO_DEBUG=1`` re-raises them with their traceback. ``main``'s return value and
    every other exception pass through unchanged."""

    def decorate(main: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(main)
        def wrapper(argv: Optional[Sequence[str]] = None, *args: Any, **kwargs: Any) -> Any:
            arguments: List[str] = list(sys.argv[1:] if argv is None else argv)
            debug = DEBUG_FLAG in arguments or os.environ.get(DEBUG_ENV, "") not in ("", "0")
            arguments = [a for a in arguments if a != DEBUG_FLAG]
            try:
                return main(arguments, *args, **kwargs)
            except Exception as exc:  # noqa: BLE001 -- filtered just below
                if debug or not _is_user_error(exc):
                    raise
                print(f"{tool}: error: {one_line(exc)}", file=sys.stderr, flush=True)
                raise SystemExit(EXIT_USER_ERROR) from None

        return wrapper

    return decorate
