"""Patient anatomy of the digital chest phantom: sampling a patient and rendering its layers.

Coordinates. Anatomy is described in *normalised patient coordinates* ``(x, y)`` in ``[-1, 1]``: ``x``
grows to the image right, ``y`` grows downwards, ``(0, 0)`` is the centre of the film before the
patient's positioning (scale, shift, rotation) is applied. Frontal films follow the radiological
convention: **the patient's right is on the image left** (``x < 0``) and the patient's left on the image
right. Helper functions take a *lateral* coordinate ``x' = side * x`` with ``side = -1`` for the patient's
right lung and ``+1`` for the left, so one formula describes both lungs.

Rendering produces :class:`Layers` — separate attenuation maps (soft tissue, lung air, bone, vessels,
metal, extra findings density) that the findings module edits before :func:`compose` turns them into
a radiograph. Everything is vectorised numpy over the pixel grid plus PIL drawing for thin curved
structures (ribs, clavicles, vessels); there are no per-pixel Python loops.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

RIGHT, LEFT = -1, 1  # patient side -> sign of x on the image
SIDE_NAMES = {RIGHT: "right", LEFT: "left"}
N_RIBS = 10


# --------------------------------------------------------------------------------------------- patient
@dataclass
class Patient:
    """Per-patient anatomy and acquisition parameters (all in normalised patient coordinates)."""

    sex: str = "M"
    age: int = 55
    view: str = "PA"
    # positioning: image = scale * R(rotation) * anatomy + shift
    scale: float = 1.0
    shift_x: float = 0.0
    shift_y: float = 0.0
    rotation_deg: float = 0.0
    # body / thorax
    body_halfwidth: float = 0.92
    lung_halfwidth: float = 0.78  # lateral lung border at the costophrenic angles (thoracic half-width)
    apex_y: float = -0.80
    apex_x: float = 0.30
    cp_y: dict = field(default_factory=lambda: {RIGHT: 0.44, LEFT: 0.47})  # costophrenic angle height
    dome_y: dict = field(default_factory=lambda: {RIGHT: 0.16, LEFT: 0.22})  # top of each hemidiaphragm
    # heart and mediastinum (x extents measured from the midline)
    heart_right: float = 0.22  # extent to the patient's right (image left)
    heart_left: float = 0.40  # extent to the patient's left (image right)
    heart_top: float = -0.30
    mediastinum_halfwidth: float = 0.12
    aortic_knob: float = 0.20
    hilum_y: dict = field(default_factory=lambda: {RIGHT: -0.18, LEFT: -0.24})
    # exposure / detector
    contrast: float = 1.0
    gamma: float = 1.0
    brightness: float = 0.0
    noise_sigma: float = 0.015
    breast: float = 0.0
    soft_tissue: float = 1.0
    vessel_seed: int = 0

    @property
    def cardiothoracic_ratio(self) -> float:
        """Maximal transverse heart diameter over internal thoracic diameter (normal < 0.5 on PA)."""
        return (self.heart_right + self.heart_left) / (2.0 * self.lung_halfwidth)

    def to_image(self, x, y):
        """Normalised patient coordinates -> normalised image coordinates (same units, [-1, 1])."""
        t = math.radians(self.rotation_deg)
        c, s = math.cos(t), math.sin(t)
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        return self.scale * (c * x - s * y) + self.shift_x, self.scale * (s * x + c * y) + self.shift_y


def sample_patient(rng: np.random.Generator) -> Patient:
    """Draw one patient: body habitus, inspiration, positioning, heart size and exposure."""
    sex = "F" if rng.random() < 0.5 else "M"
    view = "AP" if rng.random() < 0.3 else "PA"
    inspiration = rng.uniform(-1.0, 1.0)  # +1 deep inspiration (low flat diaphragm)
    lung_hw = rng.uniform(0.72, 0.82) * (0.97 if sex == "F" else 1.0)
    dome_r = 0.16 - 0.07 * inspiration + rng.normal(0, 0.02)
    dome_l = dome_r + rng.uniform(0.02, 0.08)
    cp_r = dome_r + rng.uniform(0.24, 0.32)
    cp_l = dome_l + rng.uniform(0.22, 0.30)
    ctr = rng.uniform(0.39, 0.47) + (0.03 if view == "AP" else 0.0)
    width = ctr * 2 * lung_hw
    frac_left = rng.uniform(0.58, 0.66)
    p = Patient(
        sex=sex,
        age=int(rng.integers(18, 90)),
        view=view,
        scale=rng.uniform(0.92, 1.06),
        shift_x=rng.normal(0, 0.025),
        shift_y=rng.normal(0.02, 0.03),
        rotation_deg=rng.normal(0, 2.0),
        body_halfwidth=lung_hw + rng.uniform(0.10, 0.20),
        lung_halfwidth=lung_hw,
        apex_y=rng.uniform(-0.86, -0.76) + (0.04 if view == "AP" else 0.0),
        apex_x=rng.uniform(0.26, 0.34),
        cp_y={RIGHT: cp_r, LEFT: cp_l},
        dome_y={RIGHT: dome_r, LEFT: dome_l},
        heart_right=width * (1 - frac_left),
        heart_left=width * frac_left,
        heart_top=rng.uniform(-0.30, -0.20),
        mediastinum_halfwidth=rng.uniform(0.10, 0.13),
        aortic_knob=rng.uniform(0.17, 0.23) + (0.02 if p_age_old(rng) else 0.0),
        hilum_y={RIGHT: rng.uniform(-0.22, -0.14), LEFT: rng.uniform(-0.28, -0.20)},
        contrast=rng.uniform(0.85, 1.15),
        gamma=rng.uniform(0.8, 1.25),
        brightness=rng.normal(0.0, 0.04),
        noise_sigma=rng.uniform(0.006, 0.025),
        breast=rng.uniform(0.3, 1.0) if sex == "F" else 0.0,
        soft_tissue=rng.uniform(0.85, 1.2),
        vessel_seed=int(rng.integers(0, 2**31 - 1)),
    )
    return p


def p_age_old(rng: np.random.Generator) -> bool:
    return bool(rng.random() < 0.3)


# --------------------------------------------------------------------------------------------- helpers
def ramp(d, width):
    """Soft step: 0 for d <= 0, 1 for d >= width, linear in between (cheap anti-aliased edges)."""
    return np.clip(d * (1.0 / width), 0.0, 1.0)


def smoothstep(a, b, x):
    t = np.clip((x - a) / (b - a), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def blur(arr: np.ndarray, factor: int) -> np.ndarray:
    """Cheap low-pass of a float image: area-downsample by ``factor`` then bilinear upsample (PIL, C speed)."""
    if factor <= 1:
        return arr
    h, w = arr.shape
    im = Image.fromarray(arr.astype(np.float32, copy=False), "F")
    small = im.resize((max(1, w // factor), max(1, h // factor)), Image.BOX)
    return np.asarray(small.resize((w, h), Image.BILINEAR), dtype=np.float32)


def _smooth_noise(rng: np.random.Generator, size: int, scale: int) -> np.ndarray:
    """Unit-variance-ish noise smooth over ``scale`` pixels: drawn small, bilinearly upsampled (cheap)."""
    n = max(2, size // scale)
    small = rng.standard_normal((n, n), dtype=np.float32)
    return np.asarray(Image.fromarray(small, "F").resize((size, size), Image.BILINEAR), dtype=np.float32)


class Canvas:
    """An 8-bit PIL drawing surface in image pixels, addressed with patient coordinates."""

    def __init__(self, patient: Patient, size: int):
        self.patient = patient
        self.size = size
        self.image = Image.new("L", (size, size), 0)
        self.draw = ImageDraw.Draw(self.image)
        t = math.radians(patient.rotation_deg)
        k = 0.5 * size * patient.scale
        h = 0.5 * size
        # pixel = A @ (x, y) + b, folded into six floats for fast pure-Python use
        self._a, self._b = k * math.cos(t), -k * math.sin(t)
        self._c, self._d = k * math.sin(t), k * math.cos(t)
        self._e = (patient.shift_x + 1.0) * h - 0.5
        self._f = (patient.shift_y + 1.0) * h - 0.5

    def px(self, x, y):
        """Patient coordinates (sequences of floats) -> list of pixel (col, row) tuples."""
        a, b, c, d, e, f = self._a, self._b, self._c, self._d, self._e, self._f
        if isinstance(x, np.ndarray):
            x = x.tolist()
        if isinstance(y, np.ndarray):
            y = y.tolist()
        return [(a * xi + b * yi + e, c * xi + d * yi + f) for xi, yi in zip(x, y)]

    def width(self, w: float) -> int:
        """A thickness in patient units -> integer pixels (at least 1)."""
        return max(1, int(round(w * 0.5 * self.size * self.patient.scale)))

    def line(self, x, y, w: float, value: int) -> None:
        width = self.width(w)
        if width >= 3 and len(x) > 2:  # thick curves: one polygon avoids notches at the joints (and is faster)
            self.band(x, y, w, value)
        else:
            self.draw.line(self.px(x, y), fill=int(value), width=width)

    def band(self, x, y, w: float, value: int) -> None:
        """A smooth thick curve as one polygon: the polyline offset by +-w/2 along its normals."""
        xs = x.tolist() if isinstance(x, np.ndarray) else list(x)
        ys = y.tolist() if isinstance(y, np.ndarray) else list(y)
        n, h = len(xs), w / 2
        left, right = [], []
        for i in range(n):
            i0, i1 = max(i - 1, 0), min(i + 1, n - 1)
            dx, dy = xs[i1] - xs[i0], ys[i1] - ys[i0]
            d = math.hypot(dx, dy) or 1e-12
            ox, oy = -dy / d * h, dx / d * h
            left.append((xs[i] + ox, ys[i] + oy))
            right.append((xs[i] - ox, ys[i] - oy))
        pts = left + right[::-1]
        self.draw.polygon(self.px([q[0] for q in pts], [q[1] for q in pts]), fill=int(value))

    def disk(self, x: float, y: float, r: float, value: int) -> None:
        (c, rr), = self.px([x], [y])
        rp = max(0.5, r * 0.5 * self.size * self.patient.scale)
        self.draw.ellipse([c - rp, rr - rp, c + rp, rr + rp], fill=int(value))

    def polygon(self, x, y, value: int) -> None:
        self.draw.polygon(self.px(x, y), fill=int(value))

    def array(self, blur_px: float = 0.0) -> np.ndarray:
        im = self.image
        if blur_px >= 1.0:
            im = im.filter(ImageFilter.GaussianBlur(blur_px))
        elif blur_px > 0:  # sub-pixel softening: one box pass is enough and 3x cheaper
            im = im.filter(ImageFilter.BoxBlur(blur_px))
        return np.asarray(im, dtype=np.float32) * (1.0 / 255.0)


# --------------------------------------------------------------------------------------------- layers
@dataclass
class Layers:
    """Attenuation layers of one frontal phantom; findings edit them, :func:`compose` images them."""

    x: np.ndarray  # patient-coordinate grid (H, W)
    y: np.ndarray
    tissue: np.ndarray  # soft-tissue thickness
    air: np.ndarray  # lung air thickness (subtracted from tissue)
    lung: dict  # side -> soft lung mask [0, 1]
    heart: np.ndarray  # heart mask
    bone: np.ndarray
    vessels: np.ndarray  # vascular markings (multiplied by `markings` when composed)
    markings: np.ndarray  # 1 where lung markings are visible, 0 where absent (pneumothorax)
    metal: np.ndarray  # devices
    extra: np.ndarray  # additional soft-tissue density from findings (fluid, consolidation, masses)
    size: int = 256


def lateral_border(p: Patient, side: int, y):
    """Lateral lung border x' as a function of y (apex -> costophrenic angle)."""
    t = np.clip((y - p.apex_y) / (p.cp_y[side] - p.apex_y), 0.0, 1.0)
    x0 = p.apex_x + 0.08
    return x0 + (p.lung_halfwidth - x0) * (1.0 - (1.0 - t) ** 2.0) ** 0.6


def diaphragm(p: Patient, side: int, xl):
    """Height of the hemidiaphragm under lateral coordinate x' (dome medially, down to the angle)."""
    xc = 0.42 * p.lung_halfwidth
    lat = np.clip((xl - xc) / (p.lung_halfwidth - xc), 0.0, 1.2)
    med = np.clip((xc - xl) / xc, 0.0, 1.0)
    return p.dome_y[side] + (p.cp_y[side] - p.dome_y[side]) * lat**2.0 + 0.10 * med**2


def medial_border(p: Patient, side: int, y):
    """Medial lung border x' (mediastinum, aortic knob on the left, hilum)."""
    base = p.mediastinum_halfwidth + 0.02 * np.clip((y + 0.4) / 0.4, 0, 1)
    if side == LEFT:
        knob = (p.aortic_knob - p.mediastinum_halfwidth) * np.exp(-(((y + 0.42) / 0.07) ** 2))
        base = base + np.maximum(knob, 0.0)
    return base


def heart_base(p: Patient) -> float:
    return max(p.dome_y[RIGHT], p.dome_y[LEFT]) + 0.10


def heart_borders(p: Patient, y):
    """Right (image-left) and left (image-right) heart borders as half-widths from the midline at ``y``."""
    base = heart_base(p)
    t = np.clip((y - p.heart_top) / (base - p.heart_top), 0.0, 1.0)
    mw = p.mediastinum_halfwidth
    # right border: right atrium, a gentle convexity low down; left border: slopes out to the apex
    right = mw + (p.heart_right - mw) * np.sin(np.pi / 2 * np.clip(t / 0.75, 0, 1)) ** 0.6
    left = mw + (p.heart_left - mw) * np.sin(np.pi / 2 * np.clip(t / 0.85, 0, 1)) ** 0.65
    # round off the cardiac apex just above the diaphragm
    left = left * (1.0 - 0.35 * np.clip((t - 0.85) / 0.15, 0, 1) ** 2)
    return right, left


def heart_mask(p: Patient, x, y, soft: float = 0.02):
    """Soft heart silhouette bounded by :func:`heart_borders`, from ``heart_top`` to the diaphragm."""
    right, left = heart_borders(p, y)
    m = ramp(np.where(x < 0, right + x, left - x), soft)
    return m * ramp(y - p.heart_top, 0.06) * ramp(heart_base(p) + 0.1 - y, 0.02)


def lung_mask(p: Patient, side: int, x, y, edge: float = 0.03):
    xl = side * x
    m = ramp(lateral_border(p, side, y) - xl, edge)
    m = m * ramp(xl - medial_border(p, side, y), edge)
    m = m * ramp(diaphragm(p, side, xl) - y, edge)
    m = m * ramp(y - p.apex_y - 1.4 * (xl - p.apex_x) ** 2, edge)
    return m


def grid(p: Patient, size: int):
    """Pixel grid -> patient coordinates (the inverse of :meth:`Patient.to_image`)."""
    c = (np.arange(size, dtype=np.float32) + 0.5) * (2.0 / size) - 1.0
    xi, yi = c[None, :] - p.shift_x, c[:, None] - p.shift_y
    t = math.radians(p.rotation_deg)
    cs, sn = math.cos(t) / p.scale, math.sin(t) / p.scale
    x = (cs * xi + sn * yi).astype(np.float32)
    y = (-sn * xi + cs * yi).astype(np.float32)
    return x, y


def rib_arcs(p: Patient, side: int, n: int = 14):
    """Posterior and anterior arcs of all ribs of one side: four arrays of shape (N_RIBS, n), patient coordinates."""
    k = np.arange(N_RIBS, dtype=np.float64)[:, None]
    y0 = p.apex_y + 0.03 + k * (p.cp_y[side] - p.apex_y + 0.05) / (N_RIBS - 0.5)
    wall = lateral_border(p, side, y0 + 0.10) + 0.045
    t = np.linspace(0.0, 1.0, n)[None, :]
    arch = 0.09 - 0.004 * k
    xp = 0.055 + t * (wall - 0.055)
    yp = y0 - arch * np.sin(np.pi * t * 0.85) + 0.16 * t**2.5 - 0.02 * t
    # anterior arc: from the lateral wall, sloping down towards the sternum
    xa = wall - t * (wall - 0.22 - 0.01 * k)
    ya = yp[:, -1:] + 0.05 * np.sin(np.pi * t * 0.5) + 0.19 * t
    return side * xp, yp, side * xa, ya


def _draw_bones(p: Patient, size: int, fractures) -> np.ndarray:
    """Ribs, clavicles, scapulae and humeral heads drawn with PIL (8-bit), lightly blurred."""
    cv = Canvas(p, size)
    fractured = {(f["side"], f["rib"]): f for f in fractures}
    for side in (RIGHT, LEFT):
        arcs = [a.tolist() for a in rib_arcs(p, side)]
        for k in range(N_RIBS):
            xp, yp, xa, ya = (np.asarray(a[k]) for a in arcs)
            wpost = 0.048 - 0.0015 * k
            frac = fractured.get((side, k))
            if frac is None:
                cv.line(xp, yp, wpost, 62)
                cv.line(xp[2:-1], yp[2:-1], wpost * 0.45, 48)
            else:  # discontinuity with a step-off, at fraction `t` along the posterior arc
                i = int(np.clip(frac["t"] * len(xp), 3, len(xp) - 4))
                gap = 0.012 if frac.get("displaced", True) else 0.0
                cv.line(xp[: i + 1], yp[: i + 1], wpost, 62)
                cv.line(xp[i + 1:], yp[i + 1:] + frac.get("step", 0.025), wpost, 62)
                cv.line(xp[2:i], yp[2:i], wpost * 0.45, 48)
                # the gap: a dark line across the rib
                xg, yg = xp[i] * 0.5 + xp[i + 1] * 0.5, yp[i] * 0.5 + yp[i + 1] * 0.5
                cv.line([xg, xg + side * 0.002], [yg - 0.04, yg + 0.04], max(gap, 0.008), 0)
            cv.line(xa, ya, wpost * 0.7, 30)
        # clavicle: S-shaped from the sternal notch to the acromion
        t = np.linspace(0, 1, 12)
        yc = -0.66 + (0.06 if p.view == "AP" else 0.0)
        cx = side * (0.09 + t * 0.58)
        cy = yc - 0.10 * t + 0.025 * np.sin(2 * np.pi * t)
        cv.line(cx, cy, 0.055, 150)
        cv.line(cx[1:-1], cy[1:-1], 0.03, 120)
        # humeral head and scapula at the upper corners
        hx = side * (p.body_halfwidth + 0.12)
        cv.disk(hx, -0.74, 0.14, 70)
        cv.line([hx, hx + side * 0.08], [-0.70, 0.1], 0.10, 60)
        sx = side * np.array([0.62, 0.70, 0.86, 0.95])
        sy = np.array([-0.72, -0.30, -0.45, -0.70])
        if p.view == "AP":  # scapulae project over the lungs on AP films
            sx = sx - side * 0.1
        cv.polygon(sx, sy, 35)
    return cv.array(blur_px=0.5 * size / 256)


def _draw_vessels(p: Patient, size: int, congestion: float = 0.0) -> np.ndarray:
    """Pulmonary vascular markings: branching trees radiating from each hilum, tapering outwards."""
    rng = np.random.default_rng(p.vessel_seed)
    cv = Canvas(p, size)
    for side in (RIGHT, LEFT):
        hx, hy = side * (p.mediastinum_halfwidth + 0.09), p.hilum_y[side]
        # hilar vessels
        cv.disk(hx, hy, 0.05 + 0.01 * congestion, 90)
        cv.disk(hx + side * 0.02, hy + 0.10, 0.035, 70)
        angles = np.linspace(-2.3, 1.35, 8) + rng.normal(0, 0.12, 8)
        noise = iter(rng.normal(0.0, 1.0, 1200).tolist())
        lens = rng.uniform(-0.04, 0.06, 8).tolist()
        for a0, dl in zip(angles.tolist(), lens):
            stack = [(hx, hy, a0, 0.24 + dl, 0.022 * (1 + 0.4 * congestion), 0)]
            while stack:
                x0, y0, a, ln, w, depth = stack.pop()
                xs, ys = [x0], [y0]
                step = ln / 3
                for _ in range(3):
                    a += 0.15 * next(noise)
                    xs.append(xs[-1] + side * math.cos(a) * step)
                    ys.append(ys[-1] + math.sin(a) * step)
                cv.line(xs, ys, w, 125 - 28 * depth)
                if depth < 3 and w > 0.004:
                    for da in (-0.45, 0.4):
                        stack.append((xs[-1], ys[-1], a + da + 0.15 * next(noise), ln * 0.62, w * 0.62, depth + 1))
    return cv.array(blur_px=0.6 * size / 256)


def render_anatomy(p: Patient, size: int, fractures=(), congestion: float = 0.0) -> Layers:
    """Render the normal anatomy of ``p`` as attenuation layers at ``size`` x ``size`` pixels."""
    x, y = grid(p, size)
    ax = np.abs(x)
    # soft tissue: neck, shoulders, chest wall (elliptic cross-section), arms, abdomen
    sh = np.clip((y + 1.05) / 0.45, 0.0, 1.0)
    hw = 0.26 + (p.body_halfwidth - 0.26) * np.sqrt(1.0 - (1.0 - sh) ** 2)
    hw = hw - 0.05 * smoothstep(0.5, 1.2, y)
    tissue = np.sqrt(np.clip(1.0 - (x / hw) ** 2, 0.0, 1.0)) * p.soft_tissue
    # arms beside the chest (partly in the field on most films)
    arm = np.clip(1.0 - ((ax - p.body_halfwidth - 0.17) / 0.13) ** 2, 0.0, 1.0) ** 0.5 * (y > -0.8)
    tissue = tissue + 0.6 * arm * ramp(y + 0.8, 0.25) * p.soft_tissue
    if p.breast > 0:
        for side in (RIGHT, LEFT):
            d = ((x - side * 0.50) / 0.45) ** 2 + ((y - 0.45) / 0.32) ** 2
            tissue = tissue + 0.12 * p.breast * np.clip(1.0 - d, 0, 1) * ramp(y - 0.2, 0.1)
    lung = {s: lung_mask(p, s, x, y) for s in (RIGHT, LEFT)}
    heart = heart_mask(p, x, y)
    # lung air: thicker centrally and at the bases, thinner at the apices and the periphery
    air = np.zeros_like(x)
    for s in (RIGHT, LEFT):
        xl = s * x
        periph = ramp(lateral_border(p, s, y) - xl, 0.22) * 0.35 + 0.65
        air += lung[s] * periph
    air = air * (0.78 + 0.22 * smoothstep(p.apex_y, -0.2, y)) * (1.0 - 0.12 * smoothstep(0.0, 0.5, y))
    # fine parenchymal texture (a few pixels across), so the lungs are not flat
    air = air * (1.0 - 0.07 * _smooth_noise(np.random.default_rng(p.vessel_seed + 1), size, 4))
    air = air * (1.0 - 0.82 * heart)
    # trachea and main bronchi
    carina = p.hilum_y[LEFT] - 0.10
    trach = ramp(0.042 - np.abs(x - 0.01 * y), 0.012) * ramp(carina - y, 0.02) * ramp(y + 1.05, 0.02)
    air += 0.35 * trach
    for s in (RIGHT, LEFT):
        # main bronchus: a short oblique segment from the carina towards the hilum
        t = np.clip((y - carina) / 0.12, 0, 1)
        cx = s * (0.015 + 0.11 * t)
        air += 0.25 * ramp(0.028 - np.abs(x - cx), 0.01) * ramp(y - carina + 0.01, 0.01) * ramp(carina + 0.12 - y, 0.02)
    # gastric bubble under the left hemidiaphragm
    gy = diaphragm(p, LEFT, np.float32(0.45)) + 0.07
    gb = np.clip(1.0 - ((x - 0.45) / 0.13) ** 2 - ((y - gy) / 0.06) ** 2, 0, 1) ** 0.5
    air += 0.35 * gb * (y > gy - 0.02)
    bone = _draw_bones(p, size, fractures)
    # spine: vertebral bodies with end plates and pedicles, seen through the mediastinum
    sp = ramp(0.075 - np.abs(x), 0.015) * (y > -1.0)
    period = 0.115
    phase = np.cos((y - p.apex_y) * (2 * np.pi / period))
    pedicle = np.exp(-(((ax - 0.05) / 0.014) ** 2)) * np.clip(phase, 0, 1) ** 2
    bone = bone + sp * (0.25 + 0.06 * phase) + 0.18 * pedicle * sp
    vessels = _draw_vessels(p, size, congestion)
    lungs = np.clip(lung[RIGHT] + lung[LEFT], 0, 1)
    vessels = vessels * lungs * (1.0 - 0.75 * heart)  # retrocardiac vessels are barely seen
    # bones are seen best against the air-filled lungs, poorly through the abdomen and heart
    bone = bone * (0.3 + 0.7 * blur(lungs * (1.0 - 0.5 * heart), max(2, size // 24)))
    zeros = np.zeros_like(x)
    return Layers(
        x=x, y=y, tissue=tissue, air=air, lung=lung, heart=heart, bone=bone, vessels=vessels,
        markings=np.ones_like(x), metal=zeros.copy(), extra=zeros.copy(), size=size,
    )


def compose(layers: Layers, p: Patient, rng: np.random.Generator) -> np.ndarray:
    """Turn attenuation layers into a radiograph in [0, 1] (bright = attenuating), with film noise."""
    att = (
        1.0 * layers.tissue
        - 0.80 * np.minimum(layers.air, 1.0) * (1.0 - np.clip(layers.extra, 0, 1))
        + 0.15 * layers.extra
        + 0.85 * layers.bone
        + 0.55 * layers.vessels * layers.markings
        + 2.5 * layers.metal
    )
    att = np.maximum(att, 0.0)
    img = 1.0 - np.exp(-1.1 * p.contrast * att)
    # detector response: window, gamma, exposure offset
    img = np.clip(img / (1.0 - math.exp(-1.1 * p.contrast * 1.9)) + p.brightness, 0.0, 1.0) ** p.gamma
    size = layers.size
    # digital-radiography processing: unsharp masking raises local contrast (edges, vessels, ribs)
    img = img + 0.4 * (img - blur(img, max(2, size // 24)))
    # film noise: fine grain + low-frequency mottle
    grain = rng.standard_normal((size, size), dtype=np.float32)
    mottle = _smooth_noise(rng, size, max(2, size // 8))
    img = img + p.noise_sigma * grain + 0.015 * mottle
    return np.clip(img, 0.0, 1.0).astype(np.float32)
