"""Running ``cam-audit`` as its console command with stdout a pipe whose reader has already gone, as in
``cam-audit gate report.json | head -1`` once ``head`` has its line."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence


def run_into_closed_pipe(argv: Sequence[str], timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m cam_audit.cli *argv`` writing to a pipe closed before it prints: every write to stdout
    fails with EPIPE (closed before the start, so the outcome does not depend on timing)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([sys.executable, "-m", "cam_audit.cli", *argv], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=timeout)  # fmt: skip
    finally:
        os.close(write_end)
    return done


def run_reading_one_line(argv: Sequence[str], timeout: float = 300) -> tuple[str, int, str]:
    """``python -m cam_audit.cli *argv``: read the first line of stdout, close the pipe, wait.

    Returns:
        The first line, the exit code and stderr.
    """
    with subprocess.Popen([sys.executable, "-m", "cam_audit.cli", *argv], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as proc:  # fmt: skip
        assert proc.stdout is not None and proc.stderr is not None
        first = proc.stdout.readline()
        proc.stdout.close()
        err = proc.stderr.read()
        code = proc.wait(timeout=timeout)
    return first, code, err
