"""Background cues: a class-specific tint or stripe texture over the whole background of a scene.

A watermark is a patch that a box can mark; a background cue is not. With ``"colour"`` every class has
its own tint (a hue direction in the RGB plane orthogonal to grey, so a tint changes the colour and not
the brightness); with ``"texture"`` every class has its own stripe orientation, a low-contrast luminance
grating of period ``size / 8``. Either is added to the smooth random background before the object is
drawn, so the object's pixels carry no trace of it.

Which class's cue a scene carries is drawn like the watermark's corner: its own label with probability
``correlation``, otherwise one of the other classes at random. ``correlation=0`` therefore puts every
object on the background of another class (the cue *moved*), and no cue at all is the neutral
background (the cue *removed*).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from cam_audit.errors import CamAuditError, check_choice

BackgroundCue = Literal["none", "colour", "texture"]

#: Cue strength when none is given: the tint's length in RGB, the stripes' amplitude. Both are of the
#: order of the per-pixel noise (0.03) and well inside the random background's own spread (0.35 to 0.65
#: per channel), and strong enough that the study's scene CNNs of either pool rely on the cue (the
#: discovery study prints their accuracy with the cue removed and moved).
DEFAULT_STRENGTH: dict[str, float] = {"colour": 0.06, "texture": 0.04}

# an orthonormal basis of the RGB plane orthogonal to grey (1, 1, 1): moving along it keeps the brightness
_CHROMA = torch.tensor([[1.0, -1.0, 0.0], [1.0, 1.0, -2.0]]) / torch.tensor([[math.sqrt(2)], [math.sqrt(6)]])


def draw_cue_classes(
    labels: Tensor, num_classes: int, correlation: float, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Per scene, the class whose background cue it carries, and a random phase in ``[0, 1)``.

    Draws three numbers per scene, whatever ``correlation`` is, so scenes of one seed differ only in the
    class their cue follows.

    Returns:
        ``(classes, phase)``: long ``[N]`` (the label with probability ``correlation``, else another
        class, uniformly) and float ``[N]``.
    """
    n = labels.shape[0]
    follows = torch.rand(n, generator=generator) < correlation
    shift = torch.randint(1, max(num_classes, 2), (n,), generator=generator)
    phase = torch.rand(n, generator=generator)
    other = (labels + shift) % num_classes
    return torch.where(follows, labels, other), phase


def tint_directions(num_classes: int) -> Tensor:
    """Unit RGB vectors ``[K, 3]`` orthogonal to grey, spaced evenly around the colour wheel.

    >>> directions = tint_directions(3)
    >>> directions.sum(dim=1).abs().max() < 1e-6, directions.norm(dim=1).tolist() == [1.0, 1.0, 1.0]
    (tensor(True), True)
    """
    angles = 2 * math.pi * torch.arange(num_classes, dtype=torch.float32) / num_classes
    directions = torch.stack([angles.cos(), angles.sin()], dim=1) @ _CHROMA
    return directions / directions.norm(dim=1, keepdim=True)


def stripe_angles(num_classes: int) -> Tensor:
    """Stripe orientation of each class, in radians: ``pi * k / K`` (0, 60 and 120 degrees for 3)."""
    return math.pi * torch.arange(num_classes, dtype=torch.float32) / num_classes


def cue_field(
    kind: BackgroundCue, classes: Tensor, phase: Tensor, num_classes: int, size: int, strength: float
) -> Tensor:
    """The additive background cue, float ``[N, 3, 1, 1]`` (colour) or ``[N, 1, S, S]`` (texture).

    Args:
        kind: ``"colour"`` or ``"texture"``.
        classes: long ``[N]``, the class each scene's cue belongs to.
        phase: float ``[N]`` in ``[0, 1)``, the stripes' phase (texture only).
        num_classes: number of classes ``K``.
        size: side ``S`` of the images.
        strength: the tint's length or the stripes' amplitude.

    >>> field = cue_field("texture", torch.tensor([0]), torch.zeros(1), 3, 32, 0.1)
    >>> field.shape, bool(torch.allclose(field[0, 0, 0], field[0, 0, 5]))  # class 0: vertical stripes
    (torch.Size([1, 1, 32, 32]), True)
    """
    if kind == "colour":
        return (strength * tint_directions(num_classes)[classes])[:, :, None, None]
    angle = stripe_angles(num_classes)[classes][:, None, None]
    coords = torch.arange(size, dtype=torch.float32) + 0.5
    x, y = coords[None, None, :], coords[None, :, None]
    period = max(size / 8, 3.0)
    along = (x * angle.cos() + y * angle.sin()) / period + phase[:, None, None]
    return (strength * torch.sin(2 * math.pi * along))[:, None]


def check_background(cue: str, correlation: float, strength: float | None) -> None:
    """Raise :class:`CamAuditError` for a background cue argument out of range."""
    check_choice("background_cue", cue, ("none", "colour", "texture"))
    if not 0.0 <= correlation <= 1.0:
        raise CamAuditError(f"background_correlation must be a probability in [0, 1], got {correlation}.")
    if strength is not None and not 0.0 <= strength <= 0.3:
        raise CamAuditError(
            f"background_strength must be in [0, 0.3] (the background's own spread is 0.3), got {strength}."
        )


def add_background_cue(
    background: Tensor,
    labels: Tensor,
    num_classes: int,
    cue: BackgroundCue,
    correlation: float,
    strength: float | None,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor]:
    """The background with its cue added, and the class of each scene's cue (``-1``: none).

    Draws from ``generator`` only when ``cue`` is on, so scenes without a cue are those of earlier versions.
    """
    if cue == "none":
        return background, torch.full_like(labels, -1)
    classes, phase = draw_cue_classes(labels, num_classes, correlation, generator)
    amount = DEFAULT_STRENGTH[cue] if strength is None else strength
    size = background.shape[-1]
    return background + cue_field(cue, classes, phase, num_classes, size, amount), classes


__all__ = [
    "DEFAULT_STRENGTH",
    "BackgroundCue",
    "add_background_cue",
    "check_background",
    "cue_field",
    "draw_cue_classes",
    "stripe_angles",
    "tint_directions",
]
