"""Report adherence: do generated images show what their reports say?

A classifier trained on real images scores every image generated from a report; each finding's AUROC is taken
against that report's labels, and mAUC is their mean (the protocol of ``diffcxr evaluate``, here in memory and
without files). The same classifier on the real images of the same records is the yardstick: no generator can
be expected to beat it. Used by ``diffcxr demo`` and the benchmarks.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from diffcxr.errors import DiffCXRError
from diffcxr.models.cxr_classifier import classifier_scores

__all__ = ["GeneratedSet", "adherence_gain", "generate_and_score", "generate_for_records", "generated_adherence",
           "paired_mauc_difference", "real_adherence", "score_adherence"]


class GeneratedSet(NamedTuple):
    """Images generated from records: ``images`` float (N, 1, H, W) in [-1, 1], their reports' ``labels`` float
    (N, 14) (NaN = not mentioned) and ``groups``, each image's report index (the bootstrap's unit)."""

    images: torch.Tensor
    labels: np.ndarray
    groups: list[int]


def _image_generator(seed: int, report_index: int, k: int) -> torch.Generator:
    """The noise of image ``k`` of report ``report_index``: independent of how reports are batched."""
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + report_index * 101 + k)


def _summary(scores: np.ndarray, labels: np.ndarray, groups, bootstrap: int, seed: int) -> dict:
    from diffcxr.metrics import bootstrap_interval, per_finding_auroc

    result = per_finding_auroc(scores, labels)
    out = {"mauc": result.mauc, "per_finding": result.per_finding, "skipped": result.skipped}
    if bootstrap:
        out["interval"] = bootstrap_interval(lambda idx: per_finding_auroc(scores[idx], labels[idx]).mauc, groups,
                                             bootstrap, seed=seed)
    return out


def _batched_scores(classifier, images: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    """The classifier's sigmoid scores (N, 14) for images (N, 1, H, W) in [-1, 1], ``batch_size`` at a time."""
    return np.concatenate([classifier_scores(classifier, images[i:i + batch_size])
                           for i in range(0, len(images), batch_size)])


@torch.no_grad()
def _feature_stats(extractor, images: torch.Tensor, batch_size: int = 64):
    """Streaming mean and covariance of ``extractor`` features of images (N, 1, H, W), for FID."""
    from diffcxr.metrics import StreamingGaussianStats

    stats = StreamingGaussianStats()
    for i in range(0, len(images), batch_size):
        stats.update(extractor(images[i:i + batch_size]))
    return stats


def generate_for_records(pipe, records, *, images_per_report: int = 2, num_inference_steps: int = 20,
                         guidance_scale: float | None = None, adapter_scale: float | None = None, seed: int = 0,
                         reports_per_batch: int = 32, progress: bool = False) -> GeneratedSet:
    """Generate ``images_per_report`` images from each record's report, image ``k`` of report ``i`` from its own
    seeded noise (the same images however the reports are batched). ``guidance_scale`` / ``adapter_scale``
    default to the pipeline's own.

    Returns a :class:`GeneratedSet` ``(images, labels, groups)``, N = reports × images per report.
    """
    from tqdm.auto import tqdm

    records = [r for r in records if r.report]
    if not records:
        raise DiffCXRError("report adherence needs records with reports")
    images, labels, groups = [], [], []
    bar = tqdm(total=len(records) * images_per_report, desc="adherence", unit="img", disable=not progress)
    for start in range(0, len(records), reports_per_batch):
        chunk = records[start:start + reports_per_batch]
        generators = [_image_generator(seed, start + i, k) for i in range(len(chunk)) for k in range(images_per_report)]
        out = pipe([r.report for r in chunk], num_images_per_prompt=images_per_report,
                   num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, generator=generators,
                   adapter_conditioning_scale=adapter_scale, output_type="pt", progress=False)
        images.append(out.images * 2 - 1)  # [0, 1] -> [-1, 1]
        for i, r in enumerate(chunk):
            labels += [np.asarray(r.labels, np.float32)] * images_per_report
            groups += [start + i] * images_per_report
        bar.update(len(generators))
    bar.close()
    return GeneratedSet(torch.cat(images), np.stack(labels), groups)


def score_adherence(images: torch.Tensor, labels: np.ndarray, groups, classifier, *, bootstrap: int = 200,
                    seed: int = 0, extractor=None, real_stats=None, batch_size: int = 64,
                    return_scores: bool = False) -> dict:
    """mAUC of ``classifier`` on ``images`` (float (N, 1, H, W) in [-1, 1]) against ``labels`` (N, 14), with a
    bootstrap interval that resamples ``groups`` (reports); with a feature ``extractor`` and the real images'
    ``real_stats`` (from :func:`real_adherence`) also ``"fid"``; with ``return_scores`` also ``"scores"``, the
    classifier's sigmoid scores (N, 14) (for :func:`paired_mauc_difference` later). Score one generated set with
    several classifiers by calling this once per classifier."""
    from diffcxr.metrics import frechet_distance

    scores = _batched_scores(classifier, images, batch_size)
    result = _summary(scores, labels, groups, bootstrap, seed)
    if return_scores:
        result["scores"] = scores
    if extractor is not None and real_stats is not None:
        stats = _feature_stats(extractor, images, batch_size)
        result["fid"] = frechet_distance(real_stats.mean, real_stats.cov, stats.mean, stats.cov)
    return result


def adherence_gain(generated: GeneratedSet, baseline: GeneratedSet, classifier, *, bootstrap: int = 200,
                   seed: int = 0, batch_size: int = 64) -> dict:
    """How much more of their reports ``generated`` shows than ``baseline``: mAUC(generated) − mAUC(baseline) for
    two sets from the same reports (row ``i`` of each from report ``groups[i]`` with the same noise, e.g. with and
    without the knowledge adapter), with a *paired* bootstrap interval: each replicate resamples reports once and
    scores both sets on them, so the report-to-report spread both share cancels (the two sets' own intervals
    overlap far more than their difference is uncertain).

    Returns ``{"delta", "interval"}`` (``interval`` only with ``bootstrap > 0``).
    """
    if generated.images.shape != baseline.images.shape or list(generated.groups) != list(baseline.groups):
        raise DiffCXRError("adherence_gain needs two sets generated from the same reports, image for image")
    return paired_mauc_difference(_batched_scores(classifier, generated.images, batch_size),
                                  _batched_scores(classifier, baseline.images, batch_size),
                                  generated.labels, generated.groups, bootstrap=bootstrap, seed=seed)


def paired_mauc_difference(scores_a: np.ndarray, scores_b: np.ndarray, labels: np.ndarray, groups, *,
                           bootstrap: int = 200, seed: int = 0) -> dict:
    """mAUC(a) − mAUC(b) from a classifier's scores (N, 14) on two image sets generated from the same reports,
    image for image (row ``i`` of both from report ``groups[i]`` with the same noise), against the reports'
    ``labels`` (N, 14), with the paired bootstrap interval of :func:`adherence_gain` (each replicate resamples
    reports once and scores both sets on them). Pure: the scores can come from files saved earlier.

    Returns ``{"delta", "interval"}`` (``interval`` only with ``bootstrap > 0``).
    """
    from diffcxr.metrics import bootstrap_interval, per_finding_auroc

    if scores_a.shape != scores_b.shape or scores_a.shape != labels.shape or len(groups) != len(labels):
        raise DiffCXRError(f"a paired difference needs scores of the same images: shapes {scores_a.shape}, "
                           f"{scores_b.shape}, labels {labels.shape}, {len(groups)} groups")

    def delta(idx):
        return per_finding_auroc(scores_a[idx], labels[idx]).mauc - per_finding_auroc(scores_b[idx], labels[idx]).mauc

    result = {"delta": float(delta(np.arange(len(scores_a))))}
    if bootstrap:
        result["interval"] = bootstrap_interval(delta, groups, bootstrap, seed=seed)
    return result


def generated_adherence(pipe, records, classifier, **kwargs) -> dict:
    """Generate ``images_per_report`` images from each record's report (:func:`generate_for_records`) and score
    them with ``classifier`` against the records' labels (:func:`score_adherence`); keywords as
    :func:`generate_and_score`.

    Returns ``{"mauc", "interval", "per_finding", "skipped", "n_reports", "images_per_report", "settings"}``;
    with a feature ``extractor`` and the real images' ``real_stats`` (from :func:`real_adherence`) also ``"fid"``.
    ``settings`` records the guidance and adapter scale used (the pipeline's own where not given).
    """
    return generate_and_score(pipe, records, classifier, **kwargs)[0]


def generate_and_score(pipe, records, classifier, *, images_per_report: int = 2, num_inference_steps: int = 20,
                       guidance_scale: float | None = None, adapter_scale: float | None = None, seed: int = 0,
                       reports_per_batch: int = 32, bootstrap: int = 200, progress: bool = False,
                       extractor=None, real_stats=None) -> tuple[dict, GeneratedSet]:
    """:func:`generated_adherence`'s result and the :class:`GeneratedSet` it scored (to compare with another
    setting on the same reports and noise: :func:`adherence_gain`)."""
    guidance_scale, adapter_scale = pipe.sampling_scales(guidance_scale, adapter_scale)
    generated = generate_for_records(
        pipe, records, images_per_report=images_per_report, num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale, adapter_scale=adapter_scale, seed=seed, reports_per_batch=reports_per_batch,
        progress=progress)
    result = score_adherence(*generated, classifier, bootstrap=bootstrap, seed=seed, extractor=extractor,
                             real_stats=real_stats)
    result.update(n_reports=len(set(generated.groups)), images_per_report=images_per_report,
                  settings={"num_inference_steps": num_inference_steps, "guidance_scale": guidance_scale,
                            "adapter_scale": adapter_scale, "seed": seed})
    return result, generated


def real_adherence(records, classifier, image_size: int, bootstrap: int = 200, seed: int = 0,
                   extractor=None) -> dict:
    """The yardstick: the same classifier on the records' real images against their labels; with a feature
    ``extractor`` also ``"stats"``, the real images' :class:`~diffcxr.metrics.StreamingGaussianStats` for FID."""
    from diffcxr.data.image_io import load_image

    records = [r for r in records if r.image_path]
    images = torch.stack([load_image(r.image_path, image_size) for r in records])
    labels = np.stack([np.asarray(r.labels, np.float32) for r in records])
    result = _summary(_batched_scores(classifier, images), labels, list(range(len(records))), bootstrap, seed)
    result["n_images"] = len(records)
    if extractor is not None:
        result["stats"] = _feature_stats(extractor, images)
    return result
