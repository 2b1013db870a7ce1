"""Laterality adherence: does a generated image put a finding on the side its report names?

The yardstick classifier of :mod:`~diffcxr.evaluation.adherence` reads presence only, so a generator that draws a
left pleural effusion for "right pleural effusion" scores full marks there. This module measures the side, with
a paired design on phantoms (whose metadata records each finding's side):

1. The *side judge* (:func:`side_logits`) is the presence classifier itself, shown each half of the image
   completed by its mirror: the finding's log-odds on the left half minus on the right. Its accuracy on the
   real images of the evaluation records is the ceiling.
2. Every evaluation report naming the finding on one side is generated twice with the same noise: as written,
   and with every "left" and "right" swapped (:func:`swap_sides`). A generator that reads the side puts the
   finding on the named side both times; one that does not gives (nearly) the same image twice.
3. :func:`side_adherence` gives the side accuracy of each set, the *flip rate* (both correct: the side followed
   the word) and the mean shift of the judge's logit, with bootstrap intervals over reports.

Reports where "left" and "right" occur equally often keep their bag of words under the swap (a left effusion and
a right pneumothorax become a right effusion and a left pneumothorax): only a text path that binds each side word
to its finding can follow them. :func:`balanced_sides` marks them, so results can be split by it.
"""

from __future__ import annotations

import re

import numpy as np
import torch

from diffcxr.errors import DiffCXRError

__all__ = ["SIDED_FINDINGS", "balanced_sides", "condition_side_sensitivity", "finding_side", "mirrored_halves",
           "one_sided_records", "side_adherence", "side_flips", "side_logits", "swap_sides"]

#: The CheXpert findings that phantom reports place on one side (the laterality benchmarks' default).
SIDED_FINDINGS = ("Pleural Effusion", "Atelectasis", "Consolidation", "Lung Opacity", "Pneumonia", "Pneumothorax")

_SIDE = re.compile(r"\b(left|right)\b", re.IGNORECASE)


def swap_sides(report: str) -> str:
    """``report`` with every whole word "left" and "right" swapped, case kept ("Left-sided" → "Right-sided")."""
    def swap(match: re.Match) -> str:
        word = match.group(0)
        other = "right" if word.lower() == "left" else "left"
        if word.isupper():
            return other.upper()
        return other.capitalize() if word[0].isupper() else other

    return _SIDE.sub(swap, report)


def balanced_sides(report: str) -> bool:
    """True when "left" and "right" occur equally often (and at least once each): swapping them leaves the
    report's bag of words unchanged."""
    words = [w.lower() for w in _SIDE.findall(report)]
    return bool(words) and words.count("left") == words.count("right")


def finding_side(meta: dict, finding: str) -> str | None:
    """"left" or "right" when a phantom's ``laterality`` metadata ("pleural_effusion:left;edema:bilateral") puts
    ``finding`` (a CheXpert name, "Pleural Effusion") on that side only; None when it is absent, bilateral or
    central."""
    key = finding.lower().replace(" ", "_")
    sides = {side for item in str(meta.get("laterality") or "").split(";")
             for kind, _, side in [item.partition(":")] if kind == key}
    return sides.pop() if len(sides) == 1 and sides <= {"left", "right"} else None


def one_sided_records(data_spec: str, findings=SIDED_FINDINGS, limit: int | None = None) -> list:
    """The first ``limit`` frontal records of ``data_spec`` (a phantom dataset) with a report and an image that
    name at least one of ``findings`` on one side (:func:`finding_side`)."""
    from diffcxr.data.sources import read_records

    records = [r for r in read_records(data_spec, frontal_only=True, derive_labels=True)
               if r.report and r.image_path and any(finding_side(r.meta, f) for f in findings)]
    return records[:limit]


def mirrored_halves(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image's two halves, each completed by its own mirror image: ``(patient_left, patient_right)``, both
    float (N, 1, H, W) like ``images``. Frontal radiographs (and the phantoms) show the patient's left on the
    image's right, so ``patient_left`` is the right half and its mirror."""
    if images.ndim != 4 or images.shape[-1] % 2:
        raise DiffCXRError(f"mirrored halves need images (N, C, H, W) of even width, got {tuple(images.shape)}")
    half = images.shape[-1] // 2
    image_left, image_right = images[..., :half], images[..., half:]
    patient_left = torch.cat([torch.flip(image_right, dims=[-1]), image_right], dim=-1)
    patient_right = torch.cat([image_left, torch.flip(image_left, dims=[-1])], dim=-1)
    return patient_left, patient_right


@torch.no_grad()
def side_logits(classifier, images: torch.Tensor, finding: str, batch_size: int = 64) -> np.ndarray:
    """The side judge: a presence classifier's log-odds of ``finding`` (a CheXpert name) on the patient's left
    half mirrored, minus on the right half mirrored (:func:`mirrored_halves`), float (N,) for images float
    (N, 1, H, W) in [-1, 1]; > 0 reads "left". No training of its own: the yardstick classifier judges each side."""
    from diffcxr.findings import CHEXPERT_FINDINGS
    from diffcxr.models.cxr_classifier import classifier_scores

    if finding not in CHEXPERT_FINDINGS:
        raise DiffCXRError(f"unknown finding {finding!r}; one of {', '.join(CHEXPERT_FINDINGS)}")
    k = CHEXPERT_FINDINGS.index(finding)
    out = []
    for i in range(0, len(images), batch_size):
        left, right = mirrored_halves(images[i:i + batch_size])
        p = np.clip(np.stack([classifier_scores(classifier, left)[:, k], classifier_scores(classifier, right)[:, k]]),
                    1e-6, 1 - 1e-6)
        logit = np.log(p) - np.log1p(-p)
        out.append(logit[0] - logit[1])
    return np.concatenate(out) if out else np.zeros(0)


@torch.no_grad()
def condition_side_sensitivity(encoder, reports: list[str], batch_size: int = 64) -> float:
    """How much the report encoder's 77 condition tokens change when the sides are swapped, relative to how much
    they differ between two reports: mean ‖c(x) − c(swap(x))‖ over mean ‖c(x) − c(y)‖, y the next report (cyclic).
    0: the condition ignores the side; about 1: the side matters as much as everything else in a report. Needs
    2 reports or more."""
    if len(reports) < 2:
        raise DiffCXRError("the side sensitivity needs at least 2 reports")

    def conditions(texts):
        return torch.cat([encoder.encode(texts[i:i + batch_size]).condition_embeds.float().flatten(1)
                          for i in range(0, len(texts), batch_size)])

    as_written, swapped = conditions(reports), conditions([swap_sides(r) for r in reports])
    other = torch.roll(as_written, shifts=1, dims=0)
    return float((as_written - swapped).norm(dim=1).mean() / (as_written - other).norm(dim=1).mean())


def side_flips(original_logits: np.ndarray, swapped_logits: np.ndarray, is_left: np.ndarray) -> np.ndarray:
    """Bool (N,): the judge finds the named side on the image as written (logit towards ``is_left``) and the other
    side on its side-swapped twin: the finding moved with the word."""
    sign = np.where(np.asarray(is_left, dtype=bool), 1.0, -1.0)
    return (sign * np.asarray(original_logits) > 0) & (sign * np.asarray(swapped_logits) < 0)


def side_adherence(original_logits: np.ndarray, swapped_logits: np.ndarray, is_left: np.ndarray, *,
                   groups=None, bootstrap: int = 200, seed: int = 0) -> dict:
    """Side adherence of paired images: the judge's logits (float (N,), :func:`side_logits`) on the image of a
    report as written and on the image of its side-swapped twin (the same noise), ``is_left`` the side the report
    names for the finding, ``groups`` (N,) the report of each pair (the bootstrap's unit; default one report per
    pair).

    Returns ``accuracy_original`` and ``accuracy_swapped`` (the named side, in each set), ``flip_rate`` (both
    right: the finding moved with the word), ``logit_shift`` (mean of the judge's logit change towards the named
    side, original − swapped, signed) and ``n``; with ``bootstrap`` a 95 % interval over reports for the flip
    rate and the shift (``"intervals"``). Chance is 0.5 for the accuracies and 0.25 for the flip rate only if the
    images are independent of the side; a generator that ignores it draws the same side twice, flip rate ≈ 0.
    """
    from diffcxr.metrics import bootstrap_interval

    lo, ls = np.asarray(original_logits, np.float64), np.asarray(swapped_logits, np.float64)
    sign = np.where(np.asarray(is_left, dtype=bool), 1.0, -1.0)
    if not len(lo) == len(ls) == len(sign) or not len(sign):
        raise DiffCXRError(f"side adherence needs as many original ({len(lo)}) as swapped ({len(ls)}) logits and "
                           f"sides ({len(sign)}), at least one")
    right_original, right_swapped = sign * lo > 0, sign * ls < 0
    flip = side_flips(lo, ls, is_left)
    shift = sign * (lo - ls)
    out = {"n": int(len(sign)), "accuracy_original": float(right_original.mean()),
           "accuracy_swapped": float(right_swapped.mean()), "flip_rate": float(flip.mean()),
           "logit_shift": float(shift.mean())}
    if bootstrap:
        groups = list(range(len(sign))) if groups is None else list(groups)
        out["intervals"] = {"flip_rate": bootstrap_interval(lambda idx: float(flip[idx].mean()), groups, bootstrap,
                                                            seed=seed),
                            "logit_shift": bootstrap_interval(lambda idx: float(shift[idx].mean()), groups,
                                                              bootstrap, seed=seed)}
    return out
