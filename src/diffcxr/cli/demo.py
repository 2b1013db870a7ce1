"""``diffcxr demo``: phantoms → train every stage (demo config) → generate for held-out reports → grid PNG."""

from __future__ import annotations

import argparse

from diffcxr.cli.arguments import count, non_negative

HELP = "end-to-end demo in minutes on a CPU: make phantoms, train all stages, generate, write a grid PNG"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    parser.add_argument("--n", type=count, default=800, help="number of phantoms to train on (default 800)")
    parser.add_argument("--size", type=count, default=64, help="phantom image size (default 64; must match the config)")
    parser.add_argument("--reports", type=count, default=6,
                        help="grid rows: a normal report, then effusion, cardiomegaly, pneumothorax, edema, devices "
                             "(default 6)")
    parser.add_argument("--images-per-report", type=count, default=2, help="generated images per report (default 2)")
    parser.add_argument("--steps", type=count, default=15,
                        help="sampling steps for the grid and the adherence measurement (default 15: DPM-Solver++ "
                             "gave the same mAUC as with 25)")
    parser.add_argument("-c", "--config", default="demo", help="training config (default: demo, shipped in the package)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, repeatable (e.g. --set base.max_steps=2000)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted demo in the same --out")
    parser.add_argument("--no-mixed-precision", action="store_true", help="fp32 instead of bf16 autocast")
    parser.add_argument("--seed", type=non_negative, default=0, help="phantom and sampling seed (default 0)")
    parser.add_argument("--eval-reports", type=non_negative, default=100,
                        help="fresh phantom reports (never trained on) for the adherence measurement; 0 = skip "
                             "(default 100)")


def run(args: argparse.Namespace) -> int:
    import json
    import time
    from pathlib import Path

    from diffcxr.errors import DiffCXRError, ResumeConfigError

    out = Path(args.out)
    times: dict[str, float] = {}
    t_all = time.perf_counter()

    # 0. everything that can be checked before minutes of work --------------------------------------------------------
    from diffcxr.training import load_run_config, train

    cfg = load_run_config(args.config, [f"seed={args.seed}", *args.overrides])
    if cfg.model_config()["image_size"] != args.size:
        raise DiffCXRError(f"--size {args.size} does not match the config's image_size {cfg.model_config()['image_size']}")

    # this machine's speed when the demo starts and ends (fp32 matmul GFLOP/s, about 1 s each): timings measured
    # on shared or throttled machines are comparable only next to it
    from diffcxr.flops import matmul_flops

    speed = {"matmul_gflops_start": matmul_flops() / 1e9}

    # 1. phantoms ---------------------------------------------------------------------------------------------------
    from diffcxr.data.phantom import make_phantom_dataset

    phantoms = out / "phantoms"
    t0 = time.perf_counter()
    meta_path = phantoms / "phantom.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    same = meta and (meta.get("n"), meta.get("size"), meta.get("seed")) == (args.n, args.size, args.seed)
    if (out / "model").exists() and not args.resume:
        raise DiffCXRError(f"{out} already holds a demo; pass --resume to continue it or choose another --out")
    if (out / "model").exists() and not same:
        raise DiffCXRError(f"the demo in {out} was trained on --n {meta.get('n')} --size {meta.get('size')} --seed "
                           f"{meta.get('seed')}; resume with those values or choose another --out")
    if not (args.resume and same):
        print(f"[demo] making {args.n} phantoms ({args.size}x{args.size}) in {phantoms}", flush=True)
        make_phantom_dataset(args.n, args.size, phantoms, seed=args.seed, progress=True)
    times["phantoms_s"] = time.perf_counter() - t0

    # 2. train every stage + export the pipeline --------------------------------------------------------------------------
    model_dir = out / "model"
    t0 = time.perf_counter()
    try:
        train("all", cfg, f"phantom:{phantoms}", model_dir, resume=args.resume,
              mixed_precision="no" if args.no_mixed_precision else None)
    except ResumeConfigError as error:  # a demo from before a default changed: say how to resume it here
        if not error.overrides:
            raise
        raise DiffCXRError(f"--resume: the demo in {out} was trained with other model settings than this command's; "
                           f"resume it as it was trained with {' '.join('--set ' + o for o in error.overrides)}, "
                           f"or choose another --out") from None
    times["training_s"] = time.perf_counter() - t0
    for stage in ("vae", "vlm", "base", "adapter", "classifier"):
        rows = _log(model_dir / stage / "log.csv")
        if rows:
            times[f"{stage}_s"] = float(rows[-1]["elapsed_s"])

    # 3. fresh phantom reports (never trained on): the grid's showcase and the adherence measurement ------------------
    from diffcxr.data.sources import read_records
    from diffcxr.training.data import select_records

    eval_records = []
    if args.eval_reports:
        eval_records = read_records(f"phantom:{fresh_phantoms(out / 'phantoms-eval', args.eval_reports, args.size, args.seed)}",
                                    derive_labels=True)
    t0 = time.perf_counter()
    shown = showcase_records(eval_records + select_records(f"phantom:{phantoms}", cfg.data)[1], args.reports)
    grid = write_demo_grid(model_dir / "pipeline", shown, out / "demo_grid.png", size=args.size,
                           per_report=args.images_per_report, steps=args.steps, seed=args.seed)
    times["generation_s"] = time.perf_counter() - t0

    # 4. adherence: do the images show what their reports say? ----------------------------------------------------
    if eval_records:
        t0 = time.perf_counter()
        adherence = measure_demo_adherence(model_dir, eval_records, cfg, size=args.size, steps=args.steps,
                                           seed=args.seed)
        (out / "adherence.json").write_text(json.dumps(adherence, indent=2))
        times["adherence_s"] = time.perf_counter() - t0
        print(adherence_summary(adherence))
    times["total_s"] = time.perf_counter() - t_all
    speed["matmul_gflops_end"] = matmul_flops() / 1e9
    (out / "timings.json").write_text(json.dumps({k: round(v, 1) for k, v in {**times, **speed}.items()}, indent=2))
    print(f"[demo] done in {times['total_s'] / 60:.1f} min: grid {grid}, pipeline {model_dir / 'pipeline'}")
    print(f"  this machine's fp32 matmul: {speed['matmul_gflops_start']:.0f} GFLOP/s at the start, "
          f"{speed['matmul_gflops_end']:.0f} at the end (timings.json: compare demo times next to it)")
    print(f"  try: diffcxr generate --model {model_dir / 'pipeline'} \"Large left pleural effusion.\" --out {out / 'generated'}")
    print(f"  or open it in the web app: diffcxr app --model {model_dir / 'pipeline'}")
    return 0


def fresh_phantoms(folder, n: int, size: int, seed: int):
    """``n`` phantoms with seed ``seed + 1`` (the training phantoms use ``seed``) in ``folder``, made once."""
    import json

    from diffcxr.data.phantom import make_phantom_dataset

    meta = folder / "phantom.json"
    info = json.loads(meta.read_text()) if meta.is_file() else {}
    if (info.get("n"), info.get("size"), info.get("seed")) != (n, size, seed + 1):
        make_phantom_dataset(n, size, folder, seed=seed + 1, progress=False)
    return folder


SHOWCASE = ("No Finding", "Pleural Effusion", "Cardiomegaly", "Pneumothorax", "Edema", "Support Devices")
_SEVERITY = {"severe": 3, "moderate": 2, "mild": 1}


def showcase_records(records, n: int = 6):
    """One record per finding of :data:`SHOWCASE` (the first ``n``): positive for it, as few other findings as
    possible (support devices aside), the most severe first — a normal report and clear single findings."""
    from diffcxr.findings import CHEXPERT_FINDINGS

    chosen = []
    devices = CHEXPERT_FINDINGS.index("Support Devices")
    for finding in SHOWCASE[:n]:
        k = CHEXPERT_FINDINGS.index(finding)
        taken = {r.id for r in chosen}
        candidates = [r for r in records if r.labels[k] == 1 and r.id not in taken]
        if not candidates:
            continue

        def rank(r):
            others = sum(1 for j, v in enumerate(r.labels) if v == 1 and j not in (k, devices))
            kind = finding.lower().replace(" ", "_")  # phantom metadata: "kind|side|severity|..." per finding
            drawn = [f.split("|") for f in str(r.meta.get("image_findings", "")).split(";") if f]
            severity = max((_SEVERITY.get(f[2], 0) for f in drawn if len(f) > 2 and f[0] == kind), default=0)
            return (others, -severity)

        chosen.append(min(candidates, key=rank))
    return chosen


def measure_demo_adherence(model_dir, records, cfg, size: int, steps: int, seed: int) -> dict:
    """mAUC of the demo's classifier on one image generated from each of ``records`` (fresh phantom reports,
    never trained on): the model as trained (its config's guidance and adapter scale), without the knowledge
    adapter, and without guidance; and on the real phantoms of the same reports (the yardstick). ``"gain"``: what
    the adapter and guidance add, mAUC differences over the same reports and noise with paired intervals."""
    from diffcxr.evaluation.adherence import adherence_gain, generate_and_score, real_adherence
    from diffcxr.models.cxr_classifier import load_classifier
    from diffcxr.pipelines import DiffCXRPipeline

    classifier = load_classifier(model_dir / "classifier")
    pipe = DiffCXRPipeline.from_pretrained(model_dir / "pipeline")
    guidance, adapter = cfg.sample.guidance_scale, cfg.sample.adapter_scale
    arms = {"model": dict(guidance_scale=guidance, adapter_scale=adapter),
            "no_adapter": dict(guidance_scale=guidance, adapter_scale=0.0),
            "guidance_1": dict(guidance_scale=1.0, adapter_scale=adapter)}
    result, generated = {"real": real_adherence(records, classifier, size, seed=seed)}, {}
    for name, kwargs in arms.items():
        result[name], generated[name] = generate_and_score(pipe, records, classifier, images_per_report=1,
                                                           num_inference_steps=steps, seed=seed, progress=True,
                                                           **kwargs)
    result["gain"] = {f"over_{arm}": adherence_gain(generated["model"], generated[arm], classifier, seed=seed)
                      for arm in ("no_adapter", "guidance_1")}
    return result


def adherence_summary(result: dict) -> str:
    """The lines the demo prints: mAUC [95 % interval] per arm, the yardstick on real phantoms, and the paired
    gains of the adapter and of guidance."""

    def fmt(r, key="mauc", sign=""):
        ci = r.get("interval")
        return f"{r[key]:{sign}.3f}" + (f" [{ci['low']:{sign}.3f}, {ci['high']:{sign}.3f}]" if ci else "")

    m = result["model"]
    per = m["images_per_report"]
    trained = f"generated, as trained (w {m['settings']['guidance_scale']:g}, adapter {m['settings']['adapter_scale']:g}):"
    lines = [f"[demo] adherence on {m['n_reports']} fresh phantom reports × {per} image{'s' if per != 1 else ''} "
             f"(mAUC of the demo's classifier against each image's report; 95 % interval over reports):",
             f"  {trained:<40}{fmt(m)}",
             f"  generated, no knowledge adapter:        {fmt(result['no_adapter'])}",
             f"  generated, no guidance (w = 1):         {fmt(result['guidance_1'])}",
             f"  real phantoms of the same reports:      {fmt(result['real'])}"]
    gains = result.get("gain", {})
    for key, what in (("over_no_adapter", "the knowledge adapter adds"), ("over_guidance_1", "guidance adds")):
        if key in gains:
            lines.append(f"  {what + ' (paired*):':<40}{fmt(gains[key], 'delta', '+')}")
    if gains:
        lines.append("  * mAUC differences over the same reports and noise; each interval resamples reports for both arms")
    return "\n".join(lines)


def _log(path):
    import csv

    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def write_demo_grid(pipeline_dir, records, path, size: int, per_report: int = 2, steps: int = 25, seed: int = 0,
                    guidance_scale: float | None = None):
    """Rows: [real phantom | generated images] per record, with the report's impression and knowledge prompt.

    Every row uses the same noise seed, so the rows differ only by their report. Guidance and adapter scale: the
    pipeline's own unless ``guidance_scale`` is given."""
    import numpy as np
    import torch
    from PIL import Image

    from diffcxr.data.contact_sheet import make_contact_sheet
    from diffcxr.pipelines import DiffCXRPipeline
    from diffcxr.training.data import ImageSet
    from diffcxr.training.grids import impression as _impression

    pipe = DiffCXRPipeline.from_pretrained(pipeline_dir)
    pipe.set_progress_bar_config(disable=True)
    guidance_scale = pipe.default_guidance_scale if guidance_scale is None else guidance_scale
    real = ImageSet(records, size).batch(range(len(records)))
    tiles, captions = [], []

    def big(a):
        im = Image.fromarray(np.round(np.clip(a, 0, 1) * 255).astype(np.uint8), "L")
        return np.asarray(im.resize((160, 160), Image.Resampling.BICUBIC), dtype=np.float32) / 255

    for record, x in zip(records, real):
        out = pipe(record.report, num_images_per_prompt=per_report, num_inference_steps=steps, output_type="np",
                   guidance_scale=guidance_scale, generator=torch.Generator().manual_seed(seed))
        tiles.append(big(((x[0] + 1) / 2).numpy()))
        captions.append(f"REAL {record.id}. {_impression(record.report)} [{out.knowledge_prompts[0]}]")
        for k in range(per_report):
            tiles.append(big(out.images[k][..., 0]))
            captions.append(f"GENERATED #{k + 1} (seed {seed}, the same in every row) from the report at the left")
    sheet = make_contact_sheet(tiles, captions, tile=160, columns=1 + per_report, caption_lines=4,
                               title=f"diffcxr demo: fresh phantom reports -> generated CXRs (left: real phantom; "
                                     f"guidance {guidance_scale:g}, adapter {pipe.default_adapter_scale:g}, "
                                     f"{steps} steps)")
    sheet.save(path)
    return path
