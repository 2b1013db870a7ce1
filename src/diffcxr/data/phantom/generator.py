"""Phantom cases, rendering, and whole datasets on disk (``images/*.png`` + ``metadata.csv``).

Determinism: case ``i`` of a dataset with seed ``s`` is drawn from ``numpy.random.default_rng([s, i, ...])``,
so a case does not depend on how many cases are generated, on the image size, or on the order.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from diffcxr.atomic import atomic_path
from diffcxr.data.phantom.anatomy import Patient, compose, render_anatomy, sample_patient
from diffcxr.data.phantom.findings import SEVERITY_NAMES, Finding, apply_geometry, apply_layers, sample_findings
from diffcxr.data.phantom.noise import IMAGE_NOISE_TYPES, NOISE_TYPES, corrupt_image
from diffcxr.data.phantom.reports import write_report
from diffcxr.errors import DiffCXRError
from diffcxr.findings import CHEXPERT_FINDINGS

MIN_RENDER = 128  # smaller images are rendered at this size and area-downsampled (cleaner thin lines)
MARKER_FILE = "phantom.json"
BASE_COLUMNS = ("id", "path", "report", "patient_id", "view", "split")
EXTRA_COLUMNS = ("is_noise", "noise_type", "image_findings", "laterality", "severity", "ctr", "sex", "age", "seed")


@dataclass
class PhantomCase:
    """One phantom study: the patient, its true findings, its report and the report's labels."""

    seed: int
    index: int = 0
    patient: Patient = field(default_factory=Patient)
    findings: list[Finding] = field(default_factory=list)
    report: str = ""
    labels: dict = field(default_factory=dict)  # CheXpert name -> 1.0 / 0.0 / -1.0 / None (from the report)
    noise_type: str = ""  # "" = clean; one of NOISE_TYPES otherwise

    @property
    def is_noise(self) -> bool:
        return bool(self.noise_type)

    @property
    def kinds(self) -> list[str]:
        return [f.kind for f in self.findings]

    def finding(self, kind: str) -> Finding | None:
        return next((f for f in self.findings if f.kind == kind), None)

    def rng(self, stream: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.index, stream])


def sample_case(rng: np.random.Generator | int, index: int = 0, noise_type: str = "") -> PhantomCase:
    """Draw a case. ``rng`` may be a Generator (its next integer becomes the case seed) or an int seed."""
    seed = int(rng.integers(0, 2**31 - 1)) if isinstance(rng, np.random.Generator) else int(rng)
    case = PhantomCase(seed=seed, index=index, noise_type=noise_type)
    r = case.rng(0)
    case.patient = sample_patient(r)
    case.findings = sample_findings(r)
    case.report, case.labels = write_report(case.findings, case.rng(1))
    if noise_type and noise_type not in NOISE_TYPES:
        raise DiffCXRError(f"unknown noise type {noise_type!r}; expected one of {', '.join(NOISE_TYPES)}")
    return case


def make_case(findings: list[Finding], seed: int = 0, index: int = 0, patient: Patient | None = None) -> PhantomCase:
    """A case with chosen findings (for tests and figures): patient sampled from ``seed`` unless given."""
    case = PhantomCase(seed=seed, index=index)
    case.patient = patient if patient is not None else sample_patient(case.rng(0))
    case.findings = list(findings)
    case.report, case.labels = write_report(case.findings, case.rng(1))
    return case


def render_phantom(case: PhantomCase, size: int = 256) -> np.ndarray:
    """Render ``case`` as a float32 ``size x size`` image in [0, 1] (bright = dense), with its planted noise."""
    size = int(size)
    if size < 16:
        raise DiffCXRError(f"image size must be at least 16 pixels, got {size}")
    rsize = max(size, MIN_RENDER)
    patient = Patient(**{k: (dict(v) if isinstance(v, dict) else v) for k, v in vars(case.patient).items()})
    rng = case.rng(2)
    opts = apply_geometry(patient, case.findings, rng)
    layers = render_anatomy(patient, rsize, **opts)
    apply_layers(layers, patient, case.findings, rng)
    img = compose(layers, patient, case.rng(6))  # film noise: its own stream, the same with or without findings
    if case.noise_type in IMAGE_NOISE_TYPES:
        img = corrupt_image(case.noise_type, img, patient, case.rng(3))
    if rsize != size:
        img = np.asarray(Image.fromarray(img, "F").resize((size, size), Image.BOX), dtype=np.float32)
    return np.clip(img, 0.0, 1.0).astype(np.float32, copy=False)


def geometry(case: PhantomCase) -> Patient:
    """The patient after geometric findings are applied (heart size, mediastinum ...), e.g. for the CTR."""
    patient = Patient(**{k: (dict(v) if isinstance(v, dict) else v) for k, v in vars(case.patient).items()})
    apply_geometry(patient, case.findings, case.rng(2))
    return patient


# ------------------------------------------------------------------------------------------ datasets
def noise_assignment(n: int, noise_fraction: float, seed: int) -> list[str]:
    """Noise type per index: exactly ``round(n * noise_fraction)`` noisy samples, types as balanced as possible."""
    if not 0.0 <= noise_fraction < 1.0:
        raise DiffCXRError(f"noise fraction must be in [0, 1), got {noise_fraction}")
    rng = np.random.default_rng([seed, 0x5EED])
    n_noise = int(round(n * noise_fraction))
    out = [""] * n
    types = list(NOISE_TYPES)
    rng.shuffle(types)
    for j, i in enumerate(rng.permutation(n)[:n_noise]):
        out[int(i)] = types[j % len(types)]
    return out


def _label_cell(v) -> str:
    return "" if v is None else str(int(v))


def case_row(case: PhantomCase, path: str, split: str) -> dict:
    """The metadata.csv row of a (possibly noisy) case."""
    p = geometry(case)
    row = {
        "id": f"ph{case.index:06d}",
        "path": path,
        "report": case.report,
        "patient_id": f"phantom-{case.seed}-{case.index}",
        "view": case.patient.view,
        "split": split,
    }
    for name in CHEXPERT_FINDINGS:
        row[name] = _label_cell(case.labels.get(name))
    sev = max((f.severity for f in case.findings if f.kind != "support_devices"), default=0)
    row.update({
        "is_noise": int(case.is_noise),
        "noise_type": case.noise_type,
        "image_findings": ";".join(f.describe() for f in case.findings),
        "laterality": ";".join(f"{f.kind}:{f.side}" for f in case.findings if f.side),
        "severity": SEVERITY_NAMES.get(sev, "none"),
        "ctr": f"{p.cardiothoracic_ratio:.3f}",
        "sex": case.patient.sex,
        "age": case.patient.age,
        "seed": case.seed,
    })
    return row


def _split(seed: int, index: int) -> str:
    u = np.random.default_rng([seed, index, 4]).random()
    return "train" if u < 0.8 else ("val" if u < 0.9 else "test")


def is_phantom_dir(path: Path) -> bool:
    return (Path(path) / MARKER_FILE).is_file()


def check_output_dir(out_dir: Path, overwrite: bool) -> None:
    """Refuse a non-empty folder that is not an earlier phantom dataset unless ``overwrite``."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DiffCXRError(f"output path {out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not is_phantom_dir(out_dir) and not overwrite:
        raise DiffCXRError(f"output folder {out_dir} is not empty and is not a phantom dataset; "
                           "choose another --out or pass --overwrite")


def make_phantom_dataset(n: int, size: int, out_dir, noise_fraction: float = 0.0, seed: int = 0,
                         progress: bool = True, overwrite: bool = False) -> Path:
    """Write ``n`` phantoms to ``out_dir/images/*.png`` (8-bit) and ``out_dir/metadata.csv``; return the csv path.

    A previous phantom dataset in ``out_dir`` (it has ``phantom.json``) is replaced; any other non-empty
    folder is refused unless ``overwrite``. The dataset is written to a staging folder beside ``out_dir`` and
    moved into place when complete, so an interrupted run leaves the previous dataset intact (or nothing).
    """
    n, size = int(n), int(size)
    if n <= 0:
        raise DiffCXRError(f"number of phantoms must be positive, got {n}")
    if not 32 <= size <= 1024:
        raise DiffCXRError(f"image size must be between 32 and 1024 pixels, got {size}")
    noise = noise_assignment(n, float(noise_fraction), seed)
    final_dir = Path(out_dir)
    check_output_dir(final_dir, overwrite)
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    out_dir = final_dir.with_name(f".{final_dir.name}.partial-{os.getpid()}")
    shutil.rmtree(out_dir, ignore_errors=True)
    try:
        _write_dataset(out_dir, n, size, noise, noise_fraction, seed, progress)
        _publish(out_dir, final_dir)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    return final_dir / "metadata.csv"


def _publish(staging: Path, out_dir: Path) -> None:
    """Move a complete dataset from ``staging`` to ``out_dir`` (replacing an earlier phantom dataset whole)."""
    if out_dir.is_dir() and not any(out_dir.iterdir()):
        out_dir.rmdir()
    if not out_dir.exists():
        os.replace(staging, out_dir)
    elif is_phantom_dir(out_dir):
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        os.replace(out_dir, old)
        os.replace(staging, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:  # --overwrite of another folder: our entries replace theirs, the rest stays
        for entry in staging.iterdir():
            target = out_dir / entry.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
            os.replace(entry, target)


def _write_dataset(out_dir: Path, n: int, size: int, noise, noise_fraction: float, seed: int, progress: bool) -> None:
    img_dir = out_dir / "images"
    img_dir.mkdir(parents=True)
    rows = []
    it = range(n)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="phantoms", unit="img")
    for i in it:
        case = sample_case(seed, index=i, noise_type=noise[i])
        img = render_phantom(case, size)
        name = f"images/phantom_{i:06d}.png"
        Image.fromarray(np.round(img * 255).astype(np.uint8), "L").save(out_dir / name, compress_level=1)
        if case.noise_type == "mismatched_report":
            other = _other_case(case)
            case.report, case.labels = other.report, other.labels
        rows.append(case_row(case, name, _split(seed, i)))
    csv_path = out_dir / "metadata.csv"
    with atomic_path(csv_path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(BASE_COLUMNS) + list(CHEXPERT_FINDINGS) + list(EXTRA_COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
    meta = {"generator": "diffcxr.data.phantom", "format": 1, "n": n, "size": size, "seed": seed,
            "noise_fraction": noise_fraction, "noise_types": list(NOISE_TYPES)}
    (out_dir / MARKER_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def _other_case(case: PhantomCase) -> PhantomCase:
    """A different phantom whose report disagrees with ``case`` (for ``mismatched_report``)."""
    mine = {k for k, v in case.labels.items() if v == 1.0}
    for attempt in range(1, 20):
        other = sample_case(int(case.rng(5 + attempt).integers(0, 2**31 - 1)), index=case.index)
        if {k for k, v in other.labels.items() if v == 1.0} != mine:
            return other
    return other
