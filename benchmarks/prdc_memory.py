"""Benchmark: PRDC (k = 5) and per-finding FID/KID/PRDC on 10,000 real + 10,000 generated 768-d features (RadDINO's CLS
width) in bounded memory.

The features are seeded Gaussians of one distribution (so all four PRDC values should be near 1), and the numbers
check memory and speed, not image quality. The per-finding pass gives every image 14 seeded random finding labels
(prevalence 2–50 %, so every finding has hundreds to thousands of positives per side) and runs
``per_finding_metrics`` exactly as ``diffcxr evaluate --metrics per_finding`` does. Prints, for each pass, peak RSS
(``ru_maxrss``) above the features themselves and the time, and the memory a full 10,000 × 10,000 float32 distance
matrix per pair of sides would have needed.

    nice .venv/bin/python benchmarks/prdc_memory.py                 # 10,000 + 10,000
    nice .venv/bin/python benchmarks/prdc_memory.py --n 2000        # quick
"""

from __future__ import annotations

import argparse
import resource
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000, help="features per side")
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--chunk", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from diffcxr.findings import CHEXPERT_FINDINGS
    from diffcxr.metrics import per_finding_metrics, prdc

    g = torch.Generator().manual_seed(0)
    real = torch.randn(args.n, args.dim, generator=g)
    fake = torch.randn(args.n, args.dim, generator=g)  # the same distribution: all four should be near 1
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    result = prdc(real, fake, k=5, chunk=args.chunk)
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    features_mb = 2 * args.n * args.dim * 4 / 2**20
    full_mb = args.n * args.n * 4 / 2**20
    print(f"PRDC k=5 on {args.n:,} + {args.n:,} features of {args.dim}-d: {dt:.1f} s, {torch.get_num_threads()} threads")
    print(f"  precision {result.precision:.3f}  recall {result.recall:.3f}  density {result.density:.3f}  "
          f"coverage {result.coverage:.3f}")
    print(f"  peak RSS {peak:.0f} MB ({peak - base:.0f} MB above the {features_mb:.0f} MB of features); one full "
          f"{args.n:,} x {args.n:,} float32 distance matrix would be {full_mb:.0f} MB, PRDC needs three")

    prevalence = torch.empty(len(CHEXPERT_FINDINGS)).uniform_(0.02, 0.5, generator=g)
    real_labels = (torch.rand(args.n, len(prevalence), generator=g) < prevalence).float().numpy()
    fake_labels = (torch.rand(args.n, len(prevalence), generator=g) < prevalence).float().numpy()
    t0 = time.perf_counter()
    per_finding = per_finding_metrics(real, real_labels, fake, fake_labels, k=5)
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    scored = per_finding["findings"]
    sizes = [v["n_real"] for v in scored.values()]
    print(f"per-finding FID/KID/PRDC: {len(scored)} findings scored ({min(sizes):,}-{max(sizes):,} real positives "
          f"each), {len(per_finding['skipped'])} skipped, {dt:.1f} s")
    print(f"  peak RSS {peak:.0f} MB ({peak - base:.0f} MB above the {features_mb:.0f} MB of features), "
          f"whole run so far")


if __name__ == "__main__":
    main()
