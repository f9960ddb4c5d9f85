"""The output folder of ``cam-audit audit``: checked before anything loads, filled aside, swapped in whole.

An audit writes into a fresh sibling of ``--out`` (``.<out>.<random>.tmp``) and only at the end moves
the old folder away, moves the new one in and deletes the old one. An audit that fails or is interrupted
leaves ``--out`` exactly as it was, so ``cam-audit gate`` never reads the old model's PASS report beside
overlays of the new one.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from cam_audit.errors import CamAuditError
from cam_audit.report.atomic import unique_sibling

_SWAP_ATTEMPTS = 8


def prepare_out(out: Path) -> Path:
    """Check that ``out`` can be written and replaced, and create the folder the audit writes into.

    Raises:
        CamAuditError: ``out`` is a file, lies under a file, is the current folder, or it or its parent
            folder cannot be written.

    Returns:
        The new, empty sibling folder of ``out``.
    """
    target = out.absolute()
    if out.exists() and not out.is_dir():
        raise CamAuditError(f"--out {out} is a file, not a folder; give a folder for the outputs")
    if target == Path.cwd() or target.parent == target:
        raise CamAuditError(
            f"--out {out} is the current or the root folder; the outputs replace --out whole, so give them "
            "a folder of their own, e.g. --out runs/audit"
        )
    blocker = next((p for p in (target, *target.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise CamAuditError(f"--out {out} cannot be created: {blocker} is a file, not a folder")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CamAuditError(f"--out {out} cannot be created: {err.strerror or err} ({err.filename})") from err
    if target.is_dir():
        _probe_writable(target, out)
    try:
        return unique_sibling(target, "tmp-out")
    except OSError as err:
        raise CamAuditError(
            f"--out {out}: its folder {target.parent} is not writable ({err.strerror or err}); the outputs "
            "are written beside --out and then swapped in"
        ) from err


def _probe_writable(folder: Path, out: Path) -> None:
    """Create and remove a file in ``folder``: the old outputs must be removable once the new are in."""
    try:
        unique_sibling(folder / "write-probe", "tmp").unlink()
    except OSError as err:
        raise CamAuditError(
            f"--out {out} is not writable ({err.strerror or err}); give a folder you can write to"
        ) from err


def swap_in(stage: Path, out: Path) -> None:
    """Replace ``out`` by ``stage``: move the old folder away, move the new one in, delete the old one.

    Another audit may swap its own folder into ``out`` at the same time; each tries again until its
    folder is in (the last one in wins, and each ``out`` is one audit's outputs, never a mixture).

    Raises:
        CamAuditError: the folders cannot be renamed (the message names ``out``).
    """
    target, retired = out.absolute(), []
    try:
        for _ in range(_SWAP_ATTEMPTS):
            if target.exists():
                old = unique_sibling(target, "old")
                try:
                    os.replace(target, old)  # onto the empty folder just made for it
                except FileNotFoundError:  # another audit moved it away first
                    old.rmdir()
                else:
                    retired.append(old)
            try:
                os.rename(stage, target)
                return
            except OSError as err:  # another audit moved its folder in meanwhile: try again
                if err.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
        raise CamAuditError(f"--out {out} kept being replaced by other audits; run one audit per folder")
    except OSError as err:
        if retired and not target.exists():  # put the old outputs back rather than leave none
            os.rename(retired.pop(), target)
        raise CamAuditError(f"cannot move the outputs into --out {out}: {err.strerror or err}") from err
    finally:
        for old in retired:
            shutil.rmtree(old, ignore_errors=True)


__all__ = ["prepare_out", "swap_in"]
