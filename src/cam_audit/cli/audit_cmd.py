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
- ``index.html``: verdict, summary, per-class table and the worst samples with their overlays, one file
  that opens without a server.

Exit codes, like ``cam-audit gate``: 0 the model passes the policy, 1 it fails (each failed rule printed),
2 bad config, arguments, checkpoint or probe (a one-line message, never a traceback).

With ``--baseline CHAMPION.json`` (a report of the model this one would replace, on the same probe) the
audit is also compared with it (:meth:`~cam_audit.report.AuditReport.compare`, ``--max_regression``,
``--scores``): the page shows the comparison and the samples that got most worse (beside the champion's
overlays when ``--baseline_overlays`` names its ``cam-audit audit`` folder, or when the report lies in
one), and the exit code is the promotion's, like ``cam-audit gate --baseline``: 0 promote, 1 do not
promote, 2 bad input (also a baseline of another probe, target or method, checked before the audit).
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from cam_audit.errors import CamAuditError
from cam_audit.report import AuditReport, Comparison, ShortcutPolicy
from cam_audit.report.compare import check_options
from cam_audit.report.pairing import check_comparable

EXIT_PASS, EXIT_FAIL, EXIT_BAD_INPUT = 0, 1, 2
PROG = "cam-audit audit"
#: Summary numbers printed after an audit.
PRINTED_KEYS = ("focus", "focus_lift", "spurious_mass", "spurious_lift", "cf_flip_rate", "cf_paste_rate",
                "accuracy")


def build_parser() -> Any:
    """The jsonargparse parser of ``cam-audit audit`` (keys of the YAML config = long options)."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    from cam_audit.probe.sources import ProbeSource

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
                        help="probe set: class_path cam_audit.probe.sources.{CocoProbe,CsvProbe,MaskDirProbe,"
                        "SyntheticProbe} with its init_args")
    parser.add_argument("--target_layer", type=str | None, default=None,
                        help="dotted module name; default: the last layer with a spatial output")
    parser.add_argument("--method", type=Literal["gradcam++", "gradcam"], default="gradcam++")
    parser.add_argument("--target", type=Literal["label", "predicted"], default="label",
                        help="explain the ground-truth label or the predicted class")
    parser.add_argument("--batch_size", type=int, default=64, help="probe samples per forward pass")
    parser.add_argument("--counterfactual", type=bool, default=True,
                        help="run the fill and paste tests on samples with spurious regions")
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
        print(f"{PROG}: error: {_one_line(err)} (see {PROG} --help)", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        report, comparison = run_audit(config, parser)
    except CamAuditError as err:
        print(f"{PROG}: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    passed = report.passed if comparison is None else comparison.passed
    return EXIT_PASS if passed else EXIT_FAIL


def run_audit(config: Any, parser: Any) -> tuple[AuditReport, Comparison | None]:
    """Load the model and probe of a parsed config, audit, write the outputs and print the verdict.

    Returns:
        The report and, with ``--baseline``, its comparison with the champion.
    """
    from cam_audit import audit
    from cam_audit.render.html import write_html

    # `instantiate` replaced `instantiate_classes` in jsonargparse 4.49
    instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes
    init = instantiate(config)
    if init.worst < 0:
        raise CamAuditError(f"--worst must be >= 0 (samples per list on the HTML page), got {init.worst}")
    if init.batch_size < 1:
        raise CamAuditError(f"--batch_size must be >= 1, got {init.batch_size}")
    checkpoint = Path(init.checkpoint)
    model = load_model(init.model, checkpoint, init.model_args, init.device)
    probe = init.probe.load()
    baseline, baseline_overlays = _load_baseline(init, probe)
    out = Path(init.out)
    overlay_dir = out / "overlays"
    written: dict[int, Path] = {}
    bar = _progress_bar(len(probe), init.progress)

    def on_batch(batch: Any, maps: Any, rows: Any) -> None:
        bar.update(len(batch))
        if init.overlays:
            written.update(_write_overlays(batch, maps, overlay_dir))

    try:
        report = audit(
            model,
            probe,
            target_layer=init.target_layer,
            method=init.method,
            target=init.target,
            batch_size=init.batch_size,
            policy=init.policy,
            counterfactual=init.counterfactual,
            fill=init.fill,
            device=init.device,
            on_batch=on_batch,
        )
    finally:
        bar.close()
    report.meta.update(
        checkpoint=str(checkpoint),
        model_class_path=init.model,
        versions=_versions(),
        **_checkpoint_position(checkpoint),
    )
    report.to_json(out / "report.json")
    report.to_csv(out / "samples.csv")
    comparison = None if baseline is None else report.compare(baseline, init.max_regression, init.scores)
    page = write_html(report, out / "index.html", overlays=written, worst=init.worst, comparison=comparison,
                      baseline_overlays=baseline_overlays)
    _print_result(report, out, page)
    if comparison is not None:
        print("\n".join(comparison.to_text(str(checkpoint), str(init.baseline))))
    return report, comparison


def _load_baseline(init: Any, probe: Any) -> tuple[AuditReport | None, dict[int, Path]]:
    """The champion's report of ``--baseline`` and its overlays, checked against this audit's probe and
    options before any time is spent (``(None, {})`` without ``--baseline``)."""
    if init.baseline is None:
        if init.baseline_overlays is not None:
            raise CamAuditError("--baseline_overlays needs the champion's report: add --baseline FILE")
        return None, {}
    check_options(init.max_regression, init.scores)
    baseline = AuditReport.from_json(init.baseline)
    mine = {"probe_fingerprint": probe.fingerprint(), "target": init.target, "method": init.method}
    try:
        check_comparable(mine, baseline.meta)
    except CamAuditError as err:
        raise CamAuditError(f"--baseline {init.baseline}: {err}") from err
    return baseline, _baseline_overlays(init)


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


def load_model(class_path: str, checkpoint: Path, model_args: dict[str, Any], device: str) -> Any:
    """The model of ``class_path`` with the weights of ``checkpoint``, in eval mode on ``device``.

    A class with ``load_from_checkpoint`` (a LightningModule) restores itself, hyperparameters included;
    any other ``nn.Module`` is built with ``model_args`` and loads the checkpoint's ``state_dict``.

    Raises:
        CamAuditError: the class cannot be imported, the file is missing, or the weights do not fit.
    """
    import torch

    cls = _import_class(class_path)
    if not checkpoint.is_file():
        raise CamAuditError(
            f"checkpoint {checkpoint} does not exist; give the .ckpt file with --ckpt PATH or `checkpoint:`"
        )
    try:
        if hasattr(cls, "load_from_checkpoint"):
            model = cls.load_from_checkpoint(checkpoint, map_location=device, **model_args)
        else:
            state = torch.load(checkpoint, map_location=device, weights_only=True)
            state = state.get("state_dict", state) if isinstance(state, dict) else state
            model = cls(**model_args)
            model.load_state_dict(state)
            model.to(device)
    except CamAuditError:
        raise
    except Exception as err:  # unpickling, missing or unexpected keys, wrong shapes: all the user's file
        raise CamAuditError(
            f"cannot load {class_path} from checkpoint {checkpoint}: {_one_line(err)}; check that the "
            "checkpoint was saved from this class (and, for a plain nn.Module, model_args)"
        ) from err
    if not isinstance(model, torch.nn.Module):
        raise CamAuditError(f"model {class_path} is a {type(model).__name__}, not a torch.nn.Module")
    return model.eval()


def _import_class(class_path: str) -> type:
    module_name, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name) if module_name else None
    except (ImportError, AttributeError) as err:
        raise CamAuditError(
            f"model {class_path!r} cannot be imported ({_one_line(err)}); give the full class path of the "
            "model, e.g. cam_audit.lightning.scenes.SceneClassifier"
        ) from err
    if not isinstance(cls, type):
        raise CamAuditError(
            f"model {class_path!r} is not a class path; give package.module.ClassName, "
            "e.g. cam_audit.lightning.scenes.SceneClassifier"
        )
    return cls


def _write_overlays(batch: Any, maps: Any, folder: Path) -> dict[int, Path]:
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
        written[int(index)] = save_png(grid, folder / f"{int(index):05d}.png")
    return written


def _checkpoint_position(checkpoint: Path) -> dict[str, int]:
    """``epoch`` and ``global_step`` stored in a Lightning checkpoint (nothing for other files)."""
    import torch

    try:
        data = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception:  # a checkpoint with non-tensor extras: the model loaded, the position is unknown
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: int(data[k]) for k in ("epoch", "global_step") if isinstance(data.get(k), int)}


def _progress_bar(total: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="img", desc=PROG, disable=not enabled, file=sys.stderr, leave=False)


def _print_result(report: AuditReport, out: Path, page: Path) -> None:
    numbers = ", ".join(f"{k} {report.summary.get(k, math.nan):.3f}" for k in PRINTED_KEYS)
    state = "PASS" if report.passed else f"FAIL: {len(report.verdict.findings)} rule(s) failed"
    print(f"{state} {report.meta.get('checkpoint')}")
    print(f"  {numbers}")
    for finding in report.verdict.findings:
        print(f"  {finding.rule}: {finding.message}")
    print(f"report:   {out / 'report.json'}")
    print(f"samples:  {out / 'samples.csv'}")
    print(f"page:     {page}")


def _versions() -> dict[str, str]:
    import torch

    import cam_audit

    return {"cam_audit": cam_audit.__version__, "torch": torch.__version__}


def _one_line(err: BaseException) -> str:
    """An error message on one line: jsonargparse nests the reason under ``key:`` lines; follow them."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    taken = [lines[0]]
    for line in lines[1:4]:
        if not taken[-1].endswith(":"):
            break
        taken.append(line)
    return " ".join(taken)


__all__ = ["build_parser", "load_model", "main", "run_audit"]


if __name__ == "__main__":
    sys.exit(main())

