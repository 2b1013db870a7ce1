"""Benchmark table: mean ± SD over training seeds, per ablation arm, from ``diffcxr evaluate`` outputs.

Each arm is given as ``NAME=DIR[,DIR...]``, one folder per training seed of that arm — an evaluation folder
(``metrics.json``) or a ``diffcxr demo`` output (``adherence.json``) — all scored with the same classifier,
reports and sampling settings. Prints a Markdown table: mAUC
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

from diffcxr.metrics.seeds import mean_sd


def _read(folder: str, demo_arm: str = "model") -> dict:
    """One seed's numbers: ``metrics.json`` of ``diffcxr evaluate``, or ``adherence.json`` of ``diffcxr demo``
    (its ``demo_arm``: model, no_adapter or guidance_1; mAUC only)."""
    demo = Path(folder) / "adherence.json"
    if demo.is_file():
        r = json.loads(demo.read_text(encoding="utf-8"))[demo_arm]
        return {"mauc": r["mauc"], "mauc_ci": r.get("interval"), "fid": None, "fid_ci": None}
    path = Path(folder) / "metrics.json"
    if not path.is_file():
        raise SystemExit(f"seed_table: no metrics.json (diffcxr evaluate) or adherence.json (diffcxr demo) in {folder}")
    m = json.loads(path.read_text(encoding="utf-8"))
    mauc = m.get("mauc", {})
    return {"mauc": (mauc.get("generated") or {}).get("mauc"), "mauc_ci": mauc.get("interval"),
            "fid": m.get("fid"), "fid_ci": m.get("fid_interval")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("arms", nargs="+", metavar="NAME=DIR[,DIR...]")
    ap.add_argument("--ref", help="arm the others are compared with (difference of means / larger SD)")
    ap.add_argument("--demo-arm", default="model", choices=("model", "no_adapter", "guidance_1"),
                    help="which row of a demo's adherence.json to read (default model)")
    args = ap.parse_args()
    arms = {}
    for spec in args.arms:
        name, _, dirs = spec.partition("=")
        if not dirs:
            raise SystemExit(f"seed_table: give arms as NAME=DIR[,DIR...], got {spec!r}")
        arms[name] = [_read(d, args.demo_arm) for d in dirs.split(",")]
    stats = {name: {k: mean_sd([s[k] for s in seeds]) for k in ("mauc", "fid")} for name, seeds in arms.items()}
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
        fid = "n/a" if math.isnan(f) else f"{f:.2f} ± {fsd:.2f}"
        print(f"| {name} | {len(seeds)} | {m:.3f} ± {msd:.3f} | {fid} | {per} | {delta} |")


if __name__ == "__main__":
    main()
