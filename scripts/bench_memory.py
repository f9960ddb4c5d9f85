"""Peak memory of an audit as the probe grows: the audit streams the probe in batches, so it stays flat.

Each probe size runs in a fresh process (Linux: it resets the peak through ``/proc/self/clear_refs``).
The probe's own images grow with its size, so the script prints the resident memory after building the
probe and model, the peak during ``audit()``, and the difference: what the audit itself needs.

    python scripts/bench_memory.py                       # probes of 64, 256 and 1024 scenes, batch 64
    python scripts/bench_memory.py --sizes 64 1024 --batch-size 32 --image-size 96
    python scripts/bench_memory.py --trim     # glibc returns freed memory at once (MALLOC_TRIM_THRESHOLD_=0)

With ``--trim`` the children run with ``MALLOC_TRIM_THRESHOLD_=0 MALLOC_MMAP_THRESHOLD_=65536``, so the
allocator gives freed batches back instead of keeping them in its heap: what remains is what the audit
holds.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

CHILD = """
import sys, torch, torchvision
from cam_audit.pipeline import audit
from cam_audit.synthetic import make_scenes

n, batch_size, image_size = (int(v) for v in sys.argv[1:4])
torch.manual_seed(0)
model = torchvision.models.resnet18(num_classes=3).eval()
probe = make_scenes(n, watermark="correlated", image_size=image_size, seed=1).to_probe()

def status_kib(field):
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field))

# reset the peak (VmHWM) so that building the scenes and the probe does not count
with open("/proc/self/clear_refs", "w") as clear:
    clear.write("5")
before = status_kib("VmRSS")
report = audit(model, probe, target_layer="layer4", batch_size=batch_size)
peak = status_kib("VmHWM")
print(before, peak, int(report.summary["n_samples"]))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--trim", action="store_true", help="make glibc return freed memory at once")
    args = parser.parse_args()
    env = dict(os.environ)
    if args.trim:
        env.update(MALLOC_TRIM_THRESHOLD_="0", MALLOC_MMAP_THRESHOLD_="65536")
    print(
        f"resnet18, Grad-CAM++ with counterfactuals, batch {args.batch_size}, "
        f"{args.image_size}x{args.image_size}{', glibc trimming' if args.trim else ''}"
    )
    print("| probe images | RSS before audit (MiB) | peak during audit (MiB) | audit's own peak (MiB) |")
    print("|---:|---:|---:|---:|")
    for size in args.sizes:
        run = subprocess.run(
            [sys.executable, "-c", CHILD, str(size), str(args.batch_size), str(args.image_size)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        before, peak, scored = (int(v) for v in run.stdout.split()[-3:])
        assert scored == size, f"audited {scored} of {size} samples"
        print(f"| {size} | {before / 1024:.0f} | {peak / 1024:.0f} | {(peak - before) / 1024:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
