"""Figure and numbers: the same reports and noise through several trained pipelines (e.g. training seeds).

One row per ``--model`` (``LABEL=FOLDER``), each at its own default guidance and adapter scale, image ``j`` of
every row from the noise of seed ``j``; the real images of the same reports in the last row, and under each
column the findings its report names (with their side: "L: effusion"; "normal" for a report without any). Prints, per
pipeline over ``--n-reports`` reports, the images' contrast (pixel SD within an image, averaged; real phantoms
for reference) and how far the average generated image is from the average real one (mean absolute difference
in [0, 1] units): an under-trained denoiser gives flat, washed-out images long before its mAUC shows it.

    .venv/bin/python benchmarks/seed_grid.py --model "seed 1=runs/cpu-mini-s1/pipeline" \\
        --model "seed 2=runs/default-s2/pipeline" --data phantom:runs/phantoms-eval-s1 --out docs/images/x.png
"""

from __future__ import annotations

import argparse

SHORT_NAMES = {"Atelectasis": "atelectasis", "Cardiomegaly": "cardiomegaly", "Consolidation": "consolidation",
               "Edema": "edema", "Enlarged Cardiomediastinum": "wide mediast.", "Fracture": "fracture",
               "Lung Lesion": "lesion", "Lung Opacity": "opacity", "Pleural Effusion": "effusion",
               "Pleural Other": "pleural other", "Pneumonia": "pneumonia", "Pneumothorax": "pneumothorax",
               "Support Devices": "device"}


def report_caption(report: str) -> list[str]:
    """The findings a report names as present, one short line each, with their side ("L: effusion"); ["normal"]
    when it names none."""
    from diffcxr.knowledge import finding_sides, label_report

    result = label_report(report)
    sides = finding_sides(result)
    lines = [f"{dict(left='L: ', right='R: ', both='both: ').get(sides.get(name), '')}{short}"
             for name, short in SHORT_NAMES.items() if result.labels.get(name) == 1]
    return lines or ["normal"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", required=True, metavar="LABEL=FOLDER")
    ap.add_argument("--data", required=True, help="dataset spec whose reports (and real images) are used")
    ap.add_argument("--out", required=True, help="PNG to write")
    ap.add_argument("--n-reports", type=int, default=64, help="reports for the numbers (the grid shows 8)")
    ap.add_argument("--shown", type=int, default=8)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--size", type=int, default=96, help="pixels per tile")
    args = ap.parse_args()

    import numpy as np
    import torch
    from PIL import Image, ImageDraw

    from diffcxr.data.image_io import load_image
    from diffcxr.data.sources import read_records
    from diffcxr.pipelines import DiffCXRPipeline

    records = [r for r in read_records(args.data, split=None, derive_labels=True) if r.report][: args.n_reports]
    models = [spec.split("=", 1) for spec in args.model]
    if any(len(m) != 2 for m in models):
        ap.error("--model takes LABEL=FOLDER")
    rows = []
    for label, folder in models:
        pipe = DiffCXRPipeline.from_pretrained(folder)
        size = pipe.image_size
        images = pipe([r.report for r in records], num_inference_steps=args.steps, output_type="np", progress=False,
                      generator=[torch.Generator().manual_seed(j) for j in range(len(records))]).images[..., 0]
        rows.append((label, images))
    real = np.stack([(load_image(r.image_path, size)[0].numpy() + 1) / 2 for r in records])  # as trained on
    print(f"{len(records)} reports, {args.steps} steps; contrast = mean within-image pixel SD")
    print("| images | contrast | mean |average image − real average| |\n|---|---:|---:|")
    print(f"| real | {real.reshape(len(real), -1).std(1).mean():.3f} | 0 |")
    for label, images in rows:
        print(f"| {label} | {images.reshape(len(images), -1).std(1).mean():.3f} | "
              f"{np.abs(images.mean(0) - real.mean(0)).mean():.4f} |")

    tile, pad, n = args.size, 14, min(args.shown, len(records))
    grid = rows + [("real images of the same reports", real)]
    captions = [c if len(c) <= 4 else c[:3] + [f"+{len(c) - 3} more"] for c in (report_caption(r.report)
                                                                             for r in records[:n])]
    caption_height = 12 * max(len(c) for c in captions) + 4
    canvas = Image.new("L", (n * tile, len(grid) * (tile + pad) + caption_height), 255)
    draw = ImageDraw.Draw(canvas)
    for i, (label, images) in enumerate(grid):
        top = i * (tile + pad)
        draw.text((2, top + 1), label, fill=0)
        for j in range(n):
            cell = Image.fromarray((images[j] * 255).round().clip(0, 255).astype(np.uint8)).resize((tile, tile))
            canvas.paste(cell, (j * tile, top + pad))
    bottom = len(grid) * (tile + pad) + 2
    for j, lines in enumerate(captions):
        for k, line in enumerate(lines):
            draw.text((j * tile + 2, bottom + 12 * k), line, fill=0)
    canvas.save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
