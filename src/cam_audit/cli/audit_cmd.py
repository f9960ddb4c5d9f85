"""``cam-audit audit``: audit a saved checkpoint offline with the same code the callback runs.

::

    cam-audit audit --config configs/audit.yaml [--ckpt PATH] [--out DIR]

The config names the model class (``model: package.module.Class``), its ``checkpoint``, the ``probe``
(a :class:`~cam_audit.probe.sources.ProbeSource`: COCO, CSV, mask folder or synthetic scenes), and the
options of :func:`cam_audit.pipeline` and its :class:`~cam_audit.report.ShortcutPolicy`. Every key is checked
when the config is parsed, so a typo fails at once. The command writes into ``--out``:

- ``report.json`` and ``samples.csv`` (read them back with ``AuditReport.from_json``; gate them with
  ``cam-audit gate``),
- ``overlays/NNNNN.png``: each probe sample and its Grad-CAM map with the object (green) and spurious
  (magenta) outlines,
- ``cues/cue_<n>.png`` (with ``--discover true``): the gallery of each tested cue found off the object
  regions: crops around its hot spot with their maps, and images of other classes it moved when pasted,
- ``index.html``: verdict, summary, per-class table, the cues found (with ``--discover true``) and the
  worst samples with their overlays, one file that opens without a server.

Exit codes, like ``cam-audit gate``: 0 the model passes the policy, 1 it fails (each failed rule printed;
also a model whose weights or logits are NaN or infinite), 2 bad config, arguments, checkpoint, probe,
device or output folder (a one-line message, never a traceback). ``--out`` and ``--device`` are checked
before anything is loaded. The outputs are written into a new folder beside ``--out`` and swapped in at
the end, so a failed or interrupted audit leaves ``--out`` as it was.

With ``--baseline CHAMPION.json`` (a report of the model this one would replace, on the same probe) the
audit is also compared with it (:meth:`~cam_audit.report.AuditReport.compare`, ``--max_regression``,
``--scores``): the page shows the comparison and the samples that got most worse (beside the champion's
overlays when ``--baseline_overlays`` names its ``cam-audit audit`` folder, or when the report lies in
one), and the exit code is the promotion's, like ``cam-audit gate --baseline``: 0 promote, 1 do not
promote, 2 bad input (also a baseline of another probe, target or method, checked before the audit).
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from cam_audit.cli.loading import (
    check_device,
    check_finite_weights,
    checkpoint_position,
    import_forward,
    import_probe_sources,
    load_model,
    one_line,
)
from cam_audit.cli.out_dir import prepare_out, swap_in
from cam_audit.cli.stdout import emit
from cam_audit.errors import CamAuditError, NonFiniteModelError
from cam_audit.keys import HEADLINE_KEYS
from cam_audit.report import AuditReport, Comparison, ShortcutPolicy
from cam_audit.report.compare import check_options
from cam_audit.report.pairing import read_baseline

EXIT_PASS, EXIT_FAIL, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
PROG = "cam-audit audit"


def build_parser() -> Any:
    """The jsonargparse parser of ``cam-audit audit`` (keys of the YAML config = long options)."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    from cam_audit.probe.sources import ProbeSource

    import_probe_sources()  # every probe class among --probe's known subclasses
    parser = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0], exit_on_error=False)
    parser.add_argument("--config", action=ActionConfigFile, help="YAML file with the keys below")
    parser.add_argument("--model", type=str, required=True,
                        help="class path of the model, e.g. cam_audit.lightning.scenes.SceneClassifier")
    parser.add_argument("--checkpoint", "--ckpt", type=str, required=True,
                        help="checkpoint file (Lightning .ckpt, or a state_dict for a plain nn.Module)")
    parser.add_argument("--model_args", type=dict[str, Any], default={},
                        help="constructor arguments of a plain nn.Module (a LightningModule restores its "
                        "own)")
    parser.add_argument("--probe", type=ProbeSource, required=True,
                        help="probe set: the class_path of a ProbeSource with its init_args")
    parser.add_argument("--target_layer", type=str | None, default=None,
                        help="dotted module name; default: the last layer with a spatial output")
    parser.add_argument("--method", type=Literal["gradcam++", "gradcam"], default="gradcam++")
    parser.add_argument("--target", type=Literal["label", "predicted"], default="label",
                        help="explain the ground-truth label or the predicted class")
    parser.add_argument("--task", type=Literal["multiclass", "multilabel", "binary"] | None, default=None,
                        help="how the logits are read: softmax classes, one sigmoid per class, or one logit "
                        "(binary); default: binary for a model with one output, else multiclass")
    parser.add_argument("--forward", type=str | None, default=None,
                        help="import path of a function (model, images) -> logits, for a model whose "
                        "forward takes a dict or extra inputs, e.g. mypackage.audit.forward_dict")
    parser.add_argument("--batch_size", type=int, default=64, help="probe samples per forward pass")
    parser.add_argument("--counterfactual", type=bool, default=True,
                        help="run the fill and paste tests on samples with spurious regions")
    parser.add_argument("--discover", type=bool, default=False,
                        help="find cues nobody annotated off the object regions, confirm them with matched "
                        "controls, and measure bg_gap (runs with --counterfactual true)")
    parser.add_argument("--fill", type=Literal["blur", "mean"], default="blur",
                        help="how the spurious region is filled in the counterfactual test")
    parser.add_argument("--policy", type=ShortcutPolicy, default=ShortcutPolicy(),
                        help="thresholds of the verdict (ShortcutPolicy fields)")
    parser.add_argument("--device", type=str, default="cpu", help="torch device to run on")
    parser.add_argument("--out", type=Path, default=Path("runs/audit"), help="folder for the outputs")
    parser.add_argument("--worst", type=int, default=8,
                        help="samples shown in each list of the HTML page (lowest focus_lift, "
                        "highest spurious_lift)")
    parser.add_argument("--overlays", type=bool, default=True, help="write one overlay PNG per sample")
    parser.add_argument("--progress", type=bool, default=True, help="show a progress bar on stderr")
    parser.add_argument("--baseline", type=Path | None, default=None,
                        help="report.json of the champion on the same probe: compare, and exit 1 when this "
                        "model should not replace it")
    parser.add_argument("--baseline_overlays", type=Path | None, default=None,
                        help="the champion's `cam-audit audit` folder (or its overlays/): its overlays "
                        "beside the samples that got most worse (default: overlays/ next to --baseline)")
    parser.add_argument("--max_regression", type=float, default=0.05,
                        help="largest tolerated fall of a judged score against --baseline, as a fraction")
    parser.add_argument("--scores", type=list[str], default=["focus_lift"],
                        help="scores judged against --baseline")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``cam-audit audit``; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        config = parser.parse_args(argv)
    except SystemExit as stop:  # --help, or jsonargparse giving up
        return int(stop.code or 0)
    except (argparse.ArgumentError, ValueError, TypeError) as err:
        print(f"{PROG}: error: {one_line(err)} (see {PROG} --help)", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        report, comparison = run_audit(config, parser)
    except NonFiniteModelError as err:  # the model is broken: it fails, as a failed verdict does
        print(f"{PROG}: FAIL: {one_line(err)}", file=sys.stderr)
        return EXIT_FAIL
    except CamAuditError as err:
        print(f"{PROG}: error: {one_line(err)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as err:
        print(f"{PROG}: error: {err.filename or ''}: {err.strerror or one_line(err)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; --out was left as it was", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as err:  # a model's forward that fails on the probe, a broken probe source, ...
        print(f"{PROG}: error: {type(err).__name__}: {one_line(err)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    passed = report.passed if comparison is None else comparison.passed
    return EXIT_PASS if passed else EXIT_FAIL


def run_audit(config: Any, parser: Any) -> tuple[AuditReport, Comparison | None]:
    """Check the options, device and output folder, then audit into a new folder and swap it in.

    Returns:
        The report and, with ``--baseline``, its comparison with the champion.
    """
    # `instantiate` replaced `instantiate_classes` in jsonargparse 4.49
    instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes
    init = instantiate(config)
    if init.worst < 0:
        raise CamAuditError(f"--worst must be >= 0 (samples per list on the HTML page), got {init.worst}")
    if init.batch_size < 1:
        raise CamAuditError(f"--batch_size must be >= 1, got {init.batch_size}")
    if init.discover and not init.counterfactual:
        raise CamAuditError(
            "--discover true confirms each cue it finds by filling and pasting it, which runs with the "
            "counterfactual tests: add --counterfactual true, or leave --discover false"
        )
    check_device(init.device)
    out = Path(init.out)
    stage = prepare_out(out)
    try:
        report, comparison = _audit_into(init, stage)
        swap_in(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)  # gone already once swapped in
    lines = _result_lines(report, out, out / "index.html")
    if comparison is not None:
        lines += comparison.to_text(str(init.checkpoint), str(init.baseline))
    _emit(lines)
    return report, comparison


def _audit_into(init: Any, stage: Path) -> tuple[AuditReport, Comparison | None]:
    """Load the model, the probe and the champion's report, audit, compare, and write every output into
    ``stage``."""
    from cam_audit import audit
    from cam_audit.render.html import write_html

    checkpoint = Path(init.checkpoint)
    forward = import_forward(init.forward)
    model = load_model(init.model, checkpoint, init.model_args, init.device)
    check_finite_weights(model, checkpoint)
    probe = init.probe.load()
    baseline, baseline_overlays = _load_baseline(init, probe)
    written: dict[int, Path] = {}
    cue_images: dict[int, Path] = {}
    bar = _progress_bar(len(probe), init.progress)

    def on_batch(batch: Any, maps: Any, rows: Any) -> None:
        bar.update(len(batch))
        if init.overlays:
            written.update(_write_overlays(batch, maps, stage / "overlays", Path(init.out)))

    def on_cues(cues: Any, galleries: dict[int, Any]) -> None:
        cue_images.update(_write_galleries(galleries, stage / "cues", Path(init.out)))

    try:
        report = audit(
            model,
            probe,
            target_layer=init.target_layer,
            method=init.method,
            target=init.target,
            task=init.task,
            forward=forward,
            batch_size=init.batch_size,
            policy=init.policy,
            counterfactual=init.counterfactual,
            discover=init.discover,
            fill=init.fill,
            device=init.device,
            on_batch=on_batch,
            on_cues=on_cues,
        )
    finally:
        bar.close()
    report.meta.update(
        checkpoint=str(checkpoint),
        model_class_path=init.model,
        **checkpoint_position(checkpoint),
    )
    comparison = None if baseline is None else report.compare(baseline, init.max_regression, init.scores)
    try:
        report.to_json(stage / "report.json")
        report.to_csv(stage / "samples.csv")
        write_html(report, stage / "index.html", overlays=written, worst=init.worst, comparison=comparison,
                   baseline_overlays=baseline_overlays, cue_images=cue_images)
    except OSError as err:
        raise _write_error(err, Path(init.out)) from err
    return report, comparison


def _load_baseline(init: Any, probe: Any) -> tuple[AuditReport | None, dict[int, Path]]:
    """The champion's report of ``--baseline`` and its overlays, checked against this audit's probe and
    options before any time is spent (``(None, {})`` without ``--baseline``)."""
    if init.baseline is None:
        if init.baseline_overlays is not None:
            raise CamAuditError("--baseline_overlays needs the champion's report: add --baseline FILE")
        return None, {}
    check_options(init.max_regression, init.scores)
    mine = {"probe_fingerprint": probe.fingerprint(), "target": init.target, "method": init.method}
    return read_baseline(init.baseline, mine, f"--baseline {init.baseline}"), _baseline_overlays(init)


def _baseline_overlays(init: Any) -> dict[int, Path]:
    """The champion's overlay PNGs by probe index, from ``--baseline_overlays`` or beside ``--baseline``."""
    folder = init.baseline_overlays
    if folder is None:
        folder = Path(init.baseline).parent / "overlays"
        if not folder.is_dir():
            return {}
    folder = Path(folder)
    if (folder / "overlays").is_dir():
        folder = folder / "overlays"
    if not folder.is_dir():
        raise CamAuditError(
            f"--baseline_overlays {folder} is not a folder; give the --out folder of the champion's audit"
        )
    return {int(png.stem): png for png in sorted(folder.glob("*.png")) if png.stem.isdigit()}


def _write_error(err: OSError, out: Path) -> CamAuditError:
    return CamAuditError(
        f"cannot write the outputs of --out {out} ({err.filename or out}): {err.strerror or err}; check the "
        "free space and the permissions there"
    )


def _write_overlays(batch: Any, maps: Any, folder: Path, out: Path) -> dict[int, Path]:
    """One PNG per sample: the image, its overlay and a colour bar, named by the sample's probe index."""
    from cam_audit.render import overlay_grid, save_png

    images, regions, spurious = batch.images.cpu(), batch.regions.cpu(), batch.spurious.cpu()
    maps = maps.detach().cpu()
    scale = max(1, 160 // max(int(images.shape[-1]), 1))
    written = {}
    for i, index in enumerate(batch.indices.tolist()):
        grid = overlay_grid(
            images[i : i + 1], maps[i : i + 1], regions[i : i + 1], spurious[i : i + 1], ncol=1, scale=scale
        )
        try:
            written[int(index)] = save_png(grid, folder / f"{int(index):05d}.png")
        except OSError as err:
            raise _write_error(err, out) from err
    return written


def _write_galleries(galleries: dict[int, Any], folder: Path, out: Path) -> dict[int, Path]:
    """``cue_<n>.png`` for each cue's gallery image [3, H, W], by cue number."""
    from cam_audit.render import save_png

    written = {}
    for number, gallery in sorted(galleries.items()):
        try:
            written[int(number)] = save_png(gallery.detach().cpu(), folder / f"cue_{int(number)}.png")
        except OSError as err:
            raise _write_error(err, out) from err
    return written


def _progress_bar(total: int, enabled: bool) -> Any:
    """The bar on stderr; closed, it ends its line, so that with stdout and stderr in one file
    (``> log 2>&1``) the result printed next starts a line of its own."""
    from tqdm import tqdm

    return tqdm(total=total, unit="img", desc=PROG, disable=not enabled, file=sys.stderr, leave=True)


def _result_lines(report: AuditReport, out: Path, page: Path) -> list[str]:
    numbers = ", ".join(f"{k} {report.summary.get(k, math.nan):.3f}" for k in HEADLINE_KEYS)
    state = "PASS" if report.passed else f"FAIL: {len(report.verdict.findings)} rule(s) failed"
    lines = [f"{state} {report.meta.get('checkpoint')}", f"  {numbers}"]
    lines += [f"  {finding.rule}: {finding.message}" for finding in report.verdict.findings]
    files = [f"report:   {out / 'report.json'}", f"samples:  {out / 'samples.csv'}", f"page:     {page}"]
    if report.meta.get("discover"):
        lines.append(f"  {_discovery_line(report)}")
        if (out / "cues").is_dir():
            files.append(f"cues:     {out / 'cues'}")
    return [*lines, *files]


def _discovery_line(report: AuditReport) -> str:
    """What discovery found: the cues, the confirmed ones by class and place, and ``bg_gap``."""
    cues = report.cues
    confirmed = cues[cues["confirmed"].astype(bool)] if len(cues) else cues
    places = "; ".join(f"'{row['class']}' at the {row['where']}" for row in confirmed.to_dict("records"))
    found = f"discovery: {len(cues)} candidate cue(s) off the object, {len(confirmed)} confirmed"
    gap = report.summary.get("bg_gap", math.nan)
    return found + (f" ({places})" if places else "") + f"; bg_gap {gap:.3f}"


def _emit(lines: list[str]) -> None:
    """Print the result; a reader that stopped early (``| head``) ends the printing, not the audit: its
    outputs are written and its exit code stands."""
    sys.stderr.flush()  # the progress bar's last line first
    emit("\n".join(lines))


__all__ = ["build_parser", "load_model", "main", "run_audit"]


if __name__ == "__main__":
    sys.exit(main())

