"""Reader for the Indiana University (Open-I) chest X-ray reports in their original XML.

Accepts the folder of ``*.xml`` files (``ecgen-radiology/``) or the ``NLMCXR_reports.tgz`` archive as
distributed, without extracting it to disk.
"""

from __future__ import annotations

import dataclasses
import tarfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

from diffcxr.data.reports import compose_report
from diffcxr.errors import DatasetError


@dataclasses.dataclass(frozen=True)
class IUReport:
    """One IU-Xray study report. ``image_ids`` are the ``parentImage`` ids (e.g. ``CXR1_1_IM-0001-3001``)."""

    uid: str  # e.g. "CXR1"
    findings: str
    impression: str
    indication: str
    comparison: str
    mesh_major: tuple[str, ...]
    mesh_minor: tuple[str, ...]
    image_ids: tuple[str, ...]
    source_file: str

    @property
    def report(self) -> str:
        """The conditioning text under the report policy (findings + impression, cleaned)."""
        return compose_report({"findings": self.findings, "impression": self.impression}, fallback="none")


def parse_iu_xml(data: bytes | str, source_file: str = "<memory>") -> IUReport:
    """Parse one IU report XML document. Raises :class:`DatasetError` on malformed XML."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise DatasetError(f"{source_file}: not a valid IU report XML ({exc})") from None
    sections = {"findings": "", "impression": "", "indication": "", "comparison": ""}
    for node in root.iter("AbstractText"):
        label = (node.get("Label") or "").strip().lower()
        if label in sections:
            sections[label] = (node.text or "").strip()
    uid_node = root.find("uId")
    uid = uid_node.get("id", "") if uid_node is not None else Path(source_file).stem
    mesh = root.find("MeSH")
    major = tuple((n.text or "").strip() for n in mesh.findall("major")) if mesh is not None else ()
    minor = tuple((n.text or "").strip() for n in mesh.findall("minor")) if mesh is not None else ()
    image_ids = tuple(n.get("id", "") for n in root.findall("parentImage") if n.get("id"))
    return IUReport(uid=uid, mesh_major=major, mesh_minor=minor, image_ids=image_ids, source_file=source_file, **sections)


def iter_iu_reports(path: str | Path) -> Iterator[IUReport]:
    """Yield every report from an ``ecgen-radiology`` folder or the ``NLMCXR_reports.tgz`` archive."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"IU report path not found: {path} (give the ecgen-radiology folder or NLMCXR_reports.tgz)")
    if path.is_dir():
        files = sorted(path.rglob("*.xml"), key=lambda p: (len(p.stem), p.stem))
        if not files:
            raise DatasetError(f"no *.xml report files under {path}")
        for file in files:
            yield parse_iu_xml(file.read_bytes(), str(file))
        return
    try:
        archive = tarfile.open(path, "r:*")
    except (tarfile.TarError, OSError) as exc:
        raise DatasetError(f"{path}: cannot open as a tar archive of IU report XML files ({exc})") from None
    with archive:
        members = [m for m in archive.getmembers() if m.isfile() and m.name.endswith(".xml")]
        if not members:
            raise DatasetError(f"{path}: archive holds no *.xml report files")
        members.sort(key=lambda m: (len(Path(m.name).stem), Path(m.name).stem))
        for member in members:
            handle = archive.extractfile(member)
            if handle is None:
                continue
            yield parse_iu_xml(handle.read(), f"{path}:{member.name}")


def read_iu_reports(path: str | Path) -> list[IUReport]:
    """All reports of :func:`iter_iu_reports` as a list (3,955 for the full IU-Xray release)."""
    return list(iter_iu_reports(path))
