"""A probe set's fingerprint: a short hash of what an audit reads, telling reports of other probes apart.

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

import torch

from cam_audit.probe.sample import ProbeSample


def fingerprint(classes: Sequence[str] | None, samples: Sequence[ProbeSample]) -> str:
    """16 hex digits of SHA-256 over ``classes`` and ``samples`` (see the module docstring)."""
    digest = hashlib.sha256()
    digest.update(repr(list(classes) if classes is not None else None).encode())
    for sample in samples:
        digest.update(f"|{sample.label}|{sample.size}|".encode())
        for key in ("boxes", "masks", "spurious_boxes", "spurious_masks"):
            value = getattr(sample, key)
            digest.update(key.encode())
            if value is not None:
                digest.update(repr(tuple(value.shape)).encode())
                digest.update(value.detach().cpu().contiguous().numpy().tobytes())
        if isinstance(sample.image, Path):
            digest.update(sample.image.read_bytes())
            if sample.channels == 1:
                digest.update(b"|decoded to one channel|")
        else:
            digest.update(sample.image.detach().cpu().to(torch.float32).contiguous().numpy().tobytes())
        if sample.image_classes:
            shared = (sample.sample_id, sample.image_id, sample.image_classes)
            digest.update(f"|one class of an image: {shared!r}|".encode())
    return digest.hexdigest()[:16]


__all__ = ["fingerprint"]
