"""Discovery: cues nobody annotated, found from object regions alone and confirmed by matched controls.

1. **spots** (:class:`SpotCollector`, while the probe is scored): each map's candidate off the grown
   object (:func:`~cam_audit.counterfactual.spots.hot_spots`) and its matched control place.
2. **cues** (:func:`discover`, once every process's spots are gathered): the spots of each class are
   clustered by place (:func:`~cam_audit.counterfactual.grouping.group_spots`); every process then tests
   the members it scored: fill against the control fill, paste into a partner against a control patch,
   and moves its own objects onto backgrounds of their own and of another class (``bg_gap``).
3. the outcomes are gathered and counted into the cue table (:mod:`cam_audit.report.cues`).

Partners are chosen among all scored samples in probe order, as in the paste test, so the cues and
rates do not depend on the batch size or on how the probe is split across processes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from cam_audit.cam import CamEngine
from cam_audit.counterfactual import Fill
from cam_audit.counterfactual.grouping import cluster_radius, group_spots
from cam_audit.counterfactual.matched import fill_pairs, paste_pairs, swap_pairs
from cam_audit.counterfactual.spots import control_offsets, hot_spots, shift_each, spot_geometry, stride_of
from cam_audit.errors import CamAuditError
from cam_audit.pipeline.collectives import Collectives
from cam_audit.pipeline.tables import background_partners, cue_partners, cue_table
from cam_audit.probe import ProbeBatch, ProbeSet
from cam_audit.regions import region_boxes
from cam_audit.report.cues import empty_cues


def check_discoverable(probe: ProbeSet) -> None:
    """Discovery looks off the object, so it needs to know where the object is.

    Raises:
        CamAuditError: no probe sample has an object box or mask.
    """
    for sample in probe.samples:
        if (sample.boxes is not None and len(sample.boxes)) or (
            sample.masks is not None and bool(sample.masks.any())
        ):
            return
    raise CamAuditError(
        f"discover=True needs object regions: none of the probe's {len(probe)} samples has an object box or "
        "mask (discovery looks for cues off the object, so it must know where the object is); give the probe "
        "boxes= or masks= (from_tensors), bbox/segmentation (from_coco), or object rows (from_csv), or audit "
        "with discover=False"
    )


@dataclass
class Spots:
    """One process's (or, gathered, every process's) candidates.

    Attributes:
        frame: one row per scored sample: ``index``, ``label``, ``target``, ``before`` (its decision),
            the object's box ``ox_min .. oy_max`` (NaN without an object), the image size, ``stride``,
            and ``spot`` (whether it has a candidate) with the candidate's geometry (``x_min .. y_max``,
            ``cx``, ``cy``, ``mass``; NaN without one).
        masks: the candidates' pixels, bit-packed, with the image's height and width, by probe position.
        features: the target layer's feature vector at each candidate's centre, unit length, by position.
    """

    frame: pd.DataFrame = field(default_factory=pd.DataFrame)
    masks: dict[int, tuple[np.ndarray, int, int]] = field(default_factory=dict)
    features: dict[int, np.ndarray] = field(default_factory=dict)

    @staticmethod
    def merged(parts: Sequence[Spots]) -> Spots:
        frames = [p.frame for p in parts if len(p.frame)]
        frame = pd.concat(frames, ignore_index=True).sort_values("index") if frames else pd.DataFrame()
        masks = {k: v for p in parts for k, v in p.masks.items()}
        return Spots(
            frame.reset_index(drop=True), masks, {k: v for p in parts for k, v in p.features.items()}
        )

    def mask(self, index: int, device: torch.device, size: tuple[int, int] | None = None) -> Tensor:
        """The candidate of the sample at probe position ``index`` (all False of ``size``, or of the probe's
        first image size, where it has none)."""
        if index not in self.masks:
            if size is None:
                size = int(self.frame["height"].iloc[0]), int(self.frame["width"].iloc[0])
            return torch.zeros(size, dtype=torch.bool, device=device)
        packed, height, width = self.masks[index]
        bits = np.unpackbits(packed, count=height * width).astype(bool).reshape(height, width)
        return torch.from_numpy(bits).to(device)


class SpotCollector:
    """Called after each scored batch (``(batch, maps, rows)``): records this process's candidates."""

    def __init__(self, engine: CamEngine, num_classes: int) -> None:
        self.engine, self.num_classes = engine, num_classes
        self.spots = Spots()
        self._frames: list[pd.DataFrame] = []

    def reset(self) -> None:
        self.spots, self._frames = Spots(), []

    def __call__(self, batch: ProbeBatch, maps: Tensor, rows: Mapping[str, Tensor]) -> None:
        height, width = maps.shape[-2:]
        stride = stride_of((height, width), self.engine.feature_size)
        regions = batch.regions.to(maps.device)
        targets = rows["target"].long()
        if self.engine.task == "multilabel":
            before = (rows["confidence"] > 0.5).long()
        else:
            before = rows["prediction"].long()
        maps, targets = self._decided(batch, maps, targets, before)
        # a map of a class outside the probe's (target="predicted", a model of more classes) gives none: a
        # cue is named by a probe class
        spots = hot_spots(maps, regions, stride) & (targets < self.num_classes).to(maps.device)[:, None, None]
        geometry = {k: v.cpu().numpy() for k, v in spot_geometry(maps, spots).items()}
        indices, pixels = batch.indices.cpu().numpy(), spots.reshape(len(spots), -1).cpu().numpy()
        frame = pd.DataFrame({
            "index": indices, "label": batch.labels.cpu().numpy(),
            "target": targets.cpu().numpy(), "before": before.cpu().numpy(),
            **_boxes(regions), "height": height, "width": width, "stride": stride, **geometry,
            "spot": pixels.any(axis=1),
        })  # fmt: skip
        for i in np.flatnonzero(frame["spot"].to_numpy()).tolist():
            self.spots.masks[int(indices[i])] = (np.packbits(pixels[i]), height, width)
        self._describe(frame, height, width)
        self._frames.append(frame)
        self.spots.frame = pd.concat(self._frames, ignore_index=True)

    def _decided(
        self, batch: ProbeBatch, maps: Tensor, targets: Tensor, before: Tensor
    ) -> tuple[Tensor, Tensor]:
        """The maps and classes candidates are looked for in: a sample the model decides as another probe
        class than the one explained (multiclass, binary) is looked at in the map of the class it decided,
        so a cue that pulls the model away from the label is seen where it pulls to (the label's map does
        not light up on it); the candidate then belongs to that class. A decision outside the probe's
        classes (a 1000-class model audited on a few of them) keeps the label's map: a cue is named by a
        probe class."""
        if self.engine.task == "multilabel":
            return maps, targets
        wrong = ((before != targets) & (before < self.num_classes)).nonzero()[:, 0]
        if not len(wrong):
            return maps, targets
        features = self.engine.last_features  # the whole batch's, for the candidates' descriptors
        decided = self.engine(batch.images[wrong.to(batch.images.device)], before[wrong])
        self.engine.last_features = features
        maps, targets = maps.clone(), targets.clone()
        maps[wrong.to(maps.device)] = decided.maps.to(maps)
        targets[wrong] = before[wrong]
        return maps, targets

    def _describe(self, frame: pd.DataFrame, height: int, width: int) -> None:
        """Keep the unit feature vector at the centre of each candidate (the engine's last features)."""
        features = self.engine.last_features
        if features is None:
            return
        cells_y, cells_x = features.shape[-2:]
        rows = np.flatnonzero(frame["spot"].to_numpy())
        if not len(rows):
            return
        cx, cy = frame["cx"].to_numpy()[rows], frame["cy"].to_numpy()[rows]
        ys = np.minimum((cy * cells_y / height).astype(np.int64), cells_y - 1)  # the cell the centre lies in
        xs = np.minimum((cx * cells_x / width).astype(np.int64), cells_x - 1)
        vectors = features[rows.tolist(), :, ys.tolist(), xs.tolist()].double()  # [spots, C], at once
        vectors = vectors / vectors.norm(dim=1, keepdim=True).clamp_min(1e-12)
        positions = frame["index"].to_numpy()[rows].tolist()
        self.spots.features.update(zip(positions, vectors.cpu().numpy().astype(np.float32), strict=True))


def _boxes(regions: Tensor) -> dict[str, np.ndarray]:
    """The object's box per sample (``ox_min .. oy_max``, exclusive maximum; NaN without an object)."""
    boxes = region_boxes(regions).cpu().double().numpy()
    return {k: boxes[:, i] for i, k in enumerate(("ox_min", "oy_min", "ox_max", "oy_max"))}


@dataclass
class Discovered:
    """What :func:`discover` returns: the cue table, each scored sample's cue (-1: none) and background
    outcomes, and the tested pairs (for the gallery)."""

    cues: pd.DataFrame
    cue_of: dict[int, int]
    backgrounds: dict[int, tuple[float, float]]
    pairs: pd.DataFrame
    spots: Spots


def discover(
    engine: CamEngine,
    probe: ProbeSet,
    mine: Spots,
    collectives: Collectives,
    *,
    indices: Sequence[int],
    batch_size: int,
    fill: Fill,
    device: torch.device,
    class_names: Sequence[str],
    min_samples: int = 1,
) -> Discovered:
    """Steps 2 and 3 (a collective call: run it on every process).

    Cues of fewer than ``min_samples`` samples (the policy's ``min_cue_samples``: they cannot be
    confirmed) are listed but not tested; of a larger cue the :data:`MAX_TESTED` strongest spots are.
    """
    spots = Spots.merged(collectives.gather(mine))
    frame = spots.frame
    if frame.empty:
        return Discovered(empty_cues(), {}, {}, pd.DataFrame(), spots)
    candidates = frame[frame["spot"]]
    height, width, stride = (int(frame[k].iloc[0]) for k in ("height", "width", "stride"))
    vectors = None
    if len(candidates) and all(int(i) in spots.features for i in candidates["index"]):
        vectors = np.stack([spots.features[int(i)] for i in candidates["index"]])
    grouped = group_spots(candidates, cluster_radius(stride, height, width), vectors)
    members = candidates.assign(cue=grouped["cue"], place=grouped["place"])[grouped["cue"] >= 0]
    tested = _tested(members, min_samples)
    own = set(int(i) for i in indices)
    tester = _Tester(engine, probe, spots, batch_size, fill, device)

    def work() -> tuple[pd.DataFrame, dict[int, tuple[float, float]]]:
        pairs = tester.cue_pairs(tested[tested["index"].isin(own)], frame)
        return pairs, tester.backgrounds(frame[frame["index"].isin(own)], frame)

    parts = collectives.gather(collectives.run_step("testing candidate cues", work))
    pairs = pd.concat([p[0] for p in parts], ignore_index=True).sort_values("index").reset_index(drop=True)
    backgrounds = {k: v for p in parts for k, v in p[1].items()}
    table = cue_table(members, pairs, class_names, height, width)
    cue_of = {int(i): int(c) for i, c in zip(members["index"], members["cue"], strict=True)}
    return Discovered(table, cue_of, backgrounds, pairs, spots)


#: Most spots of one cue that are tested (the strongest): enough to confirm a clear cue, and a bound on
#: the cost of a class with many candidates in a large probe.
MAX_TESTED = 32


def _tested(members: pd.DataFrame, min_samples: int) -> pd.DataFrame:
    """The members whose interventions are run: the strongest of each cue large enough to be confirmed."""
    _, at, sizes = np.unique(members["cue"].to_numpy(), return_inverse=True, return_counts=True)
    ranked = members[sizes[at] >= min_samples].sort_values(
        ["cue", "mass", "index"], ascending=[True, False, True]
    )
    cue = ranked["cue"].to_numpy()
    rank = np.arange(len(cue)) - np.searchsorted(cue, cue)  # each row's place within its cue, strongest 0
    return ranked[rank < MAX_TESTED].sort_values("index")


class _Tester:
    """Runs the matched interventions on one process's samples."""

    def __init__(self, engine: CamEngine, probe: ProbeSet, spots: Spots, batch_size: int, fill: Fill,
                 device: torch.device) -> None:  # fmt: skip
        self.engine, self.probe, self.spots = engine, probe, spots
        self.batch_size, self.fill, self.device = batch_size, fill, device

    def load(self, positions: Sequence[int]) -> ProbeBatch:
        return next(self.probe.batches(len(positions), indices=list(positions))).to(self.device)

    def masks(self, positions: Sequence[int]) -> Tensor:
        return torch.stack([self.spots.mask(int(p), self.device) for p in positions])

    def cue_pairs(self, members: pd.DataFrame, frame: pd.DataFrame) -> pd.DataFrame:
        """Fill and paste outcomes of each member, with its control's (members without a control place
        are left out)."""
        stride = int(frame["stride"].iloc[0])
        partner = cue_partners(members, frame, self.engine.task == "multilabel")
        rows = [
            self._chunk_pairs(members.iloc[start : start + self.batch_size], stride, partner)
            for start in range(0, len(members), self.batch_size)
        ]
        columns = ["index", "cue", "flip", "control_flip", "moved", "control_moved", "partner"]
        return pd.concat([pd.DataFrame(columns=columns), *rows], ignore_index=True)

    def _chunk_pairs(self, chunk: pd.DataFrame, stride: int, partner: Mapping[int, int]) -> pd.DataFrame:
        positions = chunk["index"].astype(int).tolist()
        batch, spots = self.load(positions), self.masks(positions)
        found = control_offsets(spots, batch.regions, stride)
        fits = [i for i, offset in enumerate(found) if offset is not None]
        if not fits:
            return pd.DataFrame()
        chunk, positions = chunk.iloc[fits], [positions[i] for i in fits]
        images, spots = batch.images[fits], spots[fits]
        offsets = torch.tensor([found[i] for i in fits], dtype=torch.long)
        controls = shift_each(spots, offsets)
        targets = torch.tensor(chunk["target"].to_numpy(dtype="int64"), device=self.device)
        before = torch.tensor(chunk["before"].to_numpy(dtype="int64"), device=self.device)
        task = self.engine.task
        flip, control_flip = fill_pairs(
            self.engine.predict, images, spots, controls, before, targets, self.fill, task
        )
        moved = torch.full_like(flip, math.nan)
        control_moved = moved.clone()
        has = [i for i, p in enumerate(positions) if p in partner]
        if has:
            mates = [partner[positions[i]] for i in has]
            moved[has], control_moved[has] = paste_pairs(
                self.engine.predict, images[has], spots[has], offsets[has], targets[has],
                self.load(mates).images, self.masks(mates), self.fill, task,
            )  # fmt: skip
        return pd.DataFrame({
            "index": positions, "cue": chunk["cue"].to_numpy(), "flip": flip.cpu().numpy(),
            "control_flip": control_flip.cpu().numpy(), "moved": moved.cpu().numpy(),
            "control_moved": control_moved.cpu().numpy(), "partner": [partner.get(p, -1) for p in positions],
        })  # fmt: skip

    def backgrounds(self, own: pd.DataFrame, frame: pd.DataFrame) -> dict[int, tuple[float, float]]:
        """``{position: (correct on a same-class background, correct on another class's)}``."""
        partners = background_partners(frame)
        positions = [int(p) for p in own["index"] if int(p) in partners]
        out: dict[int, tuple[float, float]] = {}
        margin = int(frame["stride"].iloc[0])
        for start in range(0, len(positions), self.batch_size):
            chunk = positions[start : start + self.batch_size]
            batch = self.load(chunk)
            same, other = [partners[p][0] for p in chunk], [partners[p][1] for p in chunk]
            distinct = sorted(set(same + other))  # a background taken by several objects is cleared once
            row = {p: i for i, p in enumerate(distinct)}
            backs = self.load(distinct)
            correct_same, correct_other = swap_pairs(
                self.engine.predict, batch.images, batch.regions, batch.labels, backs.images, backs.regions,
                torch.tensor([row[p] for p in same]), torch.tensor([row[p] for p in other]), margin,
                self.engine.task,
            )  # fmt: skip
            out.update(
                zip(chunk, zip(correct_same.tolist(), correct_other.tolist(), strict=True), strict=True)
            )
        return out


__all__ = ["Discovered", "SpotCollector", "Spots", "check_discoverable", "discover"]
