"""The boundary of every command (train, evaluate, predict, export, synthetic, get_data, the benchmarks).

    def main(argv=None) -> int:
        return run_command(build_parser(), run, argv)      # build_parser() returns a CommandParser

What the user can fix — a :class:`~ddpm.settings.UserError` (bad setting, file, folder, checkpoint), an
``OSError`` (missing file, full disk, no permission), a device out of memory, a bad argument — becomes one
line ``error: ...`` on stderr naming the culprit and what to do, and exit status 1; ``--debug`` shows its
traceback instead. Anything else is a bug and keeps its traceback. Ctrl-C exits with 130: every file is
written atomically, so what was written is complete.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

import torch

from ddpm.settings import UsageError, UserError

# Failures caused by what the user gave or by the machine, never by the code.
USER_FAILURES = (UserError, OSError, torch.OutOfMemoryError)
INTERRUPTED = 130


class CommandParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` with ``--debug`` whose usage errors are :class:`UsageError` (so that they reach
    the boundary as one line and exit status 1, like every other error the user can fix)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.add_argument("--debug", action="store_true", help="show the full traceback of an error")

    def error(self, message: str) -> None:
        raise UsageError(f"{message} (see {self.prog} --help)")


def one_line(error: BaseException) -> str:
    """The error's message on one line, with advice for the failures that carry none of their own."""
    text = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, torch.OutOfMemoryError):
        return f"the device ran out of memory ({text[:200]}); lower --batch-size (or --tile), or use another device"
    return text


INTERRUPTED_NOTE = "every file written so far is complete (files are replaced atomically)"


def run_command(parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], object],
                argv: Sequence[str] | None = None, interrupted_note: str = INTERRUPTED_NOTE) -> int:
    """Parse ``argv`` (default: the process's arguments) with ``parser`` and call ``run``; returns the exit
    status: ``run``'s when it returns an int, else 0 (a benchmark returns its report), 1 for a failure the
    user can fix, 130 for Ctrl-C (after ``error: interrupted; <interrupted_note>``)."""
    given = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in given  # known before parsing, which may itself fail
    try:
        status = run(parser.parse_args(given))
        return status if isinstance(status, int) else 0
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"error: interrupted; {interrupted_note}", file=sys.stderr)
        return INTERRUPTED
    except USER_FAILURES as error:
        if debug:
            raise
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 1
