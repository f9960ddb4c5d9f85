"""Printing a command's result when its reader may leave early (``cam-audit gate report.json | head -1``).

A reader that closes the pipe ends the printing, not the command: the exit code the command decided
stands, and no ``BrokenPipeError`` traceback is printed.
"""

from __future__ import annotations

import os
import sys


def emit(text: str) -> None:
    """Print ``text`` (and a newline) to stdout now; if the reader has gone, drop it and what follows."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        drop_stdout()


def drop_stdout() -> None:
    """Point stdout at ``os.devnull``: the interpreter's last flush at exit then has nowhere to fail."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):  # a replaced stdout (a test's capture): nothing to flush
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


__all__ = ["drop_stdout", "emit"]
