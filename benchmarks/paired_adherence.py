"""Benchmark: two pipelines on the same reports and noise, their mAUC difference with a paired interval.

Each pipeline generates one image (or ``--images-per-report``) from each of the first ``--n-reports`` reports of
``--data``, image ``k`` of report ``i`` from the same noise in both; the yardstick classifier scores both sets, and
the difference mAUC(A) − mAUC(B) gets a *paired* 95 % bootstrap interval (each replicate resamples reports once
and scores both sets on them: ``diffcxr.evaluation.adherence.adherence_gain``). Each set's FID against the real
images of the same reports is taken on the yardstick's features. Settings match ``adherence_sweep.py``'s
(DPM-Solver++ 2M, 25 steps by default), so its per-pipeline mAUCs and FIDs are the sweep's
(tests/test_paired_adherence.py checks they are equal).

    python benchmarks/paired_adherence.py --model fastsqueeze=runs/abl/fastsqueeze-s1/pipeline \\
        --model meanpool=runs/abl/meanpool-s1/pipeline --classifier runs/abl/yardstick/classifier \\
        --data phantom:runs/abl/phantoms-eval --n-reports 200 --guidance 4 --adapter-scale 0 --out runs/abl/paired-s1

``--guidance`` and ``--adapter-scale`` take one value for both pipelines or two, one per ``--model``: the same
pipeline twice at adapter scales 2 and 0 gives what its knowledge adapter adds, paired.

    python benchmarks/paired_adherence.py --model adapter=runs/cpu-mini/pipeline \\
        --model no-adapter=runs/cpu-mini/pipeline --adapter-scale 2,0 --classifier runs/yardstick/classifier \\
        --data phantom:runs/phantoms-eval --out runs/paired-adapter

Writes ``OUT/paired.json`` (``real``: the yardstick on the real images); prints each mAUC and FID and the paired
difference.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", required=True, metavar="NAME=PIPELINE",
                    help="exactly two: the first minus the second is reported")
    ap.add_argument("--classifier", required=True, help="the yardstick: a classifier trained on real phantoms")
    ap.add_argument("--data", required=True, help="dataset spec of the reports (e.g. phantom:runs/phantoms-eval)")
    ap.add_argument("--n-reports", type=int, default=200)
    ap.add_argument("--images-per-report", type=int, default=1)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--solver", default="dpm++2m")
    ap.add_argument("--guidance", default=None, help="W or W_A,W_B (default: each pipeline's own)")
    ap.add_argument("--adapter-scale", default=None, help="S or S_A,S_B (default: each pipeline's own)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bootstrap", type=int, default=200)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    models = [spec.split("=", 1) for spec in args.model]
    if len(models) != 2 or any(len(m) != 2 or not all(m) for m in models):
        raise SystemExit("paired_adherence.py: give exactly two --model NAME=PIPELINE")
    if models[0][0] == models[1][0]:
        raise SystemExit(f"paired_adherence.py: the two --model names must differ (both are {models[0][0]!r})")
    guidance = _per_model(args.guidance, "--guidance")
    adapter_scale = _per_model(args.adapter_scale, "--adapter-scale")

    import torch

    from diffcxr.data.sources import read_records
    from diffcxr.evaluation.adherence import adherence_gain, generate_and_score, real_adherence
    from diffcxr.metrics.extractors import cxr_extractor
    from diffcxr.models.cxr_classifier import load_classifier
    from diffcxr.models.diffusion import solver_scheduler
    from diffcxr.pipelines import DiffCXRPipeline

    if args.threads:
        torch.set_num_threads(args.threads)
    records = [r for r in read_records(args.data, derive_labels=True) if r.report][: args.n_reports]
    classifier = load_classifier(args.classifier)
    extractor = cxr_extractor(classifier)
    pipes = {}  # folder -> pipeline: one pipeline given twice (e.g. at two adapter scales) is loaded once
    for _, folder in models:
        if folder not in pipes:
            pipes[folder] = DiffCXRPipeline.from_pretrained(folder)
            pipes[folder].scheduler = solver_scheduler(args.solver, dict(pipes[folder].scheduler.config))
    # the real images of the same reports, at the first pipeline's size
    real = real_adherence(records, classifier, pipes[models[0][1]].image_size, bootstrap=args.bootstrap,
                          seed=args.seed, extractor=extractor)
    real_stats = real.pop("stats")
    print(f"real images: mAUC {real['mauc']:.3f}", flush=True)
    results, generated = {}, {}
    for (name, folder), w, scale in zip(models, guidance, adapter_scale):
        pipe = pipes[folder]
        results[name], generated[name] = generate_and_score(
            pipe, records, classifier, images_per_report=args.images_per_report, num_inference_steps=args.steps,
            guidance_scale=w, adapter_scale=scale, seed=args.seed, bootstrap=args.bootstrap,
            progress=True, extractor=extractor, real_stats=real_stats)
        ci = results[name].get("interval")
        print(f"{name}: mAUC {results[name]['mauc']:.3f}"
              + (f" [{ci['low']:.3f}, {ci['high']:.3f}]" if ci else "") + f", FID {results[name]['fid']:.2f}",
              flush=True)
    (a, _), (b, _) = models
    gain = adherence_gain(generated[a], generated[b], classifier, bootstrap=args.bootstrap, seed=args.seed)
    ci = gain.get("interval")
    print(f"{a} - {b} (paired): {gain['delta']:+.3f}" + (f" [{ci['low']:+.3f}, {ci['high']:+.3f}]" if ci else ""))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "paired.json").write_text(json.dumps({"models": dict(models), "real": real, "results": results,
                                                 "difference": gain, "args": vars(args)}, indent=2, default=str),
                                     encoding="utf-8")


def _per_model(text: str | None, flag: str) -> list[float | None]:
    """``"4"`` → [4.0, 4.0], ``"2,0"`` → [2.0, 0.0], None → [None, None] (each pipeline's own)."""
    if text is None:
        return [None, None]
    try:
        values = [float(v) for v in str(text).split(",")]
    except ValueError:
        message = f"paired_adherence.py: {flag} takes one number or two separated by a comma, not {text!r}"
        raise SystemExit(message) from None
    if len(values) not in (1, 2):
        raise SystemExit(f"paired_adherence.py: {flag} takes one value for both models or two, not {len(values)}")
    return values * 2 if len(values) == 1 else values


if __name__ == "__main__":
    main()
