"""What reading a probe from files costs an audit, against the same probe held in memory.

Writes ``--n`` synthetic scenes of ``--image-size`` pixels as PNG files with a COCO instances file
(``scripts/make_coco_probe.py``) into a temporary folder, loads them with ``ProbeSet.from_coco`` and
builds the same samples with their decoded images as tensors (the in-memory arm). Then, in interleaved
rounds, audits the demo model (``SceneNet``, random weights) on each arm; the first audit of the file
arm is timed apart (it decodes every image), and the medians of the later rounds are compared:

    python scripts/bench_probe_io.py --threads 2
    python scripts/bench_probe_io.py --threads 2 --no-counterfactual --cache-bytes 0

``--cache-bytes`` is the file probe's ``cache_bytes`` (0: decode every image at every audit).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import make_coco_probe
import torch

import cam_audit
from cam_audit.probe import ProbeSet
from cam_audit.probe.probeset import IMAGE_CACHE_BYTES
from cam_audit.synthetic import SceneNet


def file_and_memory_probes(folder: Path, args: argparse.Namespace) -> tuple[ProbeSet, ProbeSet]:
    """The probe read from files and the same samples with their images decoded into tensors."""
    with contextlib.redirect_stdout(io.StringIO()):  # its "wrote ..." lines
        make_coco_probe.main(
            ["--out", str(folder), "--n", str(args.n), "--image-size", str(args.image_size), "--seed", "3"]
        )
    files = ProbeSet.from_coco(folder / "instances.json", folder / "images", cache_bytes=args.cache_bytes)
    in_memory = [dataclasses.replace(sample, image=sample.load_image()) for sample in files.samples]
    return files, ProbeSet(in_memory, classes=files.classes)


def timed(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=512, help="probe images (default 512)")
    parser.add_argument("--image-size", type=int, default=64, help="image side in pixels (default 64)")
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds after the first (median)")
    parser.add_argument("--batch-size", type=int, default=64, help="audit batch size (default 64)")
    parser.add_argument("--no-counterfactual", action="store_true", help="audit without the cue tests")
    parser.add_argument("--cache-bytes", type=int, default=IMAGE_CACHE_BYTES, help="the file probe's")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = SceneNet(num_classes=3, width=16).eval()
    with tempfile.TemporaryDirectory() as tmp:
        files, memory = file_and_memory_probes(Path(tmp), args)
        arms = {"in memory (from_tensors)": memory, "from files (from_coco)": files}

        def audit(probe: ProbeSet) -> object:
            cues = not args.no_counterfactual
            return cam_audit.audit(model, probe, "features", batch_size=args.batch_size, counterfactual=cues)

        first = {name: timed(lambda p=probe: audit(p)) for name, probe in arms.items()}
        times: dict[str, list[float]] = {name: [] for name in arms}
        for _ in range(args.repeats):
            for name, probe in arms.items():
                times[name].append(timed(lambda p=probe: audit(p)))
    print(
        f"{args.n} images of {args.image_size}x{args.image_size}, demo model, batch {args.batch_size}, "
        f"counterfactual {not args.no_counterfactual}, cache_bytes {args.cache_bytes}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}; median of {args.repeats} rounds "
        "after the first, arms interleaved"
    )
    print("| arm | first audit s | median s | min s | median / in memory | median of each round's ratio |")
    print("|---|---:|---:|---:|---:|---:|")
    base = times["in memory (from_tensors)"]
    for name, values in times.items():
        ratio = statistics.median(values) / statistics.median(base)
        per_round = statistics.median(v / b for v, b in zip(values, base, strict=True))
        print(
            f"| {name} | {first[name]:.3f} | {statistics.median(values):.3f} | {min(values):.3f} | "
            f"{ratio:.2f}x | {per_round:.2f}x |"
        )


if __name__ == "__main__":
    main()
