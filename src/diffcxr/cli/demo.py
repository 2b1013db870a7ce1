"""``diffcxr demo``: phantoms → train every stage (demo config) → generate for held-out reports → grid PNG."""

from __future__ import annotations

import argparse

HELP = "end-to-end demo in minutes on a CPU: make phantoms, train all stages, generate, write a grid PNG"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    parser.add_argument("--n", type=int, default=400, help="number of phantoms to train on (default 400)")
    parser.add_argument("--size", type=int, default=64, help="phantom image size (default 64; must match the config)")
    parser.add_argument("--reports", type=int, default=6, help="held-out reports to generate for (default 6)")
    parser.add_argument("--images-per-report", type=int, default=2, help="generated images per report (default 2)")
    parser.add_argument("--steps", type=int, default=25, help="sampling steps (default 25)")
    parser.add_argument("-c", "--config", default="demo", help="training config (default: configs/train/demo.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, repeatable (e.g. --set base.max_steps=2000)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted demo in the same --out")
    parser.add_argument("--no-mixed-precision", action="store_true", help="fp32 instead of bf16 autocast")
    parser.add_argument("--seed", type=int, default=0, help="phantom and sampling seed (default 0)")
    parser.add_argument("--eval-reports", type=int, default=100,
                        help="fresh phantom reports (never trained on) for the adherence measurement; 0 = skip "
                             "(default 100)")


def run(args: argparse.Namespace) -> int:
    import json
    import time
    from pathlib import Path

    from diffcxr.errors import DiffCXRError

    out = Path(args.out)
    times: dict[str, float] = {}
    t_all = time.perf_counter()

    # 1. phantoms ---------------------------------------------------------------------------------------------------
    from diffcxr.data.phantom import make_phantom_dataset

    phantoms = out / "phantoms"
    t0 = time.perf_counter()
    meta = phantoms / "phantom.json"
    same = meta.is_file() and json.loads(meta.read_text()).get("n") == args.n and \
        json.loads(meta.read_text()).get("size") == args.size and json.loads(meta.read_text()).get("seed") == args.seed
    if not (args.resume and same):
        if (out / "model").exists() and not args.resume:
            raise DiffCXRError(f"{out} already holds a demo; pass --resume to continue it or choose another --out")
        print(f"[demo] making {args.n} phantoms ({args.size}x{args.size}) in {phantoms}", flush=True)
        make_phantom_dataset(args.n, args.size, phantoms, seed=args.seed, progress=True)
    times["phantoms_s"] = time.perf_counter() - t0

    # 2. train every stage + export the pipeline --------------------------------------------------------------------------
    from diffcxr.training import load_run_config, train

    cfg = load_run_config(args.config, [f"seed={args.seed}", *args.overrides])
    if cfg.model_config()["image_size"] != args.size:
        raise DiffCXRError(f"--size {args.size} does not match the config's image_size {cfg.model_config()['image_size']}")
    model_dir = out / "model"
    t0 = time.perf_counter()
    train("all", cfg, f"phantom:{phantoms}", model_dir, resume=args.resume,
          mixed_precision="no" if args.no_mixed_precision else None)
    times["training_s"] = time.perf_counter() - t0
    for stage in ("vae", "vlm", "base", "adapter", "classifier"):
        rows = _log(model_dir / stage / "log.csv")
        if rows:
            times[f"{stage}_s"] = float(rows[-1]["elapsed_s"])

    # 3. generate for held-out reports ----------------------------------------------------------------------------------
    t0 = time.perf_counter()
    grid = write_demo_grid(model_dir / "pipeline", f"phantom:{phantoms}", out / "demo_grid.png", cfg,
                           n_reports=args.reports, per_report=args.images_per_report, steps=args.steps, seed=args.seed)
    times["generation_s"] = time.perf_counter() - t0

    # 4. adherence: do the images show what their reports say? ----------------------------------------------------
    if args.eval_reports:
        t0 = time.perf_counter()
        adherence = measure_demo_adherence(model_dir, out / "phantoms-eval", cfg, n_reports=args.eval_reports,
                                           size=args.size, steps=args.steps, seed=args.seed)
        (out / "adherence.json").write_text(json.dumps(adherence, indent=2))
        times["adherence_s"] = time.perf_counter() - t0
        print(adherence_summary(adherence))
    times["total_s"] = time.perf_counter() - t_all
    (out / "timings.json").write_text(json.dumps({k: round(v, 1) for k, v in times.items()}, indent=2))
    print(f"[demo] done in {times['total_s'] / 60:.1f} min: grid {grid}, pipeline {model_dir / 'pipeline'}")
    print(f"  try: diffcxr generate --model {model_dir / 'pipeline'} \"Large left pleural effusion.\" --out {out / 'generated'}")
    return 0


def measure_demo_adherence(model_dir, eval_dir, cfg, n_reports: int, size: int, steps: int, seed: int) -> dict:
    """mAUC of the demo's classifier on images generated from ``n_reports`` fresh phantom reports (seed + 1, never
    trained on): the model as trained, without the knowledge adapter, and without guidance; and on the real
    phantoms of the same reports (the yardstick)."""
    import json

    from diffcxr.data.phantom import make_phantom_dataset
    from diffcxr.data.sources import read_records
    from diffcxr.experiments.adherence import generated_adherence, real_adherence
    from diffcxr.experiments.classifier import load_classifier
    from diffcxr.pipelines import DiffCXRPipeline

    meta = eval_dir / "phantom.json"
    if not (meta.is_file() and json.loads(meta.read_text()).get("n") == n_reports
            and json.loads(meta.read_text()).get("seed") == seed + 1):
        make_phantom_dataset(n_reports, size, eval_dir, seed=seed + 1, progress=False)
    records = read_records(f"phantom:{eval_dir}")
    classifier = load_classifier(model_dir / "classifier")
    pipe = DiffCXRPipeline.from_pretrained(model_dir / "pipeline")
    guidance = cfg.sample.guidance_scale
    arms = {"model": dict(guidance_scale=guidance, adapter_scale=1.0),
            "no_adapter": dict(guidance_scale=guidance, adapter_scale=0.0),
            "guidance_1": dict(guidance_scale=1.0, adapter_scale=1.0)}
    result = {"real": real_adherence(records, classifier, size, seed=seed), "eval_data": str(eval_dir)}
    for name, kwargs in arms.items():
        result[name] = generated_adherence(pipe, records, classifier, num_inference_steps=steps, seed=seed,
                                           progress=True, **kwargs)
    return result


def adherence_summary(result: dict) -> str:
    """The lines the demo prints: mAUC [95 % interval] per arm, and the yardstick on real phantoms."""

    def fmt(r):
        ci = r.get("interval")
        return f"{r['mauc']:.3f}" + (f" [{ci['low']:.3f}, {ci['high']:.3f}]" if ci else "")

    m = result["model"]
    lines = [f"[demo] adherence on {m['n_reports']} fresh phantom reports × {m['images_per_report']} images "
             f"(mAUC of the demo's classifier against each image's report; 95 % interval over reports):",
             f"  generated, as trained (guidance {m['settings']['guidance_scale']:g}): {fmt(m)}",
             f"  generated, no knowledge adapter:        {fmt(result['no_adapter'])}",
             f"  generated, no guidance (w = 1):         {fmt(result['guidance_1'])}",
             f"  real phantoms of the same reports:      {fmt(result['real'])}"]
    return "\n".join(lines)


def _log(path):
    import csv

    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def write_demo_grid(pipeline_dir, data_spec: str, path, cfg, n_reports: int = 6, per_report: int = 2,
                    steps: int = 25, seed: int = 0):
    """Rows: [real held-out phantom | generated images] with the report's impression and knowledge prompt."""
    import numpy as np
    import torch
    from PIL import Image

    from diffcxr.data.contact_sheet import make_contact_sheet
    from diffcxr.pipelines import DiffCXRPipeline
    from diffcxr.training.data import ImageSet, select_records
    from diffcxr.training.sampling import impression as _impression

    _, holdout = select_records(data_spec, cfg.data)
    # a varied set: prefer held-out reports with different impressions
    chosen, seen = [], set()
    for r in holdout:
        key = _impression(r.report)
        if key not in seen:
            chosen.append(r)
            seen.add(key)
        if len(chosen) == n_reports:
            break
    pipe = DiffCXRPipeline.from_pretrained(pipeline_dir)
    pipe.set_progress_bar_config(disable=True)
    size = cfg.model_config()["image_size"]
    real = ImageSet(chosen, size).batch(range(len(chosen)))
    tiles, captions = [], []

    def big(a):
        im = Image.fromarray(np.round(np.clip(a, 0, 1) * 255).astype(np.uint8), "L")
        return np.asarray(im.resize((160, 160), Image.Resampling.BICUBIC), dtype=np.float32) / 255

    for record, x in zip(chosen, real):
        out = pipe(record.report, num_images_per_prompt=per_report, num_inference_steps=steps, output_type="np",
                   generator=torch.Generator().manual_seed(seed))
        tiles.append(big(((x[0] + 1) / 2).numpy()))
        captions.append(f"REAL {record.id}. {_impression(record.report)} [{out.knowledge_prompts[0]}]")
        for k in range(per_report):
            tiles.append(big(out.images[k][..., 0]))
            captions.append(f"GENERATED #{k + 1} from the report at the left of this row")
    sheet = make_contact_sheet(tiles, captions, tile=160, columns=1 + per_report, caption_lines=4,
                               title="diffcxr demo: held-out phantom reports -> generated CXRs (left: real phantom)")
    sheet.save(path)
    return path
