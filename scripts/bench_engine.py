"""Time CamEngine against a no-grad forward and three CAM libraries, side by side in one run.

For each model (random init, eval mode) and one batch of random images, every method explains the same
target classes; methods are timed in interleaved rounds after a warm-up (so drifting load on a shared
machine hits them alike) and the median is reported as a markdown table:

    python scripts/bench_engine.py                          # resnet18 and resnet50, batch 16, 224x224, CPU
    python scripts/bench_engine.py --device cuda --dtype bf16 --repeats 20

What each row measures:
- ``no-grad forward``: ``model(images)`` under ``torch.no_grad()``, the floor.
- ``cam_audit CamEngine``: Grad-CAM++ maps at input resolution (one forward, backward through the head).
- ``pytorch-grad-cam GradCAMPlusPlus``: its ``__call__`` with ``ClassifierOutputTarget``s (full
  backward, numpy and OpenCV resize to input resolution, min-max normalised).
- ``torch-cam GradCAMpp``: forward with grad plus ``extractor(class_idx, scores)`` (layer resolution).
- ``Captum LayerGradCam``: ``attribute(images, target)``, Grad-CAM at layer resolution.
Third-party objects are built and released inside each timed call, so their hooks never slow the
other rows; building them costs microseconds.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
import warnings
from collections.abc import Callable

import torch
import torchvision.models as tvm
from torch import nn

from cam_audit.cam import CamEngine

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def _no_grad_forward(model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> None:
    with torch.no_grad():
        model(images)


def _cam_audit(model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> None:
    CamEngine(model, "layer4")(images, targets)


def _pytorch_grad_cam(model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> None:
    from pytorch_grad_cam import GradCAMPlusPlus
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    with GradCAMPlusPlus(model=model, target_layers=[model.layer4]) as cam:
        cam(input_tensor=images, targets=[ClassifierOutputTarget(int(c)) for c in targets])


def _torch_cam(model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> None:
    from torchcam.methods import GradCAMpp

    extractor = GradCAMpp(model, target_layer="layer4")
    try:
        with torch.enable_grad():
            scores = model(images)
            extractor(class_idx=targets.tolist(), scores=scores)
    finally:
        extractor.remove_hooks()


def _captum(model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> None:
    from captum.attr import LayerGradCam

    LayerGradCam(model, model.layer4).attribute(images, target=targets)


METHODS: dict[str, Callable[[nn.Module, torch.Tensor, torch.Tensor], None]] = {
    "no-grad forward": _no_grad_forward,
    "cam_audit CamEngine (Grad-CAM++)": _cam_audit,
    "pytorch-grad-cam GradCAMPlusPlus": _pytorch_grad_cam,
    "torch-cam GradCAMpp": _torch_cam,
    "Captum LayerGradCam": _captum,
}


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_model(name: str, args: argparse.Namespace) -> dict[str, list[float] | str]:
    """Milliseconds of every timed round per method for one model, or the error text where it fails."""
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = getattr(tvm, name)(num_classes=1000).eval().to(device)
    images = torch.rand(args.batch_size, 3, args.size, args.size, device=device)
    dtype = DTYPES[args.dtype]
    autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
    with torch.no_grad(), autocast:
        targets = model(images).argmax(dim=1)

    times: dict[str, list[float]] = {method: [] for method in METHODS}
    failed: dict[str, str] = {}
    for round_index in range(args.warmup + args.repeats):
        for method, run in METHODS.items():
            if method in failed:
                continue
            _synchronize(device)
            start = time.perf_counter()
            try:
                with autocast, warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    run(model, images, targets)
            except Exception as error:  # a library that cannot run this setting gets "n/a" in the table
                failed[method] = f"{type(error).__name__}: {error}".splitlines()[0][:80]
                continue
            _synchronize(device)
            if round_index >= args.warmup:
                times[method].append((time.perf_counter() - start) * 1000)
    return {method: failed.get(method) or times[method] for method in METHODS}


def markdown_table(results: dict[str, dict[str, list[float] | str]]) -> str:
    """Median and fastest round per method, and the medians' ratio to the no-grad forward."""
    lines = [
        "| model | method | median ms | min ms | median / no-grad forward |",
        "|---|---|---:|---:|---:|",
    ]
    summary = []
    for model, row in results.items():
        median = {m: statistics.median(v) for m, v in row.items() if not isinstance(v, str)}
        floor = median["no-grad forward"]
        for method, value in row.items():
            if isinstance(value, str):
                lines.append(f"| {model} | {method} | n/a | n/a | {value} |")
            else:
                ratio = median[method] / floor
                lines.append(
                    f"| {model} | {method} | {median[method]:.1f} | {min(value):.1f} | {ratio:.2f}× |"
                )
        ours, theirs = "cam_audit CamEngine (Grad-CAM++)", "pytorch-grad-cam GradCAMPlusPlus"
        if ours in median and theirs in median:
            summary.append(
                f"- {model}: cam_audit / pytorch-grad-cam = {median[ours] / median[theirs]:.2f}× (medians)"
            )
    return "\n".join(lines + [""] + summary)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet18", "resnet50"], help="torchvision ResNets")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--size", type=int, default=224, help="image height and width")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32", help="autocast dtype for all rows")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    results = {name: bench_model(name, args) for name in args.models}
    device_name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "CPU"
    print(
        f"batch {args.batch_size} x 3 x {args.size} x {args.size}, {args.dtype}, {device_name} "
        f"({torch.get_num_threads()} threads), torch {torch.__version__}, median of {args.repeats} "
        f"after {args.warmup} warm-up\n"
    )
    print(markdown_table(results))


if __name__ == "__main__":
    main()
