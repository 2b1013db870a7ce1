"""LNFS on digital phantoms with 10 % planted noise: AUROC, precision of the removed set, per-type recall,
one round vs gradual rounds, and a sweep over K / fraction / rounds / outlier-cluster rule / features.

    nice .venv/bin/python benchmarks/lnfs_phantoms.py                       # 2,000 phantoms at 64×64, ~8 min
    nice .venv/bin/python benchmarks/lnfs_phantoms.py --vae-dir /tmp/v      # reuse (or keep) the trained VAE

Steps: ``diffcxr phantom``-style dataset (``make_phantom_dataset``, noise_fraction 0.1) in a temp folder → a
small 1-channel AutoencoderKL trained on those images for ``--vae-steps`` steps of the project's VAE stage (see
``lnfs_common.py``) → latents (posterior mean × scaling factor, 4×16×16) → the filter.

``mismatched_report`` noise (a wrong report with a normal image) is invisible to any image-space filter; the
table therefore also gives the AUROC over the image-visible noise types ("visible").
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

INVISIBLE = {"mismatched_report"}


def evaluate(result, truth, types) -> dict:
    from sklearn.metrics import roc_auc_score

    visible = ~np.isin(types, list(INVISIBLE))
    removed = ~result.kept
    return {
        "auroc": roc_auc_score(truth, result.final_score),
        "auroc_visible": roc_auc_score(truth[visible], result.final_score[visible]),
        "auroc_rank_visible": roc_auc_score(truth[visible], result.rank_score()[visible]),
        "precision": float(truth[removed].mean()) if removed.any() else float("nan"),
        "recall": float(removed[truth].mean()),
        "recall_visible": float(removed[truth & visible].mean()),
        "per_type": {t: float(removed[types == t].mean()) for t in sorted(set(types.tolist())) if t},
        "removed": int(removed.sum()),
    }


def line(name: str, m: dict) -> str:
    return (f"{name:44s} {m['auroc']:.3f}  {m['auroc_visible']:.3f}  {m['auroc_rank_visible']:.3f}  "
            f"{m['precision']:.3f}  {m['recall']:.3f}  {m['recall_visible']:.3f}")


HEADER = f"{'config':44s} AUROC  AUROCv rankv  prec   recall recallv"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--noise-fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vae-steps", type=int, default=900, help="steps of the VAE stage (default 900)")
    parser.add_argument("--vae-dir", help="reuse the VAE stage run in this folder, or train it here")
    parser.add_argument("--data-dir", help="reuse/keep the phantom folder here (default: a temp folder)")
    parser.add_argument("--figures", help="write the default run's figures (pca, histogram, sheets) to this folder")
    parser.add_argument("--no-sweep", action="store_true")
    args = parser.parse_args()

    import torch

    from lnfs_common import encode, get_vae, load_images

    from diffcxr.data import read_records
    from diffcxr.data.phantom import make_phantom_dataset
    from diffcxr.filtering import FilterConfig, latent_features, latent_noise_filter
    from diffcxr.filtering.driver import run_from_config

    torch.manual_seed(args.seed)
    started = time.perf_counter()
    tmp = tempfile.TemporaryDirectory(prefix="lnfs-phantoms-")
    data_dir = Path(args.data_dir or tmp.name) / "phantoms"
    if not (data_dir / "metadata.csv").is_file():
        make_phantom_dataset(args.n, args.size, data_dir, noise_fraction=args.noise_fraction, seed=args.seed, progress=False)
    records = read_records(f"phantom:{data_dir}", derive_labels=False)
    images, records = load_images(records, args.size)
    truth = np.array([r.meta["is_noise"].strip() == "1" for r in records])
    types = np.array([r.meta.get("noise_type", "") for r in records])
    print(f"{len(records)} phantoms {args.size}×{args.size}, {int(truth.sum())} planted noise "
          f"({time.perf_counter() - started:.0f} s)")
    vae = get_vae(f"phantom:{data_dir}", Path(args.vae_dir or Path(tmp.name) / "vae"), args.vae_steps, args.size, args.seed)
    t = time.perf_counter()
    latents = encode(vae, images)
    print(f"latents {latents.shape} in {time.perf_counter() - t:.0f} s")

    default = FilterConfig()
    print(f"\ndefault config: K={default.n_clusters}, {default.rounds} rounds × {default.remove_fraction:.0%}, "
          f"feature={default.feature}, normalize={default.normalize}, min_cluster_fraction={default.min_cluster_fraction}")
    result, features = run_from_config(default, latents)
    m = evaluate(result, truth, types)
    print(HEADER)
    print(line("DEFAULT", m))
    print(f"\nper-noise-type recall of the removed set (default config, {m['removed']} removed):")
    for name, recall in m["per_type"].items():
        print(f"  {name:18s} {recall:.2f}" + ("   (not visible in the image)" if name in INVISIBLE else ""))
    if args.figures:
        from diffcxr.filtering.report import write_figures

        out = Path(args.figures)
        out.mkdir(parents=True, exist_ok=True)
        print("figures:", ", ".join(str(p) for p in write_figures(out, result, features, records, default)))

    budget = default.remove_fraction * default.rounds
    print(f"\none round vs gradual rounds at the same total budget ({budget:.0%}), 3 seeds each:")
    print(HEADER)
    for k in sorted({default.n_clusters, 8}):
        for rounds in (1, 2, 3, 6):
            runs = [evaluate(latent_noise_filter(features, k, budget / rounds, rounds, seed,
                                                 normalize=default.normalize,
                                                 min_cluster_fraction=default.min_cluster_fraction), truth, types)
                    for seed in (0, 1, 2)]
            mean = {key: float(np.mean([r[key] for r in runs])) for key in (
                "auroc", "auroc_visible", "auroc_rank_visible", "precision", "recall", "recall_visible")}
            print(line(f"K={k} rounds={rounds} × {budget / rounds:.1%} (mean of 3 seeds)", mean))

    if not args.no_sweep:
        print("\nsweep (seed 0; feature=flatten unless named):")
        print(HEADER)
        flat = latent_features(latents, "flatten")
        for k in (1, 4, 8, 16):
            for mcf in ((0.0,) if k == 1 else (0.0, 0.05, 0.1)):
                for rounds, fraction in ((1, 0.06), (3, 0.02)):
                    for norm in (("robust", "none") if k == 8 else ("robust",)):
                        r = latent_noise_filter(flat, k, fraction, rounds, 0, normalize=norm, min_cluster_fraction=mcf)
                        print(line(f"K={k} mcf={mcf} {rounds}×{fraction:.0%} {norm}", evaluate(r, truth, types)))
        for fraction, rounds in ((0.01, 3), (0.03, 3), (0.05, 2), (0.02, 5)):
            r = latent_noise_filter(flat, default.n_clusters, fraction, rounds, 0, normalize=default.normalize,
                                    min_cluster_fraction=default.min_cluster_fraction)
            print(line(f"budget {rounds}×{fraction:.0%} (K={default.n_clusters})", evaluate(r, truth, types)))
        for feature in ("pool", "l2", "pool_l2"):
            f = latent_features(latents, feature, 4)
            r = latent_noise_filter(f, default.n_clusters, default.remove_fraction, default.rounds, 0,
                                    normalize=default.normalize, min_cluster_fraction=default.min_cluster_fraction)
            print(line(f"feature={feature} (default otherwise)", evaluate(r, truth, types)))
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
