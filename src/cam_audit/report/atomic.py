"""Whole-file writes: a reader sees the old file or the new one, never a part, and writers never collide.

Every writer of cam_audit (reports, CSV tables, overlay PNGs, the HTML page) goes through
:func:`write_atomic`: the bytes go to a temporary file with a name of its own in the target's folder,
which then replaces the target in one ``os.replace``. Two processes writing the same path each use
their own temporary file, so neither removes the other's, and a reader (``cam-audit gate``) never
reads half a report. It guards against concurrent writers and readers, not against power loss (there
is no ``fsync``: an audit writes hundreds of overlays).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

_ATTEMPTS = 16


def unique_sibling(path: Path, kind: str) -> Path:
    """A path in ``path``'s folder that did not exist: ``.<name>.<random>.<kind>``, created empty
    (``kind="tmp"``) or as a folder (``kind`` anything else, e.g. ``"old"``).

    Created like ``tempfile.mkstemp`` / ``mkdtemp`` (exclusively, so two processes never share one),
    but with the default permissions less the umask, as ``open`` would give: ``mkstemp``'s 0600 would
    leave a report that other users (a CI job, a web server) cannot read.
    """
    for _ in range(_ATTEMPTS):
        candidate = path.with_name(f".{path.name}.{secrets.token_hex(6)}.{kind}")
        try:
            if kind == "tmp":
                os.close(os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            else:
                os.mkdir(candidate, 0o777)
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"no free temporary name beside {path} after {_ATTEMPTS} attempts")


def write_atomic(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` (text is encoded as UTF-8) to ``path`` as one whole-file replacement.

    The parent folders are created. The temporary file is removed when writing fails.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> write_atomic(folder / "a.txt", "hello").read_text(), sorted(p.name for p in folder.iterdir())
    ('hello', ['a.txt'])
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    temporary = unique_sibling(path, "tmp")
    try:
        with open(temporary, "wb") as handle:
            handle.write(payload)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


__all__ = ["unique_sibling", "write_atomic"]
