"""What one audit costs, in no-grad forwards over the same probe, and what the scores cost on their own.

Two workloads, each model in eval mode with fixed random weights:

- ``resnet18``: torchvision's, 64 random images of 224x224, each with an object box and a spurious box,
  in batches of 32;
- ``demo``: the demo model (``SceneNet``, width 16) on 256 synthetic 64x64 scenes with the correlated
  watermark, in batches of 64 (the callback's default).

For each, one round times a plain no-grad forward over the probe (the floor: no audit that computes
maps can cost less), ``audit(counterfactual=False)`` and ``audit(counterfactual=True)``, in that order;
rounds repeat after a warm-up, so drifting load on a shared machine hits every arm alike, and the medians
are compared. Then each score of :mod:`cam_audit.metrics.functional` is timed on 256 maps of 224x224
(median of ``--metric-calls`` calls, input checks included):

    python scripts/bench_audit.py --threads 2
    python scripts/bench_audit.py --threads 2 --repeats 9 --workloads demo

The script only calls the public API, so the same file measures another checkout of the package
(``PYTHONPATH=<other checkout>/src python scripts/bench_audit.py``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torchvision
from torch import nn

from cam_audit import ProbeSet, audit
from cam_audit.metrics import functional as F
from cam_audit.synthetic import SceneNet, make_scenes


def resnet18_workload() -> tuple[nn.Module, ProbeSet, str, int]:
    """resnet18 (random weights) and 64 images of 224x224 with one object and one spurious box each."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    n, size = 64, 224
    generator = torch.Generator().manual_seed(1)
    corners = torch.randint(0, size - 96, (n, 2), generator=generator).float()
    boxes = torch.cat([corners, corners + 96], dim=1)
    spurious = torch.tensor([[4.0, 4.0, 40.0, 24.0]]).repeat(n, 1)
    probe = ProbeSet.from_tensors(
        torch.rand(n, 3, size, size, generator=generator),
        torch.randint(0, 10, (n,), generator=generator).tolist(),
        boxes=boxes,
        spurious_boxes=spurious,
    )
    return model, probe, "layer4", 32


def demo_workload() -> tuple[nn.Module, ProbeSet, str, int]:
    """The demo model (random weights) and 256 scenes of 64x64 with the correlated watermark."""
    torch.manual_seed(0)
    model = SceneNet(num_classes=3, width=16).eval()
    return model, make_scenes(256, watermark="correlated", seed=2024).to_probe(), "features", 64


WORKLOADS: dict[str, Callable[[], tuple[nn.Module, ProbeSet, str, int]]] = {
    "resnet18": resnet18_workload,
    "demo": demo_workload,
}


def bench_workload(name: str, args: argparse.Namespace) -> dict[str, list[float]]:
    """Seconds of every timed round of the three arms on one workload."""
    model, probe, layer, batch_size = WORKLOADS[name]()
    images = [batch.images for batch in probe.batches(batch_size)]

    def forward() -> None:
        with torch.no_grad():
            for batch in images:
                model(batch)

    arms: dict[str, Callable[[], object]] = {
        "no-grad forward": forward,
        "audit, no counterfactual": lambda: audit(
            model, probe, layer, batch_size=batch_size, counterfactual=False
        ),
        "audit, counterfactual": lambda: audit(model, probe, layer, batch_size=batch_size),
    }
    times: dict[str, list[float]] = {arm: [] for arm in arms}
    for round_index in range(args.warmup + args.repeats):
        for arm, run in arms.items():
            started = time.perf_counter()
            run()
            if round_index >= args.warmup:
                times[arm].append(time.perf_counter() - started)
    return times


def print_workload(name: str, times: dict[str, list[float]]) -> None:
    floor = statistics.median(times["no-grad forward"])
    print(f"\n{name}:")
    print("| arm | median s | min s | median / no-grad forward |")
    print("|---|---:|---:|---:|")
    for arm, values in times.items():
        median = statistics.median(values)
        print(f"| {arm} | {median:.3f} | {min(values):.3f} | {median / floor:.2f}x |")


def bench_metrics(args: argparse.Namespace) -> None:
    """Median milliseconds of each score on 256 maps of 224x224 with box regions (checks included)."""
    generator = torch.Generator().manual_seed(3)
    n, size = 256, 224
    maps = torch.rand(n, size, size, generator=generator) ** 4  # peaked, as CAMs are; no ties
    regions = torch.zeros(n, size, size, dtype=torch.bool)
    corners = torch.randint(0, size - 80, (n, 2), generator=generator).tolist()
    for i, (top, left) in enumerate(corners):
        regions[i, top : top + 80, left : left + 64] = True
    scores: dict[str, Callable[[], torch.Tensor]] = {
        "area_fraction": lambda: F.area_fraction(regions),
        "relevance_mass": lambda: F.relevance_mass(maps, regions),
        "mass_lift": lambda: F.mass_lift(maps, regions),
        "pointing_game": lambda: F.pointing_game(maps, regions),
        "relevance_rank": lambda: F.relevance_rank(maps, regions),
    }
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
    parser.add_argument("--no-metrics", action="store_true", help="skip the scores' own timing")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    import cam_audit

    print(
        f"cam_audit from {cam_audit.__file__}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
        f"median of {args.repeats} rounds after {args.warmup} warm-up"
    )
    for name in args.workloads:
        print_workload(name, bench_workload(name, args))
    if not args.no_metrics:
        bench_metrics(args)


if __name__ == "__main__":
    main()
