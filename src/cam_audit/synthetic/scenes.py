"""Synthetic scenes with exact object masks and an optional watermark or background shortcut.

Each scene has a smooth random-colour background, one object whose *shape* is the class (its colour,
size and position are random and carry no label information) and, optionally, a small high-contrast
striped "text tag" in a corner. When the tag's corner follows the label (``watermark="correlated"``) a
small CNN learns the tag long before the shape, which is the shortcut cam_audit should catch. A cue that
no box can mark is the background itself: with ``background_cue`` the background gets a class-specific
tint or stripe texture (:mod:`cam_audit.synthetic.backgrounds`).

Corners are numbered 0 = top-left, 1 = top-right, 2 = bottom-left, 3 = bottom-right. Everything is
generated with one ``torch.Generator`` seeded by ``seed``; the background is drawn first, so scenes of
the same seed share their backgrounds and labels whatever the watermark mode. The background cue's
numbers are drawn last, and only when it is on, so the same seed gives the same scenes with the cue,
without it (``background_cue="none"``: the cue removed) and with every cue of another class
(``background_correlation=0``: the cue moved).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor
from torch.utils.data import TensorDataset

from cam_audit.cam.resize import linear_weights
from cam_audit.errors import CamAuditError, check_choice
from cam_audit.regions import region_boxes
from cam_audit.synthetic.backgrounds import BackgroundCue, add_background_cue, check_background

if TYPE_CHECKING:
    from cam_audit.probe.probeset import ProbeSet

CLASS_NAMES: tuple[str, ...] = ("disc", "square", "triangle", "cross", "ring", "diamond")
"""Shape of each class index, in order."""

WatermarkMode = Literal["none", "correlated", "random"]

_NOISE = 0.03  # amplitude of the per-pixel noise on background and object
_MAX_PLACEMENT_TRIES = 1000


@dataclass(frozen=True, eq=False)
class SceneData:
    """A batch of synthetic scenes and their ground truth.

    Attributes:
        images: float ``[N, 3, H, W]`` in ``[0, 1]``.
        labels: long ``[N]``, the shape index (see :data:`CLASS_NAMES`).
        object_masks: bool ``[N, H, W]``, the object's pixels.
        object_boxes: float ``[N, 4]``, tight xyxy box of each object mask.
        watermark_masks: bool ``[N, H, W]``, the tag's pixels (all ``False`` where there is no tag).
        watermark_boxes: float ``[N, 4]``, xyxy box of each tag (zeros where there is none).
        has_watermark: bool ``[N]``.
        background_classes: long ``[N]``, the class whose background cue each scene carries (its label,
            or another class's where the cue was moved), ``-1`` where the background has no cue.
        num_classes: number of classes the scenes were drawn from.
        tag_background: float ``[N, 3, h, w]``, the background pixels each tag covers (zeros where none);
            :meth:`without_watermark` puts them back.
    """

    images: Tensor
    labels: Tensor
    object_masks: Tensor
    object_boxes: Tensor
    watermark_masks: Tensor
    watermark_boxes: Tensor
    has_watermark: Tensor
    background_classes: Tensor
    num_classes: int
    tag_background: Tensor = field(repr=False)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def dataset(self) -> TensorDataset:
        """``TensorDataset(images, labels)`` for training."""
        return TensorDataset(self.images, self.labels)

    def to_probe(self, classes: Sequence[str] | None = None, spurious: bool = True) -> ProbeSet:
        """A :class:`ProbeSet` with the object boxes and masks, and the tag as a spurious box and mask.

        Args:
            classes: class names; default ``CLASS_NAMES[:num_classes]``.
            spurious: annotate the tags; ``False`` gives a probe of object regions only, as a user who
                never marked the cue has (the tags are still in the images).

        Example:
            >>> probe = make_scenes(4, watermark="random").to_probe()
            >>> probe.classes, probe.has_spurious
            (['disc', 'square', 'triangle'], True)
            >>> make_scenes(4, watermark="random").to_probe(spurious=False).has_spurious
            False
        """
        from cam_audit.probe.probeset import ProbeSet

        has = [int(flag) if spurious else 0 for flag in self.has_watermark.tolist()]
        return ProbeSet.from_tensors(
            self.images,
            self.labels,
            boxes=self.object_boxes,
            masks=self.object_masks,
            spurious_boxes=[self.watermark_boxes[i : i + has[i]] for i in range(len(self))],
            spurious_masks=[self.watermark_masks[i : i + has[i]] for i in range(len(self))],
            classes=list(CLASS_NAMES[: self.num_classes]) if classes is None else classes,
        )

    def without_watermark(self) -> SceneData:
        """The same scenes with every tag replaced by the exact background it covered.

        Object pixels are untouched; use it to measure accuracy without the cue.

        Example:
            >>> scenes = make_scenes(2, watermark="random")
            >>> clean = scenes.without_watermark()
            >>> on_object = scenes.object_masks[:, None].expand(-1, 3, -1, -1)
            >>> unchanged = torch.equal(clean.images[on_object], scenes.images[on_object])
            >>> unchanged, bool(clean.has_watermark.any())
            (True, False)
        """
        images = self.images.clone()
        has = self.has_watermark
        if bool(has.any()):
            patches = self.tag_background[has].permute(0, 2, 3, 1).reshape(-1, 3)
            images.permute(0, 2, 3, 1)[self.watermark_masks] = patches
        return SceneData(
            images=images,
            labels=self.labels.clone(),
            object_masks=self.object_masks.clone(),
            object_boxes=self.object_boxes.clone(),
            watermark_masks=torch.zeros_like(self.watermark_masks),
            watermark_boxes=torch.zeros_like(self.watermark_boxes),
            has_watermark=torch.zeros_like(self.has_watermark),
            background_classes=self.background_classes.clone(),
            num_classes=self.num_classes,
            tag_background=torch.zeros_like(self.tag_background),
        )


def make_scenes(
    n: int,
    *,
    num_classes: int = 3,
    image_size: int = 64,
    watermark: WatermarkMode = "none",
    correlation: float = 1.0,
    cue_classes: Sequence[int] | None = None,
    seed: int = 0,
    background_cue: BackgroundCue = "none",
    background_correlation: float = 1.0,
    background_strength: float | None = None,
) -> SceneData:
    """Draw ``n`` synthetic scenes (deterministic given ``seed``; 1,000 scenes of 64x64 take about a second).

    Args:
        n: number of scenes. Labels are balanced (``n // num_classes`` or one more per class), shuffled.
        num_classes: 1 to ``len(CLASS_NAMES)``; class ``k`` is the shape ``CLASS_NAMES[k]``.
        image_size: side ``S`` of the square images (>= 24). Objects span 25-45% of ``S``; the tag is about
            ``0.19 S x 0.09 S`` (12x6 pixels at 64).
        watermark: ``"none"``; ``"random"``: a tag in a random corner of every image; ``"correlated"``:
            with probability ``correlation`` the tag sits in corner ``label % 4`` (and, beyond 4 classes,
            has stripe pattern ``label // 4``), otherwise in a random other corner with a random pattern.
        correlation: probability that the tag follows the label (``"correlated"`` only).
        cue_classes: with ``"correlated"``, put a tag ONLY on images of these classes, with probability
            ``correlation``, in a random corner: presence, not position, is the cue.
        seed: seed of the generator.
        background_cue: ``"none"``; ``"colour"``: a class-specific tint over the whole background;
            ``"texture"``: class-specific low-contrast stripes (orientation ``180 * k / K`` degrees) over
            it. The object's pixels never carry the cue.
        background_correlation: probability that the background cue is the label's; otherwise it is a
            random other class's (``0``: every cue moved to another class).
        background_strength: the tint's RGB length or the stripes' amplitude; default
            :data:`~cam_audit.synthetic.backgrounds.DEFAULT_STRENGTH` of the cue.

    Returns:
        :class:`SceneData`. The object never overlaps the tag.

    Raises:
        CamAuditError: an argument is out of range.

    Example:
        >>> scenes = make_scenes(8, watermark="correlated", seed=1)
        >>> scenes.images.shape, scenes.object_masks.dtype, bool(scenes.has_watermark.all())
        (torch.Size([8, 3, 64, 64]), torch.bool, True)
        >>> bool((scenes.object_masks & scenes.watermark_masks).any())
        False
    """
    _check_arguments(n, num_classes, image_size, watermark, correlation, cue_classes)
    check_background(background_cue, background_correlation, background_strength)
    size = image_size
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 5, 5, generator=generator)
    upsample = linear_weights(5, size, torch.float32)  # [S, 5]: bilinear upsampling as two matrix products
    background = (0.3 * upsample) @ coarse @ upsample.T + 0.35
    noise = torch.randn(n, 3, size, size, generator=generator).mul_(_NOISE)

    labels = (torch.arange(n) % num_classes)[torch.randperm(n, generator=generator)]
    bright = torch.rand(n, 3, generator=generator) < 0.5
    colour = 0.25 * torch.rand(n, 3, generator=generator) + 0.75 * bright  # far from the background's range
    side = size * (0.25 + 0.2 * torch.rand(n, generator=generator))

    has_tag, corner, pattern = _draw_tags(labels, num_classes, watermark, correlation, cue_classes, generator)
    tag_w, tag_h, margin = max(6, size * 3 // 16), max(3, size * 3 // 32), max(1, size // 32)
    tag_x = torch.where(corner % 2 == 0, margin, size - margin - tag_w)
    tag_y = torch.where(corner < 2, margin, size - margin - tag_h)
    tag_boxes = torch.stack([tag_x, tag_y, tag_x + tag_w, tag_y + tag_h], dim=1).to(torch.float32)
    tag_boxes = tag_boxes * has_tag[:, None]

    origin = _place_objects(side, size, tag_boxes, has_tag, generator)
    object_masks = _draw_shapes(labels, origin, side, size)
    object_boxes = region_boxes(object_masks)
    background, background_classes = add_background_cue(
        background,
        labels,
        num_classes,
        background_cue,
        background_correlation,
        background_strength,
        generator,
    )
    images = (
        torch.where(object_masks[:, None], colour[:, :, None, None], background).add_(noise).clamp_(0.0, 1.0)
    )

    coords = torch.arange(size)
    in_x = (coords >= tag_x[:, None]) & (coords < (tag_x + tag_w)[:, None])  # [N, W]
    in_y = (coords >= tag_y[:, None]) & (coords < (tag_y + tag_h)[:, None]) & has_tag[:, None]  # [N, H]
    tag_masks = in_y[:, :, None] & in_x[:, None, :]
    pixels = images.permute(0, 2, 3, 1)  # a view: writing to it stamps the tags into `images`
    tag_background = torch.zeros(n, tag_h, tag_w, 3)
    tag_background[has_tag] = pixels[tag_masks].reshape(-1, tag_h, tag_w, 3)
    ink = _tag_patterns(tag_h, tag_w)[pattern[has_tag]]  # [N_tagged, h, w]
    pixels[tag_masks] = ink.reshape(-1, 1).expand(-1, 3)
    return SceneData(
        images=images,
        labels=labels,
        object_masks=object_masks,
        object_boxes=object_boxes,
        watermark_masks=tag_masks,
        watermark_boxes=tag_boxes,
        has_watermark=has_tag,
        background_classes=background_classes,
        num_classes=num_classes,
        tag_background=tag_background.permute(0, 3, 1, 2).contiguous(),
    )


def _tag_patterns(height: int, width: int) -> Tensor:
    """Float ``[3, h, w]`` black/white tag patterns: vertical stripes, horizontal stripes, checks."""
    x = torch.arange(width)[None, :] // 2
    y = torch.arange(height)[:, None] // 2
    return torch.stack([(x % 2).expand(height, -1), (y % 2).expand(-1, width), (x + y) % 2]).to(torch.float32)


def _check_arguments(
    n: int,
    num_classes: int,
    image_size: int,
    watermark: str,
    correlation: float,
    cue_classes: Sequence[int] | None,
) -> None:
    if n < 1:
        raise CamAuditError(f"n must be >= 1, got {n}.")
    if not 1 <= num_classes <= len(CLASS_NAMES):
        raise CamAuditError(
            f"num_classes must be in 1..{len(CLASS_NAMES)} (shapes {CLASS_NAMES}), got {num_classes}."
        )
    if image_size < 24:
        raise CamAuditError(f"image_size must be >= 24 to fit an object and a tag, got {image_size}.")
    check_choice("watermark", watermark, ("none", "correlated", "random"))
    if not 0.0 <= correlation <= 1.0:
        raise CamAuditError(f"correlation must be a probability in [0, 1], got {correlation}.")
    if cue_classes is not None:
        if watermark != "correlated":
            raise CamAuditError(f"cue_classes needs watermark='correlated', got watermark={watermark!r}.")
        bad = [k for k in cue_classes if not 0 <= int(k) < num_classes]
        if bad or len(cue_classes) == 0:
            raise CamAuditError(
                f"cue_classes must be non-empty class indices in 0..{num_classes - 1}, got "
                f"{list(cue_classes)}."
            )


def _draw_tags(
    labels: Tensor,
    num_classes: int,
    watermark: str,
    correlation: float,
    cue_classes: Sequence[int] | None,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor, Tensor]:
    """Per scene: whether it has a tag (bool ``[N]``), its corner (``[N]`` in 0..3) and pattern (0..2)."""
    n = labels.shape[0]
    patterns = math.ceil(num_classes / 4)
    random_corner = torch.randint(4, (n,), generator=generator)
    random_pattern = torch.randint(patterns, (n,), generator=generator)
    follows = torch.rand(n, generator=generator) < correlation
    if watermark == "none":
        return torch.zeros(n, dtype=torch.bool), random_corner, random_pattern
    if watermark == "random":
        return torch.ones(n, dtype=torch.bool), random_corner, random_pattern
    if cue_classes is not None:
        cue = torch.isin(labels, torch.tensor([int(k) for k in cue_classes]))
        return cue & follows, random_corner, torch.zeros(n, dtype=torch.long)
    other_corner = (labels % 4 + torch.randint(1, 4, (n,), generator=generator)) % 4
    corner = torch.where(follows, labels % 4, other_corner)
    pattern = torch.where(follows, labels // 4, random_pattern)
    return torch.ones(n, dtype=torch.bool), corner, pattern


def _place_objects(
    side: Tensor, size: int, tag_boxes: Tensor, has_tag: Tensor, generator: torch.Generator
) -> Tensor:
    """Top-left corners ``[N, 2]`` of the objects' bounding squares: inside the image, clear of the tag."""
    origin = torch.rand(side.shape[0], 2, generator=generator) * (size - side)[:, None]
    for _ in range(_MAX_PLACEMENT_TRIES):
        x0, y0 = origin[:, 0], origin[:, 1]
        gap = 1.0
        apart = (
            (x0 + side + gap <= tag_boxes[:, 0])
            | (tag_boxes[:, 2] + gap <= x0)
            | (y0 + side + gap <= tag_boxes[:, 1])
            | (tag_boxes[:, 3] + gap <= y0)
        )
        clash = has_tag & ~apart
        if not bool(clash.any()):
            return origin
        redraw = torch.rand(int(clash.sum()), 2, generator=generator) * (size - side[clash])[:, None]
        origin[clash] = redraw
    raise CamAuditError("could not place the objects clear of the watermark; use a larger image_size.")


_SHAPES: tuple[Callable[[Tensor, Tensor], Tensor], ...] = (
    lambda u, v: u**2 + v**2 <= 1.0,  # disc
    lambda u, v: (u.abs() <= 0.8) & (v.abs() <= 0.8),  # square
    lambda u, v: (v <= 0.9) & (u.abs() <= (v + 1.0) / 2.0),  # triangle, apex up
    lambda u, v: ((u.abs() <= 0.3) & (v.abs() <= 1.0)) | ((v.abs() <= 0.3) & (u.abs() <= 1.0)),  # cross
    lambda u, v: (u**2 + v**2 <= 1.0) & (u**2 + v**2 >= 0.36),  # ring
    lambda u, v: u.abs() + v.abs() <= 1.0,  # diamond
)


def _draw_shapes(labels: Tensor, origin: Tensor, side: Tensor, size: int) -> Tensor:
    """Object masks bool ``[N, H, W]``: shape ``labels[i]`` inscribed in the square at ``origin[i]``."""
    centre = origin + side[:, None] / 2
    half = (side / 2)[:, None, None]
    coords = torch.arange(size, dtype=torch.float32) + 0.5
    u = (coords[None, None, :] - centre[:, 0, None, None]) / half  # [N, 1, W]
    v = (coords[None, :, None] - centre[:, 1, None, None]) / half  # [N, H, 1]
    masks = torch.zeros(labels.shape[0], size, size, dtype=torch.bool)
    for label in labels.unique().tolist():
        chosen = labels == label
        masks[chosen] = _SHAPES[label](u[chosen], v[chosen])
    return masks


__all__ = ["CLASS_NAMES", "BackgroundCue", "SceneData", "WatermarkMode", "make_scenes"]
