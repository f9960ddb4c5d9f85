"""The steps of an audit on one process: score probe batches, paste cues, hold the scores' states.

:class:`~cam_audit.pipeline.run.AuditRun` chains these steps with the collectives between them; nothing
here knows whether other processes take part, except that :class:`AuditScores` holds torchmetrics
states that sync when computed.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Literal

import pandas as pd
import torch
from torch import Tensor, nn
from torchmetrics import Metric

from cam_audit.cam import CamEngine, tasks
from cam_audit.counterfactual import Fill, fill_scores, paste_moves, paste_partners
from cam_audit.errors import CamAuditError
from cam_audit.keys import DISCOVERY_COLUMNS, REDUCED_COLUMNS, SCORES
from cam_audit.metrics import functional as F
from cam_audit.metrics.scores import check_labels, mean_or_nan, synced_states
from cam_audit.probe import ProbeBatch, ProbeSet

Target = Literal["label", "predicted"]
Method = Literal["gradcam++", "gradcam"]
#: Called with ``(batch, maps, rows)`` after each scored batch (a progress bar, overlays).
OnBatch = Callable[[ProbeBatch, Tensor, dict[str, Tensor]], None]

class AuditScores(Metric):
    """The sums behind every per-sample column of :data:`cam_audit.keys.SCORES` that the summary reduces,
    probe-wide and per class, in one set of torchmetrics states: ``[K]`` sums, counts of finite values and
    counts of NaN (degenerate) values for the ``K`` columns, and ``[K, C]`` the same per class.

    Every state is a sum, so under DDP each process scores its own slice of the probe and :meth:`summarise`
    (called on every process) returns the probe-wide numbers everywhere, from one sync of the six states.
    Each score is reduced as :class:`~cam_audit.metrics.MeanScore` reduces one column (``total / count``
    over the finite values, as float32); holding all columns in one metric spares an audit fourteen
    metrics to build, update and sync.
    """

    full_state_update = False
    total: Tensor
    count: Tensor
    degenerate: Tensor
    class_total: Tensor
    class_count: Tensor
    class_degenerate: Tensor

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.columns = REDUCED_COLUMNS
        self._row = {column: row for row, column in enumerate(self.columns)}
        k = len(self.columns)
        for name, shape in (("total", (k,)), ("class_total", (k, num_classes))):
            self.add_state(name, torch.zeros(shape, dtype=torch.float64), dist_reduce_fx="sum")
        for name, shape in (("count", (k,)), ("degenerate", (k,)), ("class_count", (k, num_classes)),
                            ("class_degenerate", (k, num_classes))):  # fmt: skip
            self.add_state(name, torch.zeros(shape, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, rows: Mapping[str, Tensor], labels: Tensor) -> None:
        """Add the samples' scores of every column in ``rows`` (the paste test's arrive on their own);
        ``labels`` ``[N]`` are the samples' classes. NaN counts as degenerate, an infinity is refused."""
        present = [column for column in self.columns if column in rows]
        if not present:
            return
        device = self.total.device
        values = torch.stack([rows[column].detach().to(device, torch.float64) for column in present])
        infinite = torch.isinf(values)
        if bool(infinite.any()):
            row, sample = (int(v) for v in infinite.nonzero()[0])
            raise CamAuditError(
                f"AuditScores.update: {present[row]}[{sample}] is infinite; only finite scores or NaN (a "
                "degenerate sample) can be averaged. Check how that score was computed."
            )
        labels = check_labels(labels, values.shape[1], self.num_classes, "AuditScores", device)
        finite = ~torch.isnan(values)
        kept = torch.where(finite, values, 0.0)
        at = torch.tensor([self._row[column] for column in present], device=device)
        self.total = self.total.index_add(0, at, kept.sum(dim=1))
        self.count = self.count.index_add(0, at, finite.sum(dim=1))
        self.degenerate = self.degenerate.index_add(0, at, (~finite).sum(dim=1))
        for name, per_sample in (("class_total", kept), ("class_count", finite.to(torch.int64)),
                                 ("class_degenerate", (~finite).to(torch.int64))):  # fmt: skip
            per_class = per_sample.new_zeros(len(present), self.num_classes).index_add_(1, labels, per_sample)
            setattr(self, name, getattr(self, name).index_add(0, at, per_class))

    def compute(self) -> dict[str, Tensor]:
        """The states by name (torchmetrics sums them over all processes around this call)."""
        return self._states()

    def _states(self) -> dict[str, Tensor]:
        return {name: getattr(self, name).clone() for name in self._defaults}

    def summarise(self, class_names: Sequence[str]) -> tuple[dict[str, float], pd.DataFrame]:
        """Probe-wide summary and per-class table, each score reduced as :data:`cam_audit.keys.SCORES`
        says (a collective call under DDP: call it on every rank)."""
        with synced_states(self):
            states = self._states()
        means = mean_or_nan(states["total"], states["count"]).tolist()
        class_means = mean_or_nan(states["class_total"], states["class_count"]).tolist()
        totals, counts, degenerate = (states[k].tolist() for k in ("total", "count", "degenerate"))
        summary: dict[str, float] = {}
        per_class: dict[str, list[float]] = {}
        for entry in SCORES:
            if entry.reduce == "cues":  # counted from the cue table by the run, not from the samples
                continue
            row = self._row[entry.column]
            if entry.reduce == "mean":
                summary[entry.summary] = means[row]
                per_class[entry.summary] = class_means[row]
            elif entry.reduce == "count":
                summary[entry.summary] = float(counts[row])
            elif entry.reduce == "degenerate":
                summary[entry.summary] = float(degenerate[row])
            else:  # "sum" of a 0/1 column
                summary[entry.summary] = float(totals[row])
        frame = pd.DataFrame(per_class, index=pd.Index(list(class_names), name="class"))
        return summary, frame


def score_batch(
    engine: CamEngine,
    batch: ProbeBatch,
    *,
    target: Target = "label",
    counterfactual: bool = True,
    fill: Fill = "blur",
    pointing_tolerance: int = 0,
    timings: dict[str, float] | None = None,
) -> tuple[dict[str, Tensor], Tensor]:
    """Maps and per-sample scores for one probe batch.

    Args:
        timings: when given, the seconds spent in the CAM engine and in the counterfactual forwards are
            added to its ``"attribution"`` and ``"counterfactual"`` entries (the device is synchronised
            around each, so GPU time is counted where it is spent).

    Returns:
        ``(rows, maps)``: ``rows`` maps each column of :data:`cam_audit.keys.REDUCED_COLUMNS` but
        ``cf_paste`` (the paste test pairs samples across batches: :func:`score_pastes`) plus
        ``target``, ``prediction``, ``confidence`` and ``area`` to a tensor [B]; ``maps`` is float32
        [B, H, W].
    """
    with stopwatch(timings, "attribution", batch.images.device):
        result = engine(batch.images, batch.labels if target == "label" else "predicted")
    maps = result.maps
    regions = batch.regions.to(maps.device)
    spurious = batch.spurious.to(maps.device)
    has_spurious = batch.has_spurious.to(maps.device)
    prediction = tasks.predictions(result.logits, result.task).to(maps.device)
    labels = batch.labels.to(maps.device)
    nan = torch.full_like(prediction, float("nan"), dtype=torch.float32)

    # each call checks the maps once and shares its sums among its scores
    focus = F.localisation(maps, regions, tolerance=pointing_tolerance)
    cue = F.localisation(maps, spurious, ("area_fraction", "relevance_mass", "mass_lift"))
    rows = {
        "target": result.targets,
        "prediction": prediction,
        "confidence": tasks.confidence(result.logits, result.targets, result.task).to(maps.device),
        "correct": tasks.decides_for(result.logits, labels, result.task).float().to(maps.device),
        "area": focus["area_fraction"],
        "focus": focus["relevance_mass"],
        "focus_lift": focus["mass_lift"],
        "pointing_game": focus["pointing_game"],
        "relevance_rank": focus["relevance_rank"],
        "spurious_area": torch.where(has_spurious, cue["area_fraction"], nan),
        "spurious_mass": torch.where(has_spurious, cue["relevance_mass"], nan),
        "spurious_lift": torch.where(has_spurious, cue["mass_lift"], nan),
        "has_spurious": has_spurious.float(),
    }
    if counterfactual:
        images = batch.images.to(maps.device)
        with stopwatch(timings, "counterfactual", images.device), torch.inference_mode():
            targets, logits = result.targets, result.logits
            rows.update(fill_scores(engine.predict, images, spurious, targets, logits, fill, result.task))
    else:
        rows.update({"cf_flip": nan, "cf_confidence_drop": nan})
    return rows, maps


def score_probe(
    engine: CamEngine,
    probe: ProbeSet,
    scores: AuditScores,
    *,
    indices: Sequence[int] | None = None,
    batch_size: int = 64,
    target: Target = "label",
    counterfactual: bool = True,
    fill: Fill = "blur",
    pointing_tolerance: int = 0,
    device: torch.device | str | None = None,
    on_batch: OnBatch | None = None,
    timings: dict[str, float] | None = None,
) -> pd.DataFrame:
    """Score probe samples in batches, adding them to ``scores``; returns one row per sample.

    The paste test is not run here: it pairs samples across batches (and processes), so it follows
    once every sample's prediction is known (:func:`score_pastes`).

    Args:
        engine: the CAM engine around the model.
        probe: the probe set.
        scores: states the scores are added to.
        indices: which probe samples (default: all), e.g. one process's batches under DDP.
        batch_size: samples per forward pass; memory stays flat in the probe's size.
        target: explain the ground-truth ``"label"`` or the ``"predicted"`` class.
        counterfactual: run the fill test on samples with spurious regions.
        fill: how the spurious region is filled (see :func:`~cam_audit.counterfactual.fill_region`).
        pointing_tolerance: pixels of slack for the pointing game.
        device: where to run (default: the model's device).
        on_batch: called with ``(batch, maps, rows)`` after each batch (e.g. to draw overlays).
        timings: seconds in the CAM engine and the counterfactual forwards are added to its
            ``"attribution"`` and ``"counterfactual"`` entries (see :func:`score_batch`).
    """
    device = torch.device(device) if device is not None else model_device(engine.model)
    frames = []
    for batch in probe.batches(batch_size, indices=indices):
        batch = batch.to(device)
        rows, maps = score_batch(
            engine,
            batch,
            target=target,
            counterfactual=counterfactual,
            fill=fill,
            pointing_tolerance=pointing_tolerance,
            timings=timings,
        )
        scores.update(rows, batch.labels)
        if on_batch is not None:
            on_batch(batch, maps, rows)
        frames.append(_rows_frame(batch, rows))
    if frames:
        return pd.concat(frames, ignore_index=True)
    later = ("cf_paste", *DISCOVERY_COLUMNS)  # added by the paste test and by discovery
    columns = ["index", "sample_id", "label", *(c for c in REDUCED_COLUMNS if c not in later)]
    return pd.DataFrame(columns=columns)


def _rows_frame(batch: ProbeBatch, rows: dict[str, Tensor]) -> pd.DataFrame:
    frame = pd.DataFrame({k: v.detach().cpu().numpy() for k, v in rows.items()})
    frame.insert(0, "label", batch.labels.cpu().numpy())
    frame.insert(0, "sample_id", list(batch.sample_ids))
    frame.insert(0, "index", batch.indices.cpu().numpy())
    return frame


def score_pastes(
    engine: CamEngine,
    probe: ProbeSet,
    scores: AuditScores,
    scored: pd.DataFrame,
    *,
    indices: Sequence[int],
    counterfactual: bool = True,
    batch_size: int = 64,
    fill: Fill = "blur",
    device: torch.device | str | None = None,
    timings: dict[str, float] | None = None,
) -> dict[int, float]:
    """The paste test for the samples at ``indices``, adding their ``cf_paste`` to ``scores``.

    Partners are chosen by :func:`~cam_audit.counterfactual.paste_partners` among all rows of
    ``scored`` (every process's rows under DDP) in probe order, so they do not depend on the batch size or
    on the split across processes. Every sample at ``indices`` is added to ``scores`` once: 1.0 where
    the pasted cue moved its partner to the sample's class, 0.0 where it did not, NaN where the sample
    has no cue or no partner (or ``counterfactual`` is off) and where a multi-label partner had the
    class on already (see :func:`~cam_audit.counterfactual.paste_moves`).

    Args:
        scored: per-sample rows with ``index``, ``label``, ``prediction`` and ``has_spurious``.
        indices: the probe positions whose cue this process pastes (each must be a row of ``scored``).

    Returns:
        ``{probe position: cf_paste}`` for ``indices``.
    """
    device = torch.device(device) if device is not None else model_device(engine.model)
    values = {int(position): float("nan") for position in indices}
    table = scored.sort_values("index")
    if counterfactual and len(table):
        positions = table["index"].to_numpy(dtype="int64")
        # torch.tensor copies: pandas hands out read-only arrays, which torch.as_tensor warns about
        partner_rows = paste_partners(
            torch.tensor(table["label"].to_numpy(dtype="int64")),
            torch.tensor(table["has_spurious"].to_numpy(dtype="float64") > 0),
            torch.tensor(table["prediction"].to_numpy(dtype="int64")),
        ).tolist()
        partner_of = {int(positions[r]): int(positions[p]) for r, p in enumerate(partner_rows) if p >= 0}
        sources = [position for position in values if position in partner_of]
        for start in range(0, len(sources), batch_size):
            chunk = sources[start : start + batch_size]
            source = next(probe.batches(len(chunk), indices=chunk)).to(device)
            partner = next(probe.batches(len(chunk), [partner_of[p] for p in chunk])).to(device)
            with stopwatch(timings, "counterfactual", device), torch.inference_mode():
                moved = paste_moves(
                    engine.predict,
                    source.images,
                    source.spurious,
                    source.labels,
                    partner.images,
                    partner.spurious,
                    fill,
                    engine.task,
                )
            values.update(zip(chunk, moved.tolist(), strict=True))
    labels = [probe.samples[position].label for position in values]
    if values:
        scores.update(
            {"cf_paste": torch.tensor(list(values.values()), dtype=torch.float64)},
            torch.tensor(labels, dtype=torch.long),
        )
    return values


def with_pastes(samples: pd.DataFrame, pastes: dict[int, float]) -> pd.DataFrame:
    """``samples`` with a ``cf_paste`` column (after ``cf_confidence_drop``) from ``{position: value}``."""
    samples = samples.copy()
    column = samples["index"].astype(int).map(pastes).astype(float)
    position = list(samples.columns).index("cf_confidence_drop") + 1
    samples.insert(position, "cf_paste", column)
    return samples


def model_fingerprint(model: nn.Module) -> str:
    """A short hash of the model's parameters and buffers (changes whenever a weight changes)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        if isinstance(tensor, Tensor):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().data)
    return digest.hexdigest()[:16]


@contextmanager
def stopwatch(timings: dict[str, float] | None, key: str, device: torch.device) -> Iterator[None]:
    """Add the seconds the block takes to ``timings[key]`` (CUDA synchronised at both ends)."""
    if timings is None:
        yield
        return
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    try:
        yield
    finally:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        timings[key] = timings.get(key, 0.0) + time.perf_counter() - started


def model_device(model: nn.Module) -> torch.device:
    for parameter in model.parameters():
        return parameter.device
    for buffer in model.buffers():
        return buffer.device
    return torch.device("cpu")


__all__ = [
    "AuditScores",
    "OnBatch",
    "model_device",
    "model_fingerprint",
    "score_batch",
    "score_pastes",
    "score_probe",
    "stopwatch",
    "with_pastes",
]
