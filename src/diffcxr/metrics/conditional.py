"""Per-finding ("conditional") FID, KID and PRDC: generated images whose report is positive for a finding
against real images positive for it, for every finding with enough images on both sides."""

from __future__ import annotations

import numpy as np
import torch

from diffcxr.findings import CHEXPERT_FINDINGS, map_labels

__all__ = ["per_finding_metrics"]


def per_finding_metrics(real_features, real_labels, fake_features, fake_labels, *, findings=CHEXPERT_FINDINGS,
                        min_images: int = 50, uncertain: str = "exclude", missing: str = "negative", k: int = 5,
                        kid_subsets: int = 100, kid_subset_size: int = 1000, seed: int = 0) -> dict:
    """``{"findings": {name: {n_real, n_generated, fid, kid, kid_std, prdc}}, "skipped": {name: reason}, ...}``.

    Features are ``(N, D)`` / ``(M, D)``; labels ``(N, 14)`` / ``(M, 14)`` in 1/0/-1/NaN read with the label policy
    (:func:`diffcxr.findings.map_labels`). A finding is scored when at least ``min_images`` real and generated
    images are positive for it; otherwise it is listed in ``skipped`` with the counts.
    """
    from diffcxr.metrics.fid import fid_from_features
    from diffcxr.metrics.kid import kernel_inception_distance
    from diffcxr.metrics.prdc import prdc

    real_f, fake_f = torch.as_tensor(real_features).float(), torch.as_tensor(fake_features).float()
    real_y = map_labels(real_labels, uncertain, missing)
    fake_y = map_labels(fake_labels, uncertain, missing)
    out: dict = {"findings": {}, "skipped": {}, "min_images": min_images, "k": k,
                 "label_policy": {"uncertain": uncertain, "missing": missing}}
    for j, name in enumerate(findings):
        real_idx, fake_idx = np.flatnonzero(real_y[:, j] == 1), np.flatnonzero(fake_y[:, j] == 1)
        if min(len(real_idx), len(fake_idx)) < max(min_images, k + 1, 2):
            out["skipped"][name] = (f"{len(real_idx)} real and {len(fake_idx)} generated positive images "
                                    f"(need {max(min_images, k + 1, 2)} each)")
            continue
        r, f = real_f[torch.from_numpy(real_idx)], fake_f[torch.from_numpy(fake_idx)]
        kid_mean, kid_std, _ = kernel_inception_distance(r, f, subsets=kid_subsets, subset_size=kid_subset_size,
                                                         seed=seed)
        out["findings"][name] = {"n_real": int(len(real_idx)), "n_generated": int(len(fake_idx)),
                                 "fid": fid_from_features(r, f), "kid": kid_mean, "kid_std": kid_std,
                                 "prdc": prdc(r, f, k=k).to_dict()}
    return out
