"""Benchmark: the evaluation yardsticks behave on digital phantoms (64×64).

1. A CXR classifier (``diffcxr.training.classifier.fit_classifier``, channels 32-64-128-256, 8,000 steps) trained on the
   *train* split of freshly generated phantoms (5,000, seed 0: the same phantoms as ``runs/phantoms5k``) reaches
   mAUC ≥ 0.9 on held-out phantoms (val + test splits); per-finding AUROC is printed (uncertain excluded, not
   mentioned = negative). ``--save DIR`` keeps it: the yardstick classifier for ``diffcxr evaluate --classifier``.
2. FID with that classifier's penultimate features (the offline ``cxr`` extractor) and, for reference, with the
   seeded random conv extractor: real-vs-real (two disjoint halves of the real phantoms) is far below
   real-vs-noise (uniform noise images) and real-vs-untrained-model (a randomly initialised ``tiny``
   DiffCXRPipeline, 32×32 upsampled to 64, from the same reports). Every comparison uses the same N per side.

    python benchmarks/eval_phantoms.py --save runs/yardstick   # the classifier in runs/yardstick/classifier;   # ~95 s on an H200
    nice .venv/bin/python benchmarks/eval_phantoms.py          # the same on CPU: ~30 min on 2 shared cores
    nice .venv/bin/python benchmarks/eval_phantoms.py --quick  # smaller, for a smoke run (fails the 0.9 check)

Exit code 1 if a check fails.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5000, help="phantoms to generate (default 5000)")
    ap.add_argument("--per-side", type=int, default=250, help="images per side in each FID comparison (default 250)")
    ap.add_argument("--steps", type=int, default=8000, help="classifier optimizer steps (default 8000)")
    ap.add_argument("--channels", default="32,64,128,256", help="classifier widths (default 32,64,128,256)")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: oversubscribed shared cores make 2 threads slower)")
    ap.add_argument("--save", help="also keep the classifier's training folder here (usable as --classifier)")
    ap.add_argument("--data", help="reuse this phantom folder instead of generating into a temp dir")
    ap.add_argument("--quick", action="store_true", help="n=400, per-side=100, steps=120")
    args = ap.parse_args()
    if args.quick:
        args.n, args.per_side, args.steps = 400, 100, 120
    torch.set_num_threads(args.threads)
    from diffcxr.data import load_image, read_records
    from diffcxr.data.phantom import make_phantom_dataset
    from diffcxr.evaluation.downstream import DownstreamConfig, classifier_run
    from diffcxr.models.cxr_classifier import predict_scores
    from diffcxr.training.classifier import fit_classifier
    from diffcxr.training.data import ImageSet
    from diffcxr.metrics import StreamingGaussianStats, frechet_distance, per_finding_auroc
    from diffcxr.metrics.extractors import cxr_extractor, random_extractor

    t0 = time.perf_counter()
    tmp = tempfile.TemporaryDirectory()
    folder = Path(args.data) if args.data else Path(tmp.name) / "phantoms"
    if not (folder / "metadata.csv").is_file():
        make_phantom_dataset(args.n, args.size, folder, seed=args.seed, progress=False)
    records = read_records(f"phantom:{folder}", derive_labels=True)
    train = [r for r in records if r.split == "train"]
    held = [r for r in records if r.split in ("val", "test")]
    print(f"{len(records)} phantoms at {args.size}px: {len(train)} train, {len(held)} held-out "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)

    # -- 1. classifier on real phantoms ---------------------------------------------------------------------------
    train_set, held_set = (ImageSet(r, args.size, in_memory=True, skip_unreadable=False) for r in (train, held))
    run = classifier_run(DownstreamConfig(size=args.size, steps=args.steps, batch_size=32, lr=2e-3, seed=args.seed,
                                          channels=tuple(int(c) for c in args.channels.split(","))))
    t = time.perf_counter()
    model = fit_classifier(run, train_set, Path(args.save or Path(tmp.name) / "classifier"), image_size=args.size,
                           progress=False)  # on the accelerator's device: a GPU when there is one
    scores, labels = predict_scores(model, held_set)
    model.cpu()
    res = per_finding_auroc(scores, labels)
    print(f"\nclassifier: {args.steps} steps on {len(train)} phantoms ({time.perf_counter() - t:.0f} s); "
          f"held-out ({len(held)} phantoms) per-finding AUROC:\n{res.table()}\n", flush=True)

    # -- 2. FID: real/real vs real/noise vs real/untrained model ------------------------------------------------
    n = args.per_side
    rng = np.random.default_rng(args.seed)
    pool = [records[i] for i in rng.permutation(len(records))]
    if len(pool) < 2 * n:
        raise SystemExit(f"need at least {2 * n} phantoms for two disjoint halves")
    half_a, half_b = pool[:n], pool[n:2 * n]
    load = lambda recs: torch.stack([load_image(r.image_path, args.size) for r in recs])  # noqa: E731
    real_a, real_b = load(half_a), load(half_b)
    noise = torch.rand(n, 1, args.size, args.size, generator=torch.Generator().manual_seed(1)) * 2 - 1

    from diffcxr.pipelines import DiffCXRPipeline

    t = time.perf_counter()
    pipe = DiffCXRPipeline.from_model_config("tiny", seed=0)
    untrained = []
    for s in range(0, n, 50):
        chunk = [r.report for r in half_b[s:s + 50]]
        out = pipe(chunk, num_inference_steps=10, generator=torch.Generator().manual_seed(s), output_type="pt",
                   progress=False)
        untrained.append(out.images * 2 - 1)
    untrained = torch.nn.functional.interpolate(torch.cat(untrained), size=(args.size, args.size), mode="bilinear")
    print(f"untrained tiny model: {n} images, 10 steps ({time.perf_counter() - t:.0f} s)", flush=True)

    rows, ok = [], res.mauc >= 0.9
    for extractor in (cxr_extractor(model), random_extractor(0)):
        def fid(x, y):
            a, b = StreamingGaussianStats().update(extractor(x)), StreamingGaussianStats().update(extractor(y))
            return frechet_distance(a.mean, a.cov, b.mean, b.cov)

        rr, rn, ru = fid(real_a, real_b), fid(real_a, noise), fid(real_a, untrained)
        rows.append((extractor.name, rr, rn, ru))
        ok &= rr * 5 < min(rn, ru)
    print(f"FID, {n} vs {n} images at {args.size}px:")
    print("| extractor | real vs real | real vs noise | real vs untrained model |\n|---|---:|---:|---:|")
    for name, rr, rn, ru in rows:
        print(f"| {name} | {rr:.4g} | {rn:.4g} | {ru:.4g} |")
    print(f"\nmAUC {res.mauc:.3f} (>= 0.9: {res.mauc >= 0.9}); real-vs-real FID < 1/5 of the others: "
          f"{all(r[1] * 5 < min(r[2], r[3]) for r in rows)}; total {time.perf_counter() - t0:.0f} s")
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
