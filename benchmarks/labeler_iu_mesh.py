"""Labeler vs. human MeSH annotations on all 3,955 IU-Xray (Open-I) reports.

    .venv/bin/python benchmarks/labeler_iu_mesh.py [--reports ../shared/data/iu-xray/NLMCXR_reports.tgz] [--errors FINDING]

Ground truth: the MeSH *major* terms of each report, mapped to our findings where the mapping is clean
(``MESH_TO_FINDING``; a term maps by its head, e.g. ``Cardiomegaly/mild`` → Cardiomegaly). A report is
a positive for finding F when any of its MeSH majors maps to F, otherwise a negative. Prediction: the
labeler over the report text (FINDINGS + IMPRESSION, cleaned), positive when the label is 1, and uncertain
(-1) counted once as positive and once as negative. Prints per-finding precision / recall / F1 and the
macro-F1 over the mapped findings.

Mapping decisions (documented in docs/knowledge.md, "Measured against human annotations"):

* ``Infiltrate`` and ``Airspace Disease`` → Lung Opacity (synonyms of parenchymal opacity, both in CheXpert's
  Lung Opacity vocabulary). ``Density``, ``Cicatrix`` (scar) and ``Markings`` are *not* mapped: they are
  annotated separately and are not parenchymal opacities in our labeler's definition.
* ``Pulmonary Congestion`` → Edema (CheXpert's Edema category explicitly includes vascular congestion).
* ``Cardiac Shadow/enlarged`` → Cardiomegaly (an enlarged cardiac silhouette is the definition).
* ``Hydropneumothorax`` → Pleural Effusion and Pneumothorax.
* ``Granulomatous Disease``, ``Calcified Granuloma``, ``Granuloma`` are *not* mapped to Lung Lesion: healed
  granulomas are not lesions in the CheXpert sense (the CheXpert labeler lists them among "other findings").
* ``Opacity`` / ``Nodule`` / ``Mass`` terms located outside the lungs (ribs, breast, mediastinum, heart ...)
  are not mapped.
* Enlarged Cardiomediastinum, Pleural Other and Support Devices have no clean MeSH counterpart and are not
  scored.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_REPORTS = REPO.parent / "shared" / "data" / "iu-xray" / "NLMCXR_reports.tgz"

MESH_TO_FINDING: dict[str, tuple[str, ...]] = {
    "normal": ("No Finding",),
    "Cardiomegaly": ("Cardiomegaly",),
    "Pleural Effusion": ("Pleural Effusion",),
    "Pneumothorax": ("Pneumothorax",),
    "Hydropneumothorax": ("Pleural Effusion", "Pneumothorax"),
    "Pulmonary Atelectasis": ("Atelectasis",),
    "Pulmonary Edema": ("Edema",),
    "Pulmonary Congestion": ("Edema",),
    "Consolidation": ("Consolidation",),
    "Pneumonia": ("Pneumonia",),
    "Fractures, Bone": ("Fracture",),
    "Opacity": ("Lung Opacity",),
    "Infiltrate": ("Lung Opacity",),
    "Airspace Disease": ("Lung Opacity",),
    "Nodule": ("Lung Lesion",),
    "Mass": ("Lung Lesion",),
}
# Terms that map only with one of these qualifiers.
QUALIFIED: dict[str, tuple[frozenset[str], tuple[str, ...]]] = {
    "Cardiac Shadow": (frozenset({"enlarged"}), ("Cardiomegaly",)),
}
LOCATED_IN_LUNG = ("Opacity", "Nodule", "Mass")
NON_LUNG = frozenset({"ribs", "breast", "mediastinum", "heart", "shoulder", "humerus", "clavicle", "spine",
                      "thoracic vertebrae", "abdomen", "diaphragm", "soft tissue", "neck", "sternum"})
SCORED = ("No Finding", "Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Fracture", "Lung Lesion",
          "Lung Opacity", "Pleural Effusion", "Pneumonia", "Pneumothorax")


def mesh_findings(mesh_major: tuple[str, ...]) -> set[str]:
    """The set of our findings that a report's MeSH major terms map to."""
    out: set[str] = set()
    for term in mesh_major:
        parts = [p.strip() for p in term.split("/")]
        head, qualifiers = parts[0], {p.lower() for p in parts[1:]}
        if head in MESH_TO_FINDING:
            if head in LOCATED_IN_LUNG and qualifiers & NON_LUNG:
                continue
            out.update(MESH_TO_FINDING[head])
        elif head in QUALIFIED and qualifiers & QUALIFIED[head][0]:
            out.update(QUALIFIED[head][1])
    return out


def scorable(reports):
    """Reports that can be scored: with FINDINGS/IMPRESSION text and a MeSH annotation ("No Indexing" = none)."""
    return [r for r in reports if r.report.strip() and "No Indexing" not in r.mesh_major]


def prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def evaluate(reports, results) -> dict[str, dict[str, dict[str, float]]]:
    """{mode: {finding: {precision, recall, f1, support, tp, fp, fn}}} for mode in (u_pos, u_neg)."""
    truth = [mesh_findings(r.mesh_major) for r in reports]
    table: dict[str, dict[str, dict[str, float]]] = {}
    for mode, accept in (("uncertain=positive", (1.0, -1.0)), ("uncertain=negative", (1.0,))):
        rows = {}
        for finding in SCORED:
            tp = fp = fn = 0
            for gt, res in zip(truth, results):
                pred = res.labels[finding] in accept
                actual = finding in gt
                tp += pred and actual
                fp += pred and not actual
                fn += actual and not pred
            p, r, f = prf(tp, fp, fn)
            rows[finding] = {"precision": p, "recall": r, "f1": f, "support": tp + fn, "tp": tp, "fp": fp, "fn": fn}
        rows["macro"] = {"f1": sum(rows[f]["f1"] for f in SCORED) / len(SCORED)}
        table[mode] = rows
    return table


def format_table(table) -> str:
    modes = list(table)
    lines = ["| finding | support | " + " | ".join(f"P / R / F1 ({m})" for m in modes) + " |",
             "|---|---:|" + "---:|" * len(modes)]
    for finding in SCORED:
        cells = [f"{table[m][finding]['precision']:.3f} / {table[m][finding]['recall']:.3f} / {table[m][finding]['f1']:.3f}"
                 for m in modes]
        lines.append(f"| {finding} | {table[modes[0]][finding]['support']} | " + " | ".join(cells) + " |")
    lines.append("| **macro-F1** | | " + " | ".join(f"**{table[m]['macro']['f1']:.3f}**" for m in modes) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=Path, default=DEFAULT_REPORTS)
    parser.add_argument("--errors", metavar="FINDING", help="print false positives / negatives for FINDING")
    parser.add_argument("--mode", default="uncertain=positive", choices=["uncertain=positive", "uncertain=negative"])
    parser.add_argument("--limit", type=int, default=40, help="max errors to print")
    args = parser.parse_args(argv)
    if not args.reports.exists():
        print(f"IU reports not found at {args.reports}", file=sys.stderr)
        return 1
    from diffcxr.data.iu_reports import read_iu_reports
    from diffcxr.knowledge import label_report

    all_reports = read_iu_reports(args.reports)
    # Reports without annotation ("No Indexing") or without FINDINGS/IMPRESSION text cannot be scored.
    reports = scorable(all_reports)
    t0 = time.perf_counter()
    results = [label_report(r.report) for r in reports]
    dt = time.perf_counter() - t0
    table = evaluate(reports, results)
    print(f"IU-Xray: {len(all_reports)} reports, {len(all_reports) - len(reports)} without MeSH annotation or text "
          f"excluded; {len(reports)} labeled in {dt:.2f} s ({len(reports) / dt:,.0f} reports/s)\n")
    print(format_table(table))
    if args.errors:
        accept = (1.0, -1.0) if args.mode == "uncertain=positive" else (1.0,)
        shown = 0
        for rep, res in zip(reports, results):
            pred = res.labels[args.errors] in accept
            actual = args.errors in mesh_findings(rep.mesh_major)
            if pred != actual and shown < args.limit:
                shown += 1
                kind = "FP" if pred else "FN"
                ev = [(e.text, e.value) for e in res.evidence if e.finding == args.errors]
                print(f"\n{kind} {rep.uid} mesh={list(rep.mesh_major)}\n  {rep.report}\n  evidence={ev}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
