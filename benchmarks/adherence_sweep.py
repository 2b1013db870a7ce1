"""Benchmark: report adherence (mAUC) and FID of a trained pipeline across guidance and adapter scales.

No retraining: one trained pipeline, the same reports and noise seeds for every setting. For each guidance
weight ``w`` (diffusers' convention ``ε_u + w·(ε_c − ε_u)``; 1 = no guidance) and knowledge-adapter scale
(0 = no disease knowledge), images are generated from the reports of ``--data``; a classifier trained on real
images scores them against their reports (mAUC, 95 % bootstrap interval over reports) and its penultimate
features give FID against the real images of the same records. Prints a Markdown table, writes
``OUT/sweep.json`` and ``OUT/sweep.png`` (mAUC against FID, one curve per adapter scale). With several
``--solvers`` or ``--steps`` it sweeps those too (quality against steps for each diffusers solver) and the plot
shows mAUC against steps, one curve per solver. ``--classifier A,B`` scores every generated set with each
classifier (one generation, several yardsticks): the first gives the table, the plot and ``rows``; every one is
in ``sweep.json``'s ``"yardsticks"`` (real and generated mAUC, FID on its features). ``--merge A,B`` plots
the rows of earlier sweeps of one model together (for settings swept in several runs) without generating.
``--seed-table SEED=A,B ...`` reads the sweeps of several training seeds of one config (the same reports,
noise and yardstick; ``A,B`` the sweep files of one seed) and prints, per setting swept in every seed, mAUC
and FID as mean ± SD over seeds, and the paired gain of the knowledge adapter (the same w at adapter scale 0,
per seed, then mean ± SD, and each seed's value). ``--baseline SEED=A,B ...`` (the same for another arm, e.g. an
ablation) adds that arm's mean ± SD per common setting, the difference in units of the larger SD and, over the
seeds both arms trained (paired run for run), the per-seed differences' mean ± SD, mean ÷ SD and 95 % t-interval.
``--per-finding W,ADAPTER`` adds each finding's AUC at that setting: real images, the arm over seeds, what
generation loses, and the paired difference to the baseline arm.

Every sweep also saves the yardsticks' scores of each generated image (``OUT/scores.npz``), so two sweeps of the
same reports, noise and yardstick (two arms of one training seed) give a *paired* difference without
generating again: ``--paired A/sweep.json B/sweep.json`` prints, for every setting both swept, mAUC(A) − mAUC(B)
with a paired bootstrap interval over reports (the numbers ``paired_adherence.py`` gives for the same pipelines
and settings).

    .venv/bin/python benchmarks/adherence_sweep.py --model runs/demo/model/pipeline \\
        --classifier runs/demo/model/classifier --data phantom:runs/demo/phantoms-eval --out runs/sweep-demo
    .venv/bin/python benchmarks/adherence_sweep.py ... --guidance 2 --adapter-scale 1 \\
        --solvers dpm++2m,dpm++3m,unipc,deis,euler --steps 5,8,10,15,20,25,50 --out runs/sweep-solvers
    .venv/bin/python benchmarks/adherence_sweep.py --merge runs/sweep-a/sweep.json,runs/sweep-b/sweep.json \
        --out runs/sweep-ab
    .venv/bin/python benchmarks/adherence_sweep.py --seed-table s1=runs/sweep-s1/sweep.json,runs/sweep-s1-off/sweep.json \
        s2=runs/sweep-s2/sweep.json,runs/sweep-s2-off/sweep.json [--yardstick 1] [--baseline s1=... s2=...] \
        [--per-finding 4,2]
    .venv/bin/python benchmarks/adherence_sweep.py --paired runs/sweep-default-s1/sweep.json \
        runs/sweep-meanpool-s1/sweep.json [--yardstick 1]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from diffcxr.metrics.seeds import mean_sd, mean_sd_text, paired_difference


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="saved DiffCXRPipeline folder")
    ap.add_argument("--classifier",
                    help="CXRClassifier folder trained on real images; several comma-separated score the same images")
    ap.add_argument("--data", help="dataset spec whose reports condition generation")
    ap.add_argument("--split", default="all", help="split of --data (default all: use a fresh phantom set)")
    ap.add_argument("--out")
    ap.add_argument("--guidance", default="1,1.5,2,3,4,6")
    ap.add_argument("--adapter-scale", default="0,0.5,1,2")
    ap.add_argument("--n-reports", type=int, default=200)
    ap.add_argument("--images-per-report", type=int, default=2)
    ap.add_argument("--steps", default="20", help="solver steps, one or a comma-separated list (default 20)")
    ap.add_argument("--solvers", default="dpm++2m",
                    help="comma-separated diffusers solvers (diffcxr.models.diffusion.SOLVERS; default dpm++2m)")
    ap.add_argument("--checkpoint", default="",
                    help="comma-separated base/adapter training checkpoints whose EMA weights replace the pipeline's "
                         "denoiser / knowledge adapter (score a run at an intermediate step: learning curves)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bootstrap", type=int, default=200)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--device", default=None,
                    help="torch device for generation (default: cuda when available, else cpu); scoring stays on cpu")
    ap.add_argument("--merge", help="comma-separated sweep.json files to plot together (no generation)")
    ap.add_argument("--seed-table", nargs="+", metavar="SEED=SWEEP.json[,...]",
                    help="mean ± SD over training seeds of earlier sweeps (no generation)")
    ap.add_argument("--baseline", nargs="+", metavar="SEED=SWEEP.json[,...]",
                    help="with --seed-table: another arm's sweeps (e.g. an ablation) to compare with, per setting")
    ap.add_argument("--per-finding", metavar="W,ADAPTER",
                    help="with --seed-table: also each finding's AUC at this guidance and adapter scale (e.g. 4,2): "
                         "real images, mean ± SD over seeds, and the baseline arm's")
    ap.add_argument("--paired", nargs=2, metavar="SWEEP.json",
                    help="two sweeps of the same reports, noise and yardstick (e.g. two arms of one training seed): "
                         "their paired mAUC difference per common setting, from the saved scores (no generation)")
    ap.add_argument("--yardstick", type=int, default=0,
                    help="with --seed-table or --paired: which classifier of the sweeps' --classifier list "
                         "(default 0, the first)")
    args = ap.parse_args()
    if args.seed_table:
        return seed_table(args.seed_table, args.yardstick, args.baseline, args.per_finding)
    if args.paired:
        return paired(*args.paired, yardstick=args.yardstick)
    if not args.out:
        ap.error("--out is required (except with --seed-table)")
    if args.merge:
        return merge(args.merge.split(","), Path(args.out))
    missing = [f"--{k}" for k in ("model", "classifier", "data") if not getattr(args, k)]
    if missing:
        ap.error(f"{', '.join(missing)} required (or --merge)")

    import torch

    from diffcxr.data.sources import read_records
    from diffcxr.evaluation.adherence import generate_for_records, real_adherence, score_adherence
    from diffcxr.models.cxr_classifier import load_classifier
    from diffcxr.metrics.extractors import cxr_extractor
    from diffcxr.models.diffusion import solver_scheduler
    from diffcxr.pipelines import DiffCXRPipeline
    from diffcxr.training.pipeline_export import load_training_checkpoint

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    records = [r for r in read_records(args.data, split=None if args.split == "all" else args.split,
                                                derive_labels=True) if r.report]
    records = records[: args.n_reports]
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    pipe = DiffCXRPipeline.from_pretrained(args.model).to(device)
    checkpoints = {}  # component -> step
    for folder in (v.strip() for v in args.checkpoint.split(",") if v.strip()):
        component, step = load_training_checkpoint(pipe, folder)
        checkpoints[component] = step
        print(f"{component}: weights of {folder} (step {step})", flush=True)
    size = pipe.image_size
    judges = {}  # classifier folder -> (classifier, feature extractor, real-image result, real feature stats)
    for folder in (v.strip() for v in args.classifier.split(",") if v.strip()):
        classifier = load_classifier(folder)
        extractor = cxr_extractor(classifier)
        real = real_adherence(records, classifier, size, bootstrap=args.bootstrap, seed=args.seed,
                              extractor=extractor)
        judges[folder] = (classifier, extractor, real, real.pop("stats"))
    real = next(iter(judges.values()))[2]  # the first classifier's: the table's and the plot's
    yardsticks = {folder: {"real": j[2], "rows": []} for folder, j in judges.items()}
    scores = {folder: [] for folder in judges}  # per yardstick, each row's image scores (N, 14)
    rows = []
    steps_list = [int(v) for v in _floats(args.steps)]
    solvers = [v.strip() for v in args.solvers.split(",") if v.strip()]
    schedule = dict(pipe.scheduler.config)
    print(f"{len(records)} reports × {args.images_per_report} images; real images: "
          + "; ".join(f"{folder}: mAUC {j[2]['mauc']:.3f}" for folder, j in judges.items()), flush=True)
    extra = "".join(f" | mAUC, classifier {k + 2} | FID, classifier {k + 2}" for k in range(len(judges) - 1))
    print(f"| solver | steps | guidance w | adapter scale | mAUC [95 % CI] | FID{extra} | s |\n"
          f"|---|---:|---:|---:|---|---:{'|---|---:' * (len(judges) - 1)}|---:|", flush=True)
    for solver in solvers:
        pipe.scheduler = solver_scheduler(solver, schedule)
        for steps in steps_list:
            for adapter_scale in _floats(args.adapter_scale):
                for guidance in _floats(args.guidance):
                    t0 = time.perf_counter()
                    settings = {"num_inference_steps": steps, "guidance_scale": guidance,
                                "adapter_scale": adapter_scale, "seed": args.seed, "solver": solver,
                                **({"checkpoints": checkpoints} if checkpoints else {})}
                    images, labels, groups = generate_for_records(
                        pipe, records, images_per_report=args.images_per_report, num_inference_steps=steps,
                        guidance_scale=guidance, adapter_scale=adapter_scale, seed=args.seed)
                    cells = []
                    for folder, (classifier, extractor, _, real_stats) in judges.items():
                        r = score_adherence(images, labels, groups, classifier, bootstrap=args.bootstrap,
                                            seed=args.seed, extractor=extractor, real_stats=real_stats,
                                            return_scores=True)
                        scores[folder].append(r.pop("scores"))
                        r.update(n_reports=len(records), images_per_report=args.images_per_report,
                                 settings=settings, seconds=time.perf_counter() - t0)
                        yardsticks[folder]["rows"].append(r)
                        cells.append(r)
                    rows.append(cells[0])
                    ci = cells[0].get("interval")  # absent with --bootstrap 0
                    ci_text = f" [{ci['low']:.3f}, {ci['high']:.3f}]" if ci else ""
                    more = "".join(f" | {r['mauc']:.3f} | {r['fid']:.2f}" for r in cells[1:])
                    print(f"| {solver} | {steps} | {guidance:g} | {adapter_scale:g} | {cells[0]['mauc']:.3f}"
                          f"{ci_text} | {cells[0]['fid']:.2f}{more} | "
                          f"{cells[0]['seconds']:.0f} |", flush=True)
    args.model = str(Path(args.model).resolve())
    summary = {"real": real, "rows": rows, "yardsticks": yardsticks, "args": vars(args)}
    (out / "sweep.json").write_text(json.dumps(summary, indent=2))
    # scores_K: (rows, images, 14) of yardstick K in --classifier order, rows in sweep.json's order
    np.savez_compressed(out / "scores.npz", labels=labels, groups=np.asarray(groups),
                        **{f"scores_{k}": np.stack(per_row) for k, per_row in enumerate(scores.values())})
    title = f"{args.model}: {len(records)} reports"
    if len(solvers) > 1 or len(steps_list) > 1:
        _plot_steps(rows, real, out / "sweep.png", title)
    else:
        _plot(rows, real, out / "sweep.png", title)
    print(f"wrote {out / 'sweep.json'} and {out / 'sweep.png'}")


def merge(paths: list[str], out: Path) -> None:
    """One plot (and ``sweep.json``) from the first yardstick's rows of several sweeps of the same reports."""
    sweeps = [json.loads(Path(p).read_text()) for p in paths if p.strip()]
    reals = {round(s["real"]["mauc"], 6) for s in sweeps}
    if len(reals) != 1:
        raise SystemExit(f"error: the sweeps were scored against different real images or classifiers (real mAUC "
                         f"{sorted(reals)}); merge sweeps of one reference set and yardstick only")
    rows = [r for s in sweeps for r in s["rows"]]
    out.mkdir(parents=True, exist_ok=True)
    real = sweeps[0]["real"]
    (out / "sweep.json").write_text(json.dumps({"real": real, "rows": rows, "merged": paths}, indent=2))
    _plot(rows, real, out / "sweep.png", f"{Path(sweeps[0]['args']['model']).name}: {len(paths)} sweeps merged")
    print(f"wrote {out / 'sweep.json'} and {out / 'sweep.png'} ({len(rows)} rows)")


def _sweep_scores(path: str, yardstick: int) -> tuple[dict, dict]:
    """A sweep's ``sweep.json`` and its ``scores.npz`` (``labels``, ``groups``, ``scores``: yardstick
    ``yardstick``'s (rows, images, 14)); one-line errors for what cannot be paired."""
    try:
        sweep = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SystemExit(f"error: cannot read the sweep {path} ({exc.__class__.__name__}: {exc})") from None
    saved = Path(path).parent / "scores.npz"
    if not saved.is_file():
        raise SystemExit(f"error: {path} has no scores.npz beside it (merged sweeps and sweeps from before "
                         f"2026-12-07 did not save image scores): run the sweep again to pair it")
    with np.load(saved) as npz:
        if f"scores_{yardstick}" not in npz:
            raise SystemExit(f"error: {saved} has no scores of yardstick {yardstick}")
        arrays = {"labels": npz["labels"], "groups": npz["groups"], "scores": npz[f"scores_{yardstick}"]}
    return sweep, arrays


def paired(path_a: str, path_b: str, yardstick: int = 0) -> dict:
    """The paired mAUC difference of two sweeps (A − B) at every setting both swept, from their saved image scores:
    the same reports, noise seed and yardstick are required (checked), so image ``i`` of A and of B come from the
    same report and noise. Prints one Markdown table; returns ``{setting: paired_mauc_difference(...)}``."""
    from diffcxr.evaluation.adherence import paired_mauc_difference

    (sweep_a, a), (sweep_b, b) = _sweep_scores(path_a, yardstick), _sweep_scores(path_b, yardstick)
    same_reports = np.array_equal(a["labels"], b["labels"], equal_nan=True) and np.array_equal(a["groups"], b["groups"])
    judge_a = (list(sweep_a.get("yardsticks", {}).values()) or [sweep_a])[yardstick]
    judge_b = (list(sweep_b.get("yardsticks", {}).values()) or [sweep_b])[yardstick]
    seeds = {sweep_a["args"]["seed"], sweep_b["args"]["seed"]}
    reals = {round(judge["real"]["mauc"], 6) for judge in (judge_a, judge_b)}
    if not same_reports or len(seeds) != 1 or len(reals) != 1:
        raise SystemExit(f"error: {path_a} and {path_b} are not paired: they need the same reports (in the same "
                         f"order), noise seed and yardstick (seeds {sorted(seeds)}, real-image mAUC {sorted(reals)})")
    rows_a = {_setting(r): (r, i) for i, r in enumerate(judge_a["rows"])}
    rows_b = {_setting(r): (r, i) for i, r in enumerate(judge_b["rows"])}
    common = [key for key in rows_a if key in rows_b]
    if not common:
        raise SystemExit(f"error: {path_a} and {path_b} share no setting (solver, steps, w, adapter scale)")
    bootstrap = int(sweep_a["args"].get("bootstrap", 200))
    print(f"A = {path_a}\nB = {path_b}\n{len(a['labels'])} images of {len(set(a['groups'].tolist()))} reports, "
          f"the same noise (seed {seeds.pop()}); real images {reals.pop():.3f}\n")
    print("| solver | steps | guidance w | adapter scale | mAUC A | mAUC B | A − B, paired [95 % CI] |\n"
          "|---|---:|---:|---:|---:|---:|---|")
    results = {}
    for key in common:
        (row_a, i), (row_b, j) = rows_a[key], rows_b[key]
        result = paired_mauc_difference(a["scores"][i], b["scores"][j], a["labels"], a["groups"].tolist(),
                                        bootstrap=bootstrap, seed=int(sweep_a["args"]["seed"]))
        ci = result.get("interval")
        ci_text = f" [{ci['low']:+.3f}, {ci['high']:+.3f}]" if ci else ""
        print(f"| {_setting_cells(key)} | {row_a['mauc']:.3f} | {row_b['mauc']:.3f} | "
              f"{result['delta']:+.3f}{ci_text} |")
        results[key] = result
    return results


def _setting(row: dict) -> tuple:
    s = row["settings"]
    return (s.get("solver", "dpm++2m"), s["num_inference_steps"], s["guidance_scale"], s["adapter_scale"],
            tuple(sorted(s.get("checkpoints", {}).items())))


def _read_seed_sweeps(specs: list[str], yardstick: int) -> tuple[dict, float, dict]:
    """``{seed: {setting: row}}`` from ``SEED=A.json,B.json`` entries, the yardstick's real-image mAUC (one value:
    every sweep must be scored against the same real images and classifier) and its per-finding AUCs."""
    per_seed = {}
    reals = set()
    real_findings = {}
    for spec in specs:
        name, _, files = spec.partition("=")
        if not files:
            raise SystemExit(f"error: give seed-table entries as SEED=SWEEP.json[,...], got {spec!r}")
        rows = {}
        for path in (f for f in files.split(",") if f.strip()):
            try:
                sweep = json.loads(Path(path).read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise SystemExit(f"error: cannot read the sweep {path} ({exc.__class__.__name__}: {exc})") from None
            judges = list(sweep.get("yardsticks", {}).values()) or [{"real": sweep["real"], "rows": sweep["rows"]}]
            if yardstick >= len(judges):
                raise SystemExit(f"error: {path} has {len(judges)} yardstick(s), --yardstick {yardstick} asked")
            reals.add(round(judges[yardstick]["real"]["mauc"], 6))
            real_findings = judges[yardstick]["real"].get("per_finding", {})
            rows.update({_setting(r): r for r in judges[yardstick]["rows"]})
        per_seed[name] = rows
    if len(reals) != 1:
        raise SystemExit(f"error: the sweeps were scored against different real images or classifiers (real mAUC "
                         f"{sorted(reals)}); one reference set and yardstick only")
    return per_seed, reals.pop(), real_findings


def _fid_cell(rows: list[dict]) -> str:
    """FID mean ± SD over seeds, or "-" when a sweep did not compute it."""
    values = [r["fid"] for r in rows if r.get("fid") is not None]
    return mean_sd_text(values, 2) if len(values) == len(rows) else "-"


def _setting_cells(key: tuple) -> str:
    """The solver, steps, w and adapter-scale cells of a setting (with the checkpoints' steps, if any)."""
    at = "".join(f", {component} @ {step}" for component, step in key[4])
    return f"{key[0]}{at} | {key[1]} | {key[2]:g} | {key[3]:g}"


def _gain_cell(gains: list[float]) -> str:
    """Mean ± SD of per-seed differences, and each seed's value (with 2 seeds an SD says little on its own)."""
    g, gsd = mean_sd(gains)
    each = " / ".join(f"{x:+.3f}" for x in gains)
    return f"{g:+.3f} ± {gsd:.3f} ({each})" if len(gains) > 1 else f"{g:+.3f}"


def seed_table(specs: list[str], yardstick: int = 0, baseline: list[str] | None = None,
               per_finding: str | None = None) -> None:
    """Print mean ± SD over training seeds per setting, and the adapter's paired gain (scale a − scale 0 at the
    same w, per seed) where every seed swept adapter scale 0 at that w. With ``baseline`` (the same kind of
    entries for another arm, e.g. an ablation), also that arm's mean ± SD at each setting swept by both, and the
    difference (this arm − baseline) in units of the larger of the two arms' SDs over seeds. With ``per_finding``
    ("W,ADAPTER"), also each finding's AUC at that setting (see ``finding_table``)."""
    per_seed, real, real_findings = _read_seed_sweeps(specs, yardstick)
    common = sorted(set.intersection(*(set(rows) for rows in per_seed.values())),
                    key=lambda k: (k[0], k[1], k[3], k[2]))  # solver, steps, adapter scale, w
    seeds = list(per_seed)
    print(f"{len(seeds)} training seed{'s' * (len(seeds) != 1)} ({', '.join(seeds)}); the yardstick reads {real:.3f} "
          "from the real images\n")
    print("| solver | steps | w | adapter | mAUC mean ± SD | FID mean ± SD | per seed mAUC | adapter gain vs scale 0 "
          "(mean ± SD; per seed) |\n|---|---:|---:|---:|---|---|---|---|")
    for key in common:
        rows = [per_seed[s][key] for s in seeds]
        off = (*key[:3], 0.0, *key[4:])
        gain = "-"
        if key[3] != 0 and off in common:
            gain = _gain_cell([per_seed[s][key]["mauc"] - per_seed[s][off]["mauc"] for s in seeds])
        each = " / ".join(f"{r['mauc']:.3f}" for r in rows)
        print(f"| {_setting_cells(key)} | {mean_sd_text([r['mauc'] for r in rows])} | {_fid_cell(rows)} | {each} "
              f"| {gain} |")
    base_seed = None
    if baseline:
        base_seed = compare_arms(per_seed, real, baseline, yardstick)
    if per_finding:
        finding_table(per_seed, real_findings, per_finding, base_seed)


def _setting_at(per_seed: dict, guidance: float, adapter_scale: float) -> tuple:
    """The one setting swept by every seed at this guidance and adapter scale (any solver and steps)."""
    common = set.intersection(*(set(rows) for rows in per_seed.values()))
    found = sorted(k for k in common if k[2] == guidance and k[3] == adapter_scale)
    if len(found) != 1:
        raise SystemExit(f"error: --per-finding {guidance:g},{adapter_scale:g} matches {len(found)} settings swept by "
                         "every seed; it must match exactly one")
    return found[0]


def finding_table(per_seed: dict, real_findings: dict, spec: str, base_seed: dict | None = None) -> None:
    """Each finding's AUC at one setting ("W,ADAPTER"): on the real images, mean ± SD over this arm's seeds, what
    generation loses (real − this arm), and, with a baseline arm, its mean ± SD and the paired difference (this
    arm − baseline, per seed shared by both arms, then mean ± SD). Findings a seed skipped (too few positives) are
    left out."""
    try:
        guidance, adapter_scale = (float(x) for x in spec.split(","))
    except ValueError:
        raise SystemExit(f"error: --per-finding takes W,ADAPTER (e.g. 4,2), got {spec!r}") from None
    key = _setting_at(per_seed, guidance, adapter_scale)
    arms = [per_seed] + ([base_seed] if base_seed else [])
    keys = [key] + ([_setting_at(base_seed, guidance, adapter_scale)] if base_seed else [])
    findings = [f for f in real_findings
                if all(f in rows[k]["per_finding"] for arm, k in zip(arms, keys) for rows in arm.values())]
    head = "| finding | real | this arm | real − this arm |"
    rule = "|---|---:|---|---:|"
    if base_seed:
        paired = [s for s in per_seed if s in base_seed]
        head += f" baseline | this arm − baseline (paired, {len(paired)} seeds) |"
        rule += "---|---|"
    print(f"\nper finding at {_setting_cells(key)} (solver | steps | w | adapter)\n\n{head}\n{rule}")
    for f in findings:
        mine = [rows[key]["per_finding"][f] for rows in per_seed.values()]
        line = f"| {f} | {real_findings[f]:.3f} | {mean_sd_text(mine)} | {real_findings[f] - mean_sd(mine)[0]:+.3f} |"
        if base_seed:
            theirs = [rows[keys[1]]["per_finding"][f] for rows in base_seed.values()]
            diffs = [per_seed[s][key]["per_finding"][f] - base_seed[s][keys[1]]["per_finding"][f] for s in paired]
            line += f" {mean_sd_text(theirs)} | {_gain_cell(diffs) if diffs else '-'} |"
        print(line)


def compare_arms(per_seed: dict, real: float, baseline: list[str], yardstick: int) -> dict:
    """This arm against a baseline arm at every setting both swept: mAUC and FID mean ± SD of each, the difference
    of the means, and that difference ÷ the larger SD (the ">2 SD" criterion of an ablation table); over the seeds
    both arms trained, the paired per-seed differences (``paired_difference``). Returns the baseline's
    ``{seed: {setting: row}}``."""
    base_seed, base_real, _ = _read_seed_sweeps(baseline, yardstick)
    if round(base_real, 6) != round(real, 6):
        raise SystemExit(f"error: the baseline sweeps were scored against other real images or another classifier "
                         f"(real mAUC {base_real:.3f} vs {real:.3f})")
    mine = set.intersection(*(set(rows) for rows in per_seed.values()))
    theirs = set.intersection(*(set(rows) for rows in base_seed.values()))
    both = sorted(mine & theirs, key=lambda k: (k[0], k[1], k[3], k[2]))
    if not both:
        raise SystemExit("error: the two arms have no setting (solver, steps, w, adapter scale) in common")
    paired = [s for s in per_seed if s in base_seed]
    print(f"\nagainst the baseline arm ({len(base_seed)} seed{'s' * (len(base_seed) != 1)}: {', '.join(base_seed)})\n")
    print("| solver | steps | w | adapter | mAUC this arm | mAUC baseline | difference (÷ larger SD) | "
          f"paired run for run ({len(paired)} seed{'s' * (len(paired) != 1)}: mean ± SD, ÷ SD, 95 % t-interval) | "
          "FID this arm | FID baseline |\n|---|---:|---:|---:|---|---|---|---|---|---|")
    for key in both:
        a = [rows[key] for rows in per_seed.values()]
        b = [rows[key] for rows in base_seed.values()]
        (ma, sa), (mb, sb) = mean_sd([r["mauc"] for r in a]), mean_sd([r["mauc"] for r in b])
        spread = max(sa, sb)  # nan (no ratio) unless an arm has 2 seeds or more
        ratio = f" ({(ma - mb) / spread:+.1f} SD)" if spread > 0 else ""
        print(f"| {_setting_cells(key)} | {mean_sd_text([r['mauc'] for r in a])} | "
              f"{mean_sd_text([r['mauc'] for r in b])} | {ma - mb:+.3f}{ratio} | "
              f"{_paired_cell([per_seed[s][key]['mauc'] for s in paired], [base_seed[s][key]['mauc'] for s in paired])}"
              f" | {_fid_cell(a)} | {_fid_cell(b)} |")
    return base_seed


def _paired_cell(a: list[float], b: list[float]) -> str:
    """The per-seed differences a − b of the seeds both arms trained: mean ± SD, mean ÷ SD and the 95 % t-interval
    of the mean ("-" without a common seed; the difference alone for one)."""
    if not a:
        return "-"
    d = paired_difference(a, b)
    if math.isnan(d.in_sd):
        return f"{d.mean:+.3f}"
    return f"{d.mean:+.3f} ± {d.sd:.3f} ({d.in_sd:+.1f} SD) [{d.interval[0]:+.3f}, {d.interval[1]:+.3f}]"


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
        arm = sorted((r for r in rows if r["settings"]["adapter_scale"] == scale),
                     key=lambda r: r["settings"]["guidance_scale"])
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
