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

Exit codes, like ``cam-audit gate``: 0 the model passes the policy, 1 it fails (each failed rule printed;
also a model whose weights or logits are NaN or infinite), 2 bad config, arguments, checkpoint, probe,
device or output folder (a one-line message, never a traceback). ``--out`` and ``--device`` are checked
before anything is loaded. The outputs are written into a new folder beside ``--out`` and swapped in at
the end, so a failed or interrupted audit leaves ``--out`` as it was.
"""

from __future__ import annotations

import argparse
import importlib
import math
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from cam_audit.cli.out_dir import prepare_out, swap_in
from cam_audit.errors import CamAuditError, NonFiniteModelError
from cam_audit.keys import HEADLINE_KEYS
from cam_audit.report import AuditReport, ShortcutPolicy

EXIT_PASS, EXIT_FAIL, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
PROG = "cam-audit audit"


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
    parser.add_argument("--task", type=Literal["multiclass", "multilabel", "binary"] | None, default=None,
                        help="how the logits are read: softmax classes, one sigmoid per class, or one logit "
                        "(binary); default: binary for a model with one output, else multiclass")
    parser.add_argument("--forward", type=str | None, default=None,
                        help="import path of a function (model, images) -> logits, for a model whose "
                        "forward takes a dict or extra inputs, e.g. mypackage.audit.forward_dict")
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
        report = run_audit(config, parser)
    except NonFiniteModelError as err:  # the model is broken: it fails, as a failed verdict does
        print(f"{PROG}: FAIL: {_one_line(err)}", file=sys.stderr)
        return EXIT_FAIL
    except CamAuditError as err:
        print(f"{PROG}: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as err:
        print(f"{PROG}: error: {err.filename or ''}: {err.strerror or _one_line(err)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; --out was left as it was", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as err:  # a model's forward that fails on the probe, a broken probe source, ...
        print(f"{PROG}: error: {type(err).__name__}: {_one_line(err)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_PASS if report.passed else EXIT_FAIL


def run_audit(config: Any, parser: Any) -> AuditReport:
    """Check the options, device and output folder, then audit into a new folder and swap it in."""
    # `instantiate` replaced `instantiate_classes` in jsonargparse 4.49
    instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes
    init = instantiate(config)
    if init.worst < 0:
        raise CamAuditError(f"--worst must be >= 0 (samples per list on the HTML page), got {init.worst}")
    if init.batch_size < 1:
        raise CamAuditError(f"--batch_size must be >= 1, got {init.batch_size}")
    check_device(init.device)
    out = Path(init.out)
    stage = prepare_out(out)
    try:
        report = _audit_into(init, stage)
        swap_in(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)  # gone already once swapped in
    _print_result(report, out, out / "index.html")
    return report


def _audit_into(init: Any, stage: Path) -> AuditReport:
    """Load the model and probe, audit, and write every output into ``stage``."""
    from cam_audit import audit
    from cam_audit.render.html import write_html

    checkpoint = Path(init.checkpoint)
    forward = _import_forward(init.forward)
    model = load_model(init.model, checkpoint, init.model_args, init.device)
    check_finite_weights(model, checkpoint)
    probe = init.probe.load()
    written: dict[int, Path] = {}
    bar = _progress_bar(len(probe), init.progress)

    def on_batch(batch: Any, maps: Any, rows: Any) -> None:
        bar.update(len(batch))
        if init.overlays:
            written.update(_write_overlays(batch, maps, stage / "overlays", Path(init.out)))

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
            fill=init.fill,
            device=init.device,
            on_batch=on_batch,
        )
    finally:
        bar.close()
    report.meta.update(
        checkpoint=str(checkpoint),
        model_class_path=init.model,
        **_checkpoint_position(checkpoint),
    )
    try:
        report.to_json(stage / "report.json")
        report.to_csv(stage / "samples.csv")
        write_html(report, stage / "index.html", overlays=written, worst=init.worst)
    except OSError as err:
        raise _write_error(err, Path(init.out)) from err
    return report


def _write_error(err: OSError, out: Path) -> CamAuditError:
    return CamAuditError(
        f"cannot write the outputs of --out {out} ({err.filename or out}): {err.strerror or err}; check the "
        "free space and the permissions there"
    )


def check_device(device: str) -> None:
    """Refuse a ``--device`` this machine does not have, before anything is loaded.

    Raises:
        CamAuditError: not a torch device, no CUDA (or MPS, XPU) where one is named, or a device index
            beyond the number of devices.
    """
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as err:
        raise CamAuditError(f"--device {device!r} is not a torch device ({_one_line(err)}); use cpu, cuda, "
                            "cuda:N or mps") from err
    if parsed.type == "cpu":
        return
    if parsed.type == "mps":
        if not torch.backends.mps.is_available():
            raise CamAuditError(f"--device {device}: MPS is not available on this machine; use --device cpu")
        return
    backend = getattr(torch, parsed.type, None) if parsed.type in ("cuda", "xpu") else None
    if backend is None:
        raise CamAuditError(f"--device {device}: device type '{parsed.type}' is not supported here; use cpu, "
                            "cuda, cuda:N or mps")
    count = backend.device_count() if backend.is_available() else 0
    if count == 0:
        raise CamAuditError(f"--device {device}: torch {torch.__version__} sees no {parsed.type.upper()} "
                            "device on this machine; use --device cpu")
    if parsed.index is not None and parsed.index >= count:
        raise CamAuditError(f"--device {device}: this machine has {count} {parsed.type.upper()} device(s), "
                            f"{parsed.type}:0 to {parsed.type}:{count - 1}")


def check_finite_weights(model: Any, checkpoint: Path) -> None:
    """Refuse a model with a NaN or infinite parameter or buffer (a diverged run), naming the first."""
    import torch

    for kind, named in (("parameter", model.named_parameters()), ("buffer", model.named_buffers())):
        for name, tensor in named:
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                bad = int((~torch.isfinite(tensor)).sum())
                raise NonFiniteModelError(
                    f"{kind} '{name}' of checkpoint {checkpoint} holds {bad} of {tensor.numel()} values "
                    "that are NaN or infinite; the weights are broken (a diverged run?): audit an earlier "
                    "checkpoint"
                )


def load_model(class_path: str, checkpoint: Path, model_args: dict[str, Any], device: str) -> Any:
    """The model of ``class_path`` with the weights of ``checkpoint``, in eval mode on ``device``.

    A class with ``load_from_checkpoint`` (a LightningModule) restores itself, hyperparameters included;
    any other ``nn.Module`` is built with ``model_args`` and loads the checkpoint's ``state_dict``.

    Raises:
        CamAuditError: the class cannot be imported, the file is missing, or the weights do not fit.
    """
    import torch

    cls = _import_class(class_path)
    if checkpoint.is_dir():
        inside = sorted(p.name for p in checkpoint.iterdir() if p.suffix in (".ckpt", ".pt", ".pth"))[:3]
        raise CamAuditError(
            f"checkpoint {checkpoint} is a folder, not a checkpoint file; give the file itself"
            + (f", e.g. {checkpoint / inside[0]} (it holds {', '.join(inside)})" if inside else "")
        )
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


def _import_object(path: str, what: str, example: str) -> Any:
    """The object at a dotted import path ``package.module.name``."""
    module_name, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), name) if module_name else None
    except (ImportError, AttributeError) as err:
        raise CamAuditError(
            f"{what} {path!r} cannot be imported ({_one_line(err)}); give its full import path, e.g. "
            f"{example}"
        ) from err


def _import_forward(path: str | None) -> Any:
    """The ``forward(model, images) -> logits`` function named by ``--forward`` (None when not given)."""
    if not path:
        return None
    forward = _import_object(path, "forward", "mypackage.audit.forward_dict")
    if not callable(forward):
        raise CamAuditError(
            f"forward {path!r} is a {type(forward).__name__}, not a function (model, images) -> logits"
        )
    return forward


def _import_class(class_path: str) -> type:
    cls = _import_object(class_path, "model", "cam_audit.lightning.scenes.SceneClassifier")
    if not isinstance(cls, type):
        raise CamAuditError(
            f"model {class_path!r} is not a class path; give package.module.ClassName, "
            "e.g. cam_audit.lightning.scenes.SceneClassifier"
        )
    return cls


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
    numbers = ", ".join(f"{k} {report.summary.get(k, math.nan):.3f}" for k in HEADLINE_KEYS)
    state = "PASS" if report.passed else f"FAIL: {len(report.verdict.findings)} rule(s) failed"
    print(f"{state} {report.meta.get('checkpoint')}")
    print(f"  {numbers}")
    for finding in report.verdict.findings:
        print(f"  {finding.rule}: {finding.message}")
    print(f"report:   {out / 'report.json'}")
    print(f"samples:  {out / 'samples.csv'}")
    print(f"page:     {page}")


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

