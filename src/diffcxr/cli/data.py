"""``diffcxr data {info,show}``: look at a dataset before training on it."""

from __future__ import annotations

import argparse

from diffcxr.cli.arguments import count, non_negative

HELP = "inspect a dataset: counts and label prevalence (info), a contact sheet with reports (show)"
SPEC_HELP = "dataset spec SOURCE:PATH (iu, mimic, covid, csv, phantom), e.g. covid:data/covid-cxr"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="{info,show}", required=True)
    info = sub.add_parser("info", help="counts: images, reports, views, splits, label prevalence, unreadable files")
    info.add_argument("spec", help=SPEC_HELP)
    info.add_argument("--check-images", action="store_true", help="decode every image and list unreadable ones")
    info.add_argument("--no-labeler", action="store_true", help="do not derive labels from report text")
    info.add_argument("--json", action="store_true", help="print JSON")
    show = sub.add_parser("show", help="write a contact sheet of N images with report snippets")
    show.add_argument("spec", nargs="?", default="sample:16",
                      help=SPEC_HELP + "; default: a built-in sample of digital phantoms (sample:16)")
    show.add_argument("--n", type=count, default=16, help="number of images (default 16)")
    show.add_argument("--out", default="grid.png", help="output PNG (default grid.png)")
    show.add_argument("--size", type=count, default=256, help="tile size in pixels (default 256)")
    show.add_argument("--seed", type=non_negative, default=None, help="random sample with this seed (default: the first N)")
    show.add_argument("--split", choices=["train", "val", "test"], help="only this split")
    show.add_argument("--frontal-only", action="store_true", help="only PA/AP views")
    show.add_argument("--finding", help="only images whose labels mark this finding positive")


def run(args: argparse.Namespace) -> int:
    return {"info": _info, "show": _show}[args.data_command](args)


def _info(args: argparse.Namespace) -> int:
    import json

    from diffcxr.data.sources import read_records
    from diffcxr.data.summary import format_summary, summarize_records

    records = read_records(args.spec, derive_labels=not args.no_labeler)
    summary = summarize_records(records, check_images=args.check_images, progress=True)
    print(json.dumps(summary, indent=2) if args.json else format_summary(args.spec, summary))
    return 0


def _show(args: argparse.Namespace) -> int:
    import random
    from pathlib import Path

    from diffcxr.atomic import atomic_path
    from diffcxr.data.contact_sheet import make_contact_sheet
    from diffcxr.data.image_io import load_image
    from diffcxr.data.sources import read_records
    from diffcxr.errors import DiffCXRError, ImageReadError
    from diffcxr.findings import CHEXPERT_FINDINGS

    out = Path(args.out)
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise DiffCXRError(f"--out {out} needs an image suffix: .png or .jpg")
    records = read_records(args.spec, split=args.split, frontal_only=args.frontal_only, require_images=True,
                           derive_labels=args.finding is not None)
    if args.finding:
        names = {name.lower(): i for i, name in enumerate(CHEXPERT_FINDINGS)}
        if args.finding.lower() not in names:
            raise DiffCXRError(f"unknown finding {args.finding!r}; choose one of: {', '.join(CHEXPERT_FINDINGS)}")
        index = names[args.finding.lower()]
        records = [r for r in records if r.labels[index] == 1]
    if not records:
        raise DiffCXRError(f"no images to show in {args.spec} with the given filters")
    if args.seed is not None:
        records = random.Random(args.seed).sample(records, min(args.n, len(records)))
    images, captions, skipped = [], [], []
    for record in records:
        if len(images) == args.n:
            break
        try:
            images.append((load_image(record.image_path, args.size)[0].numpy() + 1) / 2)
        except ImageReadError as exc:
            skipped.append(str(exc))
            continue
        captions.append(f"[{record.id} · {record.view}] {record.report or '(no report text)'}")
    if not images:
        raise DiffCXRError(f"none of the images in {args.spec} could be read (first error: {skipped[0]})")
    sheet = make_contact_sheet(images, captions, tile=args.size, title=f"{args.spec}: {len(images)} images")
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as partial:  # a device, FIFO or link at --out is refused, never replaced
        sheet.save(partial, format="JPEG" if out.suffix.lower() in (".jpg", ".jpeg") else "PNG")
    print(f"wrote {out} ({len(images)} images{f', {len(skipped)} unreadable skipped' if skipped else ''})")
    return 0
