"""Findings of the digital chest phantom: sampling with realistic co-occurrence, and rendering.

A :class:`Finding` has a ``kind`` (one of :data:`FINDING_KINDS`), a ``side`` (``"right"``, ``"left"``,
``"bilateral"`` or ``None`` — the *patient's* side; the patient's right is on the image left), a
``severity`` (1 mild/small, 2 moderate, 3 severe/large) and kind-specific ``detail`` (lobe, size,
devices, rib number, ...). ``subtle`` marks findings the report may hedge on.

Rendering happens in two steps: :func:`apply_geometry` changes the patient's anatomy before it is drawn
(heart size, mediastinal width, rib fractures, vascular congestion); :func:`apply_layers` adds the
finding's density to the drawn attenuation layers (fluid, air, consolidation, masses, metal).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from diffcxr.data.phantom.anatomy import (
    LEFT,
    RIGHT,
    Canvas,
    Layers,
    Patient,
    blur,
    lateral_border,
    ramp,
)

FINDING_KINDS: tuple[str, ...] = (
    "cardiomegaly",
    "enlarged_cardiomediastinum",
    "pleural_effusion",
    "pneumothorax",
    "consolidation",
    "lung_opacity",
    "pneumonia",
    "edema",
    "atelectasis",
    "lung_lesion",
    "fracture",
    "support_devices",
)

# Per-image probability of each finding among abnormal studies (roughly MIMIC-CXR-like ordering).
PREVALENCE: dict[str, float] = {
    "support_devices": 0.30,
    "pleural_effusion": 0.30,
    "cardiomegaly": 0.25,
    "atelectasis": 0.22,
    "lung_opacity": 0.16,
    "edema": 0.14,
    "pneumonia": 0.10,
    "consolidation": 0.08,
    "enlarged_cardiomediastinum": 0.08,
    "pneumothorax": 0.08,
    "lung_lesion": 0.08,
    "fracture": 0.06,
}
NORMAL_FRACTION = 0.40
SEVERITY_NAMES = {1: "mild", 2: "moderate", 3: "severe"}
SIDES = ("right", "left")
SIDE_SIGN = {"right": RIGHT, "left": LEFT}
LOBES = {
    "right": ("upper", "middle", "lower"),
    "left": ("upper", "lingula", "lower"),
}
DEVICES = ("ett", "cvc", "enteric", "pacemaker", "picc")


@dataclass
class Finding:
    kind: str
    side: str | None = None
    severity: int = 1
    subtle: bool = False
    detail: dict = field(default_factory=dict)

    def sides(self) -> tuple[str, ...]:
        if self.side == "bilateral":
            return SIDES
        return (self.side,) if self.side else ()

    def describe(self) -> str:
        """Compact ``kind|side|severity|detail`` string for metadata columns."""
        extra = ",".join(f"{k}={v}" for k, v in sorted(self.detail.items()) if not isinstance(v, (list, dict)))
        if "devices" in self.detail:
            extra = "devices=" + "+".join(self.detail["devices"])
        return f"{self.kind}|{self.side or ''}|{SEVERITY_NAMES[self.severity]}|{extra}"


# ------------------------------------------------------------------------------------------ sampling
def _side(rng, p_bilateral: float = 0.0) -> str:
    if rng.random() < p_bilateral:
        return "bilateral"
    return "right" if rng.random() < 0.5 else "left"


def _severity(rng, weights=(0.5, 0.35, 0.15)) -> int:
    return int(rng.choice([1, 2, 3], p=weights))


def sample_findings(rng: np.random.Generator, normal_fraction: float = NORMAL_FRACTION) -> list[Finding]:
    """Draw the findings of one study: ``normal_fraction`` of studies have none (devices aside)."""
    if rng.random() < normal_fraction:
        out = []
        if rng.random() < 0.08:
            out.append(_make("support_devices", rng))
        return out
    kinds = {k for k, p in PREVALENCE.items() if rng.random() < p}
    # co-occurrence: heart failure picture, pneumonia with effusion, devices in sick patients
    if "edema" in kinds:
        if rng.random() < 0.6:
            kinds.add("cardiomegaly")
        if rng.random() < 0.5:
            kinds.add("pleural_effusion")
    if "pneumothorax" in kinds and rng.random() < 0.5:
        kinds.add("support_devices")
    if "pleural_effusion" in kinds and rng.random() < 0.4:
        kinds.add("atelectasis")
    # at most one airspace-disease kind per study keeps the reports unambiguous
    airspace = [k for k in ("pneumonia", "consolidation", "lung_opacity") if k in kinds]
    for k in airspace[1:]:
        kinds.discard(k)
    if not (kinds - {"support_devices"}):
        kinds.add(str(rng.choice(["pleural_effusion", "cardiomegaly", "atelectasis", "lung_opacity", "edema"])))
    return [_make(k, rng, edema="edema" in kinds) for k in FINDING_KINDS if k in kinds]


def _make(kind: str, rng: np.random.Generator, edema: bool = False) -> Finding:
    sev = _severity(rng)
    if kind == "cardiomegaly":
        return Finding(kind, None, sev, subtle=sev == 1)
    if kind == "enlarged_cardiomediastinum":
        return Finding(kind, None, sev, subtle=sev == 1)
    if kind == "pleural_effusion":
        side = _side(rng, 0.6 if edema else 0.3)
        return Finding(kind, side, sev, subtle=sev == 1)
    if kind == "pneumothorax":
        return Finding(kind, _side(rng), sev, subtle=sev == 1, detail={"apical": bool(sev == 1 or rng.random() < 0.3)})
    if kind in ("consolidation", "pneumonia", "lung_opacity"):
        side = _side(rng, 0.15 if kind != "consolidation" else 0.0)
        pattern = "lobar" if (kind == "consolidation" or rng.random() < 0.5) else "patchy"
        lobe = str(rng.choice(LOBES["right" if side == "bilateral" else side]))
        if side == "bilateral":
            lobe = "lower"
        return Finding(
            kind, side, sev, subtle=sev == 1,
            detail={"pattern": pattern, "lobe": lobe, "bronchograms": bool(pattern == "lobar" and rng.random() < 0.5),
                    "seed": int(rng.integers(0, 2**31 - 1))},
        )
    if kind == "edema":
        return Finding(kind, "bilateral", sev, subtle=sev == 1, detail={"kerley": bool(sev >= 2 or rng.random() < 0.4)})
    if kind == "atelectasis":
        side = _side(rng, 0.4)
        return Finding(kind, side, _severity(rng, (0.6, 0.3, 0.1)), subtle=True,
                       detail={"seed": int(rng.integers(0, 2**31 - 1))})
    if kind == "lung_lesion":
        mass = rng.random() < 0.35
        size_cm = float(np.round(rng.uniform(3.5, 7.0) if mass else rng.uniform(0.8, 2.8), 1))
        return Finding(
            kind, _side(rng), 3 if mass else 1, subtle=(not mass and size_cm < 1.2),
            detail={"type": "mass" if mass else "nodule", "size_cm": size_cm,
                    "zone": str(rng.choice(["upper", "mid", "lower"])), "pos": float(rng.uniform(0.3, 0.75))},
        )
    if kind == "fracture":
        return Finding(
            kind, _side(rng), sev, subtle=sev == 1,
            detail={"rib": int(rng.integers(3, 9)), "t": float(rng.uniform(0.55, 0.85)), "displaced": bool(sev >= 2)},
        )
    if kind == "support_devices":
        n = int(rng.choice([1, 1, 2, 2, 3]))
        devs = sorted(set(rng.choice(DEVICES, size=n, replace=True, p=[0.3, 0.25, 0.2, 0.15, 0.1]).tolist()))
        return Finding(kind, None, 1, detail={"devices": devs, "cvc_side": _side(rng)})
    raise ValueError(f"unknown finding kind {kind!r}")


# ------------------------------------------------------------------------------------------ geometry
CTR_BY_SEVERITY = {0: (0.39, 0.47), 1: (0.53, 0.57), 2: (0.58, 0.63), 3: (0.64, 0.72)}
MEDIASTINUM_BY_SEVERITY = {1: (0.15, 0.17), 2: (0.18, 0.21), 3: (0.22, 0.26)}


def apply_geometry(patient: Patient, findings: list[Finding], rng: np.random.Generator) -> dict:
    """Change ``patient`` for geometric findings; returns render options for :func:`render_anatomy`."""
    opts: dict = {"fractures": [], "congestion": 0.0}
    for f in findings:
        if f.kind == "cardiomegaly":
            lo, hi = CTR_BY_SEVERITY[f.severity]
            ctr = rng.uniform(lo, hi)
            width = ctr * 2 * patient.lung_halfwidth
            frac_left = patient.heart_left / (patient.heart_left + patient.heart_right)
            patient.heart_left, patient.heart_right = width * frac_left, width * (1 - frac_left)
            patient.heart_top -= 0.03 * f.severity
        elif f.kind == "enlarged_cardiomediastinum":
            lo, hi = MEDIASTINUM_BY_SEVERITY[f.severity]
            patient.mediastinum_halfwidth = rng.uniform(lo, hi)
            patient.aortic_knob = patient.mediastinum_halfwidth + rng.uniform(0.04, 0.09)
        elif f.kind == "fracture":
            opts["fractures"].append({
                "side": SIDE_SIGN[f.side], "rib": f.detail["rib"], "t": f.detail["t"],
                "step": 0.012 * f.severity, "displaced": f.detail["displaced"],
            })
        elif f.kind == "edema":
            opts["congestion"] = 0.5 + 0.5 * f.severity
        elif f.kind == "atelectasis" and f.severity >= 2:
            for s in f.sides():  # volume loss elevates the hemidiaphragm
                patient.dome_y[SIDE_SIGN[s]] -= 0.03 * f.severity
                patient.cp_y[SIDE_SIGN[s]] -= 0.02 * f.severity
    return opts


# ------------------------------------------------------------------------------------------ layers
def _texture(rng, size: int, coarse: int) -> np.ndarray:
    """Fluffy low-frequency texture in [0, 1] for airspace disease."""
    n = blur(rng.standard_normal((size, size)).astype(np.float32), max(2, size // coarse))
    n = n / (np.abs(n).max() + 1e-6)
    return np.clip(0.5 + 0.9 * n, 0.0, 1.0)


def _lobe_zone(p: Patient, side: str, lobe: str, x, y) -> np.ndarray:
    s = SIDE_SIGN[side]
    hy = p.hilum_y[s]
    if lobe == "upper":
        return ramp(hy + 0.02 - y, 0.03)  # sharp lower border (the minor fissure on the right)
    if lobe in ("middle", "lingula"):
        xl = s * x
        return ramp(y - hy - 0.02, 0.05) * ramp(hy + 0.42 - y, 0.08) * ramp(0.52 - xl, 0.15)
    return ramp(y - hy - 0.12, 0.12)


def _draw_bronchograms(p: Patient, size: int, side: str, y0: float, y1: float, rng) -> np.ndarray:
    cv = Canvas(p, size)
    s = SIDE_SIGN[side]
    for _ in range(4):
        x = s * (p.mediastinum_halfwidth + 0.12 + rng.uniform(0, 0.1))
        y = rng.uniform(y0, y1)
        xs, ys = [x], [y]
        a = rng.uniform(-0.4, 0.9)
        for _ in range(4):
            a += rng.normal(0, 0.2)
            xs.append(xs[-1] + s * math.cos(a) * 0.06)
            ys.append(ys[-1] + math.sin(a) * 0.06)
        cv.line(xs, ys, 0.009, 255)
    return cv.array(blur_px=0.6 * size / 256)


def apply_layers(layers: Layers, patient: Patient, findings: list[Finding], rng: np.random.Generator) -> None:
    """Add every finding's density/air/metal to ``layers`` in place."""
    for f in findings:
        fn = _RENDERERS.get(f.kind)
        if fn is not None:
            fn(layers, patient, f, rng)


def _effusion(L: Layers, p: Patient, f: Finding, rng) -> None:
    x, y = L.x, L.y
    for side in f.sides():
        s = SIDE_SIGN[side]
        xl = s * x
        height = p.cp_y[s] - p.apex_y
        frac = {1: rng.uniform(0.10, 0.16), 2: rng.uniform(0.25, 0.38), 3: rng.uniform(0.48, 0.65)}[f.severity]
        level = p.cp_y[s] - frac * height
        lat = np.clip((xl - 0.15) / (p.lung_halfwidth - 0.15), 0.0, 1.0)
        top = level - (0.05 + 0.10 * frac) * lat**2  # meniscus: climbs along the lateral chest wall
        fluid = ramp(y - top, 0.05 + 0.03 * f.severity) * L.lung[s]
        L.extra += fluid * (0.55 + 0.45 * ramp(y - top, 0.25))
        L.markings *= 1.0 - 0.8 * fluid


def _pneumothorax(L: Layers, p: Patient, f: Finding, rng) -> None:
    x, y = L.x, L.y
    s = SIDE_SIGN[f.side]
    xl = s * x
    d = {1: 0.05, 2: 0.12, 3: 0.24}[f.severity]
    apical = f.detail.get("apical", False)
    # distance inside the lung from the chest wall (lateral) and from the apex
    lat = lateral_border(p, s, y) - xl - (d * 0.4 if apical else d) * (1.0 - 0.5 * np.clip((y - p.apex_y) / 1.2, 0, 1))
    top = y - (p.apex_y + 1.4 * (xl - p.apex_x) ** 2) - d * (1.3 if apical else 0.9)
    sd = np.minimum(lat, top)
    if apical:  # confine to the upper half of the hemithorax
        sd = np.maximum(sd, (p.hilum_y[s] - 0.05) - y)
    lung = L.lung[s]
    rim = ramp(-sd, 0.006) * lung
    L.markings *= 1.0 - rim
    L.air += 0.30 * rim
    # the collapsed lung is a little denser
    L.air -= 0.08 * f.severity * lung * (1.0 - rim)
    line = np.exp(-((sd / 0.0075) ** 2)) * lung
    L.extra += 0.55 * line


def _airspace(L: Layers, p: Patient, f: Finding, rng) -> None:
    x, y = L.x, L.y
    r = np.random.default_rng(f.detail.get("seed", 0))
    tex = _texture(r, L.size, 10)
    dens = {1: 0.35, 2: 0.55, 3: 0.72}[f.severity]
    if f.kind == "consolidation":
        dens = min(1.0, dens + 0.1)
    for side in f.sides():
        s = SIDE_SIGN[side]
        lung = L.lung[s]
        lobe = f.detail.get("lobe", "lower")
        if f.detail.get("pattern") == "patchy":
            blobs = np.zeros_like(x)
            zone = _lobe_zone(p, side, lobe, x, y)
            for _ in range(3 + f.severity):
                bx = s * r.uniform(0.25, 0.65)
                by = r.uniform(p.hilum_y[s] - 0.3, p.cp_y[s] - 0.05)
                if lobe == "upper":
                    by = r.uniform(p.apex_y + 0.15, p.hilum_y[s])
                elif lobe in ("middle", "lingula"):
                    by, bx = r.uniform(p.hilum_y[s] + 0.05, p.hilum_y[s] + 0.35), s * r.uniform(0.2, 0.45)
                else:
                    by = r.uniform(p.hilum_y[s] + 0.15, p.cp_y[s] - 0.05)
                rad = 0.07 + 0.03 * f.severity
                blobs += np.exp(-(((x - bx) ** 2 + (y - by) ** 2) / rad**2))
            region = np.clip(blobs, 0, 1) * np.clip(tex * 1.6 - 0.2, 0, 1) * lung * (0.5 + 0.5 * zone)
        else:
            zone = _lobe_zone(p, side, lobe, x, y)
            region = zone * lung * np.clip(0.25 + 0.9 * tex, 0, 1)
        L.extra += dens * np.clip(region, 0, 1)
        L.markings *= 1.0 - 0.5 * np.clip(region, 0, 1)
        if f.detail.get("bronchograms"):
            y0 = p.hilum_y[s] + (0.1 if lobe == "lower" else -0.3 if lobe == "upper" else 0.02)
            br = _draw_bronchograms(p, L.size, side, y0, y0 + 0.2, r)
            L.extra -= 0.45 * br * np.clip(region, 0, 1) * dens


def _edema(L: Layers, p: Patient, f: Finding, rng) -> None:
    x, y = L.x, L.y
    amount = {1: 0.25, 2: 0.45, 3: 0.75}[f.severity]
    r = np.random.default_rng(int(rng.integers(0, 2**31 - 1)))
    tex = _texture(r, L.size, 16)
    for side in SIDES:
        s = SIDE_SIGN[side]
        hx, hy = s * (p.mediastinum_halfwidth + 0.12), p.hilum_y[s] + 0.05
        haze = np.exp(-(((x - hx) / 0.33) ** 2) - ((y - hy) / 0.42) ** 2)  # perihilar "bat wing"
        L.extra += amount * haze * L.lung[s] * (0.6 + 0.4 * tex)
    if f.detail.get("kerley"):
        cv = Canvas(p, L.size)
        for side in SIDES:
            s = SIDE_SIGN[side]
            for _ in range(5 + 2 * f.severity):
                yy = r.uniform(p.cp_y[s] - 0.35, p.cp_y[s] - 0.05)
                xw = lateral_border(p, s, np.array([yy]))[0]
                cv.line([s * xw, s * (xw - r.uniform(0.05, 0.09))], [yy, yy + r.normal(0, 0.005)], 0.007, 200)
        L.extra += 0.5 * cv.array(blur_px=0.3 * L.size / 256) * (L.lung[RIGHT] + L.lung[LEFT])


def _atelectasis(L: Layers, p: Patient, f: Finding, rng) -> None:
    r = np.random.default_rng(f.detail.get("seed", 0))
    cv = Canvas(p, L.size)
    for side in f.sides():
        s = SIDE_SIGN[side]
        for _ in range(1 + f.severity):
            yy = r.uniform(p.dome_y[s] - 0.22, p.dome_y[s] - 0.04)
            x0 = s * r.uniform(0.22, 0.38)
            ln = r.uniform(0.16, 0.30)
            tilt = r.uniform(-0.03, 0.06)
            cv.line([x0, x0 + s * ln * 0.5, x0 + s * ln], [yy, yy + tilt * 0.6 + 0.01, yy + tilt], 0.012 + 0.004 * f.severity, 255)
    band = cv.array(blur_px=1.0 * L.size / 256)
    L.extra += 0.45 * band * (L.lung[RIGHT] + L.lung[LEFT])


def _lesion(L: Layers, p: Patient, f: Finding, rng) -> None:
    x, y = L.x, L.y
    s = SIDE_SIGN[f.side]
    zone = f.detail["zone"]
    cy = {"upper": p.apex_y + 0.30, "mid": p.hilum_y[s] + 0.05, "lower": p.cp_y[s] - 0.30}[zone]
    cx = s * (0.2 + f.detail["pos"] * (p.lung_halfwidth - 0.3))
    rad = f.detail["size_cm"] * 0.018  # ~ 35 cm across the film
    r = np.random.default_rng(int(f.detail["size_cm"] * 100) + int(1000 * f.detail["pos"]))
    mask = np.zeros_like(x)
    lobes = 1 if f.detail["type"] == "nodule" else 4
    for i in range(lobes):
        ox = oy = 0.0
        rr = rad
        if i:
            ang = r.uniform(0, 2 * math.pi)
            ox, oy, rr = math.cos(ang) * rad * 0.5, math.sin(ang) * rad * 0.5, rad * r.uniform(0.5, 0.8)
        d = np.sqrt((x - cx - ox) ** 2 + (y - cy - oy) ** 2)
        mask = np.maximum(mask, ramp(rr - d, max(0.006, rr * 0.25)))
    L.extra += (0.55 + 0.05 * lobes) * mask * np.clip(L.lung[RIGHT] + L.lung[LEFT] + 0.3, 0, 1)


def _devices(L: Layers, p: Patient, f: Finding, rng) -> None:
    cv = Canvas(p, L.size)
    carina = p.hilum_y[LEFT] - 0.10
    devs = f.detail["devices"]
    if "ett" in devs:
        tip = carina - rng.uniform(0.08, 0.16)
        for dx in (-0.018, 0.018):
            cv.line([0.01 + dx, 0.01 + dx], [-1.1, tip], 0.007, 200)
        cv.line([0.012, 0.012], [-1.1, tip], 0.004, 255)
    if "enteric" in devs:
        dome = p.dome_y[LEFT]
        ys = np.linspace(-1.1, dome + 0.06, 10)
        xs = 0.03 + 0.02 * np.sin(ys * 3)
        # through the oesophagus, below the left hemidiaphragm, tip in the stomach
        xs = np.concatenate([xs, [0.12, 0.26, 0.40]])
        ys = np.concatenate([ys, [dome + 0.13, dome + 0.17, dome + 0.14]])
        cv.line(xs, ys, 0.01, 180)
    if "cvc" in devs:
        s = SIDE_SIGN[f.detail.get("cvc_side", "right")]
        t = np.linspace(0, 1, 10)
        xs = s * (0.30 - 0.26 * t**0.7) if s == RIGHT else s * (0.45 - 0.47 * t**0.8)
        ys = -0.95 + 0.35 * t + (0.2 * t**2 if s == RIGHT else 0.12 * t)
        if s == RIGHT:
            ys = -1.05 + 0.75 * t
            xs = -(0.12 - 0.06 * t)
        cv.line(xs, ys, 0.009, 210)
    if "picc" in devs:
        ys = np.array([-0.9, -0.78, -0.72, -0.62, -0.45])
        xs = np.array([-1.1, -0.7, -0.35, -0.14, -0.07])
        cv.line(xs, ys, 0.007, 200)
    if "pacemaker" in devs:
        gx, gy = 0.52, -0.62
        cv.polygon([gx - 0.09, gx + 0.09, gx + 0.1, gx - 0.08], [gy - 0.05, gy - 0.06, gy + 0.06, gy + 0.07], 230)
        lead_x = [gx - 0.05, 0.25, 0.05, -0.05, -0.1]
        cv.line(lead_x, [gy, -0.68, -0.55, -0.2, 0.0], 0.008, 220)
        cv.line([gx - 0.05, 0.25, 0.04, 0.0, 0.15, 0.22], [gy + 0.01, -0.66, -0.5, -0.1, 0.12, 0.16], 0.008, 220)
    L.metal += cv.array(blur_px=0.3 * L.size / 256) * 0.45


_RENDERERS = {
    "pleural_effusion": _effusion,
    "pneumothorax": _pneumothorax,
    "consolidation": _airspace,
    "lung_opacity": _airspace,
    "pneumonia": _airspace,
    "edema": _edema,
    "atelectasis": _atelectasis,
    "lung_lesion": _lesion,
    "support_devices": _devices,
}
