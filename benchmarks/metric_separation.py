"""Benchmark: does each evaluation metric separate real, generated, ablated and broken images the expected way?

Scores, against one real reference set (``--real``, at most ``--n`` images), with one feature extractor,
yardstick classifier and VLM:

* **real vs real**: ``--n`` fresh phantoms from the same generator (another seed), with their reports as sidecars:
  the best any generator can do;
* each ``--set NAME=DIR`` of generated images (PNG + JSON sidecars, e.g. the default model, an ablation);
* **noise**: phantoms that are all planted dataset noise (inverted, lateral, cropped, corrupted ... with their
  reports): what an image that is not a usable chest X-ray of its report scores.

Expected: FID/KID lowest and precision/recall/density/coverage highest for real vs real, worst for noise; mAUC and
alignment highest for real, near chance (mAUC 0.5, alignment near the shuffled-pairs value) for noise; the
calibrated memorisation share near the real held-out 1 % everywhere.

    nice .venv/bin/python benchmarks/metric_separation.py --real phantom:runs/phantoms-eval \\
        --classifier runs/cpu-mini/classifier --alignment-model runs/cpu-mini/vlm \\
        --train-data phantom:runs/phantoms5k --set default=runs/eval/generated --set "no adapter"=runs/gen-noadapter
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

METRICS = "fid,kid,prdc,mauc,alignment,memorization"


def sidecar_set(records, folder: Path, size: int) -> Path:
    """Write ``records``' images as PNGs with the sidecars ``diffcxr evaluate`` reads (report, id, labels)."""
    import numpy as np

    from diffcxr.data import load_image, save_png
    from diffcxr.findings import CHEXPERT_FINDINGS

    folder.mkdir(parents=True, exist_ok=True)
    for record in records:
        image = (load_image(record.image_path, size)[0].numpy() + 1) / 2
        save_png(image, folder / f"{record.id}_00.png", value_range=(0.0, 1.0))
        labels = {f: (None if np.isnan(v) else float(v)) for f, v in zip(CHEXPERT_FINDINGS, record.labels)}
        (folder / f"{record.id}_00.json").write_text(json.dumps({"report": record.report, "id": record.id,
                                                                 "labels": labels}))
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", required=True, help="the reference: a phantom dataset spec")
    ap.add_argument("--classifier", required=True)
    ap.add_argument("--alignment-model", required=True)
    ap.add_argument("--train-data", required=True, help="dataset spec searched for memorisation (its train split)")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=DIR", help="a generated set (repeatable)")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--out", default=None, help="keep the evaluation folders here (default: a temporary folder)")
    args = ap.parse_args()

    from diffcxr.cli.main import main as cli
    from diffcxr.data import read_records
    from diffcxr.data.phantom import make_phantom_dataset

    work = Path(args.out or tempfile.mkdtemp(prefix="diffcxr-separation-"))
    make_phantom_dataset(args.n, args.size, work / "fresh-phantoms", seed=12345, progress=False)
    sets = {"real vs real (fresh phantoms)": sidecar_set(read_records(f"phantom:{work / 'fresh-phantoms'}",
                                                                      derive_labels=True), work / "real", args.size)}
    for spec in args.set:
        name, _, folder = spec.partition("=")
        sets[name] = Path(folder)
    # every image a planted noise type (the generator plants round(n * fraction) of them; keep those)
    make_phantom_dataset(args.n + 3, args.size, work / "noise-phantoms", seed=7, noise_fraction=0.99, progress=False)
    noisy = [r for r in read_records(f"phantom:{work / 'noise-phantoms'}", derive_labels=True)
             if str(r.meta.get("is_noise")) in ("1", "True", "true")][:args.n]
    sets["noise (planted dataset noise)"] = sidecar_set(noisy, work / "noise", args.size)

    rows = []
    for name, folder in sets.items():
        out = work / ("eval-" + "".join(c if c.isalnum() else "-" for c in name))
        code = cli(["evaluate", "--real", args.real, "--generated", str(folder), "--split", "all",
                    "--metrics", METRICS, "--classifier", args.classifier, "--alignment-model", args.alignment_model,
                    "--train-data", args.train_data, "--n", str(args.n), "--bootstrap", "100", "--quiet",
                    "--out", str(out)])
        if code:
            raise SystemExit(f"evaluate failed for {name}")
        m = json.loads((out / "metrics.json").read_text())
        p, a, c = m["prdc"], m["alignment"], m["memorization"]["calibrated"]
        rows.append(f"| {name} | {m['fid']:.2f} | {m['kid']['mean'] * 1e3:.1f} | {p['precision']:.2f} / "
                    f"{p['recall']:.2f} / {p['density']:.2f} / {p['coverage']:.2f} | "
                    f"{m['mauc']['generated']['mauc']:.3f} | {a['generated']:.3f} | {c['share_generated']:.1%} |")
        real_alignment, shuffled, real_mauc = a["real"], a["shuffled_real"], m["mauc"].get("real", {}).get("mauc")
    print(f"reference: {args.n} real images of {args.real}; yardstick mAUC on them {real_mauc:.3f}; alignment of "
          f"real pairs {real_alignment:.3f}, shuffled real pairs {shuffled:.3f}")
    print("| set | FID ↓ | KID ×10³ ↓ | precision / recall / density / coverage ↑ | mAUC vs report ↑ | "
          "alignment ↑ | memorised (calibrated 99th pct.) |")
    print("|---|---:|---:|---|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
