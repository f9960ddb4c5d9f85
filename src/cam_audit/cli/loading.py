"""Loading for ``cam-audit audit``: the device, the model class and its checkpoint, a ``forward`` function.

Every failure is a :class:`~cam_audit.errors.CamAuditError` with one line that names the argument or file.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from cam_audit.errors import CamAuditError, NonFiniteModelError


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
        raise CamAuditError(f"--device {device!r} is not a torch device ({one_line(err)}); use cpu, cuda, "
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
        if isinstance(err, KeyError) and err.args == ("pytorch-lightning_version",):
            _check_lightning_checkpoint(class_path, checkpoint)
        raise CamAuditError(
            f"cannot load {class_path} from checkpoint {checkpoint}: {one_line(err)}; check that the "
            "checkpoint was saved from this class (and, for a plain nn.Module, model_args)"
        ) from err
    if not isinstance(model, torch.nn.Module):
        raise CamAuditError(f"model {class_path} is a {type(model).__name__}, not a torch.nn.Module")
    return model.eval()


def _check_lightning_checkpoint(class_path: str, checkpoint: Path) -> None:
    """Name the usual reason a LightningModule cannot restore itself: the file is no Lightning checkpoint.

    Raises:
        CamAuditError: ``checkpoint`` is a dict without ``pytorch-lightning_version``, e.g. a plain
            ``state_dict`` saved by ``torch.save(model.state_dict(), path)``.
    """
    import torch

    data = _read_checkpoint(checkpoint)
    if data is None or "pytorch-lightning_version" in data:
        return
    if data and all(isinstance(v, torch.Tensor) for v in data.values()):
        what = "a plain state_dict (torch.save(model.state_dict()))"
    else:
        what = f"a dict of {', '.join(map(str, list(data)[:4]))}{', ...' if len(data) > 4 else ''}"
    raise CamAuditError(
        f"checkpoint {checkpoint} is {what}, not a Lightning checkpoint, so the LightningModule {class_path} "
        "cannot restore itself from it: give a .ckpt written by the Trainer (trainer.save_checkpoint(path) "
        "or ModelCheckpoint), or name as `model:` a plain nn.Module class whose state_dict this is, with its "
        "constructor arguments in `model_args:`"
    )


#: The modules that define the :class:`~cam_audit.probe.sources.ProbeSource` classes a config can name
PROBE_SOURCE_MODULES = ("cam_audit.probe.sources", "cam_audit.synthetic.sources")


def import_probe_sources() -> None:
    """Import the modules of every :class:`~cam_audit.probe.sources.ProbeSource` cam_audit defines, so that
    jsonargparse lists them all among the known subclasses of ``--probe`` (a class it has not seen
    imported, such as ``SyntheticProbe``, is left out of that list)."""
    for module in PROBE_SOURCE_MODULES:
        importlib.import_module(module)


def _import_object(path: str, what: str, example: str) -> Any:
    """The object at a dotted import path ``package.module.name``."""
    module_name, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), name) if module_name else None
    except (ImportError, AttributeError) as err:
        raise CamAuditError(
            f"{what} {path!r} cannot be imported ({one_line(err)}); give its full import path, e.g. "
            f"{example}"
        ) from err


def import_forward(path: str | None) -> Any:
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


def checkpoint_position(checkpoint: Path) -> dict[str, int]:
    """``epoch`` and ``global_step`` stored in a Lightning checkpoint (nothing for other files)."""
    data = _read_checkpoint(checkpoint) or {}
    return {k: int(data[k]) for k in ("epoch", "global_step") if isinstance(data.get(k), int)}


def _read_checkpoint(checkpoint: Path) -> dict[str, Any] | None:
    """The dict saved in ``checkpoint``, read on the CPU with tensors only (None for a
    file that holds no dict, or extras ``weights_only`` refuses)."""
    import torch

    try:
        data = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception:
        return None
    return data if isinstance(data, dict) else None


def one_line(err: BaseException) -> str:
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


__all__ = [
    "check_device",
    "check_finite_weights",
    "checkpoint_position",
    "import_forward",
    "load_model",
    "one_line",
    "import_probe_sources",
]
