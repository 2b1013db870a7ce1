"""Plot: report adherence (mAUC) and FID against sampling cost, for the teacher's solvers and the students.

Reads ``sweep.json`` files written by ``benchmarks/adherence_sweep.py`` (each labelled on the command line) and
plots every row at its cost in **denoiser + adapter forwards per image**: ``steps × 2`` for a guided teacher
(classifier-free guidance, w > 1), ``steps × 1`` for a guidance-distilled or consistency student (its saved
U-ViT has a guidance embedding) or w = 1. Forwards are what sampling time scales with once text encoding and
decoding are paid (see ``benchmarks/distilled_speed.py`` for measured images/s). Left panel mAUC (95 % interval
bars), right panel FID; one curve per label × solver. Prints a Markdown table of all rows.

    .venv/bin/python benchmarks/quality_vs_cost.py --out docs/images/quality-vs-cost.png \\
        teacher=runs/sweep-solvers/sweep.json teacher-50=runs/sweep-teacher50/sweep.json lcm=runs/sweep-lcm/sweep.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def forwards_per_step(model: Path, guidance: float) -> int:
    """1 for a guidance-distilled denoiser or w <= 1, else 2 (the conditional and the unconditional branch)."""
    config = model / "denoiser" / "config.json"
    distilled = config.is_file() and json.loads(config.read_text()).get("guidance_embedding", False)
    return 1 if distilled or guidance <= 1 else 2


def load_rows(label: str, path: Path) -> list[dict]:
    sweep = json.loads(path.read_text())
    model = Path(sweep["args"]["model"])
    if not model.is_absolute():  # adherence_sweep stores --model as given: relative to where it ran
        model = path.parent.parent / model
    rows = []
    for r in sweep["rows"]:
        s = r["settings"]
        steps, w = s["num_inference_steps"], s["guidance_scale"]
        rows.append({"label": label, "solver": s.get("solver", "dpm++2m"), "steps": steps, "guidance": w,
                     "forwards": steps * forwards_per_step(model, w), "mauc": r["mauc"],
                     "low": r["interval"]["low"], "high": r["interval"]["high"], "fid": r["fid"],
                     "real_mauc": sweep["real"]["mauc"]})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweeps", nargs="+", help="LABEL=path/to/sweep.json")
    ap.add_argument("--out", required=True, help="the PNG to write")
    ap.add_argument("--guidance", type=float, default=None, help="keep only rows at this guidance weight")
    args = ap.parse_args()
    rows = []
    for item in args.sweeps:
        label, _, path = item.partition("=")
        rows += load_rows(label, Path(path))
    if args.guidance is not None:
        rows = [r for r in rows if r["guidance"] == args.guidance]
    print("| model | solver | steps | w | forwards/image | mAUC [95 % CI] | FID |\n|---|---|---:|---:|---:|---|---:|")
    for r in rows:
        print(f"| {r['label']} | {r['solver']} | {r['steps']} | {r['guidance']:g} | {r['forwards']} | {r['mauc']:.3f} "
              f"[{r['low']:.3f}, {r['high']:.3f}] | {r['fid']:.2f} |")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_mauc, ax_fid) = plt.subplots(1, 2, figsize=(10, 4.2), dpi=120)
    curves = sorted({(r["label"], r["solver"], r["guidance"]) for r in rows})
    for label, solver, w in curves:
        arm = sorted((r for r in rows if (r["label"], r["solver"], r["guidance"]) == (label, solver, w)),
                     key=lambda r: r["forwards"])
        name = f"{label} {solver} w={w:g}"
        x = [r["forwards"] for r in arm]
        yerr = [[r["mauc"] - r["low"] for r in arm], [r["high"] - r["mauc"] for r in arm]]
        ax_mauc.errorbar(x, [r["mauc"] for r in arm], yerr=yerr, marker="o", ms=3, capsize=2, label=name)
        ax_fid.plot(x, [r["fid"] for r in arm], marker="o", ms=3, label=name)
    ax_mauc.axhline(rows[0]["real_mauc"], color="grey", ls="--", lw=1, label=f"real images ({rows[0]['real_mauc']:.3f})")
    for ax, ylabel in ((ax_mauc, "mAUC vs. conditioning report"), (ax_fid, "FID (classifier features)")):
        ax.set_xscale("log")
        ax.set_xlabel("denoiser + adapter forwards per image")
        ax.set_ylabel(ylabel)
    ax_mauc.legend(fontsize=6)
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
