"""Checks run once when a probe set is built; each failure names the sample, file, row or annotation.

Every check takes a ``where`` string (``"sample 3"``, ``"row 7 of probe.csv"``, ``"annotation 12 of
instances.json"``) that is put at the front of the message, so loaders and ``from_tensors`` share one
vocabulary of errors. Nothing is clipped or dropped: bad input raises :class:`ProbeError`.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch import Tensor

from cam_audit.errors import ProbeError

#: Channels a probe image may have: RGB or grayscale.
IMAGE_CHANNELS = (3, 1)


def check_boxes(boxes: object, size: tuple[int, int], where: str) -> Tensor:
    """Validate boxes of one sample and return them as float32 ``[K, 4]`` xyxy.

    Args:
        boxes: tensor (or nested sequence) ``[K, 4]`` or ``[4]`` (one box), ``(x_min, y_min, x_max, y_max)``.
        size: ``(H, W)`` of the image the boxes belong to.
        where: what to name in the error message.

    Raises:
        ProbeError: wrong shape or dtype, NaN, zero or negative area, or a box outside ``[0, W] x [0, H]``.

    Example:
        >>> check_boxes([[0, 0, 4, 2]], (2, 4), "sample 0")
        tensor([[0., 0., 4., 2.]])
    """
    if not isinstance(boxes, Tensor):
        try:
            boxes = torch.as_tensor(boxes, dtype=torch.float32)
        except (TypeError, ValueError, RuntimeError) as err:
            raise ProbeError(
                f"{where}: boxes must be numbers [K, 4] (x_min, y_min, x_max, y_max): {err}"
            ) from err
    boxes = boxes.as_subclass(Tensor)
    if boxes.dtype == torch.bool or boxes.is_complex():
        raise ProbeError(
            f"{where}: boxes must be a float tensor of pixel coordinates, got dtype {boxes.dtype}."
        )
    if boxes.ndim == 1 and boxes.numel() == 4:
        boxes = boxes[None]
    if boxes.numel() == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ProbeError(
            f"{where}: boxes must have shape [K, 4] (x_min, y_min, x_max, y_max), got {tuple(boxes.shape)}."
        )
    boxes = boxes.to(torch.float32)
    height, width = size
    for k, (x_min, y_min, x_max, y_max) in enumerate(boxes.tolist()):
        box = f"box {k} ({x_min:g}, {y_min:g}, {x_max:g}, {y_max:g})"
        if any(v != v for v in (x_min, y_min, x_max, y_max)):
            raise ProbeError(f"{where}: {box} contains NaN; remove the box or fix its coordinates.")
        if x_max <= x_min or y_max <= y_min:
            raise ProbeError(
                f"{where}: {box} has zero or negative area; boxes are xyxy pixel coordinates with "
                "x_max > x_min and y_max > y_min (convert COCO xywh with x_max = x + w)."
            )
        if x_min < 0 or y_min < 0 or x_max > width or y_max > height:
            raise ProbeError(
                f"{where}: {box} lies outside the {width}x{height} (W x H) image; boxes must stay within "
                f"[0, {width}] x [0, {height}]. Check the coordinate order (xyxy) and the image size."
            )
    return boxes


def check_masks(masks: object, size: tuple[int, int], where: str) -> Tensor:
    """Validate masks of one sample and return them as bool ``[K, H, W]``.

    Args:
        masks: bool tensor ``[K, H, W]`` or ``[H, W]`` (one mask).
        size: ``(H, W)`` of the image.
        where: what to name in the error message.

    Raises:
        ProbeError: not a bool tensor, or not of the image size.

    Example:
        >>> check_masks(torch.ones(2, 3, dtype=torch.bool), (2, 3), "sample 0").shape
        torch.Size([1, 2, 3])
    """
    if not isinstance(masks, Tensor):
        raise ProbeError(f"{where}: masks must be a bool tensor [K, H, W], got {type(masks).__name__}.")
    masks = masks.as_subclass(Tensor)
    if masks.dtype != torch.bool:
        raise ProbeError(
            f"{where}: masks must be a bool tensor, got dtype {masks.dtype}; convert with masks > 0 "
            "(or masks.bool()) after checking what the values mean."
        )
    if masks.ndim == 2:
        masks = masks[None]
    if masks.ndim != 3 or tuple(masks.shape[-2:]) != tuple(size):
        raise ProbeError(
            f"{where}: mask of shape {tuple(masks.shape)} does not match the image size {size[0]}x{size[1]} "
            "(H x W); masks must be [K, H, W] at the image's resolution."
        )
    return masks


def check_images(images: object) -> Tensor:
    """Validate a batch of images ``[N, C, H, W]`` (``C`` is 3 or 1) and return it as float32.

    uint8 images are scaled to ``[0, 1]``; float images are kept in their range.

    Raises:
        ProbeError: not a 4-D tensor with 3 or 1 channels, a dtype other than float or uint8, or NaN/inf
            values (the first bad sample is named).

    Example:
        >>> check_images(torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)).max()
        tensor(1.)
        >>> check_images(torch.zeros(2, 1, 4, 4)).shape  # grayscale
        torch.Size([2, 1, 4, 4])
    """
    if not isinstance(images, Tensor):
        raise ProbeError(
            f"images must be a tensor [N, 3, H, W] or [N, 1, H, W], got {type(images).__name__}."
        )
    images = images.as_subclass(Tensor)
    if images.ndim != 4 or images.shape[1] not in IMAGE_CHANNELS:
        raise ProbeError(
            f"images must have shape [N, 3, H, W] (colour) or [N, 1, H, W] (grayscale), got "
            f"{tuple(images.shape)}; put the channels second (images.permute(0, 3, 1, 2) for [N, H, W, C]) "
            "and add one for [N, H, W] (images.unsqueeze(1))."
        )
    if images.dtype == torch.uint8:
        return images.to(torch.float32) / 255.0
    if not images.is_floating_point():
        raise ProbeError(f"images must be float (any range) or uint8 (0-255), got dtype {images.dtype}.")
    finite = torch.isfinite(images).flatten(1).all(dim=1)
    if not bool(finite.all()):
        bad = int((~finite).nonzero()[0])
        raise ProbeError(f"sample {bad}: image contains NaN or inf values; fix or remove that image.")
    return images.to(torch.float32)


def check_channels(channels: object) -> int | None:
    """Validate a loader's ``channels`` option: ``None`` (RGB, as stored colour), ``3`` (RGB) or ``1``.

    Raises:
        ProbeError: anything else.

    Example:
        >>> check_channels(1), check_channels(None)
        (1, None)
    """
    if channels is None:
        return None
    is_integer = isinstance(channels, (int, np.integer)) and not isinstance(channels, (bool, np.bool_))
    if is_integer and int(channels) in IMAGE_CHANNELS:  # type: ignore[call-overload]
        return int(channels)  # type: ignore[call-overload]
    raise ProbeError(
        f"channels must be None (RGB, the default), 3 (RGB) or 1 (grayscale: the luminance "
        f"0.299 R + 0.587 G + 0.114 B), got {channels!r}."
    )


def check_labels(labels: object, num_samples: int, classes: Sequence[str] | None) -> list[int]:
    """Validate labels ``[N]`` and return them as a list of Python ints.

    Args:
        labels: an integer tensor ``[N]``, an integer numpy array ``[N]``, or a sequence of ``N`` class
            indices, each a Python int, a numpy integer (``np.int64(0)``) or a 0-d integer tensor.
        num_samples: ``N``, the number of images.
        classes: class names; labels must then be in ``0..len(classes) - 1``.

    Raises:
        ProbeError: a float or bool dtype, wrong shape or length, a value that is not an integer, a negative
            label, or a label ``>= len(classes)`` (naming the sample).

    Example:
        >>> check_labels(torch.tensor([0, 2]), 2, None)
        [0, 2]
        >>> check_labels(np.array([1, 0], dtype=np.int32), 2, None), check_labels([np.int64(1)], 1, None)
        ([1, 0], [1])
    """
    if isinstance(labels, (Tensor, np.ndarray)):
        values = _label_array(labels)
    elif isinstance(labels, (str, bytes)) or not isinstance(labels, Iterable):
        raise ProbeError(
            f"labels must be an integer tensor [N], a numpy array [N] or a list of N ints, got "
            f"{type(labels).__name__}."
        )
    else:
        values = [class_index(value, f"sample {i}") for i, value in enumerate(labels)]
    if len(values) != num_samples:
        raise ProbeError(f"got {len(values)} labels for {num_samples} images; give one label per image.")
    for i, value in enumerate(values):
        check_label(value, classes, f"sample {i}")
    return values


def _label_array(labels: Tensor | np.ndarray) -> list[int]:
    """The values of an integer tensor or numpy array ``[N]``."""
    if isinstance(labels, Tensor):
        integer = not (labels.dtype == torch.bool or labels.is_floating_point() or labels.is_complex())
    else:
        integer = labels.dtype.kind in "iu"
    if not integer:
        raise ProbeError(
            f"labels must be integers (a LongTensor or an integer numpy array), got dtype {labels.dtype}; "
            "labels are class indices."
        )
    if labels.ndim != 1:
        raise ProbeError(f"labels must have shape [N], got {tuple(labels.shape)}.")
    return [int(v) for v in labels.tolist()]


def class_index(value: object, where: str) -> int:
    """``value`` as a Python int: an int, a numpy integer or a 0-d integer tensor (bools are refused).

    Raises:
        ProbeError: ``value`` is a bool, a float, a string or anything else that is not an integer.

    Example:
        >>> class_index(np.int64(2), "sample 0"), class_index(torch.tensor(1), "sample 1")
        (2, 1)
    """
    is_bool = isinstance(value, (bool, np.bool_)) or (isinstance(value, Tensor) and value.dtype == torch.bool)
    try:
        if is_bool:
            raise TypeError("a bool is not a class index")
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError as err:
        raise ProbeError(
            f"{where}: label {value!r} is not an int; labels are class indices (Python ints, numpy "
            "integers or 0-d integer tensors)."
        ) from err


def check_label(label: object, classes: Sequence[str] | None, where: str) -> int:
    """Validate one class index (an int, a numpy integer or a 0-d integer tensor) against ``classes``.

    Returns:
        The label as a Python int.

    Example:
        >>> check_label(np.int64(1), ["cat", "dog"], "sample 0")
        1
    """
    label = class_index(label, where)
    if label < 0:
        raise ProbeError(f"{where}: label {label} is negative; labels are class indices 0..C-1.")
    if classes is not None and label >= len(classes):
        raise ProbeError(
            f"{where}: label {label} is out of range for {len(classes)} classes {list(classes)}; "
            "labels must be in 0..C-1 (or add the class name to `classes`)."
        )
    return label


def check_length(name: str, values: Sequence[object] | Tensor, num_samples: int) -> None:
    """Raise when a per-sample argument does not have one entry per image.

    Example:
        >>> check_length("boxes", [None, None], 2)
    """
    if len(values) != num_samples:
        raise ProbeError(
            f"{name} has {len(values)} entries for {num_samples} images; give one entry per image "
            "(an empty [0, 4] tensor for an image without boxes)."
        )


def check_transform(transform: object) -> None:
    """Raise unless ``transform`` is ``None`` or callable as ``transform(image, target)``.

    A list of class names or a folder given where the transform goes (a positional argument in the wrong
    place) is refused here instead of failing at the first sample.

    Example:
        >>> check_transform(None)
    """
    if transform is not None and not callable(transform):
        text = repr(transform)
        text = text if len(text) <= 60 else text[:57] + "..."
        raise ProbeError(
            f"transform must be callable as transform(image, target), e.g. a torchvision.transforms.v2 "
            f"transform, got a {type(transform).__name__} ({text}); pass the other loader arguments "
            "(classes=, categories=, spurious_mask_dir=) by keyword."
        )


def split_boxes(
    boxes: Tensor | Sequence[Tensor] | None, num_samples: int, size: tuple[int, int], name: str
) -> list[Tensor | None]:
    """Per-sample boxes ``[K_i, 4]`` (copied) from a ``[N, 4]`` tensor or a list; ``None`` when absent."""
    if boxes is None:
        return [None] * num_samples
    if isinstance(boxes, Tensor):
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ProbeError(
                f"{name} as a tensor must be [N, 4] (one xyxy box per image), got {tuple(boxes.shape)}; "
                "pass a list of [K_i, 4] tensors for several boxes per image."
            )
        boxes = list(boxes[:, None, :])
    check_length(name, boxes, num_samples)
    return [check_boxes(value, size, f"sample {i} ({name})").clone() for i, value in enumerate(boxes)]


def split_masks(
    masks: Tensor | Sequence[Tensor] | None, num_samples: int, size: tuple[int, int], name: str
) -> list[Tensor | None]:
    """Per-sample masks ``[K_i, H, W]`` (copied) from ``[N, H, W]`` or a list; ``None`` when absent."""
    if masks is None:
        return [None] * num_samples
    if isinstance(masks, Tensor):
        if masks.ndim != 3:
            raise ProbeError(
                f"{name} as a tensor must be bool [N, H, W] (one mask per image), got {tuple(masks.shape)}; "
                "pass a list of [K_i, H, W] tensors for several masks per image."
            )
        masks = list(masks)
    check_length(name, masks, num_samples)
    return [check_masks(value, size, f"sample {i} ({name})").clone() for i, value in enumerate(masks)]


__all__ = [
    "IMAGE_CHANNELS",
    "check_boxes",
    "check_channels",
    "check_images",
    "check_label",
    "check_labels",
    "check_length",
    "check_masks",
    "check_transform",
    "class_index",
    "split_boxes",
    "split_masks",
]
