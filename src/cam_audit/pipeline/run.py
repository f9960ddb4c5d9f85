"""``AuditRun``: the one audit pipeline, score -> counterfactual -> finish, for every front end.

:func:`~cam_audit.pipeline.audit` and the Lightning callback both build an :class:`AuditRun` and call it;
they differ only in the :class:`~cam_audit.pipeline.collectives.Collectives` they pass (one process, or
the Trainer's processes), the engine they build (the callback's runs the model in the Trainer's
precision) and the ``meta`` they add.

1. **score**: each process scores its whole batches of the probe (maps, focus, spurious mass, the fill
   test), then the per-sample rows of every process are gathered.
2. **counterfactual**: paste partners are chosen among all scored samples in probe order, so they do not
   depend on the batch size or the split across processes; each process pastes its own samples' cues,
   and the results are gathered.
3. **finish**: the states are synced, reduced into the summary and per-class table, and judged.
"""

from __future__ import annotations

import functools
import importlib.metadata
import math
import time
import warnings
from collections.abc import Sequence
from typing import Any

import pandas as pd
import torch

from cam_audit.cam import CamEngine, tasks
from cam_audit.counterfactual import Fill
from cam_audit.errors import CamAuditError
from cam_audit.keys import DISCOVERY_COLUMNS
from cam_audit.pipeline import scoring
from cam_audit.pipeline.collectives import Collectives, LocalCollectives, rank_indices
from cam_audit.pipeline.discovery import Discovered, SpotCollector, check_discoverable, discover
from cam_audit.pipeline.scoring import AuditScores, OnBatch, Target, model_device, model_fingerprint
from cam_audit.probe import ProbeSet
from cam_audit.report import AuditReport, ShortcutPolicy
from cam_audit.report.cues import empty_cues


class AuditRun:
    """One audit of ``engine.model`` on ``probe``, judged by ``policy``.

    Args:
        engine: the CAM engine around the model.
        probe: the probe set.
        policy: the thresholds of the verdict.
        target: explain the ground-truth ``"label"`` or the ``"predicted"`` class.
        batch_size: probe samples per forward pass.
        counterfactual: run the fill and paste tests on samples with spurious regions.
        fill: how spurious regions are filled (``"blur"``, ``"mean"`` or a callable).
        pointing_tolerance: pixels of slack for the pointing game.
        device: where to run (default: the model's device).
        collectives: the processes auditing together (default: this one alone).
        on_batch: called with ``(batch, maps, rows)`` after each scored batch.
        probe_fingerprint: the probe's hash when already known (hashing a large probe takes time).
        discover: look for cues nobody annotated, off the object regions, and confirm them with matched
            controls (:mod:`cam_audit.pipeline.discovery`); runs with the counterfactual tests only.

    >>> from cam_audit.synthetic import SceneNet, make_scenes
    >>> probe = make_scenes(6, seed=1).to_probe()
    >>> run = AuditRun(CamEngine(SceneNet(width=4), "features"), probe, ShortcutPolicy(), batch_size=4)
    >>> report = run()
    >>> int(report.summary["n_samples"]), len(report.samples)
    (6, 6)
    """

    def __init__(
        self,
        engine: CamEngine,
        probe: ProbeSet,
        policy: ShortcutPolicy,
        *,
        target: Target = "label",
        batch_size: int = 64,
        counterfactual: bool = True,
        fill: Fill = "blur",
        pointing_tolerance: int = 0,
        device: torch.device | str | None = None,
        collectives: Collectives | None = None,
        on_batch: OnBatch | None = None,
        probe_fingerprint: str | None = None,
        discover: bool = False,
    ) -> None:
        self.engine = engine
        self.probe = probe
        self.policy = policy
        self.target = target
        self.batch_size = batch_size
        self.counterfactual = counterfactual
        self.fill = fill
        self.pointing_tolerance = pointing_tolerance
        self.device = torch.device(device) if device is not None else model_device(engine.model)
        self.collectives = collectives if collectives is not None else LocalCollectives()
        self.on_batch = on_batch
        self.probe_fingerprint = probe_fingerprint or probe.fingerprint()
        self.class_names = probe.class_names()
        self.scores = AuditScores(num_classes=len(self.class_names)).to(self.device)
        self.timings = {"attribution": 0.0, "counterfactual": 0.0, "discovery": 0.0}
        if discover:
            check_discoverable(probe)
            engine.keep_features = True
        self.discover = discover
        self.spots = SpotCollector(engine, len(self.class_names))
        #: The last audit's discovery (None when it did not run): cues, tested pairs, candidates.
        self.discovered: Discovered | None = None

    @property
    def discovering(self) -> bool:
        """Whether this run looks for cues (discovery rides on the counterfactual tests)."""
        return self.discover and self.counterfactual

    def to(self, device: torch.device | str) -> AuditRun:
        """Run on ``device`` from now on (a Trainer moves the model after the callback's ``setup``)."""
        self.device = torch.device(device)
        self.scores.to(self.device)
        return self

    def check_model(self) -> None:
        """One probe sample through the engine, as the audit runs it (dtype, forward, precision): a bad
        layer, a wrong task, or logits that cannot cover every probe class fail now rather than after an
        epoch of training (nothing runs for an empty probe). The sample's prediction is explained, so
        that a probe with more classes than the model is told as such rather than as a bad label."""
        if len(self.probe) == 0:
            return
        batch = next(iter(self.probe.batches(1))).to(self.device)
        try:
            logits = self.engine(batch.images, "predicted").logits
        except CamAuditError:
            raise
        except Exception as error:  # the user's model failed on a probe image: say how it was called
            raise CamAuditError(
                f"{type(self.engine.model).__name__} failed on probe sample {batch.sample_ids[0]!r} (images "
                f"{tuple(batch.images.shape)}, cast to the model's dtype) with {type(error).__name__}: "
                f"{error}; if its forward takes a dict or extra inputs, pass forward=(model, images) -> "
                "logits, and check that the probe images have the channels and size the model expects"
            ) from error
        self._check_classes(tuple(logits.shape))

    def _check_classes(self, shape: tuple[int, ...]) -> None:
        """The model's classes against the probe's: fewer is an error, more a warning when the probe names
        its classes (names sorted from the files leave out a class the probe lacks, shifting the rest)."""
        task, names = self.engine.task, self.class_names
        decided = tasks.num_classes(task, shape[1])
        if decided < len(names):
            expected = "one logit for classes 0 and 1" if task == "binary" else "[N, num_classes] logits"
            raise CamAuditError(
                f"the model returns logits of shape {shape} (task {task!r}) but the probe has {len(names)} "
                f"classes ({', '.join(names)}); the model must return {expected} covering every probe "
                "class: check the probe's class names for a typo or an extra class, or pass classes=[...] "
                "(categories= for COCO) in the model's output order"
            )
        if decided > len(names) and self.probe.classes is not None:
            warnings.warn(
                f"the probe has {len(names)} classes ({', '.join(names)}) but the model decides among "
                f"{decided}: probe class k is scored as the model's output k. If these are not the model's "
                f"first {len(names)} classes in its output order (class names sorted from the probe's files "
                "leave out a class it has no sample of), pass classes=[...] (categories= for COCO) in the "
                "model's output order",
                UserWarning,
                stacklevel=4,
            )

    def __call__(
        self,
        *,
        indices: Sequence[int] | None = None,
        best_focus_lift: float | None = None,
        meta: dict[str, Any] | None = None,
    ) -> AuditReport:
        """Run the three steps; ``indices`` are this process's probe positions (default: its whole
        batches, :func:`~cam_audit.pipeline.collectives.rank_indices`); ``meta`` is added to the report's.
        """
        started = time.perf_counter()
        if indices is None:
            world = self.collectives
            indices = rank_indices(len(self.probe), self.batch_size, world.rank, world.world_size)
        self.scores.reset()
        self.timings = {"attribution": 0.0, "counterfactual": 0.0, "discovery": 0.0}
        self.spots.reset()
        self.discovered = None
        samples = self.score(indices)
        samples = self.paste(samples, indices)
        samples = self.find_cues(samples, indices)
        self.engine.last_features = None  # discovery's descriptors are taken; hold no features between audits
        meta = {**self.meta(best_focus_lift), **(meta or {}), "seconds": time.perf_counter() - started}
        return self.finish(samples, best_focus_lift=best_focus_lift, meta=meta)

    def score(self, indices: Sequence[int]) -> pd.DataFrame:
        """Step 1: score this process's samples; returns every process's rows."""

        def on_batch(batch: Any, maps: Any, rows: Any) -> None:
            if self.discovering:
                started = time.perf_counter()
                self.spots(batch, maps, rows)
                self.timings["discovery"] += time.perf_counter() - started
            if self.on_batch is not None:
                self.on_batch(batch, maps, rows)

        def work() -> pd.DataFrame:
            return scoring.score_probe(
                self.engine,
                self.probe,
                self.scores,
                indices=indices,
                batch_size=self.batch_size,
                target=self.target,
                counterfactual=self.counterfactual,
                fill=self.fill,
                pointing_tolerance=self.pointing_tolerance,
                device=self.device,
                on_batch=on_batch,
                timings=self.timings,
            )

        mine = self.collectives.run_step("scoring its slice of the probe", work)
        return pd.concat(self.collectives.gather(mine), ignore_index=True)

    def paste(self, samples: pd.DataFrame, indices: Sequence[int]) -> pd.DataFrame:
        """Step 2: the paste test for this process's samples, partners chosen among all ``samples``;
        returns ``samples`` with every process's ``cf_paste``."""

        def work() -> dict[int, float]:
            return scoring.score_pastes(
                self.engine,
                self.probe,
                self.scores,
                samples,
                indices=indices,
                counterfactual=self.counterfactual,
                batch_size=self.batch_size,
                fill=self.fill,
                device=self.device,
                timings=self.timings,
            )

        mine = self.collectives.run_step("pasting its cues into other samples", work)
        pastes = {k: v for part in self.collectives.gather(mine) for k, v in part.items()}
        return scoring.with_pastes(samples, pastes)

    def find_cues(self, samples: pd.DataFrame, indices: Sequence[int]) -> pd.DataFrame:
        """Step 2b (with ``discover``): candidate cues, their matched tests and the background swap;
        returns ``samples`` with ``cue``, ``bg_same``, ``bg_other`` and ``bg_gap`` (NaN without discovery)."""
        samples = samples.copy()
        if not self.discovering:
            for column in DISCOVERY_COLUMNS:
                samples[column] = math.nan
            self._add_discovery_scores(samples, indices)
            return samples
        started = time.perf_counter()
        found = discover(
            self.engine, self.probe, self.spots.spots, self.collectives, indices=indices,
            batch_size=self.batch_size, fill=self.fill, device=self.device, class_names=self.class_names,
            min_samples=self.policy.min_cue_samples,
        )  # fmt: skip
        self.discovered = found
        same = samples["index"].astype(int).map(lambda i: found.backgrounds.get(i, (math.nan,) * 2)[0])
        other = samples["index"].astype(int).map(lambda i: found.backgrounds.get(i, (math.nan,) * 2)[1])
        samples["cue"] = samples["index"].astype(int).map(lambda i: found.cue_of.get(i, -1)).astype("int64")
        samples["bg_same"], samples["bg_other"] = same.astype(float), other.astype(float)
        samples["bg_gap"] = samples["bg_same"] - samples["bg_other"]
        self._add_discovery_scores(samples, indices)
        self.timings["discovery"] += time.perf_counter() - started
        return samples

    def _add_discovery_scores(self, samples: pd.DataFrame, indices: Sequence[int]) -> None:
        """Add this process's discovery columns to the synced scores (NaN: not measured)."""
        mine = samples[samples["index"].isin(set(int(i) for i in indices))]
        if len(mine):
            self.scores.update(
                {c: torch.tensor(mine[c].to_numpy(dtype="float64")) for c in DISCOVERY_COLUMNS},
                torch.tensor(mine["label"].to_numpy(dtype="int64")),
            )

    def galleries(self, per_cue: int = 4) -> dict[int, torch.Tensor]:
        """A gallery image per tested cue of the last audit (:mod:`cam_audit.pipeline.gallery`); empty
        without discovery. Runs the engine on a few images: call it on one process."""
        if self.discovered is None:
            return {}
        from cam_audit.pipeline.gallery import cue_galleries

        try:
            return cue_galleries(self.engine, self.probe, self.discovered, self.device, per_cue)
        finally:
            self.engine.last_features = None  # the gallery's engine calls keep none either

    def finish(
        self,
        samples: pd.DataFrame,
        *,
        best_focus_lift: float | None = None,
        meta: dict[str, Any] | None = None,
    ) -> AuditReport:
        """Step 3: synced summary, per-class table and verdict (a collective call under DDP)."""
        names = self.class_names
        summary, per_class = self.scores.summarise(names)
        samples = samples.sort_values("index").reset_index(drop=True)
        samples.insert(3, "class", [names[int(i)] for i in samples["label"]])
        by_class = samples.groupby("label")
        classes = range(len(names))
        per_class["n_samples"] = by_class.size().reindex(classes, fill_value=0).to_numpy(dtype=float)
        per_class["n_scored"] = by_class["focus"].count().reindex(classes, fill_value=0).to_numpy(dtype=float)
        cues = self.discovered.cues if self.discovered is not None else empty_cues()
        cues = cues.assign(confirmed=self.policy.confirmed(cues))
        if self.discovering:
            summary["n_cues"], summary["n_cues_confirmed"] = float(len(cues)), float(cues["confirmed"].sum())
        else:
            summary["n_cues"] = summary["n_cues_confirmed"] = math.nan
        verdict = self.policy.evaluate(summary, per_class, best_focus_lift, cues=cues)
        return AuditReport(summary, samples, per_class, verdict, self.policy, dict(meta or {}), cues)

    def meta(self, best_focus_lift: float | None = None) -> dict[str, Any]:
        """What every report records about how it was made: layer, method, task, fingerprints, cost,
        versions."""
        model = self.engine.model
        return {
            "target_layer": self.engine.layer_name,
            "method": self.engine.method,
            "target": self.target,
            "task": self.engine.task,
            "probe_fingerprint": self.probe_fingerprint,
            "model_fingerprint": model_fingerprint(model),
            "model_class": type(model).__name__,
            "world_size": self.collectives.world_size,
            "best_focus_lift": best_focus_lift,
            "counterfactual": self.counterfactual,
            "discover": self.discovering,
            "attribution_seconds": self.timings["attribution"],
            "counterfactual_seconds": self.timings["counterfactual"],
            "discovery_seconds": self.timings["discovery"],
            "versions": versions(),
        }


def versions() -> dict[str, str]:
    """Versions of cam_audit and the libraries whose numbers it reports (those installed)."""
    return dict(_installed_versions())


@functools.cache
def _installed_versions() -> tuple[tuple[str, str], ...]:
    # read once per process: the package metadata does not change under a running audit, and reading
    # it takes longer than scoring a small probe
    found = []
    for package in ("cam_audit", "torch", "torchvision", "torchmetrics", "pytorch-lightning", "lightning"):
        try:
            found.append((package.replace("-", "_"), importlib.metadata.version(package)))
        except importlib.metadata.PackageNotFoundError:
            continue
    return tuple(found)


__all__ = ["AuditRun", "versions"]
