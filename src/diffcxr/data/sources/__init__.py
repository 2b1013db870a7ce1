"""Dataset sources and the one spec string used everywhere: ``SOURCE:PATH[?key=value&...]``.

- ``iu``: IU-Xray / Open-I: ``NLMCXR_reports.tgz`` or the XML folder (``?images=PNG_DIR`` and
  ``?metadata=nlmcxr_dicom_metadata.csv.gz`` optional; both are also found next to PATH), a folder holding
  them, or R2Gen's ``annotation.json`` (images in ``images/`` beside it).
- ``mimic``: MIMIC-CXR-JPG root (``files/``, ``mimic-cxr-2.0.0-{metadata,chexpert,split}.csv[.gz]``); reports
  ``files/pXX/pN/sM.txt`` under the root or ``?reports=DIR``.
- ``covid``: ieee8023 covid-chestxray-dataset folder (``metadata.csv`` + ``images/``).
- ``csv``: a manifest CSV: ``path`` (relative to the CSV), ``report``, optional ``id``, ``patient_id``,
  ``view``, ``split`` and CheXpert finding columns (1 / 0 / -1 / empty).
- ``phantom``: a ``diffcxr phantom`` output folder (alias of ``csv:DIR/metadata.csv``).
- ``sample``: ``sample:N[?size=S&seed=K]``, N built-in digital phantoms, generated once and cached.

Each source is a function ``(path: Path, **options) -> list[Record]`` registered in :data:`SOURCES`.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from pathlib import Path

from diffcxr.data.records import Record, assign_missing_splits, label_from_reports
from diffcxr.data.sources.covid import read_covid
from diffcxr.data.sources.csv_manifest import read_csv_manifest, read_phantom
from diffcxr.data.sources.iu import read_iu
from diffcxr.data.sources.mimic import read_mimic
from diffcxr.data.sources.sample import read_sample
from diffcxr.errors import DatasetError

SOURCES: dict[str, Callable[..., list[Record]]] = {
    "iu": read_iu,
    "mimic": read_mimic,
    "covid": read_covid,
    "csv": read_csv_manifest,
    "phantom": read_phantom,
    "sample": read_sample,
}
PATHLESS_SOURCES = {"sample"}  # their "path" is a parameter, not a file


def parse_spec(spec: str) -> tuple[str, Path, dict[str, str]]:
    """``"iu:/data/x.tgz?images=/data/png"`` → ``("iu", Path("/data/x.tgz"), {"images": "/data/png"})``."""
    source, sep, rest = spec.partition(":")
    source = source.strip().lower()
    if not sep or not rest:
        raise DatasetError(f"dataset spec {spec!r} is not SOURCE:PATH (sources: {', '.join(SOURCES)}), e.g. covid:data/covid-cxr")
    if source not in SOURCES:
        raise DatasetError(f"unknown dataset source {source!r} in {spec!r}; choose one of: {', '.join(SOURCES)}")
    path_text, _, query = rest.partition("?")
    options = dict(urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=False)) if query else {}
    path = Path(path_text).expanduser()
    if source not in PATHLESS_SOURCES and not path.exists():
        raise DatasetError(f"{source} dataset path not found: {path}")
    return source, path, options


def read_records(
    spec: str,
    *,
    split: str | None = None,
    frontal_only: bool = False,
    derive_labels: bool = False,
    require_images: bool = False,
) -> list[Record]:
    """Read every record of a dataset spec (no pixels are decoded).

    Args:
        spec: ``SOURCE:PATH[?options]`` (see module docstring).
        split: keep only ``"train"``, ``"val"`` or ``"test"``. Official splits are used where the dataset has
            them (MIMIC split csv, R2Gen annotation, a ``split`` column), a patient-level hash split otherwise.
        frontal_only: keep PA/AP views only (records whose view is unknown are dropped too).
        derive_labels: run the report labeler (:mod:`diffcxr.knowledge`) on the records whose dataset has no
            annotations (off by default: reading a dataset only reads it; training and evaluation ask for it).
        require_images: drop records without an image path (e.g. IU reports given without images).
    """
    source, path, options = parse_spec(spec)
    try:
        records = SOURCES[source](path, **options)
    except TypeError as exc:
        if "unexpected keyword argument" in str(exc):
            raise DatasetError(f"unknown option in {spec!r} for source {source!r}: {exc}") from None
        raise
    assign_missing_splits(records)
    if split is not None:
        wanted = {"validate": "val", "valid": "val", "validation": "val"}.get(split, split)
        if wanted not in ("train", "val", "test"):
            raise DatasetError(f"split must be train, val or test, got {split!r}")
        records = [r for r in records if r.split == wanted]
    if frontal_only:
        records = [r for r in records if r.is_frontal]
    if require_images:
        records = [r for r in records if r.image_path is not None]
    if derive_labels:
        label_from_reports(records)
    return records


__all__ = ["SOURCES", "parse_spec", "read_records"]
