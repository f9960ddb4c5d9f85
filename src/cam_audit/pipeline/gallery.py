"""A picture per discovered cue: what the model looks at, and what the cue does when it is pasted.

Each cue's gallery is one image ``[3, H, W]`` in ``[0, 1]`` (for ``SummaryWriter.add_image``, a PNG or
the HTML page) with two rows of (image, overlay) pairs:

1. **found**: crops around the hot spot of the cue's strongest tested samples, with their Grad-CAM++
   maps and the spot outlined;
2. **pasted**: images of other classes with the cue pasted in that the model then decided for the
   cue's class, with the map of that class (which should sit on the pasted cue).
"""

from __future__ import annotations

import torch
import torch.nn.functional as nnf
from torch import Tensor

from cam_audit.cam import CamEngine
from cam_audit.counterfactual import fill_region, paste_region
from cam_audit.pipeline.discovery import Discovered
from cam_audit.probe import ProbeSet
from cam_audit.render.overlays import overlay_grid

#: Side, in pixels, every crop and pasted image is resized to.
TILE = 64


def cue_galleries(
    engine: CamEngine, probe: ProbeSet, found: Discovered, device: torch.device, per_cue: int = 4
) -> dict[int, Tensor]:
    """``{cue number: gallery image [3, H, W]}`` for every cue of ``found`` that was tested.

    Runs the engine on at most ``2 * per_cue`` images per cue (a few forward and backward passes).
    """
    out = {}
    for number in found.cues["cue"].tolist():
        tested = found.pairs[found.pairs["cue"] == number]
        if tested.empty:
            continue
        rows = [_found_row(engine, probe, found, tested.head(per_cue), device)]
        # pasted examples into distinct images: sources whose pastes share a partner look alike
        moved = tested[(tested["moved"] == 1) & (tested["partner"] >= 0)].drop_duplicates("partner")
        moved = moved.head(per_cue)
        if len(moved):
            rows.append(_pasted_row(engine, probe, found, moved, device))
        out[int(number)] = _stack(rows)
    return out


def _found_row(engine: CamEngine, probe: ProbeSet, found: Discovered, tested, device: torch.device) -> Tensor:
    positions = tested["index"].astype(int).tolist()
    batch = next(probe.batches(len(positions), indices=positions)).to(device)
    spots = torch.stack([found.spots.mask(p, device) for p in positions])
    frame = found.spots.frame.set_index("index").loc[positions]
    maps = engine(batch.images, torch.tensor(frame["target"].to_numpy(dtype="int64"), device=device)).maps
    stride = int(frame["stride"].iloc[0])
    crops = [_crop_box(spot, stride) for spot in spots]
    images = torch.stack([_tile(img, box) for img, box in zip(batch.images, crops, strict=True)])
    heat = torch.stack([_tile(m[None], box)[0] for m, box in zip(maps, crops, strict=True)])
    outline = torch.stack([_tile(s[None].float(), box)[0] > 0.5 for s, box in zip(spots, crops, strict=True)])
    captions = [str(sid) for sid in batch.sample_ids]
    return overlay_grid(images, heat, spurious=outline, captions=captions, ncol=len(positions), scale=1)


def _pasted_row(engine: CamEngine, probe: ProbeSet, found: Discovered, moved, device: torch.device) -> Tensor:
    sources = moved["index"].astype(int).tolist()
    partners = moved["partner"].astype(int).tolist()
    source = next(probe.batches(len(sources), indices=sources)).to(device)
    partner = next(probe.batches(len(partners), indices=partners)).to(device)
    spots = torch.stack([found.spots.mask(p, device) for p in sources])
    own = torch.stack([found.spots.mask(p, device) for p in partners])
    pasted = paste_region(fill_region(partner.images, own, "blur"), source.images, spots)
    classes = found.spots.frame.set_index("index").loc[sources, "target"].to_numpy(dtype="int64")
    maps = engine(pasted, torch.tensor(classes, device=device)).maps
    names = probe.class_names()
    size = (TILE, TILE)
    images = nnf.interpolate(pasted.float(), size=size, mode="bilinear", align_corners=False)
    heat = nnf.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    outline = nnf.interpolate(spots[:, None].float(), size=size, mode="nearest")[:, 0] > 0.5
    captions = [
        f"{names[int(lbl)]}->{names[int(c)]}" for lbl, c in zip(partner.labels, classes, strict=True)
    ]
    return overlay_grid(
        images, heat.clamp_min(0), spurious=outline, captions=captions, ncol=len(sources), scale=1
    )


def _crop_box(spot: Tensor, stride: int) -> tuple[int, int, int, int]:
    """A square around the spot, two map cells wider on each side, inside the image."""
    height, width = spot.shape
    ys, xs = spot.nonzero(as_tuple=True)
    side = max(int(ys.max() - ys.min()) + 1, int(xs.max() - xs.min()) + 1) + 4 * stride
    side = min(max(side, 16), height, width)
    cy, cx = int(ys.float().mean()), int(xs.float().mean())
    top = min(max(cy - side // 2, 0), height - side)
    left = min(max(cx - side // 2, 0), width - side)
    return top, left, top + side, left + side


def _tile(image: Tensor, box: tuple[int, int, int, int]) -> Tensor:
    top, left, bottom, right = box
    crop = image[:, top:bottom, left:right].float()[None]
    return nnf.interpolate(crop, size=(TILE, TILE), mode="bilinear", align_corners=False)[0]


def _stack(rows: list[Tensor]) -> Tensor:
    width = max(r.shape[-1] for r in rows)
    padded = [nnf.pad(r, (0, width - r.shape[-1]), value=1.0) for r in rows]
    return torch.cat(padded, dim=1)


__all__ = ["TILE", "cue_galleries"]
