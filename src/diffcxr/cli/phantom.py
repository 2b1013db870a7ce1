"""``diffcxr phantom``: write a digital chest phantom dataset (images + metadata.csv with known findings)."""

from __future__ import annotations

import argparse

from diffcxr.cli.arguments import count, count_at_most, fraction, non_negative

HELP = "generate digital chest X-ray phantoms with known findings, reports and planted noise"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=count_at_most(1_000_000, "a million 256-px phantoms take about 40 GB"),
                        required=True, help="number of phantoms, up to 1,000,000")
    parser.add_argument("--size", type=count, default=256, help="image side in pixels, 32..1024 (default 256)")
    parser.add_argument("--noise-fraction", type=fraction, default=0.0,
                        help="fraction of samples with planted dataset noise, in [0, 1) (default 0)")
    parser.add_argument("--seed", type=non_negative, default=0, help="random seed (default 0)")
    parser.add_argument("--out", required=True, help="output folder (gets images/ and metadata.csv)")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into a non-empty folder that is not an earlier phantom dataset")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import csv
    import time
    from collections import Counter

    from diffcxr.data.phantom import make_phantom_dataset

    t0 = time.perf_counter()
    csv_path = make_phantom_dataset(
        args.n, args.size, args.out, noise_fraction=args.noise_fraction, seed=args.seed,
        progress=not args.no_progress, overwrite=args.overwrite,
    )
    dt = time.perf_counter() - t0
    with open(csv_path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    noise = Counter(r["noise_type"] for r in rows if r["is_noise"] == "1")
    normal = sum(r["No Finding"] == "1" for r in rows)
    print(f"wrote {len(rows)} phantoms ({args.size}x{args.size}) to {csv_path.parent} in {dt:.1f} s "
          f"({len(rows) / max(dt, 1e-9):.0f} images/s)")
    print(f"  no finding: {normal}, noisy: {sum(noise.values())}"
          + (" (" + ", ".join(f"{k} {v}" for k, v in sorted(noise.items())) + ")" if noise else ""))
    print(f"  use it as dataset spec phantom:{csv_path.parent}")
    return 0
