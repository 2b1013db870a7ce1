"""Planted dataset noise: the corruptions real CXR collections contain, applied to phantoms.

Image corruptions (:func:`corrupt_image`): a lateral-like view instead of a frontal one, inverted
polarity, strong rotation, heavy crop/zoom, burned-in text and arrows, a blank film, an over- or
under-exposed film, and a non-chest radiograph. ``mismatched_report`` leaves the image alone and
pairs it with another phantom's report (done by the dataset generator). Latent noise filtering is
evaluated on how well it ranks these samples as anomalous.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from diffcxr.data.phantom.anatomy import Layers, Patient, blur, compose, grid, ramp

NOISE_TYPES: tuple[str, ...] = (
    "lateral",
    "inverted",
    "rotated",
    "cropped",
    "text_overlay",
    "blank",
    "overexposed",
    "underexposed",
    "non_chest",
    "mismatched_report",
)
IMAGE_NOISE_TYPES = tuple(t for t in NOISE_TYPES if t != "mismatched_report")


def _to_pil(img: np.ndarray) -> Image.Image:
    return Image.fromarray(img.astype(np.float32, copy=False), "F")


def _from_pil(im: Image.Image) -> np.ndarray:
    return np.clip(np.asarray(im, dtype=np.float32), 0.0, 1.0)


def render_lateral(p: Patient, size: int, rng: np.random.Generator) -> np.ndarray:
    """A lateral-like chest view: one large lung field, heart anteriorly, spine posteriorly, arms raised."""
    x, y = grid(p, size)
    facing = 1 if rng.random() < 0.5 else -1  # patient facing image left or right
    xf = x * facing
    tissue = np.sqrt(np.clip(1.0 - (xf / 0.78) ** 2, 0, 1)) ** 0.7 * ramp(y + 1.1, 0.2)
    dome = 0.25 + 0.18 * (xf + 0.1) ** 2
    lung = ramp(1.0 - ((xf - 0.02) / 0.55) ** 2 - ((y + 0.05) / 0.75) ** 2, 0.35) * ramp(dome - y, 0.04)
    heart = ramp(1.0 - ((xf + 0.2) / 0.3) ** 2 - ((y - 0.15) / 0.32) ** 2, 0.5)
    air = lung * (1.0 - 0.55 * heart) * (0.55 + 0.25 * ramp(y + 0.6, 0.6))
    spine_x = 0.55
    phase = np.cos(y * (2 * np.pi / 0.12))
    spine = ramp(0.07 - np.abs(xf - spine_x), 0.01) * (0.45 + 0.2 * np.clip(phase, 0, 1))
    sternum = ramp(0.025 - np.abs(xf + 0.62 + 0.08 * y), 0.01) * ramp(0.2 - y, 0.05) * 0.5
    arms = ramp(0.13 - np.abs(xf - 0.05 + 0.2 * (y + 1)), 0.04) * ramp(-0.55 - y, 0.1) * 0.6
    bone = spine + sternum + arms * 0.6
    zeros = np.zeros_like(x)
    layers = Layers(x=x, y=y, tissue=tissue + arms, air=air * 0.95, lung={}, heart=heart, bone=bone,
                    vessels=zeros, markings=np.ones_like(x), metal=zeros.copy(), extra=zeros.copy(), size=size)
    return compose(layers, p, rng)


def render_non_chest(size: int, rng: np.random.Generator) -> np.ndarray:
    """A radiograph of something else: a skull, a knee/long bone, or a hand-like array of bones."""
    c = (np.arange(size, dtype=np.float32) + 0.5) * (2.0 / size) - 1.0
    x, y = c[None, :], c[:, None]
    kind = int(rng.integers(0, 3))
    if kind == 0:  # skull: bright calvarium ring, darker brain, orbits
        r = np.sqrt((x / 0.72) ** 2 + ((y + 0.05) / 0.85) ** 2)
        img = 0.35 * ramp(1.0 - r, 0.03) + 0.55 * np.exp(-(((r - 0.97) / 0.05) ** 2))
        for s in (-1, 1):
            img -= 0.2 * ramp(1 - ((x - s * 0.28) / 0.14) ** 2 - ((y - 0.25) / 0.12) ** 2, 0.2)
    elif kind == 1:  # knee: femur and tibia shafts meeting at a joint
        soft = ramp(0.6 - np.abs(x), 0.1) * 0.35
        fem = ramp(0.18 + 0.12 * ramp(y + 0.3, 0.3) - np.abs(x), 0.02) * ramp(-0.02 - y, 0.01)
        tib = ramp(0.16 + 0.14 * ramp(0.35 - y, 0.35) - np.abs(x), 0.02) * ramp(y - 0.06, 0.01)
        img = soft + 0.5 * (fem + tib) - 0.12 * ramp(0.1 - np.abs(x), 0.05) * (fem + tib)
    else:  # hand-like: five radiating finger bones over a soft-tissue paddle
        img = 0.3 * ramp(1.0 - (x / 0.7) ** 2 - ((y - 0.3) / 0.8) ** 2, 0.1)
        for k in range(5):
            a = -0.6 + 0.3 * k + rng.normal(0, 0.04)
            d = np.abs((x - 0.0) * math.cos(a) + (y - 0.7) * math.sin(a))
            along = -(x * math.sin(a)) + (y - 0.7) * math.cos(a)
            img += 0.45 * ramp(0.05 - d, 0.015) * ramp(-along - 0.1, 0.02) * ramp(1.3 + along, 0.02)
    img = np.clip(img, 0, 1) ** rng.uniform(0.8, 1.2)
    # positioning varies: rotate, shift and zoom the part on the film
    zoom = rng.uniform(1.0, 1.3)
    im = _to_pil(np.ascontiguousarray(img, dtype=np.float32)).rotate(
        float(rng.uniform(-35, 35)), resample=Image.BILINEAR, fillcolor=0.0,
        translate=tuple(float(v) for v in rng.uniform(-0.1, 0.1, 2) * size))
    w = size / zoom
    c0 = (size - w) / 2
    img = _from_pil(im.resize((size, size), Image.BILINEAR, box=(c0, c0, c0 + w, c0 + w)))
    img = img + rng.uniform(0.005, 0.02) * rng.standard_normal(img.shape, dtype=np.float32)
    return np.clip(img, 0, 1).astype(np.float32)


_LABELS = ["PORTABLE", "AP SUPINE", "UPRIGHT", "L", "R", "ER", "ICU", "SEMI-ERECT", "STAT", "12:34",
           "2024-03-07", "Pt ID 4471", "WET READ", "CXR 1 VIEW"]


def _font(px: int):
    try:
        return ImageFont.load_default(size=px)
    except TypeError:  # Pillow without FreeType: fixed-size bitmap font
        return ImageFont.load_default()


def burn_in_text(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Burn white text labels and arrows into the image (as on annotated teaching films)."""
    size = img.shape[0]
    im = Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8), "L")
    draw = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(2, 5))):
        txt = str(rng.choice(_LABELS))
        px = max(8, int(size * rng.uniform(0.07, 0.12)))
        pos = (int(rng.uniform(0.02, 0.6) * size), int(rng.uniform(0.02, 0.9) * size))
        draw.text(pos, txt, fill=255, font=_font(px))
    for _ in range(int(rng.integers(1, 3))):  # arrows pointing into the chest
        x1, y1 = rng.uniform(0.3, 0.7, 2) * size
        a = rng.uniform(0, 2 * math.pi)
        ln = size * rng.uniform(0.12, 0.22)
        x0, y0 = x1 + ln * math.cos(a), y1 + ln * math.sin(a)
        w = max(1, size // 64)
        draw.line([(x0, y0), (x1, y1)], fill=255, width=w)
        hl = ln * 0.3
        for da in (0.45, -0.45):
            draw.line([(x1, y1), (x1 + hl * math.cos(a + da), y1 + hl * math.sin(a + da))], fill=255, width=w)
    return np.asarray(im, dtype=np.float32) / 255.0


def corrupt_image(kind: str, img: np.ndarray, patient: Patient, rng: np.random.Generator) -> np.ndarray:
    """Apply image noise ``kind`` (one of :data:`IMAGE_NOISE_TYPES`) to a rendered frontal phantom."""
    size = img.shape[0]
    if kind == "lateral":
        return render_lateral(patient, size, rng)
    if kind == "inverted":
        return (1.0 - img).astype(np.float32)
    if kind == "rotated":
        angle = float(rng.choice([-1, 1]) * rng.uniform(25, 90)) if rng.random() < 0.8 else 180.0
        return _from_pil(_to_pil(img).rotate(angle, resample=Image.BILINEAR, fillcolor=0.0))
    if kind == "cropped":
        frac = rng.uniform(0.35, 0.55)
        w = int(size * frac)
        x0, y0 = (int(v) for v in rng.integers(0, size - w, 2))
        return _from_pil(_to_pil(img).resize((size, size), Image.BILINEAR, box=(x0, y0, x0 + w, y0 + w)))
    if kind == "text_overlay":
        return burn_in_text(img, rng)
    if kind == "blank":
        level = rng.uniform(0.0, 0.9)
        out = level + 0.05 * blur(rng.standard_normal((size, size)).astype(np.float32), max(2, size // 8))
        return np.clip(out + 0.01 * rng.standard_normal((size, size), dtype=np.float32), 0, 1).astype(np.float32)
    if kind == "overexposed":  # burned-out film: almost everything dark, bones faint
        return np.clip(img ** rng.uniform(2.5, 4.0) * rng.uniform(0.3, 0.5), 0, 1).astype(np.float32)
    if kind == "underexposed":  # starved film: washed out, low contrast, heavy quantum mottle
        out = 0.7 + 0.25 * img + 0.06 * rng.standard_normal((size, size), dtype=np.float32)
        return np.clip(out, 0, 1).astype(np.float32)
    if kind == "non_chest":
        return render_non_chest(size, rng)
    raise ValueError(f"unknown image noise type {kind!r}; expected one of {IMAGE_NOISE_TYPES}")
