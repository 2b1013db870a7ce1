"""Benchmark table: mean ± SD over training seeds, per ablation arm, from ``diffcxr evaluate`` outputs.

Each arm is given as ``NAME=DIR[,DIR...]``, one evaluation folder (holding ``metrics.json``) per training seed
of that arm, all scored with the same classifier, reports and sampling settings. Prints a Markdown table: mAUC
and FID (mean ± SD over seeds, with every seed's value and 95 % bootstrap interval over reports) and, when a
reference arm is named, the difference of means in units of the larger SD (the issue's "> 2 SD" test).

    .venv/bin/python benchmarks/seed_table.py --ref full \\
        full=runs/eval-full-s0,runs/eval-full-s1 released=runs/eval-released-s0,runs/eval-released-s1
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np


def _read(folder: str) -> dict:
    path = Path(folder) / "metrics.json"
    if not path.is_file():
        raise SystemExit(f"seed_table: {path} not found (run diffcxr evaluate --out {folder} first)")
    m = json.loads(path.read_text(encoding="utf-8"))
    mauc = m.get("mauc", {})
    return {"mauc": (mauc.get("generated") or {}).get("mauc"), "mauc_ci": mauc.get("interval"),
            "fid": m.get("fid"), "fid_ci": m.get("fid_interval")}


def _mean_sd(values: list[float]) -> tuple[float, float]:
    arr = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if not len(arr):
        return math.nan, math.nan
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else math.nan


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("arms", nargs="+", metavar="NAME=DIR[,DIR...]")
    ap.add_argument("--ref", help="arm the others are compared with (difference of means / larger SD)")
    args = ap.parse_args()
    arms = {}
    for spec in args.arms:
        name, _, dirs = spec.partition("=")
        if not dirs:
            raise SystemExit(f"seed_table: give arms as NAME=DIR[,DIR...], got {spec!r}")
        arms[name] = [_read(d) for d in dirs.split(",")]
    stats = {name: {k: _mean_sd([s[k] for s in seeds]) for k in ("mauc", "fid")} for name, seeds in arms.items()}
    print("| arm | seeds | mAUC mean ± SD | FID mean ± SD | per seed: mAUC [95 % CI] / FID | Δ mAUC vs ref (SDs) |")
    print("|---|---:|---|---|---|---|")
    for name, seeds in arms.items():
        (m, msd), (f, fsd) = stats[name]["mauc"], stats[name]["fid"]
        per = "; ".join(
            f"{s['mauc']:.3f}" + (f" [{s['mauc_ci']['low']:.3f}, {s['mauc_ci']['high']:.3f}]" if s["mauc_ci"] else "")
            + (f" / {s['fid']:.2f}" if s["fid"] is not None else "") for s in seeds)
        delta = ""
        if args.ref and args.ref in stats and name != args.ref:
            rm, rsd = stats[args.ref]["mauc"]
            sds = [v for v in (msd, rsd) if not math.isnan(v) and v > 0]
            delta = f"{rm - m:+.3f}" + (f" ({(rm - m) / max(sds):.1f})" if sds else "")
        print(f"| {name} | {len(seeds)} | {m:.3f} ± {msd:.3f} | {f:.2f} ± {fsd:.2f} | {per} | {delta} |")


if __name__ == "__main__":
    main()
