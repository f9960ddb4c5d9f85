"""Fault injection for the probe loaders: bad or unusual files, each read right or refused with its reason.

Every case writes its files into ``tmp_path`` (see ``fault_files``) and loads them. A case either raises
``ProbeError`` whose message starts as given (the entry, row or file at fault, then what is wrong), or
returns ``(got, want)``: what the loader produced and the value computed independently from what was
written. The README's "What the loaders do with unusual files" lists exactly these cases, in this order.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from cam_audit.errors import ProbeError
from cam_audit.probe import ProbeSet
from cam_audit.probe.sources import CocoProbe, CsvProbe, MaskDirProbe
from fault_files import (
    COLOUR8,
    COLOUR16,
    GRAY16,
    HALO,
    INDEX,
    OBJECT,
    OTHER,
    PALETTE,
    H,
    W,
    coco,
    coco_cat_and_dog,
    coco_text,
    csv,
    csv_two_labels,
    drop,
    float_tiff,
    id_collision,
    image_case,
    images_and_csv,
    jpeg_mask,
    literal_names,
    luminance,
    mask_case,
    mask_dir_image_twice,
    mask_of_another_image,
    mask_via_dir,
    no_watermark,
    not_an_image,
    numpy_labels,
    one_channel_case,
    one_channel_tensors,
    palette_image,
    png,
    png_and_jpeg_masks,
    positional,
    put,
    rgba,
    rle,
    save,
    sources_with_one_channel,
    unit,
)

README = Path(__file__).resolve().parents[1] / "README.md"
P = r"\S+"  # a path under tmp_path


@dataclass(frozen=True)
class Case:
    id: str
    input: str  # the README's "input" column
    outcome: str  # the README's "what you get" column
    run: Callable[[Path], Any]
    error: str | None = None  # how the ProbeError's message starts; None: run returns (got, want)
    atol: float = 0.0
    rtol: float = 0.0


# fmt: off
CASES = [
    # --- images: scaled by the file's own bit depth; alpha dropped --------------------------------------
    Case("image-png16-gray", "16-bit grayscale PNG (mean 0.47)", "value / 65535 on 3 channels (mean 0.47)",
         image_case(GRAY16, 65535, lambda p: png(p, GRAY16)), atol=1e-6),
    Case("image-png16-rgb", "16-bit RGB PNG", "value / 65535 per channel, all 16 bits kept",
         image_case(COLOUR16[..., :3], 65535, lambda p: png(p, COLOUR16[..., :3])), atol=1e-6),
    Case("image-png16-rgba", "16-bit RGBA PNG", "colour / 65535; alpha dropped",
         image_case(COLOUR16, 65535, lambda p: png(p, COLOUR16)), atol=1e-6),
    Case("image-png16-gray-alpha", "16-bit gray + alpha PNG", "gray / 65535 on 3 channels; alpha dropped",
         image_case(COLOUR16[..., :2], 65535, lambda p: png(p, COLOUR16[..., :2])), atol=1e-6),
    Case("image-png8-gray", "8-bit grayscale PNG", "value / 255 on 3 channels",
         image_case(COLOUR8[..., 0], 255, lambda p: png(p, COLOUR8[..., 0])), atol=1e-6),
    Case("image-png8-gray-alpha", "8-bit gray + alpha PNG", "gray / 255 on 3 channels; alpha dropped",
         image_case(COLOUR8[..., :2], 255, lambda p: png(p, COLOUR8[..., :2])), atol=1e-6),
    Case("image-png8-rgba", "8-bit RGBA PNG, partly transparent",
         "colour / 255 as stored, also where alpha is 0 (not composited)",
         image_case(COLOUR8, 255, lambda p: png(p, COLOUR8)), atol=1e-6),
    Case("image-palette", "palette PNG", "the palette's colours / 255",
         image_case(PALETTE[INDEX], 255, lambda p: save(p, palette_image(INDEX, PALETTE))), atol=1e-6),
    Case("image-bilevel", "1-bit PNG", "0.0 and 1.0",
         image_case(OBJECT.astype(np.uint8), 1, lambda p: save(p, Image.fromarray(OBJECT)))),
    Case("image-gray-channels-1", "8-bit grayscale PNG, `channels=1`", "value / 255 on 1 channel",
         one_channel_case(COLOUR8[..., 0], torch.from_numpy(COLOUR8[..., 0] / 255)[None]), atol=1e-6),
    Case("image-rgb-channels-1", "8-bit RGB PNG, `channels=1`",
         "luminance (0.299 R + 0.587 G + 0.114 B) / 255 on 1 channel",
         one_channel_case(COLOUR8[..., :3], luminance(COLOUR8[..., :3], 255)), atol=1e-6),
    Case("image-png16-channels-1", "16-bit RGB PNG, `channels=1`", "luminance / 65535, all 16 bits kept",
         one_channel_case(COLOUR16[..., :3], luminance(COLOUR16[..., :3], 65535)), atol=1e-6),
    Case("image-gray-channels-3", "8-bit grayscale PNG, `channels=3`", "value / 255 on 3 channels, as `None`",
         one_channel_case(COLOUR8[..., 0], unit(COLOUR8[..., 0], 255), channels=3), atol=1e-6),
    Case("image-channels-2", "`channels=2`", "ProbeError listing None, 3 and 1",
         lambda tmp: images_and_csv(tmp, ["images/a.png,0,,0,0,4,4,"], channels=2),
         error=r"channels must be None \(RGB, the default\), 3 \(RGB\) or 1"),
    Case("source-channels", "`CocoProbe`, `CsvProbe`, `MaskDirProbe` with `channels=1`", "images [1, H, W]",
         sources_with_one_channel),
    Case("image-float-tiff", "32-bit float TIFF", "ProbeError when the probe is built: its range is unknown",
         float_tiff, error=rf"row 1 of {P}: image file {P} holds floating-point pixels"),
    # --- masks: colour, or alpha when only the alpha varies; lossy and 16-bit files at half range -------
    Case("mask-rgba-opaque", "RGBA mask, opaque everywhere", "the white pixels (a constant alpha is ignored)",
         mask_case(lambda p: save(p, rgba(OBJECT * 255, np.full((H, W), 255))))),
    Case("mask-alpha", "RGBA mask, black everywhere, the object in alpha", "the pixels with alpha > 0",
         mask_case(lambda p: save(p, rgba(np.zeros((H, W)), OBJECT * 255)))),
    Case("mask-rgba-agree", "RGBA mask, white object on transparent black",
         "the object (colour and alpha agree)",
         mask_case(lambda p: save(p, rgba(OBJECT * 255, OBJECT * 255)))),
    Case("mask-rgba-disagree", "RGBA mask whose colour and alpha mark different pixels",
         "ProbeError: save the mask as a grayscale PNG",
         mask_case(lambda p: save(p, rgba(OBJECT * 255, OTHER * 255))),
         error=rf"row 1 of {P}: mask file {P} has both a varying colour and a varying alpha"),
    Case("mask-jpeg", "JPEG mask (quality 50)", "the pixels above 127.5: the object's area within 3%",
         lambda tmp: jpeg_mask(tmp, 255), rtol=0.03),
    Case("mask-jpeg-dark", "JPEG mask drawn in value 90", "ProbeError: no pixel above half the range",
         lambda tmp: jpeg_mask(tmp, 90), error=rf"row 1 of {P}: mask file {P} is a lossy format, so a pixel"),
    Case("mask-png16", "16-bit mask, 65535 inside, 300 in a halo", "the pixels above 32767.5: the object",
         mask_case(lambda p: png(p, (OBJECT * 65535 + HALO * 300).astype(np.uint16)))),
    Case("mask-png16-index", "16-bit mask of 0 and 1", "ProbeError: no pixel above half the range",
         mask_case(lambda p: png(p, OBJECT.astype(np.uint16))),
         error=rf"row 1 of {P}: mask file {P} is 16-bit"),
    Case("mask-png8-ones", "8-bit gray mask of 0 and 1", "the pixels of value 1 (non-zero is inside)",
         mask_case(lambda p: png(p, OBJECT.astype(np.uint8)))),
    Case("mask-rgb-dark", "8-bit RGB mask in dark blue (0, 0, 40)", "the blue pixels (non-zero luminance)",
         mask_case(lambda p: png(p, np.dstack([0 * OBJECT, 0 * OBJECT, 40 * OBJECT]).astype(np.uint8)))),
    Case("mask-palette", "palette mask, index 1 dark red", "the pixels whose palette colour is not black",
         mask_case(lambda p: save(p, palette_image(OBJECT.astype(np.uint8), PALETTE[:2] // 2)))),
    # --- mask files found by name, literally ------------------------------------------------------------
    Case("name-brackets", "image `cat [1].png`; masks `cat [1].png` and `cat 1.png`",
         "the mask `cat [1].png`", literal_names),
    Case("name-png-first", "masks `a.png` and `a.jpg` for image `a.png`", "the PNG",
         mask_case(png_and_jpeg_masks)),
    Case("mask-dir-missing", "`mask_dir` that does not exist", "ProbeError naming the folder",
         lambda tmp: mask_via_dir(tmp, "a.png"), error=rf"mask_dir {P} is not a folder"),
    Case("mask-missing", "no mask for an image", "ProbeError naming the row and the file expected",
         mask_of_another_image, error=rf"row 1 of {P}: no mask for 'a.png'"),
    Case("mask-dir-image-twice", "image listed twice in `labels_csv`",
         "ProbeError: one mask per image has one class (use `from_csv`)", mask_dir_image_twice,
         error=rf"row 2 of {P}: image 'a.png' is already listed in row 1; a mask folder holds one mask"),
    Case("mask-wrong-size", "mask of another size than its image", "ProbeError naming the row and the mask",
         mask_case(lambda p: png(p, np.ones((H, W - 1), dtype=np.uint8))),
         error=rf"row 1 of {P} \(mask a.png\): mask of shape \(1, 48, 63\) does not match"),
    # --- COCO structure ---------------------------------------------------------------------------------
    Case("coco-no-file-name", "COCO image without `file_name`", "ProbeError naming `images[1]` and the field",
         lambda tmp: coco(tmp, drop("images", 1, "file_name")),
         error=rf"images\[1\] of {P}: 'file_name' is missing"),
    Case("coco-no-category-id", "COCO annotation without `category_id`", "ProbeError naming `annotations[2]`",
         lambda tmp: coco(tmp, drop("annotations", 2, "category_id")),
         error=rf"annotations\[2\] \(id 3\) of {P}: 'category_id' is missing"),
    Case("coco-bbox-3", "COCO `bbox` of 3 numbers", "ProbeError: 'bbox' must be 4 numbers",
         lambda tmp: coco(tmp, put("annotations", 3, bbox=[10, 5, 10])),
         error=rf"annotations\[3\] \(id 4\) of {P}: 'bbox' must be 4 numbers"),
    Case("coco-bbox-text", "COCO `bbox` of strings", "ProbeError: 'bbox' must be 4 numbers",
         lambda tmp: coco(tmp, put("annotations", 3, bbox=["10", "5", "10", "10"])),
         error=rf"annotations\[3\] \(id 4\) of {P}: 'bbox' must be 4 numbers"),
    Case("coco-categories-dict", "COCO `categories` as a dict", "ProbeError: must be a list of objects",
         lambda tmp: coco(tmp, lambda d: d.update(categories={"3": "cat"})),
         error=rf"annotation file {P}: 'categories' must be a list of objects, got a dict"),
    Case("coco-no-images", "COCO file without `images`", "ProbeError naming the missing key",
         lambda tmp: coco(tmp, lambda d: d.pop("images")),
         error=rf"annotation file {P} lacks the COCO keys \['images'\]"),
    Case("coco-no-annotations", "COCO file without `annotations`", "ProbeError naming the missing key",
         lambda tmp: coco(tmp, lambda d: d.pop("annotations")),
         error=rf"annotation file {P} lacks the COCO keys \['annotations'\]"),
    Case("coco-annotations-null", "COCO `annotations: null`", "ProbeError: must be a list of objects",
         lambda tmp: coco(tmp, lambda d: d.update(annotations=None)),
         error=rf"annotation file {P}: 'annotations' must be a list of objects, got null"),
    Case("coco-annotation-list", "COCO annotation that is a list", "ProbeError naming `annotations[0]`",
         lambda tmp: coco(tmp, lambda d: d["annotations"].__setitem__(0, [1, 2])),
         error=rf"annotations\[0\] of {P}: must be an object"),
    Case("coco-unknown-image", "COCO annotation of an unlisted `image_id`",
         "ProbeError listing the image ids",
         lambda tmp: coco(tmp, put("annotations", 3, image_id=42)),
         error=rf"annotations\[3\] \(id 4\) of {P}: image_id 42 is not listed in 'images' \(ids: 7, 9\)"),
    Case("coco-unknown-category", "COCO annotation of an unlisted `category_id`",
         "ProbeError listing the categories", lambda tmp: coco(tmp, put("annotations", 3, category_id=42)),
         error=rf"annotations\[3\] \(id 4\) of {P}: category_id 42 is not listed in 'categories' "
               r"\{3: 'cat'"),
    Case("coco-duplicate-id", "two COCO images with one id", "ProbeError naming both entries",
         lambda tmp: coco(tmp, put("images", 1, id=7)),
         error=rf"images\[1\] of {P}: id 7 is already used by images\[0\]"),
    Case("coco-duplicate-file", "two COCO images with one `file_name`", "ProbeError naming both entries",
         lambda tmp: coco(tmp, put("images", 1, file_name="one.png")),
         error=rf"images\[1\] of {P}: file_name 'one.png' is already listed as images\[0\]"),
    Case("coco-text-id", "COCO image `id` written as a string", "ProbeError: 'id' must be an integer",
         lambda tmp: coco(tmp, put("images", 0, id="7")),
         error=rf"images\[0\] of {P}: 'id' must be an integer"),
    Case("coco-text-width", "COCO `width` written as a string", "ProbeError: must be a positive integer",
         lambda tmp: coco(tmp, put("images", 0, width="64")),
         error=rf"images\[0\] of {P}: 'width' must be a positive integer"),
    Case("coco-no-region", "COCO annotation without `bbox` and `segmentation`", "ProbeError naming it",
         lambda tmp: coco(tmp, drop("annotations", 3, "bbox")),
         error=rf"annotations\[3\] \(id 4\) of {P}: has neither a 'bbox' nor a 'segmentation'"),
    Case("coco-flat-polygon", "COCO polygon as a flat list of numbers", "ProbeError: a list of polygons",
         lambda tmp: coco(tmp, put("annotations", 0, segmentation=[2, 3, 8, 3, 8, 7])),
         error=rf"annotations\[0\] \(id 1\) of {P}: 'segmentation' polygon 0 must be a list of 6 or more"),
    Case("coco-polygon-4", "COCO polygon of 4 numbers (pycocotools would read a box)", "ProbeError",
         lambda tmp: coco(tmp, put("annotations", 0, segmentation=[[2, 3, 8, 7]])),
         error=rf"annotations\[0\] \(id 1\) of {P}: 'segmentation' polygon 0 must be a list of 6 or more"),
    Case("coco-polygon-outside", "COCO polygon vertex outside the image", "ProbeError (not clipped)",
         lambda tmp: coco(tmp, put("annotations", 0, segmentation=[[2, 3, 70, 3, 8, 7]])),
         error=rf"annotation 1 \(image 'one.png' \(id 7\) of {P}\): segmentation polygon 0 has the vertex "
               r"\(70, 3\)"),
    Case("coco-rle-no-counts", "COCO RLE without `counts`", "ProbeError: needs 'size' and 'counts'",
         lambda tmp: coco(tmp, put("annotations", 1, segmentation={"size": [H, W]})),
         error=rf"annotations\[1\] \(id 2\) of {P}: an RLE 'segmentation' needs 'size'"),
    Case("coco-json-list", "COCO file holding a JSON list", "ProbeError",
         lambda tmp: coco_text(tmp, "[]"), error=rf"annotation file {P} holds a list"),
    Case("coco-invalid-json", "COCO file that is not JSON", "ProbeError",
         lambda tmp: coco_text(tmp, "{images: "), error=rf"annotation file {P} is not valid JSON"),
    Case("coco-empty", "empty COCO file", "ProbeError", lambda tmp: coco_text(tmp, ""),
         error=rf"annotation file {P} is empty"),
    # --- COCO categories --------------------------------------------------------------------------------
    Case("spurious-typo", "`spurious_categories=(\"Watermark\",)`, category `watermark`",
         "ProbeError listing the categories", lambda tmp: coco(tmp, spurious_categories=("Watermark",)),
         error=rf"spurious_categories: unknown category 'Watermark' in {P}; its categories are "
               r"\{3: 'cat', 5: 'dog', 99: 'watermark'\}"),
    Case("spurious-unknown-id", "`spurious_categories=(42,)`, no category 42",
         "ProbeError listing the categories", lambda tmp: coco(tmp, spurious_categories=(42,)),
         error=rf"spurious_categories: unknown category 42 in {P}"),
    Case("spurious-default-case", "default `spurious_categories`, category `Watermark`",
         "ProbeError: pass `spurious_categories=(\"Watermark\",)` or `()`",
         lambda tmp: coco(tmp, lambda d: d["categories"][2].update(name="Watermark")),
         error=rf"spurious_categories: {P} has no category named 'watermark' but has 'Watermark'"),
    Case("spurious-default-absent", "default `spurious_categories`, no watermark category",
         "every category a class, no spurious regions", no_watermark),
    Case("spurious-string", "`spurious_categories=\"watermark\"` (one string)", "that one category",
         lambda tmp: (coco(tmp, spurious_categories="watermark").classes, ["cat", "dog"])),
    Case("coco-unmapped", "`categories=` without an object's category", "ProbeError naming the annotation",
         lambda tmp: coco(tmp, categories={"cat": 0}),
         error=rf"annotation 4 \(image 'two.png' \(id 9\) of {P}\): category 5 is not mapped to a class"),
    # --- COCO regions and files -------------------------------------------------------------------------
    Case("coco-missing-image", "COCO image file missing", "ProbeError naming the image",
         lambda tmp: coco(tmp, put("images", 1, file_name="gone.png")),
         error=rf"image 'gone.png' \(id 9\) of {P}: image file {P}gone.png does not exist"),
    Case("coco-box-outside", "COCO box outside the image", "ProbeError naming the annotation (not clipped)",
         lambda tmp: coco(tmp, put("annotations", 3, bbox=[60, 5, 10, 10])),
         error=rf"annotation 4 \(image 'two.png' \(id 9\) of {P}\): box 0 \(60, 5, 70, 15\) lies outside"),
    Case("coco-declared-size", "COCO `width` other than the file's", "ProbeError naming both sizes",
         lambda tmp: coco(tmp, put("images", 0, width=65)),
         error=rf"image 'one.png' \(id 7\) of {P}: the file is 64x48 \(W x H\) but the annotation file "
               r"declares 65x48"),
    Case("coco-rle-size", "COCO RLE mask of another size", "ProbeError naming the annotation",
         lambda tmp: coco(tmp, put("annotations", 1, segmentation=rle(H, W + 1))),
         error=rf"annotation 2 \(image 'one.png' \(id 7\) of {P}\): mask of shape \(1, 48, 65\) does not"),
    Case("coco-two-classes", "COCO image with two cats and a dog",
         "a sample per class (`one.png#cat`, `one.png#dog`): its objects, the watermark, one `image_id`",
         coco_cat_and_dog),
    Case("coco-no-object", "COCO image with only a watermark", "ProbeError: the image has no label",
         lambda tmp: coco(tmp, lambda d: [d["annotations"].pop(0), d["annotations"].pop(0)]),
         error=rf"image 'one.png' \(id 7\) of {P}: no object annotation"),
    # --- CSV manifests ----------------------------------------------------------------------------------
    Case("csv-missing-image", "CSV row of a missing image", "ProbeError naming the row and the file",
         lambda tmp: images_and_csv(tmp, ["images/a.png,0,,0,0,4,4,", "images/gone.png,0,,0,0,4,4,"]),
         error=rf"row 2 of {P}: image file {P}gone.png does not exist"),
    Case("csv-undecodable", "CSV row of a file that is not an image",
         "ProbeError naming the row and the file",
         not_an_image, error=rf"row 1 of {P}: image file {P}x.png cannot be decoded"),
    Case("csv-box-outside", "CSV box outside the image", "ProbeError naming the row (not clipped)",
         lambda tmp: images_and_csv(tmp, ["images/a.png,0,,60,4,65,8,"]),
         error=rf"row 1 of {P}: box 0 \(60, 4, 65, 8\) lies outside the 64x48"),
    Case("csv-zero-area", "CSV box of zero area", "ProbeError naming the row",
         lambda tmp: images_and_csv(tmp, ["images/a.png,0,,3,4,3,8,"]),
         error=rf"row 1 of {P}: box 0 \(3, 4, 3, 8\) has zero or negative area"),
    Case("csv-label-range", "CSV label 5 with 2 classes", "ProbeError naming the row",
         lambda tmp: images_and_csv(tmp, ["images/a.png,5,,0,0,4,4,"], classes=["cat", "dog"]),
         error=rf"row 1 of {P}: label 5 is out of range for 2 classes"),
    Case("csv-unknown-label", "CSV label name not in `classes`", "ProbeError listing the classes",
         lambda tmp: images_and_csv(tmp, ["images/a.png,zebra,,0,0,4,4,"], classes=["cat", "dog"]),
         error=r"unknown label 'zebra'; known classes are \['cat', 'dog'\]"),
    Case("csv-two-labels", "CSV rows of one image with two labels",
         "a sample per label (`<image>#<label>`), the spurious rows in each, one `image_id`", csv_two_labels),
    Case("csv-unlabelled-object", "CSV object row without a label, in an image of two labels",
         "ProbeError naming the row",
         lambda tmp: images_and_csv(tmp, ["images/a.png,0,,0,0,4,4,", "images/a.png,1,,4,4,8,8,",
                                          "images/a.png,,,8,8,12,12,"]),
         error=rf"row 3 of {P}: the object row has no label, and image 'images/a.png' has objects of "
               r"several classes \(0, 1\)"),
    Case("csv-spurious-label", "CSV spurious row labelled with a class no object row has",
         "ProbeError: leave its label empty",
         lambda tmp: images_and_csv(tmp, ["images/a.png,0,,0,0,4,4,", "images/a.png,1,spurious,4,4,8,8,"]),
         error=rf"row 2 of {P}: the spurious row is labelled 1, a class no object row"),
    Case("csv-id-collision", "CSV image `a.png#1` next to `a.png` of labels 0 and 1", "ProbeError: rename it",
         id_collision, error=rf"CSV file {P}: the sample id 'images/a.png#1' is given twice"),
    Case("csv-no-region", "CSV row without box or mask", "ProbeError naming the row",
         lambda tmp: images_and_csv(tmp, ["images/a.png,0,,,,,,"]),
         error=rf"row 1 of {P}: the row has neither a box nor a mask"),
    Case("csv-no-label-column", "CSV without a `label` column", "ProbeError listing the columns",
         lambda tmp: ProbeSet.from_csv(csv(tmp, ["a.png,0,0,4,4"], header="image,x_min,y_min,x_max,y_max\n")),
         error=rf"CSV file {P} lacks the column\(s\) \['label'\]"),
    Case("csv-empty", "empty CSV file", "ProbeError", lambda tmp: ProbeSet.from_csv(csv(tmp, [], header="")),
         error=rf"CSV file {P} is empty"),
    Case("csv-missing", "CSV file that does not exist", "ProbeError",
         lambda tmp: ProbeSet.from_csv(tmp / "nope.csv"), error=rf"CSV file {P} does not exist"),
    # --- tensors ----------------------------------------------------------------------------------------
    Case("tensors-label-range", "`from_tensors` label 5 with 2 classes", "ProbeError naming the sample",
         lambda tmp: ProbeSet.from_tensors(torch.rand(2, 3, 4, 4), [0, 5], classes=["a", "b"]),
         error=r"sample 1: label 5 is out of range for 2 classes"),
    Case("tensors-box-outside", "`from_tensors` box outside the image", "ProbeError naming the sample",
         lambda tmp: ProbeSet.from_tensors(torch.rand(1, 3, 4, 4), [0], boxes=torch.tensor([[0.0, 0, 5, 4]])),
         error=r"sample 0 \(boxes\): box 0 \(0, 0, 5, 4\) lies outside the 4x4"),
    Case("tensors-mask-size", "`from_tensors` mask of another size", "ProbeError naming the sample",
         lambda tmp: ProbeSet.from_tensors(torch.rand(1, 3, 4, 4), [0], masks=torch.ones(1, 3, 4).bool()),
         error=r"sample 0 \(masks\): mask of shape \(1, 3, 4\) does not match"),
    Case("tensors-nan", "`from_tensors` image with NaN", "ProbeError naming the sample",
         lambda tmp: ProbeSet.from_tensors(torch.full((2, 3, 4, 4), float("nan")), [0, 1]),
         error=r"sample 0: image contains NaN or inf values"),
    Case("tensors-one-channel", "`from_tensors` images [N, 1, H, W]", "items [1, H, W], batches [B, 1, H, W]",
         one_channel_tensors),
    Case("tensors-two-channels", "`from_tensors` images [N, 2, H, W]", "ProbeError: 3 channels or 1",
         lambda tmp: ProbeSet.from_tensors(torch.rand(2, 2, 4, 4), [0, 1]),
         error=r"images must have shape \[N, 3, H, W\] \(colour\) or \[N, 1, H, W\]"),
    Case("tensors-numpy-labels", "`from_tensors` labels of numpy integers, a numpy array, 0-d tensors",
         "the same Python ints", numpy_labels),
    Case("tensors-float-label", "`from_tensors` label `np.float64(1.0)`", "ProbeError naming the sample",
         lambda tmp: ProbeSet.from_tensors(torch.rand(2, 3, 4, 4), [0, np.float64(1.0)]),
         error=r"sample 1: label np.float64\(1.0\) is not an int"),
    # --- loader signatures ------------------------------------------------------------------------------
    Case("positional-coco", "`from_coco(json, folder, (\"watermark\",), transform)`", "the transform applied",
         lambda tmp: positional(tmp, "coco")),
    Case("positional-csv", "`from_csv(csv, transform)`", "the transform applied",
         lambda tmp: positional(tmp, "csv")),
    Case("positional-mask-dir", "`from_mask_dir(images, masks, labels, transform)`", "the transform applied",
         lambda tmp: positional(tmp, "mask_dir")),
    Case("transform-misplaced", "`from_csv(csv, [\"cat\", \"dog\"])`",
         "ProbeError: pass `classes=` by keyword",
         lambda tmp: images_and_csv(tmp, ["images/a.png,0,,0,0,4,4,"], transform=["cat", "dog"]),
         error=r"transform must be callable as transform\(image, target\)"),
    Case("source-misplaced", "`CsvProbe(csv, [\"cat\", \"dog\"])`", "ProbeError when the source is made",
         lambda tmp: CsvProbe(tmp / "probe.csv", ["cat", "dog"]), error=r"transform must be callable"),
]
# fmt: on


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_loader_fault(case: Case, tmp_path: Path) -> None:
    if case.error is not None:
        with pytest.raises(ProbeError) as raised:
            case.run(tmp_path)
        assert re.match(case.error, str(raised.value)), str(raised.value)
        return
    got, want = case.run(tmp_path)
    numbers = isinstance(want, tuple) and isinstance(want[0], (float, torch.Tensor))
    if isinstance(want, torch.Tensor) or numbers:
        torch.testing.assert_close(got, want, atol=case.atol, rtol=case.rtol, check_dtype=False)
    else:
        assert got == want


def test_case_ids_are_unique() -> None:
    assert len({case.id for case in CASES}) == len(CASES)


def test_readme_lists_every_case() -> None:
    text = README.read_text()
    section = text[text.index("### What the loaders do with unusual files") :]
    section = section[: section.index("\n#", 1)]
    rows = re.findall(r"^\| (.+?) \| (.+?) \|$", section, flags=re.MULTILINE)
    assert rows[0] == ("input", "what you get")
    assert rows[1:] == [(case.input, case.outcome) for case in CASES]


@pytest.mark.parametrize(
    ("loader", "source"),
    [(ProbeSet.from_coco, CocoProbe), (ProbeSet.from_csv, CsvProbe), (ProbeSet.from_mask_dir, MaskDirProbe)],
    ids=["coco", "csv", "mask_dir"],
)
def test_loaders_take_their_sources_arguments_in_the_same_order(loader, source) -> None:
    def shape(function: Callable[..., Any]) -> list[tuple[str, Any, Any]]:
        parameters = inspect.signature(function).parameters.values()
        return [(p.name, p.kind, p.default) for p in parameters if p.name not in ("self", "cls")]

    assert shape(loader) == shape(source.__init__)
