"""Figures a person reads at a glance (matplotlib, Agg backend; PIL contact sheets).

* ``pca.png``            — 2-D PCA of the features; kept samples grey, removed ones coloured by round.
* ``score_hist.png``     — per round, the scores of the samples still in play with the cut; then the final score.
* ``most_anomalous.png`` — contact sheet of the highest-ranked (most anomalous) images.
* ``most_typical.png``   — contact sheet of the lowest final scores.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

MAX_POINTS = 20_000  # points drawn in the PCA scatter (removed samples are always drawn)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_pca(path: Path, result, features: np.ndarray, seed: int = 0, title: str = "") -> Path:
    from sklearn.decomposition import PCA

    plt = _pyplot()
    rng = np.random.default_rng(seed)
    kept_rows = np.flatnonzero(result.kept)
    fit_rows = kept_rows if len(kept_rows) <= MAX_POINTS else rng.choice(kept_rows, MAX_POINTS, replace=False)
    pca = PCA(n_components=min(2, features.shape[1]), random_state=seed).fit(features[fit_rows])
    removed_rows = np.flatnonzero(~result.kept)
    shown = np.concatenate([fit_rows, removed_rows])
    xy = pca.transform(features[shown])
    if xy.shape[1] == 1:
        xy = np.column_stack([xy[:, 0], np.zeros(len(xy))])
    fig, ax = plt.subplots(figsize=(6.4, 5.2), dpi=110)
    nk = len(fit_rows)
    ax.scatter(xy[:nk, 0], xy[:nk, 1], s=4, c="0.7", alpha=0.5, linewidths=0, label=f"kept ({int(result.kept.sum())})")
    colours = plt.get_cmap("autumn")(np.linspace(0, 0.85, max(1, result.rounds)))
    rounds = result.removed_in_round[removed_rows]
    for r in range(1, result.rounds + 1):
        mask = rounds == r
        if mask.any():
            ax.scatter(xy[nk:][mask, 0], xy[nk:][mask, 1], s=14, color=colours[r - 1], marker="x", linewidths=1,
                       label=f"removed in round {r} ({int(mask.sum())})")
    ax.set_xlabel("PC 1 (fitted on kept samples)")
    ax.set_ylabel("PC 2")
    ax.set_title(title or "LNFS: latent features, 2-D PCA")
    ax.legend(fontsize=8, loc="best", markerscale=1.5)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_score_histograms(path: Path, result, max_rounds: int = 5) -> Path:
    plt = _pyplot()
    shown = list(range(min(result.rounds, max_rounds)))
    fig, axes = plt.subplots(1, len(shown) + 1, figsize=(3.2 * (len(shown) + 1), 3.0), dpi=110, squeeze=False)
    for ax, r in zip(axes[0], shown):
        in_play = (result.removed_in_round == 0) | (result.removed_in_round >= r + 1)
        scores = result.scores[r][in_play]
        bins = np.linspace(scores.min(), scores.max(), 60)
        ax.hist(scores, bins=bins, color="0.55", log=True)
        if r < len(result.thresholds) and np.isfinite(result.thresholds[r]):
            ax.axvline(result.thresholds[r], color="red", lw=1.2, label=f"cut {result.thresholds[r]:.2f}")
            ax.legend(fontsize=7)
        ax.set_title(f"round {r + 1}: {int(in_play.sum())} in play", fontsize=9)
        ax.set_xlabel("normalised distance to centre", fontsize=8)
    ax = axes[0][-1]
    final = result.final_score
    bins = np.linspace(final.min(), final.max(), 60)
    ax.hist([final[result.kept], final[~result.kept]], bins=bins, stacked=True, color=["0.6", "tab:red"], log=True,
            label=["kept", "removed"])
    ax.legend(fontsize=7)
    ax.set_title("final fit (on kept set)", fontsize=9)
    ax.set_xlabel("final score", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def contact_sheet(path: Path, rows, result, records, title: str, tile: int = 96) -> Path | None:
    """Contact sheet of ``rows`` (sample indices) captioned with id, view, removal round and score."""
    from diffcxr.data.contact_sheet import make_contact_sheet
    from diffcxr.data.image_io import load_image
    from diffcxr.errors import ImageReadError

    images, captions = [], []
    for i in rows:
        record = records[i]
        if record.image_path is None:
            continue
        try:
            images.append((load_image(record.image_path, tile)[0].numpy() + 1.0) / 2.0)
        except ImageReadError:
            continue
        removed = int(result.removed_in_round[i])
        captions.append(f"{record.id} {record.view} {'r' + str(removed) if removed else 'kept'} {result.final_score[i]:.1f}")
    if not images:
        return None
    make_contact_sheet(images, captions, tile=tile, caption_lines=2, title=title).save(path)
    return path


def write_figures(out_dir: Path, result, features: np.ndarray, records, config) -> list[Path]:
    """All figures into ``out_dir``; returns the paths written (contact sheets need image paths)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [plot_pca(out_dir / "pca.png", result, features, config.seed,
                        f"LNFS: K={result.n_clusters}, {result.rounds} × {result.remove_fraction:.1%} removed"),
               plot_score_histograms(out_dir / "score_hist.png", result)]
    order = result.ranking()
    n = min(config.sheet_images, len(order))
    for name, rows, title in (("most_anomalous.png", order[:n], f"most anomalous {n} (rank order)"),
                              ("most_typical.png", np.argsort(result.final_score, kind="stable")[:n], f"most typical {n}")):
        sheet = contact_sheet(out_dir / name, rows, result, records, title)
        if sheet is not None:
            written.append(sheet)
    return written
