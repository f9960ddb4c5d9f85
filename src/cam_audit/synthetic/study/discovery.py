"""The discovery study's models: does ``audit(..., discover=True)`` find a shortcut nobody annotated?

Each model is trained as in the shortcut study (:func:`~cam_audit.synthetic.study.train_model`; the same
condition, pool and seed give the same model) on the study's conditions plus two whose cue is no patch
at all: a class-specific background tint (``bg-colour``) and stripe texture (``bg-texture``). It is then
audited twice on the same probe images:

- **annotated**: with the tags marked as spurious regions, as the shortcut study does (a background cue
  has no region to mark, so a background condition's probe has none);
- **discovered**: with the spurious annotations withheld (object regions only) and ``discover=True``.

Both reports carry the model's behaviour (accuracy with the cue, without it and with it moved), the true
tag boxes of each class (to check where a discovered cue lies) and, when ShortKit-ML is installed, its
SpRAy verdict on the same Grad-CAM++ maps. :mod:`~cam_audit.synthetic.study.discovery_tables` judges them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from torch import nn

from cam_audit.probe import ProbeSet
from cam_audit.report import AuditReport, ShortcutPolicy
from cam_audit.synthetic.model import Pool
from cam_audit.synthetic.scenes import CLASS_NAMES, SceneData
from cam_audit.synthetic.study.spray import probe_maps, spray_judgement
from cam_audit.synthetic.study.training import (
    TARGET_LAYER,
    Condition,
    StudySettings,
    behaviour,
    conditions,
    train_model,
)

#: The conditions whose cue is the background, not a patch.
BACKGROUND_CONDITIONS = (
    Condition("bg-colour", "none", 1.0, background="colour"),
    Condition("bg-texture", "none", 1.0, background="texture"),
)
#: The two reports of one model, as :func:`save_pair` names their files.
REPORT_KINDS = ("annotated", "discovered")


class DiscoveryAuditor(Protocol):
    """The audit function the discovery study calls (:func:`cam_audit.audit` has this signature)."""

    def __call__(
        self,
        model: nn.Module,
        probe: ProbeSet,
        *,
        target_layer: str,
        policy: ShortcutPolicy,
        counterfactual: bool,
        discover: bool,
    ) -> AuditReport: ...


def discovery_conditions(quick: bool) -> list[Condition]:
    """The shortcut study's conditions (:func:`~cam_audit.synthetic.study.conditions`) and the
    background ones; ``quick``: the quick subset and both background conditions."""
    return [*conditions(quick), *BACKGROUND_CONDITIONS]


def true_cue_boxes(scenes: SceneData, min_share: float = 0.2) -> dict[str, list[list[float]]]:
    """Where the tag of each class lies: per class name, the xyxy tag boxes that at least ``min_share``
    of the class's samples carry (one box for the corner cue, up to four for a tag in random corners).

    >>> from cam_audit.synthetic import make_scenes
    >>> boxes = true_cue_boxes(make_scenes(30, image_size=32, watermark="correlated", seed=0))
    >>> boxes["disc"], boxes["square"]
    ([[1.0, 1.0, 7.0, 4.0]], [[25.0, 1.0, 31.0, 4.0]])
    """
    found: dict[str, list[list[float]]] = {}
    for label in range(scenes.num_classes):
        of_class = scenes.labels == label
        tagged = scenes.watermark_boxes[of_class & scenes.has_watermark]
        counts = Counter(tuple(box) for box in tagged.tolist())
        total = int(of_class.sum())
        common = [list(box) for box, count in counts.most_common() if total and count / total >= min_share]
        if common:
            found[CLASS_NAMES[label]] = common
    return found


def measure_discovery(
    condition: Condition,
    pool: Pool,
    seed: int,
    settings: StudySettings,
    audit: DiscoveryAuditor,
    *,
    held_out: bool = False,
    spray: bool = False,
) -> tuple[AuditReport, AuditReport]:
    """Train one model and audit it with the cue annotated and, withheld, with discovery.

    Args:
        condition, pool, seed, settings: which model (as in the shortcut study).
        audit: :func:`cam_audit.audit`.
        held_out: whether ``seed`` is a held-out seed (recorded, for the tables).
        spray: also run ShortKit-ML's SpRAy on the probe's Grad-CAM++ maps (it must be installed).

    Returns:
        ``(annotated, discovered)`` reports; both ``meta`` carry the condition, the behaviour, the true
        tag boxes (``true_cues``) and the SpRAy verdict (``spray``, None without it).
    """
    scenes = condition.scenes(settings.n_probe, seed + 20_000, settings.image_size)
    *_, model = train_model(condition, pool, seed, settings)  # no audit between epochs: the final model only
    policy = ShortcutPolicy()
    annotated = audit(
        model,
        scenes.to_probe(),
        target_layer=TARGET_LAYER,
        policy=policy,
        counterfactual=True,
        discover=False,
    )
    discovered = audit(
        model,
        scenes.to_probe(spurious=False),
        target_layer=TARGET_LAYER,
        policy=policy,
        counterfactual=True,
        discover=True,
    )
    maps = probe_maps(model, scenes.images, scenes.labels, TARGET_LAYER) if spray else None
    meta: dict[str, Any] = {
        "condition": condition.name,
        "clean": condition.clean,
        "cue": condition.cue,
        "pool": pool,
        "seed": seed,
        "held_out": held_out,
        "best_focus_lift": None,
        **behaviour(model, condition, seed, settings),
        "true_cues": true_cue_boxes(scenes) if condition.cue in ("corner", "presence") else {},
        "spray": spray_judgement(maps, scenes.labels, random_state=seed) if maps is not None else None,
        "settings": settings.meta(),
    }
    for report in (annotated, discovered):
        report.meta.update(meta)
    return annotated, discovered


def train_discovery_study(
    conditions: Sequence[Condition],
    pools: Sequence[Pool],
    seeds: Sequence[int],
    held_out: Sequence[int],
    settings: StudySettings,
    audit: DiscoveryAuditor,
    spray: bool = False,
) -> Iterator[tuple[AuditReport, AuditReport]]:
    """:func:`measure_discovery` for every condition, pool and seed, the held-out seeds last.

    Seeds are the outermost loop, so an interrupted run has covered every condition. Each report's
    ``meta`` also records the condition's position (``order``).
    """
    for seed in [*seeds, *held_out]:
        for order, condition in enumerate(conditions):
            for pool in pools:
                pair = measure_discovery(
                    condition, pool, seed, settings, audit, held_out=seed in held_out, spray=spray
                )
                for report in pair:
                    report.meta["order"] = order
                yield pair


def save_pair(folder: Path, annotated: AuditReport, discovered: AuditReport) -> list[Path]:
    """Write a model's two reports as ``<condition>-<pool>-<seed>.<kind>.json`` in ``folder``."""
    meta = annotated.meta
    stem = f"{meta['condition']}-{meta['pool']}-{meta['seed']}"
    folder = Path(folder)
    return [
        report.to_json(folder / f"{stem}.{kind}.json")
        for kind, report in zip(REPORT_KINDS, (annotated, discovered), strict=True)
    ]


def saved_pairs(folder: Path) -> list[tuple[AuditReport, AuditReport]]:
    """The report pairs :func:`save_pair` wrote in ``folder``, in the order the study made them (seed
    last); a model with only one of its two reports is left out."""
    pairs = []
    for path in sorted(Path(folder).glob(f"*.{REPORT_KINDS[0]}.json")):
        other = path.with_name(path.name.replace(f".{REPORT_KINDS[0]}.", f".{REPORT_KINDS[1]}."))
        if other.exists():
            pairs.append((AuditReport.from_json(path), AuditReport.from_json(other)))
    pairs.sort(
        key=lambda pair: (
            pair[0].meta["held_out"],
            pair[0].meta["order"],
            pair[0].meta["pool"],
            pair[0].meta["seed"],
        )
    )
    return pairs


__all__ = [
    "BACKGROUND_CONDITIONS",
    "REPORT_KINDS",
    "DiscoveryAuditor",
    "discovery_conditions",
    "measure_discovery",
    "save_pair",
    "saved_pairs",
    "train_discovery_study",
    "true_cue_boxes",
]
