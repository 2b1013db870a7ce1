"""The ``diffcxr evaluate`` driver: one streaming pass over real and generated images, then every metric.

Protocol (recorded in ``metrics.json["protocol"]``):

- Images are read with :func:`diffcxr.data.load_image` at ``size×size`` (shorter side resized, centre crop,
  ``[-1, 1]``); the feature extractor then resizes to its own input size (recorded).
- Real reference set: the records of ``--real`` in split ``--split`` (default ``test``); with ``--n`` a seeded
  random subset of N. Generated set: every PNG in the folder (sorted), the first N with ``--n``.
- FID: :class:`~diffcxr.metrics.fid.StreamingGaussianStats` (memory ``O(D²)``). KID: reservoir sample of at
  most ``kid_capacity`` features per side, ``kid_subsets`` subsets of ``kid_subset_size``.
- mAUC: classifier sigmoid scores per generated image vs. the *conditioning report's* labels (sidecar
  ``labels``, else the report labeler); uncertain excluded, not-mentioned negative by default; the same
  classifier's mAUC on the real reference images (against their dataset labels) is reported as the yardstick.
- MS-SSIM: generated images grouped by their report (sidecar ``id``, else the report text), groups of ≥ 2.
- Memorisation: nearest image of the real *training* split (``train_split``, at most ``max_train``) by
  extractor-feature cosine.
- Intervals: with ``bootstrap`` > 0, a percentile interval (``bootstrap_level``, 95 %) for mAUC, FID and KID
  from ``bootstrap`` replicates that resample the *reports* of the generated set (all images of a drawn report
  kept; the real reference set fixed). KID replicates use ``min(kid_subsets, 10)`` subsets each and leave
  pairs of one image out of the within-set sum. FID and KID intervals are re-centred on the estimate
  (a resample with repeats has fewer distinct images, which biases both upwards); mAUC's is the plain
  percentile interval.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from diffcxr.errors import DiffCXRError
from diffcxr.findings import CHEXPERT_FINDINGS
from diffcxr.models.cxr_classifier import classifier_scores

logger = logging.getLogger(__name__)

__all__ = ["GeneratedImage", "read_generated", "labels_from_sidecar", "image_batches", "evaluate", "write_report",
           "METRICS"]

METRICS = ("fid", "kid", "prdc", "msssim", "mauc", "memorization", "per_finding", "alignment")


@dataclass
class GeneratedImage:
    path: Path
    id: str
    report: str | None = None
    labels: np.ndarray = field(default_factory=lambda: np.full(len(CHEXPERT_FINDINGS), np.nan, np.float32))
    group: str | None = None
    labels_source: str = "none"
    sidecar: dict = field(default_factory=dict)


def labels_from_sidecar(value) -> np.ndarray | None:
    """Sidecar ``labels`` (a dict ``{finding: 1/0/-1/None}`` or a 14-list) → float32 (14,) with NaN; None if absent."""
    if value is None:
        return None
    out = np.full(len(CHEXPERT_FINDINGS), np.nan, np.float32)
    if isinstance(value, dict):
        lower = {k.lower(): v for k, v in value.items()}
        for i, name in enumerate(CHEXPERT_FINDINGS):
            v = lower.get(name.lower())
            out[i] = np.nan if v is None else float(v)
        return out
    if isinstance(value, (list, tuple)) and len(value) == len(CHEXPERT_FINDINGS):
        return np.array([np.nan if v is None else float(v) for v in value], np.float32)
    raise DiffCXRError(f"sidecar labels must be a dict over findings or a list of {len(CHEXPERT_FINDINGS)} values")


def read_generated(folder, limit: int | None = None, need_labels: bool = False) -> list[GeneratedImage]:
    """PNGs of ``folder`` (sorted) with their JSON sidecars (``NAME.json`` next to ``NAME.png``), if any.

    With ``need_labels``, images whose sidecar has no ``labels`` but a ``report`` are labeled with the report
    labeler (:func:`diffcxr.knowledge.label_report`).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DiffCXRError(f"generated-images folder {folder} not found")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png")
    if not paths:
        raise DiffCXRError(f"no PNG images in {folder}")
    if limit:
        paths = paths[:limit]
    items = []
    for path in paths:
        item = GeneratedImage(path=path, id=path.stem)
        side = path.with_suffix(".json")
        if side.is_file():
            try:
                meta = json.loads(side.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise DiffCXRError(f"{side}: not valid JSON ({exc.msg})") from exc
            if not isinstance(meta, dict):
                raise DiffCXRError(f"{side}: expected a JSON object")
            item.sidecar = meta
            item.report = meta.get("report")
            item.group = str(meta["id"]) if meta.get("id") is not None else item.report
            labels = labels_from_sidecar(meta.get("labels"))
            if labels is not None:
                item.labels, item.labels_source = labels, "sidecar"
        if need_labels and item.labels_source == "none" and item.report:
            from diffcxr.knowledge import label_report

            item.labels, item.labels_source = label_report(item.report).to_vector(), "labeler"
        items.append(item)
    return items


def image_batches(paths, size: int, batch_size: int = 64):
    """Yield ``(B, 1, size, size)`` tensors in ``[-1, 1]`` (unreadable files raise ImageReadError)."""
    from diffcxr.data.image_io import load_image

    batch = []
    for path in paths:
        batch.append(load_image(path, size))
        if len(batch) == batch_size:
            yield torch.stack(batch)
            batch = []
    if batch:
        yield torch.stack(batch)


class _Pass:
    """Everything accumulated in one pass over a set of images.

    Under ``accelerate launch`` each process reads a contiguous share of the images and :meth:`run` gathers the
    shares on every process in image order: the Gaussian statistics are merged, KID/PRDC reservoirs folded
    together, kept features and classifier scores concatenated; the numbers equal a one-process run's (to float
    summation order; exactly for reservoirs up to their capacity).
    """

    def __init__(self, need_features: bool, kid_capacity: int, keep_features: bool, seed: int) -> None:
        from diffcxr.metrics import ReservoirSampler, StreamingGaussianStats

        self.stats = StreamingGaussianStats() if need_features else None
        self.reservoir = ReservoirSampler(kid_capacity, seed) if need_features else None
        self.features: list[torch.Tensor] | None = [] if keep_features else None
        self.scores: list[np.ndarray] = []
        self.n = 0

    def run(self, paths, size, batch_size, extractor=None, classifier=None, kid: bool = False, progress=None,
            state=None):
        paths = list(paths)
        rank, world = (state.process_index, state.num_processes) if state is not None else (0, 1)
        share = paths[len(paths) * rank // world: len(paths) * (rank + 1) // world]
        for x in image_batches(share, size, batch_size):
            if extractor is not None:
                f = extractor(x)
                self.stats.update(f)
                if kid:
                    self.reservoir.update(f)
                if self.features is not None:
                    self.features.append(f)
            if classifier is not None:
                self.scores.append(classifier_scores(classifier, x))
            self.n += x.shape[0]
            if progress:
                progress(x.shape[0])
        if world > 1:
            self._gather()
        return self

    def _gather(self) -> None:
        """Replace this process's share by every process's, in image order (all processes end equal)."""
        from accelerate.utils import gather_object

        parts = gather_object([(self.stats, self.reservoir, self.features, self.scores, self.n)])
        first, *rest = parts
        self.stats, self.reservoir, self.features, self.scores, self.n = first
        for stats, reservoir, features, scores, n in rest:
            if self.stats is not None:
                self.stats.merge(stats)
                self.reservoir.merge(reservoir)
            if self.features is not None:
                self.features.extend(features)
            self.scores.extend(scores)
            self.n += n


def evaluate(*, real_records, generated: list[GeneratedImage], metrics, size: int, extractor=None, classifier=None,
             train_records=None, batch_size: int = 64, kid_subsets: int = 100, kid_subset_size: int = 1000,
             kid_capacity: int = 10_000, memorization_threshold: float = 0.95, memorization_percentile: float = 99.0,
             uncertain: str = "exclude",
             missing: str = "negative", seed: int = 0, bootstrap: int = 200, bootstrap_level: float = 0.95,
             prdc_k: int = 5, per_finding_min: int = 50, protocol: dict | None = None, log=print, state=None,
             alignment_model=None) -> dict:
    """Compute the requested ``metrics`` and return the ``metrics.json`` dictionary.

    ``state`` (accelerate's ``PartialState``) shares the feature extraction between processes; every process then
    holds all features and computes the same numbers (write them from the main process only).
    ``alignment_model`` is ``(ReportEncoder, ImageTower)`` of a VLM stage, for the ``alignment`` metric."""
    from diffcxr.metrics import (StreamingGaussianStats, bootstrap_interval, intra_prompt_msssim,
                                 kernel_inception_distance, frechet_distance, memorization, nearest_neighbours,
                                 per_finding_auroc)

    metrics = list(metrics)
    need_features = any(m in metrics for m in ("fid", "kid", "prdc", "memorization", "per_finding"))
    if need_features and extractor is None:
        raise DiffCXRError("fid/kid/prdc/memorization/per_finding need a feature extractor")
    sampled = "kid" in metrics or "prdc" in metrics  # both read a reservoir of <= kid_capacity features per side
    if "mauc" in metrics and classifier is None:
        raise DiffCXRError("mauc needs a trained classifier: pass --classifier DIR")
    if "alignment" in metrics and alignment_model is None:
        raise DiffCXRError("alignment needs the vision-language model of a training run: pass --alignment-model "
                           "RUN/vlm (its report_encoder and image_tower)")
    out: dict = {"protocol": dict(protocol or {})}
    out["protocol"].update({"size": size, "n_generated": len(generated), "metrics": metrics,
                            "extractor": extractor.describe() if extractor is not None else None,
                            "bootstrap": {"replicates": bootstrap, "level": bootstrap_level, "unit": "report"}
                            if bootstrap else None})
    groups = [g.group or g.id for g in generated]

    def interval(statistic, estimate=None, floor=None) -> dict:
        return bootstrap_interval(statistic, groups, bootstrap, bootstrap_level, seed, estimate, floor)

    real_pass = None
    if need_features or "mauc" in metrics:
        real_paths = [r.image_path for r in real_records]
        if need_features and len(real_paths) < 2:
            raise DiffCXRError(f"need at least 2 real images, got {len(real_paths)}")
        log(f"real: {len(real_paths)} images")
        keep_real = "per_finding" in metrics or "memorization" in metrics
        real_pass = _Pass(need_features, kid_capacity, keep_real, seed).run(
            real_paths, size, batch_size, extractor if need_features else None,
            classifier if "mauc" in metrics else None, kid=sampled, state=state)
    log(f"generated: {len(generated)} images")
    keep = "memorization" in metrics or "per_finding" in metrics or (
        bootstrap > 0 and ("fid" in metrics or "kid" in metrics))
    gen_pass = _Pass(need_features, kid_capacity, keep, seed + 1).run(
        [g.path for g in generated], size, batch_size, extractor if need_features else None,
        classifier if "mauc" in metrics else None, kid=sampled, state=state)
    gen_features = torch.cat(gen_pass.features) if keep and need_features else None  # bootstrap / memorisation
    real_features = torch.cat(real_pass.features) if real_pass is not None and real_pass.features is not None else None
    out["protocol"]["n_real"] = real_pass.n if real_pass else 0
    if extractor is not None:
        out["protocol"]["extractor"] = extractor.describe()

    if "fid" in metrics:
        a, b = real_pass.stats, gen_pass.stats
        out["fid"] = frechet_distance(a.mean, a.cov, b.mean, b.cov)
        if bootstrap:
            def fid_of(idx):
                s = StreamingGaussianStats().update(gen_features[torch.from_numpy(idx)])
                return frechet_distance(a.mean, a.cov, s.mean, s.cov)

            out["fid_interval"] = interval(fid_of, out["fid"], floor=0.0)
    if "kid" in metrics:
        mean, std, used = kernel_inception_distance(real_pass.reservoir.features, gen_pass.reservoir.features,
                                                    subsets=kid_subsets, subset_size=kid_subset_size, seed=seed)
        out["kid"] = {"mean": mean, "std": std, "subsets": kid_subsets, "subset_size": used,
                      "reservoir": kid_capacity, "kernel": "(x.y/D + 1)^3"}
        if bootstrap:
            ref = real_pass.reservoir.features

            def kid_of(idx):
                return kernel_inception_distance(ref, gen_features[torch.from_numpy(idx)], subsets=min(kid_subsets, 10),
                                                 subset_size=kid_subset_size, seed=seed, fake_ids=idx)[0]

            out["kid"]["interval"] = interval(kid_of, mean)
    if "prdc" in metrics:
        from diffcxr.metrics import prdc

        real_f, gen_f = real_pass.reservoir.features, gen_pass.reservoir.features
        if min(len(real_f), len(gen_f)) <= prdc_k:
            out["prdc"] = {"k": prdc_k, "skipped": f"needs more than {prdc_k} real and generated images, got "
                                                   f"{len(real_f)} and {len(gen_f)}"}
        else:
            out["prdc"] = {**prdc(real_f, gen_f, k=prdc_k).to_dict(), "reservoir": kid_capacity}
    if "per_finding" in metrics:
        from diffcxr.metrics import per_finding_metrics

        labeled = [i for i, g in enumerate(generated) if g.labels_source != "none"]
        out["per_finding"] = per_finding_metrics(
            real_features, np.stack([r.labels for r in real_records]),
            gen_features[torch.tensor(labeled, dtype=torch.long)], np.stack([generated[i].labels for i in labeled]),
            min_images=per_finding_min, uncertain=uncertain, missing=missing, k=prdc_k, kid_subsets=kid_subsets,
            kid_subset_size=kid_subset_size, seed=seed)
    if "mauc" in metrics:
        labeled = [i for i, g in enumerate(generated) if g.labels_source != "none"]
        if not labeled:
            raise DiffCXRError("mauc needs the conditioning reports: no generated image has a JSON sidecar with "
                               "'labels' or 'report' (write them with diffcxr generate)")
        scores = np.concatenate(gen_pass.scores)[labeled]
        labels = np.stack([generated[i].labels for i in labeled])
        res = per_finding_auroc(scores, labels, uncertain=uncertain, missing=missing)
        sources = sorted({generated[i].labels_source for i in labeled})
        out["mauc"] = {"generated": res.to_dict(), "n_labeled": len(labeled), "labels_from": sources}
        if bootstrap:  # over the reports of the labelled images (scores and labels are indexed like `labeled`)
            def mauc_of(idx):
                return per_finding_auroc(scores[idx], labels[idx], uncertain=uncertain, missing=missing).mauc

            out["mauc"]["interval"] = bootstrap_interval(mauc_of, [groups[i] for i in labeled], bootstrap,
                                                         bootstrap_level, seed)
        real_labels = np.stack([r.labels for r in real_records])
        if real_pass.n and not np.isnan(real_labels).all():
            real_res = per_finding_auroc(np.concatenate(real_pass.scores), real_labels, uncertain=uncertain,
                                         missing=missing)
            out["mauc"]["real"] = real_res.to_dict()
        out["_auroc_tables"] = {"generated": res.table(),
                                "real": real_res.table() if "real" in out["mauc"] else None}
    if "msssim" in metrics:
        groups: dict[str, list[int]] = {}
        for i, g in enumerate(generated):
            if g.group:
                groups.setdefault(g.group, []).append(i)
        groups = {k: v for k, v in groups.items() if len(v) >= 2}
        if not groups:
            raise DiffCXRError("msssim needs several images per report: no two generated images share a report "
                               "(generate with --n 4)")

        def tensors():
            for idx in groups.values():
                yield (torch.cat(list(image_batches([generated[i].path for i in idx], size, len(idx)))) + 1) / 2

        res = intra_prompt_msssim(tensors())
        res["samples_per_report"] = float(np.mean([len(v) for v in groups.values()]))
        out["msssim"] = res
    if "alignment" in metrics:
        out["alignment"] = _alignment(alignment_model, generated, real_records, size, batch_size, seed, interval,
                                      state, log)
    if "memorization" in metrics:
        train_records = list(train_records or [])
        if not train_records:
            raise DiffCXRError("memorization needs training images (--train-split of --real is empty)")
        log(f"train (memorisation): {len(train_records)} images")
        train_pass = _Pass(True, 2, True, seed).run([r.image_path for r in train_records], size, batch_size,
                                                    extractor, state=state)
        train_feats = torch.cat(train_pass.features)
        res = memorization(gen_features, train_feats, memorization_threshold)
        out["memorization"] = res.to_dict([g.id for g in generated], [r.id for r in train_records])
        out["memorization"]["n_train"] = len(train_records)
        # calibrated: flag what is closer to a training image than `percentile` % of real held-out images are
        real_sim, _ = nearest_neighbours(real_features, train_feats)
        cut = float(torch.quantile(real_sim, memorization_percentile / 100))
        out["memorization"]["calibrated"] = {
            "percentile": memorization_percentile, "threshold": cut,
            "share_generated": float((res.similarity > cut).float().mean()),
            "share_real_heldout": float((real_sim > cut).float().mean()), "n_real_heldout": int(real_sim.numel()),
            "rule": "generated image flagged when its nearest-training cosine exceeds this percentile of the real "
                    "held-out images' nearest-training cosines"}
        out["_memo_pairs"] = [(generated[a].path, train_records[b].image_path, c) for a, b, c in res.closest]
    return out


@torch.no_grad()
def _alignment(model, generated, real_records, size, batch_size, seed, interval, state, log) -> dict:
    """Cosine of report and image embeddings from the run's own VLM: generated pairs, real pairs, shuffled real."""
    from diffcxr.data.reports import report_text
    from diffcxr.metrics.alignment import pair_cosines, shuffled_pairs

    encoder, tower = model
    missing = [g.path.name for g in generated if not g.report]
    if missing:
        raise DiffCXRError(f"alignment needs each generated image's report: {len(missing)} have none in a sidecar "
                           f"(e.g. {missing[0]})")
    real = [r for r in real_records if r.report]
    if len(real) < 2:
        raise DiffCXRError("alignment needs at least 2 real images with reports (for the real and shuffled scale)")
    log(f"alignment: {len(generated)} generated and {len(real)} real pairs")

    def embed_images(x):
        return tower(x.to(tower.device, tower.dtype)).float().cpu()

    def embed_reports(texts):
        chunks = [encoder.encode([report_text(t)[0] for t in texts[i:i + batch_size]]).global_embeds.float().cpu()
                  for i in range(0, len(texts), batch_size)]
        return torch.cat(chunks)

    def image_embeddings(paths):
        return torch.cat(_Pass(True, 2, True, seed).run(paths, size, batch_size, embed_images, state=state).features)

    generated_cos = pair_cosines(embed_reports([g.report for g in generated]),
                                 image_embeddings([g.path for g in generated]))
    real_text, real_image = embed_reports([r.report for r in real]), image_embeddings([r.image_path for r in real])
    real_cos = pair_cosines(real_text, real_image)
    shuffled_cos = pair_cosines(real_text[torch.from_numpy(shuffled_pairs(len(real), seed))], real_image)
    estimate = float(generated_cos.mean())
    return {"generated": estimate, "interval": interval(lambda idx: float(generated_cos[idx].mean()), estimate),
            "real": float(real_cos.mean()), "shuffled_real": float(shuffled_cos.mean()),
            "n_generated": len(generated), "n_real": len(real),
            "score": "mean cosine of the report encoder's token 0 and the image tower's embedding (the VLM stage's "
                     "InfoNCE pair); real = real images with their reports, shuffled_real = with other reports"}


def _fmt(v, digits=3):
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def _ci(interval: dict | None, digits: int) -> str:
    """`` [low, high]`` for a bootstrap interval dict, or ``""``."""
    if not interval or math.isnan(interval["low"]):
        return ""
    return f" [{interval['low']:.{digits}g}, {interval['high']:.{digits}g}]"


def write_report(results: dict, generated: list[GeneratedImage], out_dir, size: int, grid_per_finding: int = 8) -> Path:
    """Write ``metrics.json``, ``report.md`` and the sample grids (``grids/*.png``) into ``out_dir``."""
    from diffcxr.data.contact_sheet import make_contact_sheet
    from diffcxr.data.image_io import load_image

    out_dir = Path(out_dir)
    (out_dir / "grids").mkdir(parents=True, exist_ok=True)
    tables = results.pop("_auroc_tables", None)
    pairs = results.pop("_memo_pairs", None)
    (out_dir / "metrics.json").write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")

    p = results["protocol"]
    ext = p.get("extractor") or {}
    lines = ["# diffcxr evaluation", "",
             "## Protocol", "",
             "| | |", "|---|---|",
             f"| real | `{p.get('real')}` split `{p.get('split')}`, N = {p.get('n_real')} |",
             f"| generated | `{p.get('generated')}`, N = {p.get('n_generated')} |",
             f"| image size | {size}×{size} (shorter side resized, centre crop) |",
             f"| feature extractor | {ext.get('name', 'none')} (dim {ext.get('dim')}, resize {ext.get('resize')}) |",
             f"| labels | uncertain: {p.get('uncertain')}, not mentioned: {p.get('missing')} |",
             "", "## Summary", "", "| metric | value |", "|---|---:|"]
    boot = p.get("bootstrap")
    if boot:
        lines[-2:-2] = [f"Intervals: {boot['level']:.0%} bootstrap over reports ({boot['replicates']} replicates).", ""]
    if "fid" in results:
        lines.append(f"| FID ({ext.get('name')}) | {results['fid']:.4g}{_ci(results.get('fid_interval'), 4)} |")
    if "kid" in results:
        k = results["kid"]
        lines.append(f"| KID ({ext.get('name')}) | {k['mean']:.5f} ± {k['std']:.5f}{_ci(k.get('interval'), 5)} |")
    if "prdc" in results:
        q = results["prdc"]
        value = (f"skipped: {q['skipped']}" if "skipped" in q else
                 f"{q['precision']:.3f} / {q['recall']:.3f} / {q['density']:.3f} / {q['coverage']:.3f}")
        lines.append(f"| precision / recall / density / coverage ({ext.get('name')}, k = {q['k']}) | {value} |")
    if "mauc" in results:
        lines.append(f"| mAUC, generated vs. conditioning reports | {_fmt(results['mauc']['generated']['mauc'])}"
                     f"{_ci(results['mauc'].get('interval'), 3)} |")
        if "real" in results["mauc"]:
            lines.append(f"| mAUC, real reference images (yardstick) | {_fmt(results['mauc']['real']['mauc'])} |")
    if "alignment" in results:
        a = results["alignment"]
        lines.append(f"| report-image alignment (VLM cosine): generated | {_fmt(a['generated'])}{_ci(a['interval'], 3)} "
                     f"(real pairs {_fmt(a['real'])}, shuffled real {_fmt(a['shuffled_real'])}) |")
    if "msssim" in results:
        m = results["msssim"]
        lines.append(f"| MS-SSIM within report ({m['scales']} scales; lower = more diverse) | {m['msssim']:.4f} |")
    if "memorization" in results:
        m = results["memorization"]
        if "calibrated" in m:
            c = m["calibrated"]
            lines.append(f"| memorised: nearest-train cosine above the real held-out {c['percentile']:g}th percentile "
                         f"({c['threshold']:.3f}) | generated {c['share_generated']:.2%}, real held-out "
                         f"{c['share_real_heldout']:.2%} |")
        lines.append(f"| nearest-train cosine ≥ {m['threshold']} (fixed) | {m['share_above']:.2%} ({m['n_above']}/{m['n_generated']}) |")
    if "per_finding" in results:
        pf = results["per_finding"]
        lines += ["", f"## Per-finding FID / KID / PRDC ({ext.get('name')}; generated images whose report is positive "
                  f"vs. real images positive, ≥ {pf['min_images']} each)", "",
                  "| finding | real | generated | FID | KID | precision | recall | density | coverage |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for name, m in pf["findings"].items():
            q = m["prdc"]
            lines.append(f"| {name} | {m['n_real']} | {m['n_generated']} | {m['fid']:.4g} | {m['kid']:.5f} | "
                         f"{q['precision']:.3f} | {q['recall']:.3f} | {q['density']:.3f} | {q['coverage']:.3f} |")
        for name, reason in pf["skipped"].items():
            lines.append(f"| {name} | skipped: {reason} | | | | | | | |")
    if tables:
        lines += ["", "## Per-finding AUROC (generated images vs. their conditioning reports)", "", tables["generated"]]
        if tables.get("real"):
            lines += ["", "## Per-finding AUROC of the same classifier on real reference images", "", tables["real"]]
    grids = []
    for k, name in enumerate(CHEXPERT_FINDINGS):
        chosen = [g for g in generated if g.labels[k] == 1][:grid_per_finding]
        if not chosen:
            continue
        images = [(load_image(g.path, size)[0].numpy() + 1) / 2 for g in chosen]
        sheet = make_contact_sheet(images, [g.report or g.id for g in chosen], tile=max(size, 128), columns=4,
                                   caption_lines=3, title=f"{name}: generated, report positive")
        file = f"grids/{name.lower().replace(' ', '_')}.png"
        sheet.save(out_dir / file)
        grids.append((name, file))
    if grids:
        lines += ["", "## Samples per finding (conditioning report positive)", ""]
        lines += [f"### {name}\n\n![{name}]({file})\n" for name, file in grids]
    if pairs:
        images, captions = [], []
        for gen_path, train_path, cos in pairs:
            images += [(load_image(gen_path, size)[0].numpy() + 1) / 2, (load_image(train_path, size)[0].numpy() + 1) / 2]
            captions += [f"generated {Path(gen_path).name} cos {cos:.3f}", f"train {Path(train_path).name}"]
        make_contact_sheet(images, captions, tile=max(size, 128), columns=2, caption_lines=2,
                           title="closest generated/train pairs").save(out_dir / "grids/memorization_pairs.png")
        lines += ["", "## Closest generated / training pairs", "", "![pairs](grids/memorization_pairs.png)"]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
