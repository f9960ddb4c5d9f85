"""Send an audit's images, histograms and text to whatever loggers the Trainer has, and write reports.

The loggers are recognised by what they offer, not by importing Lightning: a TensorBoard
``SummaryWriter`` (``add_image``), Weights & Biases (``log_image``), MLflow (``experiment.log_image``),
and any logger with a ``log_dir`` (``CSVLogger``), which gets PNG files.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, cast

from torch import Tensor

from cam_audit.keys import CHARTS, HEADLINE_KEYS, is_discovery
from cam_audit.render import hwc_uint8, png_bytes, save_png
from cam_audit.report import AuditReport
from cam_audit.report.atomic import write_atomic


def log_audit_media(
    trainer: Any,
    report: AuditReport,
    grid: Tensor | None,
    prefix: str = "cam_audit",
    cues: Tensor | None = None,
    discover: bool = False,
) -> None:
    """Log the overlay grid, the cue galleries (``cues``, after a discovery audit), a histogram of
    per-sample focus_lift and the verdict to every logger. ``discover``: the run looks for cues, so
    TensorBoard's chart layout gets the background chart too."""
    step = int(report.meta.get("global_step", trainer.global_step))
    epoch = int(report.meta.get("epoch", trainer.current_epoch))
    verdict = verdict_markdown(report)
    images = {name: image for name, image in (("overlays", grid), ("cues", cues)) if image is not None}
    for logger in trainer.loggers:
        logger = cast(Any, logger)  # recognised by what it offers, not by its class
        experiment: Any = getattr(logger, "experiment", None)
        if hasattr(experiment, "add_image"):  # TensorBoard SummaryWriter
            _tensorboard(experiment, report, images, prefix, step, verdict, discover)
        elif hasattr(logger, "log_image"):  # WandbLogger
            for name, image in images.items():
                logger.log_image(key=f"{prefix}/{name}", images=[hwc_uint8(image)], step=step)
            logger.log_text(key=f"{prefix}/verdict", columns=["verdict"], data=[[verdict]], step=step)
        elif hasattr(experiment, "log_image") and hasattr(logger, "run_id"):  # MLFlowLogger
            for name, image in images.items():
                experiment.log_image(logger.run_id, hwc_uint8(image), f"{prefix}/{name}_{epoch:04d}.png")
            experiment.log_text(logger.run_id, verdict, f"{prefix}/verdict_{epoch:04d}.md")
        elif getattr(logger, "log_dir", None):  # CSVLogger and the like
            for name, image in images.items():
                save_png(image, Path(logger.log_dir) / prefix / f"{name}_epoch{epoch:04d}.png")


def _tensorboard(
    writer: Any,
    report: AuditReport,
    images: dict[str, Tensor],
    prefix: str,
    step: int,
    verdict: str,
    discover: bool,
) -> None:
    for name, image in images.items():
        _tensorboard_image(writer, f"{prefix}/{name}", image, step)
    column: Any = report.samples["focus_lift"].to_numpy(dtype=float) if len(report.samples) else []
    lifts = [float(v) for v in column if math.isfinite(v)]
    if lifts:
        writer.add_histogram(f"{prefix}/focus_lift_per_sample", Tensor(lifts), global_step=step)
    writer.add_text(f"{prefix}/verdict", verdict, global_step=step)
    if not getattr(writer, "_cam_audit_layout", False):
        writer.add_custom_scalars({prefix: chart_layout(prefix, discover)})
        writer._cam_audit_layout = True


def chart_layout(prefix: str, discover: bool) -> dict[str, list]:
    """TensorBoard's custom-scalar charts (:data:`cam_audit.keys.CHARTS`), the ones of discovery's
    scores only when the run looks for cues (without it they are never logged)."""
    return {
        title: ["Multiline", [f"{prefix}/{key}" for key in keys]]
        for title, keys in CHARTS.items()
        if discover or not all(is_discovery(key) for key in keys)
    }


def verdict_markdown(report: AuditReport) -> str:
    """The verdict as a short markdown text: the flags, then the headline scores."""
    head = {"pass": "**passed**", "inconclusive": "**inconclusive**", "shortcut": "**shortcut flagged**"}[
        report.verdict.outcome
    ]
    lines = [head, ""] + [f"- {flag}" for flag in report.verdict.flags]
    lines += ["", " | ".join(f"{k} {report.summary.get(k, math.nan):.3g}" for k in HEADLINE_KEYS)]
    return "\n".join(lines)


def write_reports(
    log_dir: Path, report: AuditReport, prefix: str = "cam_audit", is_best: bool = False
) -> Path:
    """Write ``<log_dir>/<prefix>/latest/{report.json,samples.csv}``, the same under ``best/`` when
    ``is_best``, and append the summary to ``history.jsonl``; returns the folder."""
    root = Path(log_dir) / prefix
    latest = root / "latest"
    written = [report.to_json(latest / "report.json"), report.to_csv(latest / "samples.csv")]
    if is_best:
        for path in written:  # the same bytes: copied, not serialised twice; replaced whole, as latest/
            write_atomic(root / "best" / path.name, path.read_bytes())
    row = {
        "epoch": report.meta.get("epoch"),
        "global_step": report.meta.get("global_step"),
        "passed": report.verdict.passed,
    }
    row.update(
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in report.summary.items()}
    )
    with open(root / "history.jsonl", "a") as handle:
        handle.write(json.dumps(row) + "\n")
    return root


def _tensorboard_image(writer: Any, tag: str, grid: Tensor, step: int) -> None:
    """``writer.add_image(tag, grid)``, with the PNG encoded at
    :data:`cam_audit.render.PNG_COMPRESS_LEVEL`.

    ``add_image`` always encodes at PIL's default level, which took a tenth of a second per audit for a
    16-image grid; torch's ``SummaryWriter`` gets the same image summary with the faster encoding, any
    other writer (tensorboardX) gets ``add_image``.
    """
    try:
        from tensorboard.compat.proto.summary_pb2 import Summary
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        writer.add_image(tag, grid, global_step=step)
        return
    file_writer = writer._get_file_writer() if isinstance(writer, SummaryWriter) else None
    if file_writer is None:
        writer.add_image(tag, grid, global_step=step)
        return
    height, width = int(grid.shape[1]), int(grid.shape[2])
    image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=png_bytes(grid))
    file_writer.add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)


__all__ = ["chart_layout", "log_audit_media", "verdict_markdown", "write_reports"]
