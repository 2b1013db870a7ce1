"""LNFS on real data: the ieee8023 COVID-19 chest X-ray set (``covid:../shared/data/covid-cxr``).

Lateral views (``view == "L"``) are the natural, labelled noise of a frontal-view training set: their AUROC
under the final score, the top of the ranking (ids + views) and a contact sheet of the most anomalous and most
typical images (written OUTSIDE the repository: the images carry mixed licences).

    nice .venv/bin/python benchmarks/lnfs_covid.py                         # ~7 min
    nice .venv/bin/python benchmarks/lnfs_covid.py --vae-dir /tmp/vcovid --out /tmp/lnfs-covid

The VAE is trained on these images by the project's VAE stage for ``--vae-steps`` steps (see
``lnfs_common.py``).
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("DIFFCXR_SHARED_DATA", REPO.parent / "shared" / "data")) / "covid-cxr"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=f"covid:{DEFAULT_DATA}")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vae-steps", type=int, default=900, help="steps of the VAE stage (default 900)")
    parser.add_argument("--vae-dir", help="reuse the VAE stage run in this folder, or train it here")
    parser.add_argument("--out", help="folder for figures/contact sheets (default: a temp folder; never the repo)")
    parser.add_argument("overrides", nargs="*", help="filter config overrides key=value")
    args = parser.parse_args()

    import torch
    from sklearn.metrics import roc_auc_score

    from lnfs_common import encode, get_vae, load_images

    from diffcxr.data import read_records
    from diffcxr.filtering import latent_noise_filter, load_config
    from diffcxr.filtering.driver import run_from_config
    from diffcxr.filtering.report import write_figures

    torch.manual_seed(args.seed)
    started = time.perf_counter()
    out = Path(args.out or tempfile.mkdtemp(prefix="lnfs-covid-"))
    if out.resolve().is_relative_to(REPO):
        raise SystemExit(f"--out {out} is inside the repository; images derived from /work/shared must stay outside")
    out.mkdir(parents=True, exist_ok=True)
    records = read_records(args.data, require_images=True, derive_labels=False)
    images, records = load_images(records, args.size)
    views = np.array([r.view for r in records])
    lateral = views == "L"
    print(f"{len(records)} readable images; views: {dict(collections.Counter(views.tolist()))}")
    vae = get_vae(args.data, Path(args.vae_dir or out / "vae"), args.vae_steps, args.size, args.seed)
    latents = encode(vae, images)
    print(f"latents {latents.shape} ({time.perf_counter() - started:.0f} s so far)")

    config = load_config(None, args.overrides)
    result, features = run_from_config(config, latents)
    removed = ~result.kept
    print(f"\nconfig: K={config.n_clusters}, {config.rounds} rounds × {config.remove_fraction:.0%}, feature={config.feature}, "
          f"min_cluster_fraction={config.min_cluster_fraction}")
    print(f"laterals: {int(lateral.sum())}; AUROC final score {roc_auc_score(lateral, result.final_score):.3f}, "
          f"AUROC rank {roc_auc_score(lateral, result.rank_score()):.3f}; removed {int(removed.sum())} of which "
          f"{int((removed & lateral).sum())} laterals (precision {lateral[removed].mean():.2f}, recall {removed[lateral].mean():.2f})")
    order = result.ranking()
    top = order[:30]
    print(f"top 30 of the ranking: {int(lateral[top].sum())} laterals; views {dict(collections.Counter(views[top].tolist()))}")
    for rank, i in enumerate(top, start=1):
        print(f"  {rank:2d}. {records[i].id:40s} view={views[i]:8s} round={result.removed_in_round[i]} score={result.final_score[i]:.2f}")

    print("\nK / rounds sweep (lateral AUROC of the final score; precision/recall of removed for laterals):")
    for k in (1, 4, 8, 16):
        for rounds, fraction in ((1, 0.06), (3, 0.02)):
            for mcf in (0.0, 0.05, 0.1):
                r = latent_noise_filter(features, k, fraction, rounds, args.seed, normalize=config.normalize,
                                        min_cluster_fraction=mcf)
                rem = ~r.kept
                print(f"  K={k:2d} {rounds}×{fraction:.0%} mcf={mcf:.2f}: AUROC {roc_auc_score(lateral, r.final_score):.3f}  "
                      f"removed {int(rem.sum())}, laterals among them {int((rem & lateral).sum())}")
    figures = write_figures(out, result, features, records, config)
    print("\nfigures / contact sheets (not for the repository):", ", ".join(str(f) for f in figures))
    print(f"total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
