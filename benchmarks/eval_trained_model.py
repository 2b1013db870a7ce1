"""Benchmark: evaluate a trained Diff-CXR pipeline on phantoms, with the ablations that need no retraining.

Runs ``diffcxr evaluate --model`` once per variant on the same held-out reports and seeds, and prints one
Markdown table (FID, KID, mAUC against the conditioning reports, MS-SSIM diversity, memorisation):

- ``full``: report + disease-knowledge adapter (the Diff-CXR model);
- ``no-adapter``: the same pipeline with ``--adapter-scale 0`` (no disease knowledge: the base U-ViT alone);
- ``real``: a real reference row — real images of ``--reference-split`` in place of generated ones, scored
  against the same real ``--split`` (FID/KID scale of two real sets; the classifier's mAUC on real images).

    .venv/bin/python benchmarks/eval_trained_model.py --model runs/cpu-mini/pipeline \\
        --data phantom:runs/phantoms5k --classifier runs/cpu-mini/classifier --out runs/eval-cpu-mini

``--reuse`` scores the images of an earlier run again (e.g. with another classifier) without generating.
``--variants full`` evaluates only the model itself (used for the retrained ablations: no squeeze —
``model=cpu-mini-no-squeeze`` —, and no filtering — ``benchmarks/ablation_filtering.sh``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from diffcxr.cli.main import main as cli_main


def _evaluate(argv: list[str]) -> dict:
    code = cli_main(argv)
    if code:
        sys.exit(f"diffcxr {' '.join(argv)} exited {code}")
    return json.loads((Path(argv[argv.index("--out") + 1]) / "metrics.json").read_text())


def _row(name: str, m: dict, seconds: float) -> str:
    def f(v, d=3):
        return "n/a" if v is None else f"{v:.{d}f}"

    mauc = m.get("mauc", {}).get("generated", {}).get("mauc")
    kid = m.get("kid", {})
    kid_s = f"{kid['mean'] * 1e3:.2f} ± {kid['std'] * 1e3:.2f}" if kid else "n/a"
    memo = m.get("memorization", {})
    return (f"| {name} | {m['protocol']['n_generated']} | {f(m.get('fid'), 2)} | {kid_s} | {f(mauc)} | "
            f"{f(m.get('msssim', {}).get('msssim'))} | "
            f"{f(memo.get('share_above'))} / {f(memo.get('max_nearest_cosine'))} | {seconds:.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="saved DiffCXRPipeline folder")
    ap.add_argument("--data", required=True, help="dataset spec of the real images and the reports")
    ap.add_argument("--classifier", required=True, help="CXRClassifier folder (mAUC and 'cxr' features)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--split", default="test", help="real reference split and report split (default test)")
    ap.add_argument("--reference-split", default="val", help="real images compared as 'generated' (default val)")
    ap.add_argument("--n-reports", type=int, default=125)
    ap.add_argument("--samples-per-report", type=int, default=4)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--guidance", type=float, default=2.0)
    ap.add_argument("--dtype", default="bf16", choices=("fp32", "bf16"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variants", default="full,no-adapter,real",
                    help="rows to produce, any of full, no-adapter, real (default all three)")
    ap.add_argument("--reuse", action="store_true",
                    help="score the images an earlier run generated (e.g. with another --classifier) instead of "
                         "generating again")
    args = ap.parse_args()
    variants = set(args.variants.split(","))
    if not variants or variants - {"full", "no-adapter", "real"}:
        sys.exit(f"--variants: choose from full, no-adapter, real (got {args.variants!r})")

    out = Path(args.out)
    common = ["--real", args.data, "--split", args.split, "--classifier", args.classifier, "--seed", str(args.seed),
              "--quiet"]
    rows, real_mauc = [], None
    for name, scale in (("Diff-CXR (report + knowledge adapter)", 1.0), ("no disease knowledge (adapter scale 0)", 0.0)):
        if ("full" if scale else "no-adapter") not in variants:
            continue
        t0 = time.perf_counter()
        variant_dir = out / ("full" if scale else "no-adapter")
        earlier = variant_dir / "generated"
        if args.reuse and len(list(earlier.glob("*.png"))) == args.n_reports * args.samples_per_report:
            source = ["--generated", str(earlier)]  # images (and sidecars) of an earlier run of this script
            variant_dir = variant_dir.with_name(variant_dir.name + "-rescored")
        else:
            source = ["--model", args.model, "--reports", args.data, "--n-reports", str(args.n_reports),
                      "--samples-per-report", str(args.samples_per_report), "--steps", str(args.steps),
                      "--guidance", str(args.guidance), "--dtype", args.dtype, "--adapter-scale", str(scale)]
        m = _evaluate(["evaluate", *common, *source, "--out", str(variant_dir)])
        rows.append(_row(name, m, time.perf_counter() - t0))
        real_mauc = m.get("mauc", {}).get("real", {}).get("mauc")

    if "real" in variants:
        row, m = _real_reference_row(args, out, common)
        rows.append(row)
        if real_mauc is None:
            real_mauc = m.get("mauc", {}).get("real", {}).get("mauc")

    print(f"\n{args.n_reports} held-out reports ({args.split} split) x {args.samples_per_report} samples, "
          f"{args.steps} DPM-Solver++ steps, guidance {args.guidance}, {args.dtype}; reference: real {args.split} "
          f"images; features and mAUC: {args.classifier} (its mAUC on the real {args.split} images: "
          f"{real_mauc if real_mauc is None else round(real_mauc, 3)})\n")
    print("| images | n | FID ↓ | KID ×10³ ↓ | mAUC vs report ↑ | MS-SSIM (lower = more diverse) | "
          "memorisation: share ≥ 0.95 / max cosine | s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))


def _real_reference_row(args, out: Path, common: list[str]) -> tuple[str, dict]:
    """Real images of ``--reference-split`` (with sidecars carrying their own reports) scored as if generated:
    the table row and the metrics."""
    from diffcxr.data.sources import read_records

    ref = out / "real-reference-images"
    shutil.rmtree(ref, ignore_errors=True)
    ref.mkdir(parents=True)
    records = read_records(args.data, split=args.reference_split, derive_labels=True)[: args.n_reports * args.samples_per_report]
    for r in records:
        shutil.copyfile(r.image_path, ref / f"{r.id}.png")
        (ref / f"{r.id}.json").write_text(json.dumps({"report": r.report, "id": r.id}), encoding="utf-8")
    t0 = time.perf_counter()
    m = _evaluate(["evaluate", *common, "--generated", str(ref), "--metrics", "fid,kid,mauc,memorization",
                   "--out", str(out / "real")])
    return _row(f"real images ({args.reference_split} split)", m, time.perf_counter() - t0), m


if __name__ == "__main__":
    main()
