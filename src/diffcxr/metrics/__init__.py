"""Evaluation metrics as pure functions over features and scores (MONAI style), plus feature extractors.

>>> import torch
>>> from diffcxr.metrics import StreamingGaussianStats, frechet_distance
>>> a = StreamingGaussianStats().update(torch.randn(500, 3, generator=torch.Generator().manual_seed(0)))
>>> round(frechet_distance(a.mean, a.cov, a.mean, a.cov), 6)
0.0
"""

from diffcxr.metrics.bootstrap import bootstrap_interval, group_bootstrap
from diffcxr.metrics.conditional import per_finding_metrics
from diffcxr.metrics.auroc import AUROCResult, binary_auroc, map_labels, per_finding_auroc
from diffcxr.metrics.fid import StreamingGaussianStats, fid_from_features, frechet_distance
from diffcxr.metrics.kid import ReservoirSampler, kernel_inception_distance, polynomial_mmd2
from diffcxr.metrics.memorization import MemorizationResult, memorization, nearest_neighbours
from diffcxr.metrics.msssim import intra_prompt_msssim, pairwise_msssim, scales_for_size
from diffcxr.metrics.prdc import PRDC, kth_neighbour_radii, prdc
from diffcxr.metrics.seeds import PairedDifference, difference_over_seeds, mean_sd, mean_sd_text, paired_difference

__all__ = [
    "AUROCResult", "MemorizationResult", "PRDC", "kth_neighbour_radii", "prdc", "per_finding_metrics", "ReservoirSampler", "StreamingGaussianStats", "binary_auroc",
    "bootstrap_interval", "group_bootstrap",
    "fid_from_features", "frechet_distance", "intra_prompt_msssim", "kernel_inception_distance", "map_labels",
    "mean_sd", "mean_sd_text", "memorization", "PairedDifference", "difference_over_seeds", "paired_difference", "nearest_neighbours", "pairwise_msssim", "per_finding_auroc", "polynomial_mmd2",
    "scales_for_size",
]
