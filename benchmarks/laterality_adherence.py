"""Benchmark: laterality adherence. Does a generated image put each finding on the side its report names?

The presence yardstick (``adherence_sweep.py``) cannot tell a left effusion from a right one. Here every
phantom report that names a finding on one side is generated twice with the same noise, as written and with
"left" and "right" swapped, and the yardstick judges each side of each image (the finding's log-odds on the
patient's left half mirrored minus on the right half mirrored; ``diffcxr.evaluation.laterality``). Per finding
and pooled: side accuracy on both sets, the flip rate (the finding moved with the word, both images right) with
a 95 % bootstrap interval over reports, the same on *balanced* reports (as many "left" as "right": the swap keeps
their bag of words, so only a text path that binds each side word to its finding can follow it), and the judge's
accuracy on the real images of the same reports (the ceiling). With ``--baseline NAME`` also each model's paired
difference in flip rate against that model (the same pairs, bootstrap over reports). ``OUT/example.png`` shows
one report (``--example``) and its side-swapped twin, 4 seeds, every model. Also printed: how far each report
encoder's condition moves under the swap, relative to the distance between two reports (0 = side-blind).
``--seed-table SEED=laterality.json ...`` (no generation) reads earlier runs, one per training seed of the same
models, and prints each model's flip rate and its paired difference to the baseline as mean ± SD over seeds.

    .venv/bin/python benchmarks/laterality_adherence.py --model default=runs/cpu-s3/pipeline \\
        --model meanpool=runs/cpu-mp-s3/pipeline --baseline meanpool \\
        --classifier runs/yardstick/classifier --data phantom:runs/phantoms-lat-s2 --out runs/laterality
    .venv/bin/python benchmarks/laterality_adherence.py --seed-table s3=runs/lat-s3/laterality.json \\
        s4=runs/lat-s4/laterality.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path

import numpy as np

from diffcxr.evaluation.laterality import SIDED_FINDINGS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cli import named_paths, one_line_errors  # noqa: E402

FINDINGS = ",".join(SIDED_FINDINGS)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", metavar="NAME=PIPELINE",
                    help="a saved DiffCXRPipeline folder and its name in the table (repeat for several)")
    ap.add_argument("--classifier", help="the yardstick: a classifier trained on real phantoms")
    ap.add_argument("--data", help="a phantom dataset spec (its metadata gives each finding's side)")
    ap.add_argument("--out")
    ap.add_argument("--findings", default=FINDINGS, help=f"comma-separated CheXpert names (default {FINDINGS})")
    ap.add_argument("--n-reports", type=int, default=200,
                    help="the first N frontal reports naming one of the findings on one side (default 200)")
    ap.add_argument("--guidance", type=float, default=None, help="default: each pipeline's own")
    ap.add_argument("--adapter-scale", type=float, default=None, help="default: each pipeline's own")
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--baseline", help="NAME of a --model to pair every other model with")
    ap.add_argument("--example", default="FINDINGS: Large left pleural effusion. No pneumothorax. IMPRESSION: Large "
                    "left pleural effusion.", help="a report drawn with 4 seeds, as written and side-swapped, by "
                    "every model into OUT/example.png ('' for none)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bootstrap", type=int, default=200)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    ap.add_argument("--seed-table", nargs="+", metavar="SEED=LATERALITY.json",
                    help="mean ± SD over training seeds of earlier runs, one laterality.json per seed (no generation)")
    args = ap.parse_args()
    if args.seed_table:
        return print(seed_table(dict(_read_run(spec) for spec in args.seed_table)))
    missing = [f"--{k}" for k in ("model", "classifier", "data", "out") if not getattr(args, k)]
    if missing:
        ap.error(f"{', '.join(missing)} required (or --seed-table)")
    models = named_paths(args.model, "--model", "PIPELINE_FOLDER")
    if args.baseline and args.baseline not in models:
        raise SystemExit(f"error: --baseline {args.baseline!r} is not one of the --model names ({', '.join(models)})")
    findings = [f.strip() for f in args.findings.split(",") if f.strip()]
    one_line_errors(run, models, findings, args)


def run(models: dict[str, str], findings: list[str], args) -> None:
    import torch

    from diffcxr.data.image_io import load_image
    from diffcxr.errors import DiffCXRError
    from diffcxr.evaluation.adherence import generate_for_records
    from diffcxr.evaluation.laterality import (balanced_sides, condition_side_sensitivity, finding_side,
                                               one_sided_records, side_adherence, side_flips, side_logits,
                                               swap_sides)
    from diffcxr.models.cxr_classifier import load_classifier
    from diffcxr.pipelines import DiffCXRPipeline

    if args.threads:
        torch.set_num_threads(args.threads)
    records = one_sided_records(args.data, findings, args.n_reports)
    if not records:
        raise DiffCXRError(f"no frontal record of {args.data} names {', '.join(findings)} on one side (phantom "
                           "metadata 'laterality' needed)")
    classifier = load_classifier(args.classifier).eval()
    swapped = [dataclasses.replace(r, report=swap_sides(r.report)) for r in records]
    balanced = np.array([balanced_sides(r.report) for r in records])
    # per finding, (report index, is_left) for every one-sided mention: the units of the table
    pairs = {f: [(i, finding_side(r.meta, f) == "left") for i, r in enumerate(records) if finding_side(r.meta, f)]
             for f in findings}
    real_images, real_logits = None, {}
    result = {"data": args.data, "classifier": args.classifier, "n_reports": len(records),
              "n_balanced": int(balanced.sum()), "findings": {}, "models": {}}
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    per_model = {}  # name -> {"original" | "swapped": {finding: judge logits (n reports,)}}
    example_rows = []  # per model: the example report's 4 images as written over the same 4 side-swapped
    for name, path in models.items():
        pipe = DiffCXRPipeline.from_pretrained(path).to(device)
        if real_images is None:  # the ceiling: the judge on the real images, at the pipelines' size
            real_images = torch.stack([load_image(r.image_path, pipe.image_size) for r in records])
            real_logits = {f: side_logits(classifier, real_images, f) for f in findings}
        elif pipe.image_size != real_images.shape[-1]:
            raise DiffCXRError(f"{name} draws {pipe.image_size}² images, the first model {real_images.shape[-1]}²: "
                               "compare models of one image size")
        kwargs = dict(images_per_report=1, num_inference_steps=args.steps, guidance_scale=args.guidance,
                      adapter_scale=args.adapter_scale, seed=args.seed)
        print(f"[{name}] {len(records)} reports as written and side-swapped, {args.steps} steps", flush=True)
        original = generate_for_records(pipe, records, progress=True, **kwargs).images.cpu()
        twin = generate_for_records(pipe, swapped, progress=True, **kwargs).images.cpu()
        per_model[name] = {"original": {f: side_logits(classifier, original, f) for f in findings},
                           "swapped": {f: side_logits(classifier, twin, f) for f in findings}}
        if args.example:
            example_rows.append(_example_rows(pipe, args.example, **kwargs))
        guidance, adapter = pipe.sampling_scales(args.guidance, args.adapter_scale)
        settings = {"guidance_scale": guidance, "adapter_scale": adapter, "num_inference_steps": args.steps,
                    "seed": args.seed, "pipeline": path}
        with torch.no_grad():
            sensitivity = condition_side_sensitivity(pipe.report_encoder, [r.report for r in records])
        result["models"][name] = {"settings": settings, "condition_side_sensitivity": sensitivity, "findings": {}}
    for f in [*findings, "pooled"]:
        units = pairs[f] if f != "pooled" else [u for g in findings for u in pairs[g]]
        if not units:
            continue
        idx = np.array([i for i, _ in units])
        is_left = np.array([left for _, left in units])
        real = _at_units(real_logits, findings, pairs, f)
        result["findings"][f] = {"n": len(units), "n_balanced": int(balanced[idx].sum()),
                                 "real_accuracy": float((np.where(is_left, real, -real) > 0).mean())}
        at_units = {name: [_at_units(per_model[name][kind], findings, pairs, f) for kind in ("original", "swapped")]
                    for name in models}  # name -> [original logits, swapped logits] at these units
        for name in models:
            lo, ls = at_units[name]
            entry = side_adherence(lo, ls, is_left, groups=idx, bootstrap=args.bootstrap, seed=args.seed)
            keep = balanced[idx]
            if keep.any():
                entry["balanced"] = side_adherence(lo[keep], ls[keep], is_left[keep], groups=idx[keep],
                                                   bootstrap=args.bootstrap, seed=args.seed)
            if args.baseline and name != args.baseline:
                entry["vs_baseline"] = _paired_flip_difference(side_flips(lo, ls, is_left),
                                                               side_flips(*at_units[args.baseline], is_left),
                                                               args.baseline, idx, args)
            result["models"][name]["findings"][f] = entry
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if example_rows:
        _save_grid(torch.cat(example_rows, dim=-2), out / "example.png")
        result["example"] = {"report": args.example, "swapped": swap_sides(args.example), "file": "example.png",
                             "layout": f"per model ({', '.join(models)}): seeds 0-3 as written, then side-swapped"}
    (out / "laterality.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(table(result, args.baseline))
    print(f"wrote {out / 'laterality.json'}")


def _example_rows(pipe, report: str, *, num_inference_steps: int, guidance_scale, adapter_scale, seed: int,
                  **_):
    """(H·2, W·4) in [0, 1]: ``report`` drawn from noise seeds ``seed``..``seed + 3`` (top) and its side-swapped
    twin from the same noise (bottom)."""
    import torch

    from diffcxr.evaluation.laterality import swap_sides

    rows = []
    for text in (report, swap_sides(report)):
        generators = [torch.Generator().manual_seed(seed + k) for k in range(4)]
        images = pipe([text], num_images_per_prompt=4, num_inference_steps=num_inference_steps,
                      guidance_scale=guidance_scale, adapter_conditioning_scale=adapter_scale, generator=generators,
                      output_type="pt", progress=False).images[:, 0].cpu()
        rows.append(torch.cat(list(images), dim=-1))
    return torch.cat(rows, dim=-2)


def _save_grid(grid, path: Path, scale: int = 2) -> None:
    from PIL import Image

    pixels = (grid.clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(pixels).resize((pixels.shape[1] * scale, pixels.shape[0] * scale), Image.NEAREST).save(path)


def _at_units(per_finding: dict, findings: list[str], pairs: dict, finding: str) -> np.ndarray:
    """Per-report values (``{finding: (n reports,)}``) at the units of ``finding`` ("pooled": of all, in order)."""
    names = findings if finding == "pooled" else [finding]
    return np.concatenate([per_finding[g][[i for i, _ in pairs[g]]] for g in names if pairs[g]])


def _paired_flip_difference(flips: np.ndarray, baseline_flips: np.ndarray, baseline: str, idx, args) -> dict:
    """Flip rate minus the baseline's on the same units (bool (n,) each), with a bootstrap interval over reports."""
    from diffcxr.metrics import bootstrap_interval

    diff = flips.astype(np.float64) - baseline_flips.astype(np.float64)
    out = {"baseline": baseline, "flip_rate_difference": float(diff.mean())}
    if args.bootstrap:
        out["interval"] = bootstrap_interval(lambda i: float(diff[i].mean()), list(idx), args.bootstrap,
                                             seed=args.seed)
    return out


def table(result: dict, baseline: str | None = None) -> str:
    """A Markdown table: one row per finding and model."""
    head = ("| finding | n (balanced) | real | model | accuracy as written / swapped | flip rate [95 % CI] | "
            "flip rate, balanced reports | logit shift |")
    lines = [head, "|---|---|---:|---|---|---|---|---:|"]
    for f, info in result["findings"].items():
        for name, model in result["models"].items():
            e = model["findings"][f]
            ci = e.get("intervals", {}).get("flip_rate")
            flip = f"{e['flip_rate']:.3f}" + (f" [{ci['low']:.3f}, {ci['high']:.3f}]" if ci else "")
            bal = e.get("balanced")
            bal_cell = f"{bal['flip_rate']:.3f} (n {bal['n']})" if bal else "-"
            lines.append(f"| {f} | {info['n']} ({info['n_balanced']}) | {info['real_accuracy']:.3f} | {name} | "
                         f"{e['accuracy_original']:.3f} / {e['accuracy_swapped']:.3f} | {flip} | {bal_cell} | "
                         f"{e['logit_shift']:+.2f} |")
    lines += ["", "how far each report encoder's condition moves when the sides are swapped (÷ the distance "
              "between two reports): " + ", ".join(f"{name} {model['condition_side_sensitivity']:.3f}"
                                      for name, model in result["models"].items())]
    if baseline:
        lines += ["", f"paired against {baseline} (the same reports and noise):", "",
                  "| finding | model | flip rate − baseline [95 % CI] |", "|---|---|---|"]
        for f in result["findings"]:
            for name, model in result["models"].items():
                d = model["findings"][f].get("vs_baseline")
                if d:
                    ci = d.get("interval")
                    cell = f"{d['flip_rate_difference']:+.3f}"
                    if ci:
                        cell += f" [{ci['low']:+.3f}, {ci['high']:+.3f}]"
                    lines.append(f"| {f} | {name} | {cell} |")
    return "\n".join(lines)


def _read_run(spec: str) -> tuple[str, dict]:
    """``SEED=laterality.json`` -> (seed name, the run's result)."""
    name, _, path = spec.partition("=")
    if not name or not path:
        raise SystemExit(f"error: give --seed-table entries as SEED=LATERALITY.json, got {spec!r}")
    try:
        return name, json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SystemExit(f"error: cannot read the laterality run {path} ({exc.__class__.__name__}: {exc})") from None


def seed_table(runs: dict[str, dict]) -> str:
    """Markdown over training seeds. ``runs``: ``{seed name: laterality.json}``, one run per training seed of the
    same models on the same reports, judge and noise. Per finding and model: the flip rate (mean ± SD over seeds,
    then each seed's value and 95 % interval over reports) and side accuracy; each model's condition side
    sensitivity; and, where the runs had a ``--baseline``, each model's paired difference to it the same way."""
    from diffcxr.metrics.seeds import difference_over_seeds, mean_sd_text

    first = next(iter(runs.values()))
    for seed, run in runs.items():
        for key in ("data", "classifier", "n_reports"):
            if run.get(key) != first.get(key):
                raise SystemExit(f"error: the runs differ in {key} ({first.get(key)!r} vs {run.get(key)!r} in "
                                 f"{seed}); compare runs on the same reports and judge")
    models = [m for m in first["models"] if all(m in run["models"] for run in runs.values())]
    if not models:
        raise SystemExit("error: no model name is in every run; name each model the same in every seed's run")
    seeds = list(runs)

    def entries(model: str, finding: str) -> list[dict]:
        return [run["models"][model]["findings"][finding] for run in runs.values()]

    def per_seed(values: list[float], intervals: list[dict | None], sign: str = "") -> str:
        return " / ".join(f"{v:{sign}.3f}" + (f" [{ci['low']:{sign}.3f}, {ci['high']:{sign}.3f}]" if ci else "")
                          for v, ci in zip(values, intervals))

    findings = [f for f in first["findings"] if all(f in run["findings"] for run in runs.values())]
    lines = [f"{len(seeds)} training seed{'s' * (len(seeds) != 1)} ({', '.join(seeds)}); {first['n_reports']} "
             f"reports of {first['data']}", "",
             "| finding | n | real | model | flip rate, mean ± SD | per seed [95 % CI] | "
             "accuracy as written / swapped |",
             "|---|---:|---:|---|---|---|---|"]
    for f in findings:
        info = first["findings"][f]
        for model in models:
            e = entries(model, f)
            flips = [x["flip_rate"] for x in e]
            cis = [x.get("intervals", {}).get("flip_rate") for x in e]
            lines.append(f"| {f} | {info['n']} | {info['real_accuracy']:.3f} | {model} | {mean_sd_text(flips)} | "
                         f"{per_seed(flips, cis)} | {mean_sd_text([x['accuracy_original'] for x in e])} / "
                         f"{mean_sd_text([x['accuracy_swapped'] for x in e])} |")
    lines += ["", "condition side sensitivity (mean ± SD over seeds): " + ", ".join(
        f"{m} {mean_sd_text([run['models'][m]['condition_side_sensitivity'] for run in runs.values()])}"
        for m in models)]
    paired = [(f, m) for f in findings for m in models if all("vs_baseline" in x for x in entries(m, f))]
    if paired:
        baselines = {x["vs_baseline"]["baseline"] for f, m in paired for x in entries(m, f)}
        lines += ["", f"paired against {', '.join(sorted(baselines))} (per seed: the same reports and noise):", "",
                  "| finding | model | flip rate − baseline, mean ± SD | per seed [95 % CI] | "
                  "mean ÷ SD [95 % t-interval of the mean] |", "|---|---|---|---|---|"]
        for f, m in paired:
            d = [x["vs_baseline"] for x in entries(m, f)]
            diffs = [x["flip_rate_difference"] for x in d]
            over_seeds = difference_over_seeds(diffs)
            t_cell = ("-" if math.isnan(over_seeds.in_sd) else
                      f"{over_seeds.in_sd:+.1f} SD [{over_seeds.interval[0]:+.3f}, {over_seeds.interval[1]:+.3f}]")
            lines.append(f"| {f} | {m} | {mean_sd_text(diffs, sign=True)} | "
                         f"{per_seed(diffs, [x.get('interval') for x in d], sign='+')} | {t_cell} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
