"""``diffcxr evaluate``: FID/KID, mAUC, MS-SSIM diversity and memorisation of generated chest X-rays.

Writes ``OUT/metrics.json`` (every number with its protocol: extractor, N, resize, split, label policy) and a
readable ``OUT/report.md`` with tables and per-finding sample grids (``OUT/grids/``).
"""

from __future__ import annotations

import argparse

from diffcxr.cli.arguments import count, finite_float, fraction, non_negative

HELP = "evaluate generated images: FID/KID, mAUC, MS-SSIM diversity, memorisation -> metrics.json + report.md"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--real", required=True, help="real dataset spec SOURCE:PATH (the reference images)")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--generated", help="folder of generated PNGs with JSON sidecars (from diffcxr generate)")
    src.add_argument("--model", help="saved DiffCXRPipeline: generate from --reports first (into OUT/generated)")
    parser.add_argument("--reports", help="with --model: dataset spec whose reports (split --split) condition generation")
    parser.add_argument("--metrics", default="fid,kid,prdc,msssim,mauc,memorization",
                        help="comma-separated subset of fid,kid,prdc,msssim,mauc,memorization,per_finding,alignment "
                             "(default: all but per_finding and alignment)")
    parser.add_argument("--per-finding-min", type=count, default=50,
                        help="per_finding: score a finding with at least this many positive real and generated "
                             "images each (default 50); the others are listed as skipped")
    parser.add_argument("--prdc-k", type=count, default=5,
                        help="nearest neighbours of precision/recall/density/coverage (default 5, as CheXGenBench)")
    parser.add_argument("--extractor", default="cxr", help="feature network: cxr (default; needs --classifier), "
                        "random (tests only), inception (torch-fidelity), xrv (torchxrayvision), raddino (RadDINO)")
    parser.add_argument("--extractor-path", help="raddino: a local model folder or hub id (default microsoft/rad-dino; "
                        "downloading needs network)")
    parser.add_argument("--classifier", help="trained CXR classifier folder (mAUC scores, 'cxr' features)")
    parser.add_argument("--alignment-model", metavar="RUN/vlm",
                        help="the VLM stage of a training run (report_encoder/ + image_tower/) for the 'alignment' "
                             "metric: report-image cosine of generated, real and shuffled real pairs")
    parser.add_argument("--n", type=non_negative, default=0, help="use at most N real and N generated images (0 = all)")
    parser.add_argument("--size", type=non_negative, default=0, help="read images at SxS (default: the generated images' size)")
    parser.add_argument("--split", default="test", help="split of --real used as reference (train/val/test/all; default test)")
    parser.add_argument("--train-split", default="train", help="split of --real searched for memorisation (default train)")
    parser.add_argument("--train-data", metavar="auto|SPEC",
                        help="memorisation searches these training images instead: 'auto' = every image the model's "
                             "VAE, denoiser and adapter trained on (its training_data.json; the model from --model or "
                             "the sidecars), or a dataset SPEC (its --train-split)")
    parser.add_argument("--max-train", type=non_negative, default=20000, help="at most this many training images for memorisation")
    parser.add_argument("--memorization-threshold", type=fraction, default=0.95,
                        help="fixed cosine flagged as a near copy (default 0.95; reported next to the calibrated rule)")
    parser.add_argument("--memorization-percentile", type=finite_float, default=99.0,
                        help="calibrated rule: flag a generated image whose nearest-training cosine exceeds this "
                             "percentile of the real held-out images' (default 99)")
    parser.add_argument("--uncertain", choices=("exclude", "positive", "negative"), default="exclude",
                        help="uncertain (-1) report labels in AUROC (default exclude)")
    parser.add_argument("--missing", choices=("negative", "exclude"), default="negative",
                        help="findings the report does not mention (default negative)")
    parser.add_argument("--kid-subsets", type=count, default=100)
    parser.add_argument("--kid-subset-size", type=count, default=1000)
    parser.add_argument("--samples-per-report", type=count, default=4, help="with --model: images per report (default 4)")
    parser.add_argument("--n-reports", type=count, default=64, help="with --model: number of reports (default 64)")
    parser.add_argument("--steps", type=count, default=50, help="with --model: solver steps (default 50)")
    parser.add_argument("--guidance", type=finite_float, default=None,
                        help="with --model: CFG scale (default: the model's own; 2 if unrecorded)")
    parser.add_argument("--adapter-scale", type=finite_float, default=None,
                        help="with --model: knowledge adapter scale; 0 = the 'no disease knowledge' ablation (default: "
                             "the model's own; 1 if unrecorded)")
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32", help="with --model: inference dtype")
    parser.add_argument("--batch-size", type=count, default=64)
    parser.add_argument("--device", default="cpu", help="torch device for the feature network/classifier")
    parser.add_argument("--bootstrap", type=non_negative, default=200,
                        help="bootstrap replicates (resampling reports) for the intervals of mAUC, FID and KID; 0 = off "
                             "(default 200)")
    parser.add_argument("--bootstrap-level", type=fraction, default=0.95, help="interval level (default 0.95)")
    parser.add_argument("--seed", type=non_negative, default=0)
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--quiet", action="store_true")


def _generate(args, out_dir, state):
    """Generate ``--samples-per-report`` images for ``--n-reports`` reports of ``--reports`` with diffcxr generate
    (shared between the processes of an ``accelerate launch``)."""
    import json

    from diffcxr.cli.main import main as cli_main
    from diffcxr.data.sources import read_records
    from diffcxr.errors import DiffCXRError

    if not args.reports:
        raise DiffCXRError("--model needs --reports SPEC (the reports to generate from)")
    split = None if args.split == "all" else args.split
    records = [r for r in read_records(args.reports, split=split, derive_labels=True) if r.report]
    if not records:
        raise DiffCXRError(f"no reports in {args.reports} (split {args.split})")
    records = records[: args.n_reports]
    gen_dir = out_dir / "generated"
    if gen_dir.is_dir() and any(gen_dir.iterdir()):
        raise DiffCXRError(f"{gen_dir} already holds images of an earlier run (they would be scored with the new "
                           f"ones); use a new --out, or score them with --generated {gen_dir}")
    state.wait_for_everyone()  # every process has looked before the main process writes
    jsonl = out_dir / "reports.jsonl"
    if state.is_main_process:
        gen_dir.mkdir(parents=True, exist_ok=True)
        jsonl.write_text("".join(json.dumps({"id": r.id, "report": r.report}) + "\n" for r in records),
                         encoding="utf-8")
    state.wait_for_everyone()
    argv = ["generate", "--input", str(jsonl), "--model", args.model, "--out", str(gen_dir),
            "--n", str(args.samples_per_report), "--steps", str(args.steps), "--seed", str(args.seed),
            "--dtype", args.dtype]
    if args.guidance is not None:
        argv += ["--guidance", str(args.guidance)]
    if args.adapter_scale is not None:
        argv += ["--adapter-scale", str(args.adapter_scale)]
    if args.quiet:
        argv.append("--quiet")
    code = cli_main(argv)
    if code:
        raise DiffCXRError(f"generation failed (diffcxr {' '.join(argv)} exited {code})")
    return gen_dir


def run(args: argparse.Namespace) -> int:
    import random
    import sys
    from pathlib import Path

    import torch
    from accelerate import PartialState

    from diffcxr.data.image_io import read_image_array
    from diffcxr.data.sources import read_records
    from diffcxr.errors import DiffCXRError
    from diffcxr.evaluation.evaluate import METRICS, evaluate, read_generated, write_report

    state = PartialState(cpu=not torch.cuda.is_available())  # several under `accelerate launch`: features shared
    quiet = args.quiet or not state.is_main_process
    log = (lambda *a: None) if quiet else (lambda msg: print(msg, file=sys.stderr))
    metrics = [m.strip().lower() for m in args.metrics.split(",") if m.strip()]
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise DiffCXRError(f"unknown metric(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(METRICS)}")
    if args.n < 0 or args.size < 0 or args.batch_size < 1:
        raise DiffCXRError("--n and --size must be >= 0 and --batch-size >= 1")
    if args.bootstrap < 0 or args.bootstrap == 1 or not 0 < args.bootstrap_level < 1:
        raise DiffCXRError("--bootstrap must be 0 (off) or at least 2, and --bootstrap-level in (0, 1)")
    if args.size and not 16 <= args.size <= 2048:
        raise DiffCXRError(f"--size must be between 16 and 2048, got {args.size}")
    out_dir = Path(args.out)
    if state.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
    state.wait_for_everyone()

    gen_dir = Path(args.generated) if args.generated else _generate(args, out_dir, state)
    generated = read_generated(gen_dir, args.n or None, need_labels="mauc" in metrics)
    size = args.size or read_image_array(generated[0].path).shape[0]

    split = None if args.split == "all" else args.split
    needs_real = any(m in metrics for m in ("fid", "kid", "prdc", "mauc", "memorization", "per_finding", "alignment"))
    real = []
    if needs_real:
        real = read_records(args.real, split=split, require_images=True, derive_labels=True)
        if not real:
            raise DiffCXRError(f"no real images in {args.real} (split {args.split}); try --split all")
        if args.n and len(real) > args.n:
            real = random.Random(args.seed).sample(real, args.n)
    train, train_sources = None, None
    if "memorization" in metrics:
        if args.train_data == "auto":
            from diffcxr.evaluation.training_data import training_records

            model = args.model or generated[0].sidecar.get("model")
            if not model:
                raise DiffCXRError("--train-data auto needs the model: --model DIR, or sidecars with a 'model' field")
            train, train_sources = training_records(model)
        else:
            train = read_records(args.train_data or args.real, split=args.train_split, require_images=True,
                                 derive_labels=True)
        if len(train) > args.max_train:
            train = random.Random(args.seed).sample(train, args.max_train)

    extractor = classifier = None
    if any(m in metrics for m in ("fid", "kid", "prdc", "memorization", "per_finding")):
        from diffcxr.metrics.extractors import load_extractor

        extractor = load_extractor(args.extractor, classifier=args.classifier, device=args.device, seed=args.seed,
                                   path=args.extractor_path)
    if "mauc" in metrics:
        if not args.classifier:
            raise DiffCXRError("mauc needs --classifier DIR (a CXR classifier trained on real images)")
        from diffcxr.models.cxr_classifier import load_classifier

        classifier = extractor.module if extractor is not None and args.extractor == "cxr" else load_classifier(args.classifier)

    alignment_model = None
    if "alignment" in metrics:
        if not args.alignment_model:
            raise DiffCXRError("alignment needs --alignment-model RUN/vlm (the run's report encoder and image tower)")
        from diffcxr.models.report_encoder import load_vision_language_model

        alignment_model = load_vision_language_model(args.alignment_model)

    protocol = {"real": args.real, "split": args.split, "generated": str(gen_dir), "train_split": args.train_split,
                "train_data": train_sources or args.train_data,
                "uncertain": args.uncertain, "missing": args.missing, "classifier": args.classifier,
                "seed": args.seed, "n_limit": args.n or None, "alignment_model": args.alignment_model}
    results = evaluate(real_records=real, generated=generated, metrics=metrics, size=size, extractor=extractor,
                       classifier=classifier, train_records=train, batch_size=args.batch_size,
                       kid_subsets=args.kid_subsets, kid_subset_size=args.kid_subset_size,
                       memorization_threshold=args.memorization_threshold,
                       memorization_percentile=args.memorization_percentile, uncertain=args.uncertain,
                       missing=args.missing, seed=args.seed, bootstrap=args.bootstrap,
                       bootstrap_level=args.bootstrap_level, prdc_k=args.prdc_k,
                       per_finding_min=args.per_finding_min, protocol=protocol, log=log, state=state,
                       alignment_model=alignment_model)
    if not state.is_main_process:
        return 0
    results["protocol"]["processes"] = state.num_processes
    report = write_report(results, generated, out_dir, size)
    def ci(interval):
        return f"[{interval['low']:.4g},{interval['high']:.4g}]" if interval else ""

    summary = [f"fid={results['fid']:.4f}{ci(results.get('fid_interval'))}"] if "fid" in results else []
    if "kid" in results:
        summary.append(f"kid={results['kid']['mean']:.5f}{ci(results['kid'].get('interval'))}")
    if "mauc" in results and results["mauc"]["generated"]["mauc"] is not None:
        summary.append(f"mauc={results['mauc']['generated']['mauc']:.4f}{ci(results['mauc'].get('interval'))}")
    if "alignment" in results:
        a = results["alignment"]
        summary.append(f"alignment={a['generated']:.4f}{ci(a['interval'])} (real {a['real']:.4f}, shuffled "
                       f"{a['shuffled_real']:.4f})")
    if "msssim" in results:
        summary.append(f"msssim={results['msssim']['msssim']:.4f}")
    if "memorization" in results:
        summary.append(f"memorized={results['memorization']['share_above']:.2%}")
    print(" ".join(summary))
    print(f"wrote {out_dir / 'metrics.json'} and {report}")
    return 0
