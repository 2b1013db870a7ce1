"""Benchmark: report adherence (mAUC) and FID of a trained pipeline across guidance and adapter scales.

No retraining: one trained pipeline, the same reports and noise seeds for every setting. For each guidance
weight ``w`` (diffusers' convention ``ε_u + w·(ε_c − ε_u)``; 1 = no guidance) and knowledge-adapter scale
(0 = no disease knowledge), images are generated from the reports of ``--data``; a classifier trained on real
images scores them against their reports (mAUC, 95 % bootstrap interval over reports) and its penultimate
features give FID against the real images of the same records. Prints a Markdown table, writes
``OUT/sweep.json`` and ``OUT/sweep.png`` (mAUC against FID, one curve per adapter scale). With several
``--solvers`` or ``--steps`` it sweeps those too (quality against steps for each diffusers solver) and the plot
shows mAUC against steps, one curve per solver.

    .venv/bin/python benchmarks/adherence_sweep.py --model runs/demo/model/pipeline \\
        --classifier runs/demo/model/classifier --data phantom:runs/demo/phantoms-eval --out runs/sweep-demo
    .venv/bin/python benchmarks/adherence_sweep.py ... --guidance 2 --adapter-scale 1 \\
        --solvers dpm++2m,dpm++3m,unipc,deis,euler --steps 5,8,10,15,20,25,50 --out runs/sweep-solvers
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="saved DiffCXRPipeline folder")
    ap.add_argument("--classifier", required=True, help="CXRClassifier folder trained on real images")
    ap.add_argument("--data", required=True, help="dataset spec whose reports condition generation")
    ap.add_argument("--split", default="all", help="split of --data (default all: use a fresh phantom set)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--guidance", default="1,1.5,2,3,4,6")
    ap.add_argument("--adapter-scale", default="0,0.5,1,2")
    ap.add_argument("--n-reports", type=int, default=200)
    ap.add_argument("--images-per-report", type=int, default=2)
    ap.add_argument("--steps", default="20", help="solver steps, one or a comma-separated list (default 20)")
    ap.add_argument("--solvers", default="dpm++2m",
                    help="comma-separated diffusers solvers (diffcxr.models.diffusion.SOLVERS; default dpm++2m)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bootstrap", type=int, default=200)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = ap.parse_args()

    import torch

    from diffcxr.data.sources import read_records
    from diffcxr.evaluation.adherence import generated_adherence, real_adherence
    from diffcxr.models.cxr_classifier import load_classifier
    from diffcxr.metrics.extractors import cxr_extractor
    from diffcxr.models.diffusion import solver_scheduler
    from diffcxr.pipelines import DiffCXRPipeline

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    records = [r for r in read_records(args.data, split=None if args.split == "all" else args.split,
                                                derive_labels=True) if r.report]
    records = records[: args.n_reports]
    classifier = load_classifier(args.classifier)
    extractor = cxr_extractor(classifier)
    pipe = DiffCXRPipeline.from_pretrained(args.model)
    size = pipe.image_size
    real = real_adherence(records, classifier, size, bootstrap=args.bootstrap, seed=args.seed, extractor=extractor)
    real_stats = real.pop("stats")
    rows = []
    steps_list = [int(v) for v in _floats(args.steps)]
    solvers = [v.strip() for v in args.solvers.split(",") if v.strip()]
    schedule = dict(pipe.scheduler.config)
    print(f"{len(records)} reports × {args.images_per_report} images; real images: mAUC {real['mauc']:.3f}",
          flush=True)
    print("| solver | steps | guidance w | adapter scale | mAUC [95 % CI] | FID | s |\n"
          "|---|---:|---:|---:|---|---:|---:|", flush=True)
    for solver in solvers:
        pipe.scheduler = solver_scheduler(solver, schedule)
        for steps in steps_list:
            for adapter_scale in _floats(args.adapter_scale):
                for guidance in _floats(args.guidance):
                    t0 = time.perf_counter()
                    r = generated_adherence(pipe, records, classifier, images_per_report=args.images_per_report,
                                            num_inference_steps=steps, guidance_scale=guidance,
                                            adapter_scale=adapter_scale, seed=args.seed, bootstrap=args.bootstrap,
                                            extractor=extractor, real_stats=real_stats)
                    r["seconds"] = time.perf_counter() - t0
                    r["settings"]["solver"] = solver
                    rows.append(r)
                    ci = r["interval"]
                    print(f"| {solver} | {steps} | {guidance:g} | {adapter_scale:g} | {r['mauc']:.3f} "
                          f"[{ci['low']:.3f}, {ci['high']:.3f}] | {r['fid']:.2f} | {r['seconds']:.0f} |", flush=True)
    args.model = str(Path(args.model).resolve())
    (out / "sweep.json").write_text(json.dumps({"real": real, "rows": rows, "args": vars(args)}, indent=2))
    title = f"{args.model}: {len(records)} reports"
    if len(solvers) > 1 or len(steps_list) > 1:
        _plot_steps(rows, real, out / "sweep.png", title)
    else:
        _plot(rows, real, out / "sweep.png", title)
    print(f"wrote {out / 'sweep.json'} and {out / 'sweep.png'}")


def _axes():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(6, 4.2), dpi=120)


def _finish(fig, ax, real: dict, path: Path, title: str, xlabel: str) -> None:
    """The real-image line, labels, legend; save and close."""
    import matplotlib.pyplot as plt

    ax.axhline(real["mauc"], color="grey", ls="--", lw=1, label=f"real images ({real['mauc']:.3f})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("mAUC vs. conditioning report")
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot(rows: list[dict], real: dict, path: Path, title: str) -> None:
    """mAUC against FID, one curve per adapter scale, points labelled with the guidance weight."""
    fig, ax = _axes()
    for scale in sorted({r["settings"]["adapter_scale"] for r in rows}):
        arm = [r for r in rows if r["settings"]["adapter_scale"] == scale]
        ax.plot([r["fid"] for r in arm], [r["mauc"] for r in arm], marker="o", label=f"adapter scale {scale:g}")
        for r in arm:
            ax.annotate(f"w={r['settings']['guidance_scale']:g}", (r["fid"], r["mauc"]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
    _finish(fig, ax, real, path, title, "FID (classifier features; lower is better)")


def _plot_steps(rows: list[dict], real: dict, path: Path, title: str) -> None:
    """mAUC against solver steps, one curve per solver (and guidance / adapter scale when several)."""
    fig, ax = _axes()

    def key(r):
        return r["settings"]["solver"], r["settings"]["guidance_scale"], r["settings"]["adapter_scale"]

    keys = sorted({key(r) for r in rows})
    for solver, guidance, scale in keys:
        arm = sorted((r for r in rows if key(r) == (solver, guidance, scale)),
                     key=lambda r: r["settings"]["num_inference_steps"])
        label = solver if len(keys) == len({k[0] for k in keys}) else f"{solver} w={guidance:g} a={scale:g}"
        ax.plot([r["settings"]["num_inference_steps"] for r in arm], [r["mauc"] for r in arm], marker="o", label=label)
    ax.set_xscale("log")
    _finish(fig, ax, real, path, title, "solver steps")


if __name__ == "__main__":
    main()
