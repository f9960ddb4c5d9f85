"""A probe set's fingerprint: a short hash of what an audit reads, telling reports of other probes apart;
computed once and kept while the content stays.

What is hashed: the class names; per sample the label, image size, regions and image content (file
bytes, or tensor values); for a sample of an image of several classes also its id, image id and the
image's classes, which is what tells the samples of one image from the same content spread over several
images; for an image file decoded to one channel, that it is (the same bytes give other pixels). Sample
ids of single-class images and file names are not hashed, so a probe whose files are renamed keeps its
fingerprint.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from cam_audit.probe.sample import ProbeSample

_REGION_FIELDS = ("boxes", "masks", "spurious_boxes", "spurious_masks")


def content_hash(samples: Sequence[ProbeSample], classes: Sequence[str] | None) -> str:
    """16 hex digits of SHA-256 over ``classes`` and ``samples`` (see the module docstring)."""
    digest = hashlib.sha256()
    digest.update(repr(None if classes is None else list(classes)).encode())
    for sample in samples:
        digest.update(f"|{sample.label}|{sample.size}|".encode())
        for key in _REGION_FIELDS:
            value = getattr(sample, key)
            digest.update(key.encode())
            if value is not None:
                digest.update(repr(tuple(value.shape)).encode())
                digest.update(value.detach().cpu().contiguous().numpy().data)
        if isinstance(sample.image, Path):
            digest.update(sample.image.read_bytes())
            if sample.channels == 1:
                digest.update(b"|decoded to one channel|")
        else:
            digest.update(sample.image.detach().cpu().to(torch.float32).contiguous().numpy().data)
        if sample.image_classes:
            shared = (sample.sample_id, sample.image_id, sample.image_classes)
            digest.update(f"|one class of an image: {shared!r}|".encode())
    return digest.hexdigest()[:16]


class FingerprintCache:
    """The last :func:`content_hash` and what it was computed from, to reuse while nothing changed.

    "Nothing changed" means: the same sample objects in the same order (held here, so an id is never
    reused by another object), the same labels and classes, no in-place change to any of their tensors
    (their version counters) and image files of the same size and modification time. Reading that
    takes microseconds per sample; hashing the images takes as long as reading them all.
    """

    def __init__(self) -> None:
        self._state: list[tuple[Any, ...]] | None = None
        self._digest = ""

    def get(self, samples: Sequence[ProbeSample], classes: Sequence[str] | None) -> str:
        state = _state(samples, classes)
        if self._state is None or not _same(self._state, state):
            self._digest = content_hash(samples, classes)
            self._state = state
        return self._digest


def _state(samples: Sequence[ProbeSample], classes: Sequence[str] | None) -> list[tuple[Any, ...]]:
    state: list[tuple[Any, ...]] = [(None if classes is None else tuple(classes),)]
    for sample in samples:
        fields = (sample.image, *(getattr(sample, key) for key in _REGION_FIELDS))
        state.append((sample, sample.label, *(_mark(value) for value in fields)))
    return state


def _mark(value: object) -> object:
    if isinstance(value, Tensor):
        return value._version
    if isinstance(value, Path):
        try:
            stat = value.stat()
        except OSError:
            return None
        return stat.st_size, stat.st_mtime_ns
    return None


def _same(old: list[tuple[Any, ...]], new: list[tuple[Any, ...]]) -> bool:
    if len(old) != len(new) or old[0] != new[0]:
        return False
    return all(a[0] is b[0] and a[1:] == b[1:] for a, b in zip(old[1:], new[1:], strict=True))


__all__ = ["FingerprintCache", "content_hash"]
