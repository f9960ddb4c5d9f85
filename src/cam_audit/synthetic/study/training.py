"""The study's models: training conditions, sizes, and one trained, measured and audited model each.

Every model is a :class:`~cam_audit.synthetic.SceneNet` trained on the synthetic scenes of one
:class:`Condition`, audited after every epoch (for ``focus_lift``'s history) and, at the end, with the
counterfactual test on a probe drawn from its own training distribution; its accuracy is measured with
the cue, with the cue removed and with the cue moved.

The audit is the pipeline's, a layer above this package, so :func:`measure` and :func:`train_study` take
the audit function as an argument: pass :func:`cam_audit.audit`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import torch
from torch import nn

from cam_audit.probe import ProbeSet
from cam_audit.report import AuditReport, ShortcutPolicy
from cam_audit.synthetic.backgrounds import BackgroundCue
from cam_audit.synthetic.model import Pool, SceneNet, accuracy, train_epochs
from cam_audit.synthetic.scenes import SceneData, make_scenes

#: The layer of :class:`SceneNet` the audits explain.
TARGET_LAYER = "features"


class Auditor(Protocol):
    """The audit function the study calls (:func:`cam_audit.audit` has this signature)."""

    def __call__(
        self,
        model: nn.Module,
        probe: ProbeSet,
        *,
        target_layer: str,
        policy: ShortcutPolicy,
        counterfactual: bool,
    ) -> AuditReport: ...


@dataclass(frozen=True)
class Condition:
    """How the training scenes carry (or do not carry) the watermark or background cue.

    Attributes:
        name: the label printed in the tables.
        watermark: ``make_scenes``'s watermark mode.
        correlation: share of training images whose cue (the tag, or the background) follows the label.
        cue_classes: classes that carry the tag (presence cue), or None for the corner cue.
        background: ``make_scenes``'s ``background_cue``: a class-specific tint (``"colour"``) or stripe
            texture (``"texture"``) of the background is the cue; such a condition has no tag.
    """

    name: str
    watermark: Literal["none", "random", "correlated"]
    correlation: float = 1.0
    cue_classes: tuple[int, ...] | None = None
    background: BackgroundCue = "none"

    @property
    def clean(self) -> bool:
        return self.watermark != "correlated" and self.background == "none"

    @property
    def cue(self) -> str:
        """What carries the label besides the shape: ``"corner"``, ``"presence"`` (of a tag on some
        classes), ``"colour"``, ``"texture"`` or ``"none"``."""
        if self.background != "none":
            return self.background
        if self.watermark != "correlated":
            return "none"
        return "corner" if self.cue_classes is None else "presence"

    def scenes(self, n: int, seed: int, image_size: int) -> SceneData:
        """Scenes from this condition's training distribution (``clean-none``: tags in random corners,
        so the probe and the moved-cue test still show the model a tag; a background condition: no tag)."""
        if self.background != "none":
            return make_scenes(
                n,
                image_size=image_size,
                seed=seed,
                background_cue=self.background,
                background_correlation=self.correlation,
            )
        watermark = "random" if self.watermark == "none" else self.watermark
        return make_scenes(
            n,
            image_size=image_size,
            watermark=watermark,
            correlation=self.correlation,
            cue_classes=self.cue_classes,
            seed=seed,
        )

    def seen_scenes(self, n: int, seed: int, image_size: int) -> SceneData:
        """Held-out scenes as the model met them in training (``clean-none``: without tags)."""
        if self.watermark == "none" and self.background == "none":
            return make_scenes(n, image_size=image_size, watermark="none", seed=seed)
        return self.scenes(n, seed, image_size)

    def removed_scenes(self, n: int, seed: int, image_size: int) -> SceneData:
        """:meth:`seen_scenes` of the same seed without the cue: every tag replaced by the background it
        covered, or the background without its tint or texture (the same scenes otherwise)."""
        if self.background != "none":
            return make_scenes(n, image_size=image_size, seed=seed)
        return self.seen_scenes(n, seed, image_size).without_watermark()

    def moved_scenes(self, n: int, seed: int, image_size: int) -> SceneData:
        """Scenes where the cue lies: every tag in another class's corner (corner cue), a tag on every
        class (presence cue), or every object on another class's background (background cue); a tag in a
        random corner for the clean controls."""
        if self.background != "none":
            return make_scenes(
                n,
                image_size=image_size,
                seed=seed,
                background_cue=self.background,
                background_correlation=0.0,
            )
        if self.watermark == "correlated" and self.cue_classes is None:
            return make_scenes(n, image_size=image_size, watermark="correlated", correlation=0.0, seed=seed)
        return make_scenes(n, image_size=image_size, watermark="random", seed=seed)


def conditions(quick: bool) -> list[Condition]:
    """The study's conditions; ``quick``: one clean control, the corner cue and the single-class cue.

    - ``clean-random``: a tag in a random corner of every image (it carries no information);
    - ``clean-none``: no tag at all (the probe still carries tags, which the model has never seen);
    - ``corner-<c>``: the tag's corner gives the label away on a share ``c`` of the training images;
    - ``single-1.0``: a tag on every image of class 0 (``disc``) and on no other: presence is the cue,
      the Clever Hans case.
    """
    if quick:
        return [
            Condition("clean-random", "random"),
            Condition("corner-1.0", "correlated", 1.0),
            Condition("single-1.0", "correlated", 1.0, (0,)),
        ]
    return [
        Condition("clean-random", "random"),
        Condition("clean-none", "none"),
        Condition("corner-1.0", "correlated", 1.0),
        Condition("corner-0.9", "correlated", 0.9),
        Condition("corner-0.7", "correlated", 0.7),
        Condition("single-1.0", "correlated", 1.0, (0,)),
    ]


@dataclass(frozen=True)
class StudySettings:
    """Sizes of one study run.

    Attributes:
        epochs: training epochs per model.
        n_train: training scenes per model.
        n_probe: probe scenes per model.
        n_test: held-out scenes for each accuracy.
        image_size: side of the square scenes.
        width: channels of the model's first block.
        batch_size: training batch size.
    """

    epochs: int = 8
    n_train: int = 1200
    n_probe: int = 96
    n_test: int = 600
    image_size: int = 32
    width: int = 8
    batch_size: int = 32

    @classmethod
    def for_run(
        cls,
        quick: bool,
        epochs: int | None = None,
        n_train: int | None = None,
        n_probe: int = 96,
        n_test: int = 600,
        **sizes: int,
    ) -> StudySettings:
        """The full study's settings, or a smoke run's (``quick``: fewer epochs, scenes and samples);
        ``epochs`` and ``n_train`` default to the run's, ``n_probe`` and ``n_test`` are capped in a
        quick run, and ``sizes`` sets the other fields.

        >>> StudySettings.for_run(quick=True, n_probe=96).n_probe, StudySettings.for_run(quick=False).epochs
        (48, 8)
        """
        if quick:
            n_probe, n_test = min(n_probe, 48), min(n_test, 200)
        return cls(
            epochs=epochs or (2 if quick else 8),
            n_train=n_train or (300 if quick else 1200),
            n_probe=n_probe,
            n_test=n_test,
            **sizes,
        )

    def meta(self) -> dict[str, int]:
        """What each report of the run records about it (``report.meta["settings"]``)."""
        return {k: getattr(self, k) for k in ("epochs", "n_train", "image_size", "width", "n_probe")}


def train_model(condition: Condition, pool: Pool, seed: int, settings: StudySettings) -> Iterator[SceneNet]:
    """Train the study's model of ``condition``, ``pool`` and ``seed``, yielding it after every epoch.

    The training scenes, the initial weights and the batch order depend on ``seed`` alone, so two
    studies train the same model for the same condition, pool and seed.
    """
    train = condition.seen_scenes(settings.n_train, seed, settings.image_size)  # the training distribution
    torch.manual_seed(seed)
    model = SceneNet(num_classes=3, width=settings.width, pool=pool)
    for _ in train_epochs(model, train, settings.epochs, settings.batch_size, seed):
        yield model


def behaviour(model: nn.Module, condition: Condition, seed: int, settings: StudySettings) -> dict[str, float]:
    """Accuracy on held-out scenes with the cue (``acc_cue``), with it removed (``acc_removed``, the same
    scenes) and with it moved (``acc_moved``)."""
    size, n = settings.image_size, settings.n_test
    return {
        "acc_cue": accuracy(model, condition.seen_scenes(n, seed + 30_000, size)),
        "acc_removed": accuracy(model, condition.removed_scenes(n, seed + 30_000, size)),
        "acc_moved": accuracy(model, condition.moved_scenes(n, seed + 40_000, size)),
    }


def measure(
    condition: Condition, pool: Pool, seed: int, settings: StudySettings, audit: Auditor
) -> AuditReport:
    """Train one model, measure its accuracy with the cue, without it and with it moved, and audit it.

    Returns:
        The final audit's report; its ``meta`` also carries the condition, the accuracies and the best
        ``focus_lift`` of the earlier epochs' audits.
    """
    probe = condition.scenes(settings.n_probe, seed + 20_000, settings.image_size).to_probe()
    policy = ShortcutPolicy()
    history: list[float] = []
    for epoch, model in enumerate(train_model(condition, pool, seed, settings)):
        if epoch < settings.epochs - 1:  # the last epoch's audit is the full one below
            focus = audit(model, probe, target_layer=TARGET_LAYER, policy=policy, counterfactual=False)
            history.append(focus.summary["focus_lift"])
    report = audit(model, probe, target_layer=TARGET_LAYER, policy=policy, counterfactual=True)
    report.meta.update(
        condition=condition.name,
        clean=condition.clean,
        pool=pool,
        seed=seed,
        best_focus_lift=max((h for h in history if not math.isnan(h)), default=None),
        **behaviour(model, condition, seed, settings),
    )
    return report


def train_study(
    conditions: Sequence[Condition],
    pools: Sequence[Pool],
    seeds: Iterable[int],
    settings: StudySettings,
    audit: Auditor,
) -> Iterator[AuditReport]:
    """:func:`measure` every condition with every pool for every seed, one report at a time.

    Seeds are the outermost loop, so that an interrupted run has covered every condition. Each report's
    ``meta`` also records the condition's position (``order``) and ``settings``, which
    :func:`saved_reports` and a later judging need.
    """
    for seed in seeds:
        for order, condition in enumerate(conditions):
            for pool in pools:
                report = measure(condition, pool, seed, settings, audit)
                report.meta.update(order=order, settings=settings.meta())
                yield report


def report_file(report: AuditReport) -> str:
    """The file name a study report is saved under: ``<condition>-<pool>-<seed>.json``."""
    meta = report.meta
    return f"{meta['condition']}-{meta['pool']}-{meta['seed']}.json"


def saved_reports(folder: Path) -> list[AuditReport]:
    """The study reports saved in ``folder``, in the order :func:`train_study` made them (seed last)."""
    reports = [AuditReport.from_json(path) for path in sorted(Path(folder).glob("*.json"))]
    reports.sort(key=lambda r: (r.meta["order"], r.meta["pool"], r.meta["seed"]))
    return reports


__all__ = [
    "TARGET_LAYER",
    "Auditor",
    "Condition",
    "StudySettings",
    "behaviour",
    "conditions",
    "measure",
    "report_file",
    "saved_reports",
    "train_model",
    "train_study",
]
