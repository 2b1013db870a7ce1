"""Make the figures of docs/phantoms.md (the digital chest phantoms).

    .venv/bin/python benchmarks/phantom_figures.py [--out docs/images]

* ``phantoms_grid.png``: 16 random phantoms (seed 0, 256x256) with the start of their IMPRESSION.
* ``phantoms_by_finding.png``: one row per finding on the same patient — normal, then mild / moderate /
  severe (or the finding's variants), and the difference to normal (where the finding is).
* ``phantoms_noise.png``: one example of each planted noise type.
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def font(px: int):
    try:
        return ImageFont.load_default(size=px)
    except TypeError:
        return ImageFont.load_default()


def to_u8(img: np.ndarray) -> Image.Image:
    return Image.fromarray(np.round(np.clip(img, 0, 1) * 255).astype(np.uint8), "L")


def impression(report: str) -> str:
    imp = report.split("IMPRESSION:", 1)[-1].strip().replace("\n", " ")
    return imp


def grid_figure(out: Path, size: int = 256) -> Path:
    from diffcxr.data.phantom import render_phantom, sample_case

    cases = [sample_case(0, index=i) for i in range(16)]
    text_h, pad = 44, 6
    W = 4 * size + 5 * pad
    H = 4 * (size + text_h) + 5 * pad
    sheet = Image.new("L", (W, H), 255)
    draw = ImageDraw.Draw(sheet)
    f = font(12)
    for k, case in enumerate(cases):
        r, c = divmod(k, 4)
        x0, y0 = pad + c * (size + pad), pad + r * (size + text_h + pad)
        sheet.paste(to_u8(render_phantom(case, size)), (x0, y0))
        lines = textwrap.wrap(impression(case.report), width=40)[:3]
        if len(textwrap.wrap(impression(case.report), width=40)) > 3:
            lines[-1] = lines[-1][:37] + "..."
        draw.multiline_text((x0, y0 + size + 2), "\n".join(lines), fill=0, font=f, spacing=1)
    path = out / "phantoms_grid.png"
    sheet.save(path, optimize=True)
    return path


def by_finding_figure(out: Path, size: int = 160) -> Path:
    from diffcxr.data.phantom import Finding, make_case, render_phantom

    rows = [
        ("cardiomegaly", lambda s: Finding("cardiomegaly", None, s)),
        ("enlarged cardiomediastinum", lambda s: Finding("enlarged_cardiomediastinum", None, s)),
        ("pleural effusion (right)", lambda s: Finding("pleural_effusion", "right", s)),
        ("pneumothorax (left)", lambda s: Finding("pneumothorax", "left", s, detail={"apical": False})),
        ("consolidation (RLL, bronchograms)", lambda s: Finding("consolidation", "right", s, detail={
            "pattern": "lobar", "lobe": "lower", "bronchograms": True, "seed": 3})),
        ("lung opacity (patchy, left)", lambda s: Finding("lung_opacity", "left", s, detail={
            "pattern": "patchy", "lobe": "lower", "seed": 5})),
        ("pneumonia (RUL)", lambda s: Finding("pneumonia", "right", s, detail={"pattern": "lobar", "lobe": "upper", "seed": 2})),
        ("edema (Kerley B lines)", lambda s: Finding("edema", "bilateral", s, detail={"kerley": s >= 2})),
        ("atelectasis (plate-like)", lambda s: Finding("atelectasis", "bilateral", s, detail={"seed": 7})),
        ("lung lesion (nodule -> mass)", lambda s: Finding("lung_lesion", "right", 3 if s == 3 else 1, detail={
            "type": "mass" if s == 3 else "nodule", "size_cm": {1: 1.2, 2: 2.6, 3: 5.5}[s], "zone": "upper", "pos": 0.5})),
        ("rib fracture (right 6th)", lambda s: Finding("fracture", "right", s, detail={"rib": 5, "t": 0.7, "displaced": s >= 2})),
        ("support devices", lambda s: Finding("support_devices", None, 1, detail={"devices": {
            1: ["ett"], 2: ["ett", "cvc", "enteric"], 3: ["pacemaker", "picc", "ett", "enteric"]}[s], "cvc_side": "right"})),
    ]
    label_w, pad, head = 190, 4, 22
    W = label_w + 5 * (size + pad)
    H = head + len(rows) * (size + pad)
    sheet = Image.new("L", (W, H), 255)
    draw = ImageDraw.Draw(sheet)
    f, fb = font(13), font(14)
    for c, title in enumerate(["normal", "mild / small", "moderate", "severe / large", "|severe - normal|"]):
        draw.text((label_w + c * (size + pad) + 4, 3), title, fill=0, font=fb)
    seed = 21
    base = render_phantom(make_case([], seed=seed), size)
    for r, (name, make) in enumerate(rows):
        y0 = head + r * (size + pad)
        draw.multiline_text((6, y0 + size // 2 - 10), "\n".join(textwrap.wrap(name, 22)), fill=0, font=f)
        imgs = [base] + [render_phantom(make_case([make(s)], seed=seed), size) for s in (1, 2, 3)]
        diff = np.clip(np.abs(imgs[3] - base) * 4, 0, 1)
        for c, img in enumerate(imgs + [diff]):
            sheet.paste(to_u8(img), (label_w + c * (size + pad), y0))
    path = out / "phantoms_by_finding.png"
    sheet.save(path, optimize=True)
    return path


def noise_figure(out: Path, size: int = 160) -> Path:
    from diffcxr.data.phantom import NOISE_TYPES, render_phantom, sample_case

    pad, text_h = 4, 18
    W = 5 * (size + pad) + pad
    H = 2 * (size + text_h + pad) + pad
    sheet = Image.new("L", (W, H), 255)
    draw = ImageDraw.Draw(sheet)
    f = font(13)
    for k, kind in enumerate(NOISE_TYPES):
        case = sample_case(4, index=k, noise_type=kind)
        r, c = divmod(k, 5)
        x0, y0 = pad + c * (size + pad), pad + r * (size + text_h + pad)
        sheet.paste(to_u8(render_phantom(case, size)), (x0, y0))
        draw.text((x0 + 2, y0 + size + 1), kind, fill=0, font=f)
    path = out / "phantoms_noise.png"
    sheet.save(path, optimize=True)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs/images")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for fn in (grid_figure, by_finding_figure, noise_figure):
        path = fn(out)
        print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
