"""What one audit costs, in no-grad forwards over the same probe, and what the scores cost on their own.

Two workloads, each model in eval mode with fixed random weights:

- ``resnet18``: torchvision's, 64 random images of 224x224, each with an object box and a spurious box,
  in batches of 32;
- ``demo``: the demo model (``SceneNet``, width 16) on 256 synthetic 64x64 scenes with the correlated
  watermark, in batches of 64 (the callback's default).

For each, one round times a plain no-grad forward over the probe (the floor: no audit that computes
maps can cost less), ``audit(counterfactual=False)``, ``audit(counterfactual=True)`` and, with
``--discover``, ``audit(counterfactual=True, discover=True)``, in that order;
rounds repeat after a warm-up, so drifting load on a shared machine hits every arm alike, and the medians
are compared. Then each score of :mod:`cam_audit.metrics.functional`, and ``localisation()`` giving all of
them at once, is timed on 256 maps of 224x224 (median of ``--metric-calls`` calls, input checks included),
and the two resamplings an audit does besides the forwards (a CAM map to input size, the fill's blur) are
timed against what they replace: ``F.interpolate`` and pooling, a Gaussian and ``F.interpolate``:

    python scripts/bench_audit.py --threads 2
    python scripts/bench_audit.py --threads 2 --repeats 9 --workloads demo

The script only calls the public API, so the same file measures another checkout of the package
(``PYTHONPATH=<other checkout>/src python scripts/bench_audit.py``). To compare two versions under the
same load, copy the other one's package under another name (``cam_audit_base``, with its imports
renamed) and pass ``--compare cam_audit_base``: its two audit arms then run in the same rounds, and
its scores in the same rounds of score calls (and the script says whether both give the same values).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import statistics
import time
from collections.abc import Callable
from functools import partial
from types import ModuleType

import torch
import torchvision
from torch import nn

import cam_audit


def resnet18_workload(package: ModuleType) -> tuple[nn.Module, object, str, int]:
    """resnet18 (random weights) and 64 images of 224x224 with one object and one spurious box each."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    n, size = 64, 224
    generator = torch.Generator().manual_seed(1)
    corners = torch.randint(0, size - 96, (n, 2), generator=generator).float()
    boxes = torch.cat([corners, corners + 96], dim=1)
    spurious = torch.tensor([[4.0, 4.0, 40.0, 24.0]]).repeat(n, 1)
    probe = package.ProbeSet.from_tensors(
        torch.rand(n, 3, size, size, generator=generator),
        torch.randint(0, 10, (n,), generator=generator).tolist(),
        boxes=boxes,
        spurious_boxes=spurious,
    )
    return model, probe, "layer4", 32


def demo_workload(package: ModuleType) -> tuple[nn.Module, object, str, int]:
    """The demo model (random weights) and 256 scenes of 64x64 with the correlated watermark."""
    synthetic = importlib.import_module(f"{package.__name__}.synthetic")
    torch.manual_seed(0)
    model = synthetic.SceneNet(num_classes=3, width=16).eval()
    return model, synthetic.make_scenes(256, watermark="correlated", seed=2024).to_probe(), "features", 64


WORKLOADS: dict[str, Callable[[ModuleType], tuple[nn.Module, object, str, int]]] = {
    "resnet18": resnet18_workload,
    "demo": demo_workload,
}


def bench_workload(name: str, packages: list[ModuleType], args: argparse.Namespace) -> dict[str, list[float]]:
    """Seconds of every timed round of each arm on one workload: the forward, then each package's audits
    (each package builds its own probe; the model is the same)."""
    model, _, layer, batch_size = WORKLOADS[name](packages[0])
    probes = {package.__name__: WORKLOADS[name](package)[1] for package in packages}
    images = [batch.images for batch in probes[packages[0].__name__].batches(batch_size)]

    def forward() -> None:
        with torch.no_grad():
            for batch in images:
                model(batch)

    def audit_arm(package: ModuleType, counterfactual: bool, discover: bool = False) -> Callable[[], object]:
        probe = probes[package.__name__]
        options = {"discover": True} if discover else {}  # an older package has no discover=
        return lambda: package.audit(
            model, probe, layer, batch_size=batch_size, counterfactual=counterfactual, **options
        )

    arms: dict[str, Callable[[], object]] = {"no-grad forward": forward}
    for package in packages:
        label = "" if len(packages) == 1 else f" ({package.__name__})"
        arms[f"audit, no counterfactual{label}"] = audit_arm(package, False)
        arms[f"audit, counterfactual{label}"] = audit_arm(package, True)
        if args.discover and "discover" in inspect.signature(package.audit).parameters:
            arms[f"audit, counterfactual + discovery{label}"] = audit_arm(package, True, discover=True)
    times: dict[str, list[float]] = {arm: [] for arm in arms}
    for round_index in range(args.warmup + args.repeats):
        for arm, run in arms.items():
            started = time.perf_counter()
            run()
            if round_index >= args.warmup:
                times[arm].append(time.perf_counter() - started)
    return times


def print_workload(name: str, times: dict[str, list[float]]) -> None:
    floors = times["no-grad forward"]
    floor = statistics.median(floors)
    print(f"\n{name}:")
    print("| arm | median s | min s | median / no-grad forward | median of each round's ratio |")
    print("|---|---:|---:|---:|---:|")
    for arm, values in times.items():
        median = statistics.median(values)
        per_round = statistics.median(v / f for v, f in zip(values, floors, strict=True))
        print(f"| {arm} | {median:.3f} | {min(values):.3f} | {median / floor:.2f}x | {per_round:.2f}x |")


def bench_metrics(packages: list[ModuleType], args: argparse.Namespace) -> None:
    """Median milliseconds of each score, and of ``localisation()`` (all five scores at once), on 256 maps
    of 224x224 with box regions (checks included); with ``--compare``, whether both packages give the same
    values."""
    generator = torch.Generator().manual_seed(3)
    n, size = 256, 224
    maps = torch.rand(n, size, size, generator=generator) ** 4  # peaked, as CAMs are; no ties
    regions = torch.zeros(n, size, size, dtype=torch.bool)
    corners = torch.randint(0, size - 80, (n, 2), generator=generator).tolist()
    for i, (top, left) in enumerate(corners):
        regions[i, top : top + 80, left : left + 64] = True
    scores: dict[str, Callable[[], object]] = {}
    for package in packages:
        functional = importlib.import_module(f"{package.__name__}.metrics.functional")
        label = "" if len(packages) == 1 else f" ({package.__name__})"
        scores[f"area_fraction{label}"] = lambda f=functional: f.area_fraction(regions)
        for score in ("relevance_mass", "mass_lift", "pointing_game", "relevance_rank"):
            scores[f"{score}{label}"] = lambda f=functional, s=score: getattr(f, s)(maps, regions)
        scores[f"localisation{label}"] = lambda f=functional: f.localisation(maps, regions)
    times: dict[str, list[float]] = {name: [] for name in scores}
    for round_index in range(1 + args.metric_calls):
        for name, score in scores.items():
            started = time.perf_counter()
            score()
            if round_index > 0:
                times[name].append(time.perf_counter() - started)
    print(f"\nscores on {n} maps of {size}x{size} (median of {args.metric_calls} calls, rounds interleaved):")
    print("| score | median ms | min ms |")
    print("|---|---:|---:|")
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values) * 1000:.1f} | {min(values) * 1000:.1f} |")
    if len(packages) > 1:
        every = [
            importlib.import_module(f"{p.__name__}.metrics.functional").localisation(maps, regions)
            for p in packages
        ]
        same = all(
            torch.equal(every[0][name].nan_to_num(-1.0), other[name].nan_to_num(-1.0))
            for other in every[1:]
            for name in every[0]
        )
        print(f"same values from every package: {'yes' if same else 'NO'}")


def bench_resampling(args: argparse.Namespace) -> None:
    """Median milliseconds of the matrix resampling (:func:`cam_audit.cam.resize.resize_bilinear`,
    :func:`cam_audit.counterfactual.coarse_blur`) against the torch operators they replace, in interleaved
    calls on the shapes of both workloads' batches, and the largest difference between their values."""
    import torch.nn.functional as nnf
    from torchvision.transforms.v2 import functional as TF

    from cam_audit.cam.resize import resize_bilinear
    from cam_audit.counterfactual import coarse_blur

    def three_steps(images: torch.Tensor, sigma: float) -> torch.Tensor:  # the blur as pool, blur, resize
        factor = max(1, int(sigma // 2))
        small = nnf.avg_pool2d(images, factor, ceil_mode=True) if factor > 1 else images
        kernel = 2 * int(2 * sigma / factor) + 1
        small = TF.gaussian_blur(small, [kernel, kernel], [sigma / factor, sigma / factor])
        return nnf.interpolate(small, size=images.shape[-2:], mode="bilinear", align_corners=False)

    def interpolate(maps: torch.Tensor, size: int) -> torch.Tensor:
        return nnf.interpolate(maps, size=(size, size), mode="bilinear", align_corners=False)

    generator = torch.Generator().manual_seed(4)
    cases: list[tuple[str, Callable[[], torch.Tensor], Callable[[], torch.Tensor]]] = []
    for shape, size in (((64, 1, 8, 8), 64), ((32, 1, 7, 7), 224)):  # the demo's and resnet18's maps
        maps = torch.rand(shape, generator=generator)
        before, after = partial(interpolate, maps, size), partial(resize_bilinear, maps, (size, size))
        cases.append((f"CAM map {shape} -> {size}x{size}", before, after))
    for shape in ((64, 3, 64, 64), (32, 3, 224, 224)):
        images, sigma = torch.rand(shape, generator=generator), shape[-1] / 8
        before, after = partial(three_steps, images, sigma), partial(coarse_blur, images, sigma)
        cases.append((f"fill blur {shape}, sigma {sigma:g}", before, after))
    print(f"\nresampling (median of {args.metric_calls} interleaved calls):")
    print("| shapes | torch operators ms | matrices ms | ratio | largest difference |")
    print("|---|---:|---:|---:|---:|")
    for name, before, after in cases:
        arms = {"before": before, "after": after}
        times: dict[str, list[float]] = {arm: [] for arm in arms}
        for call in range(1 + args.metric_calls):
            for arm in arms if call % 2 else reversed(arms):
                started = time.perf_counter()
                arms[arm]()
                if call:
                    times[arm].append(time.perf_counter() - started)
        old, new = (statistics.median(times[arm]) * 1000 for arm in arms)
        difference = float((before() - after()).abs().max())
        print(f"| {name} | {old:.2f} | {new:.2f} | {new / old:.2f}x | {difference:.1e} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--workloads", nargs="*", choices=sorted(WORKLOADS), default=list(WORKLOADS), help="none: scores only"
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    parser.add_argument("--metric-calls", type=int, default=20, help="timed calls of each score")
    parser.add_argument("--no-metrics", action="store_true", help="skip the scores' and resamplings' timing")
    parser.add_argument("--discover", action="store_true",
                        help="also time audit(discover=True) (cues nobody annotated, bg_gap) in each round")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--compare", default=None, help="another copy of the package, by module name")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    packages = [cam_audit] + ([importlib.import_module(args.compare)] if args.compare else [])
    where = ", ".join(f"{package.__name__} from {package.__file__}" for package in packages)
    print(
        f"{where}; {torch.get_num_threads()} threads, torch {torch.__version__}, median of {args.repeats} "
        f"rounds after {args.warmup} warm-up"
    )
    for name in args.workloads:
        print_workload(name, bench_workload(name, packages, args))
    if not args.no_metrics:
        bench_metrics(packages, args)
        bench_resampling(args)


if __name__ == "__main__":
    main()
