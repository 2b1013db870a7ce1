"""``diffcxr downstream``: classifier mAUC on the real test split when training on a fraction of the real
training set, with and without synthetic images (the paper's "1 % real + synthetic" experiment)."""

from __future__ import annotations

import argparse

from diffcxr.cli.arguments import comma_list, count, count_at_most, fraction, non_negative, positive_float

HELP = "train the CXR classifier on fractions (1, 10, 100 percent) of the real data with and without synthetic images; print the test mAUC table"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--real", required=True, help="real dataset spec SOURCE:PATH with train and test splits")
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--synthetic", help="folder of generated PNGs with JSON sidecars (labels/report)")
    src.add_argument("--model", help="saved DiffCXRPipeline: generate --n-synthetic images from training reports "
                                     "outside the smallest real subset (into OUT/synthetic)")
    parser.add_argument("--n-synthetic", type=non_negative, default=0, help="number of synthetic images (0 = all in --synthetic)")
    parser.add_argument("--fractions", type=comma_list(fraction), default=[0.01, 0.1, 1.0],
                        help="real training fractions, each in (0, 1] (default 0.01,0.1,1)")
    parser.add_argument("--size", type=count, default=64, help="image size for the classifier (default 64)")
    parser.add_argument("--steps", type=count, default=300, help="optimizer steps per classifier run (default 300)")
    parser.add_argument("--batch-size", type=count, default=32)
    parser.add_argument("--lr", type=positive_float, default=2e-3)
    parser.add_argument("--channels", type=comma_list(count_at_most(1024, "a conv width")), default=[16, 32, 64, 128],
                        help="classifier conv widths, each 1..1024 (default 16,32,64,128)")
    parser.add_argument("--gen-steps", type=count, default=50, help="with --model: solver steps (default 50)")
    parser.add_argument("--seed", type=non_negative, default=0)
    parser.add_argument("--threads", type=non_negative, default=0, help="torch CPU threads (0 = default)")
    parser.add_argument("--out", required=True, help="output folder (downstream.json, downstream.md, classifiers/)")
    parser.add_argument("--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    import json
    import sys
    from pathlib import Path

    import torch

    from diffcxr.data.sources import read_records
    from diffcxr.errors import DiffCXRError
    from diffcxr.evaluation.downstream import (DownstreamConfig, format_table, nested_subsets, run_downstream,
                                                synthetic_records)

    log = (lambda *a: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    fractions = args.fractions
    channels = args.channels
    if not fractions or any(not 0 < f <= 1 for f in fractions):
        raise DiffCXRError(f"--fractions must be numbers in (0, 1], got {','.join(map(str, fractions))}")
    if args.steps < 1 or args.batch_size < 1 or args.n_synthetic < 0 or not 16 <= args.size <= 1024:
        raise DiffCXRError("--steps and --batch-size must be >= 1, --n-synthetic >= 0, --size in [16, 1024]")
    if args.model and not args.n_synthetic:
        raise DiffCXRError("--model needs --n-synthetic N (how many images to generate)")
    if args.threads:
        torch.set_num_threads(args.threads)
    train = read_records(args.real, split="train", require_images=True, derive_labels=True)
    test = read_records(args.real, split="test", require_images=True, derive_labels=True)
    if not train or not test:
        raise DiffCXRError(f"{args.real} needs images in both the train and test splits "
                           f"(found {len(train)} train, {len(test)} test)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = DownstreamConfig(fractions=tuple(fractions), size=args.size, steps=args.steps, batch_size=args.batch_size,
                           lr=args.lr, channels=tuple(channels), seed=args.seed)

    synthetic = None
    if args.synthetic:
        synthetic = synthetic_records(args.synthetic, args.n_synthetic or None)
    elif args.model:
        from diffcxr.cli.main import main as cli_main

        used = set(nested_subsets(len(train), [min(fractions)], args.seed)[min(fractions)].tolist())
        held_out = [r for i, r in enumerate(train) if i not in used and r.report][: args.n_synthetic]
        if not held_out:
            raise DiffCXRError("no training reports outside the smallest real subset to generate from")
        jsonl = out / "synthetic_reports.jsonl"
        jsonl.write_text("".join(json.dumps({"id": r.id, "report": r.report}) + "\n" for r in held_out), encoding="utf-8")
        argv = ["generate", "--input", str(jsonl), "--model", args.model, "--out", str(out / "synthetic"), "--n", "1",
                "--steps", str(args.gen_steps), "--seed", str(args.seed), "--quiet"]
        if cli_main(argv):
            raise DiffCXRError("generating the synthetic images failed")
        synthetic = synthetic_records(out / "synthetic")

    result = run_downstream(train, test, cfg, synthetic, out_dir=out, log=log)
    print(format_table(result))
    print(f"wrote {out / 'downstream.json'}")
    return 0
