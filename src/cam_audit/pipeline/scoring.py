"""Audit a model on a probe set: Grad-CAM++ maps, scores, counterfactuals and a verdict, without Lightning.

The same two steps serve :func:`audit` and the Lightning callback:

1. :func:`score_probe` streams (a slice of) the probe through the :class:`~cam_audit.cam.CamEngine` in
   batches, computes per-sample scores and adds them to an :class:`AuditScores` (torchmetrics states,
   so processes can be synced).
2. :func:`build_report` turns the (synced) states and the per-sample rows into an
   :class:`~cam_audit.report.AuditReport` judged by a :class:`~cam_audit.report.ShortcutPolicy`.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import pandas as pd
import torch
from torch import Tensor, nn

from cam_audit.cam import CamEngine
from cam_audit.cam.isolation import eval_mode_untouched
from cam_audit.counterfactual import Fill, fill_scores, paste_moves, paste_partners
from cam_audit.errors import CamAuditError
from cam_audit.metrics import MeanScore
from cam_audit.metrics import functional as F
from cam_audit.probe import ProbeBatch, ProbeSet
from cam_audit.report import AuditReport, ShortcutPolicy

Target = Literal["label", "predicted"]
Method = Literal["gradcam++", "gradcam"]

#: Per-sample columns averaged into the summary (NaN samples are counted, not averaged).
SCORE_KEYS = (
    "focus",
    "focus_lift",
    "pointing_game",
    "relevance_rank",
    "spurious_mass",
    "spurious_lift",
    "cf_flip",
    "cf_confidence_drop",
    "cf_paste",
    "correct",
    "has_spurious",
)
#: Summary names of the averaged columns where they differ from the column name.
SUMMARY_NAMES = {"cf_flip": "cf_flip_rate", "cf_paste": "cf_paste_rate", "correct": "accuracy"}


class AuditScores(nn.Module):
    """One :class:`~cam_audit.metrics.MeanScore` per score column, probe-wide and per class.

    Every state is a sum, so under DDP each process scores its own slice of the probe and
    :meth:`compute` (called on every process) returns the probe-wide numbers everywhere.
    """

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.scores = nn.ModuleDict({key: MeanScore(num_classes=num_classes) for key in SCORE_KEYS})

    def update(self, rows: dict[str, Tensor], labels: Tensor) -> None:
        """Add the samples' scores of every key in ``rows`` (the paste test's arrive on their own)."""
        for key, metric in self.scores.items():
            if key in rows:
                metric.update(rows[key].to(metric.device, torch.float64), labels.to(metric.device))

    def reset(self) -> None:
        for metric in self.scores.values():
            metric.reset()

    def compute(self, class_names: Sequence[str]) -> tuple[dict[str, float], pd.DataFrame]:
        """Probe-wide summary and per-class table (a collective call under DDP: call it on every rank)."""
        summary: dict[str, float] = {}
        per_class: dict[str, list[float]] = {}
        for key, metric in self.scores.items():
            name = SUMMARY_NAMES.get(key, key)
            summary[name] = float(metric.compute())
            per_class[name] = metric.compute_per_class().tolist()
        # has_spurious is 0/1 for every sample, so its count is the number of samples and its mean the
        # share carrying a spurious region.
        presence = self.scores["has_spurious"]
        n_samples = int(presence.compute_count())
        summary["n_samples"] = float(n_samples)
        summary["n_degenerate"] = float(self.scores["focus"].compute_degenerate())
        summary["n_spurious"] = float(round(summary.pop("has_spurious") * n_samples)) if n_samples else 0.0
        per_class.pop("has_spurious")
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
        ``(rows, maps)``: ``rows`` maps each column of :data:`SCORE_KEYS` but ``cf_paste`` (the paste
        test pairs samples across batches: :func:`score_pastes`) plus ``target``,
        ``prediction``, ``confidence`` and ``area`` to a tensor [B]; ``maps`` is float32 [B, H, W].
    """
    with _stopwatch(timings, "attribution", batch.images.device):
        result = engine(batch.images, batch.labels if target == "label" else "predicted")
    maps = result.maps
    regions = batch.regions.to(maps.device)
    spurious = batch.spurious.to(maps.device)
    has_spurious = batch.has_spurious.to(maps.device)
    probs = result.logits.float().softmax(dim=1)
    prediction = probs.argmax(dim=1)
    labels = batch.labels.to(maps.device)
    nan = torch.full_like(prediction, float("nan"), dtype=torch.float32)

    # lift = mass / area (F.mass_lift's definition), derived here so each mass is computed once
    area, focus = F.area_fraction(regions), F.relevance_mass(maps, regions)
    spurious_area = torch.where(has_spurious, F.area_fraction(spurious), nan)
    spurious_mass = torch.where(has_spurious, F.relevance_mass(maps, spurious), nan)
    rows = {
        "target": result.targets,
        "prediction": prediction,
        "confidence": probs.gather(1, result.targets[:, None].to(probs.device)).squeeze(1),
        "correct": (prediction == labels).float(),
        "area": area,
        "focus": focus,
        "focus_lift": focus / area,
        "pointing_game": F.pointing_game(maps, regions, tolerance=pointing_tolerance),
        "relevance_rank": F.relevance_rank(maps, regions),
        "spurious_area": spurious_area,
        "spurious_mass": spurious_mass,
        "spurious_lift": spurious_mass / spurious_area,
        "has_spurious": has_spurious.float(),
    }
    if counterfactual:
        model = engine.model
        images = batch.images.to(maps.device)
        with (
            _stopwatch(timings, "counterfactual", images.device),
            torch.inference_mode(),
            eval_mode_untouched(model, images.device),
        ):
            rows.update(fill_scores(model, images, spurious, result.targets, result.logits, fill))
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
    paste: bool = True,
    fill: Fill = "blur",
    pointing_tolerance: int = 0,
    device: torch.device | str | None = None,
    on_batch: Callable[[ProbeBatch, Tensor, dict[str, Tensor]], None] | None = None,
    timings: dict[str, float] | None = None,
) -> pd.DataFrame:
    """Score probe samples in batches, adding them to ``scores``; returns one row per sample.

    Args:
        engine: the CAM engine around the model.
        probe: the probe set.
        scores: states the scores are added to.
        indices: which probe samples (default: all), e.g. one process's batches under DDP.
        batch_size: samples per forward pass; memory stays flat in the probe's size.
        target: explain the ground-truth ``"label"`` or the ``"predicted"`` class.
        counterfactual: run the fill and paste tests on samples with spurious regions.
        paste: run the paste test here, with partners among the samples scored here (see
            :func:`score_pastes`); ``False`` leaves the ``cf_paste`` column out, for a caller that first
            gathers every process's rows and then calls :func:`score_pastes` itself.
        fill: how the spurious region is filled (see :func:`~cam_audit.counterfactual.fill_region`).
        pointing_tolerance: pixels of slack for the pointing game.
        device: where to run (default: the model's device).
        on_batch: called with ``(batch, maps, rows)`` after each batch (e.g. to draw overlays).
        timings: seconds in the CAM engine and the counterfactual forwards are added to its
            ``"attribution"`` and ``"counterfactual"`` entries (see :func:`score_batch`).
    """
    if batch_size < 1:
        raise CamAuditError(f"batch_size must be >= 1, got {batch_size}")
    device = torch.device(device) if device is not None else _model_device(engine.model)
    frames = []
    for batch in probe.batches(batch_size, indices=indices):
        batch = _to_device(batch, device)
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
        frame = pd.DataFrame({k: v.detach().cpu().numpy() for k, v in rows.items()})
        frame.insert(0, "label", batch.labels.cpu().numpy())
        frame.insert(0, "sample_id", list(batch.sample_ids))
        frame.insert(0, "index", batch.indices.cpu().numpy())
        frames.append(frame)
    columns = ["index", "sample_id", "label", *(k for k in SCORE_KEYS if k != "cf_paste")]
    samples = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    if not paste:
        return samples
    mine = samples["index"].astype(int).tolist()
    pastes = score_pastes(
        engine,
        probe,
        scores,
        samples,
        indices=mine,
        counterfactual=counterfactual,
        batch_size=batch_size,
        fill=fill,
        device=device,
        timings=timings,
    )
    return with_pastes(samples, pastes)


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
    has no cue or no partner (or ``counterfactual`` is off).

    Args:
        scored: per-sample rows with ``index``, ``label``, ``prediction`` and ``has_spurious``.
        indices: the probe positions whose cue this process pastes (each must be a row of ``scored``).

    Returns:
        ``{probe position: cf_paste}`` for ``indices``.
    """
    device = torch.device(device) if device is not None else _model_device(engine.model)
    values = {int(position): float("nan") for position in indices}
    table = scored.sort_values("index")
    if counterfactual and len(table):
        positions = table["index"].to_numpy(dtype="int64")
        partner_rows = paste_partners(
            torch.as_tensor(table["label"].to_numpy(dtype="int64")),
            torch.as_tensor(table["has_spurious"].to_numpy(dtype="float64") > 0),
            torch.as_tensor(table["prediction"].to_numpy(dtype="int64")),
        ).tolist()
        partner_of = {int(positions[r]): int(positions[p]) for r, p in enumerate(partner_rows) if p >= 0}
        sources = [position for position in values if position in partner_of]
        model = engine.model
        for start in range(0, len(sources), batch_size):
            chunk = sources[start : start + batch_size]
            source = _to_device(next(probe.batches(len(chunk), indices=chunk)), device)
            partner = _to_device(next(probe.batches(len(chunk), [partner_of[p] for p in chunk])), device)
            with (
                _stopwatch(timings, "counterfactual", device),
                torch.inference_mode(),
                eval_mode_untouched(model, device),
            ):
                moved = paste_moves(
                    model,
                    source.images,
                    source.spurious,
                    source.labels,
                    partner.images,
                    partner.spurious,
                    fill,
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
    samples.insert(samples.columns.get_loc("cf_confidence_drop") + 1, "cf_paste", column)
    return samples


def build_report(
    scores: AuditScores,
    samples: pd.DataFrame,
    probe: ProbeSet,
    policy: ShortcutPolicy,
    *,
    best_focus_lift: float | None = None,
    meta: dict[str, Any] | None = None,
) -> AuditReport:
    """Summary (synced), per-class table and verdict; a collective call under DDP."""
    names = class_names(probe)
    summary, per_class = scores.compute(names)
    samples = samples.sort_values("index").reset_index(drop=True)
    samples.insert(3, "class", [names[int(i)] for i in samples["label"]])
    by_class = samples.groupby("label")
    per_class["n_samples"] = by_class.size().reindex(range(len(names)), fill_value=0).to_numpy(dtype=float)
    per_class["n_scored"] = (
        by_class["focus"].count().reindex(range(len(names)), fill_value=0).to_numpy(dtype=float)
    )
    verdict = policy.evaluate(summary, per_class, best_focus_lift)
    return AuditReport(summary, samples, per_class, verdict, policy, dict(meta or {}))


def audit(
    model: nn.Module,
    probe: ProbeSet,
    target_layer: str | nn.Module | None = None,
    method: Method = "gradcam++",
    target: Target = "label",
    batch_size: int = 64,
    policy: ShortcutPolicy | None = None,
    counterfactual: bool = True,
    *,
    fill: Fill = "blur",
    pointing_tolerance: int = 0,
    reshape_transform: Callable[[Tensor], Tensor] | None = None,
    device: torch.device | str | None = None,
    on_batch: Callable[[ProbeBatch, Tensor, dict[str, Tensor]], None] | None = None,
) -> AuditReport:
    """Audit ``model`` on ``probe``: where do its Grad-CAM++ maps fall, and does a spurious cue decide?

    The model is left as it was: each submodule's ``training`` flag, parameters, gradients, buffers and
    the RNG state are untouched (see :class:`~cam_audit.cam.CamEngine`).

    Args:
        model: an image classifier ``images [N,3,H,W] -> logits [N,K]``.
        probe: the probe set with object (and optionally spurious) regions.
        target_layer: dotted name, module, or None for the last layer with a spatial output.
        method: ``"gradcam++"`` (default) or ``"gradcam"``.
        target: explain the ground-truth ``"label"`` or the ``"predicted"`` class.
        batch_size: samples per forward pass.
        policy: thresholds for the verdict (default :class:`~cam_audit.report.ShortcutPolicy`).
        counterfactual: run the fill and paste tests on samples with spurious regions.
        fill: ``"blur"``, ``"mean"`` or a callable ``(images, regions) -> images``.
        pointing_tolerance: pixels of slack for the pointing game.
        reshape_transform: turns a token layer's output into [N, C, h, w] (ViTs).
        device: where to run (default: the model's device).
        on_batch: called with ``(batch, maps, rows)`` after each batch (a progress bar, overlays).

    Returns:
        An :class:`~cam_audit.report.AuditReport`. Its ``meta`` carries the cost: ``seconds`` (the whole
        audit), ``attribution_seconds`` (Grad-CAM++ forward and backward passes) and
        ``counterfactual_seconds`` (the fill and paste forwards).
    """
    _check_choice("method", method, ("gradcam++", "gradcam"))
    _check_choice("target", target, ("label", "predicted"))
    policy = policy if policy is not None else ShortcutPolicy()
    engine = CamEngine(model, target_layer=target_layer, method=method, reshape_transform=reshape_transform)
    scores = AuditScores(num_classes=len(class_names(probe)))
    timings = {"attribution": 0.0, "counterfactual": 0.0}
    started = time.perf_counter()
    samples = score_probe(
        engine,
        probe,
        scores,
        batch_size=batch_size,
        target=target,
        counterfactual=counterfactual,
        fill=fill,
        pointing_tolerance=pointing_tolerance,
        device=device,
        timings=timings,
        on_batch=on_batch,
    )
    meta = {
        "target_layer": engine.layer_name,
        "method": method,
        "target": target,
        "seconds": time.perf_counter() - started,
        "attribution_seconds": timings["attribution"],
        "counterfactual_seconds": timings["counterfactual"],
        "probe_fingerprint": probe.fingerprint(),
        "model_fingerprint": model_fingerprint(model),
        "model_class": type(model).__name__,
    }
    return build_report(scores, samples, probe, policy, meta=meta)


def class_names(probe: ProbeSet) -> list[str]:
    """The probe's class names, or ``"0"``, ``"1"``, ... when it has none."""
    if probe.classes is not None:
        return [str(c) for c in probe.classes]
    return [str(i) for i in range(probe.num_classes)]


def model_fingerprint(model: nn.Module) -> str:
    """A short hash of the model's parameters and buffers (changes whenever a weight changes)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        if isinstance(tensor, Tensor):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()[:16]


@contextmanager
def _stopwatch(timings: dict[str, float] | None, key: str, device: torch.device) -> Iterator[None]:
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


def _model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def _to_device(batch: ProbeBatch, device: torch.device) -> ProbeBatch:
    return ProbeBatch(
        images=batch.images.to(device),
        labels=batch.labels.to(device),
        regions=batch.regions.to(device),
        spurious=batch.spurious.to(device),
        has_spurious=batch.has_spurious.to(device),
        indices=batch.indices,
        sample_ids=batch.sample_ids,
    )


def _check_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise CamAuditError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")


__all__ = [
    "SCORE_KEYS",
    "AuditScores",
    "audit",
    "build_report",
    "class_names",
    "score_batch",
    "score_pastes",
    "score_probe",
    "with_pastes",
]
