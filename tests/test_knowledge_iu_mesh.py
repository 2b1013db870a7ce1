"""Labeler vs. the human MeSH annotations of the real IU-Xray reports (skips without ../shared/data)."""

from __future__ import annotations

from pathlib import Path

import pytest
from _benchmarks import load_benchmark

from diffcxr.knowledge import label_report

# Measured 0.910 (uncertain counted negative) and 0.851 (uncertain counted positive); floors leave a small margin.
MACRO_F1_FLOOR = {"uncertain=negative": 0.89, "uncertain=positive": 0.83}


def test_mesh_mapping() -> None:
    bench = load_benchmark("labeler_iu_mesh")
    assert bench.mesh_findings(("normal",)) == {"No Finding"}
    assert bench.mesh_findings(("Cardiomegaly/mild", "Pulmonary Atelectasis/base/left")) == {"Cardiomegaly", "Atelectasis"}
    assert bench.mesh_findings(("Opacity/lung/base/left/patchy", "Fractures, Bone/ribs")) == {"Lung Opacity", "Fracture"}
    assert bench.mesh_findings(("Opacity/ribs/anterior", "Nodule/breast")) == set()
    assert bench.mesh_findings(("Cardiac Shadow/enlarged/mild", "Calcified Granuloma/lung")) == {"Cardiomegaly"}


@pytest.mark.realdata
@pytest.mark.slow
def test_macro_f1_on_iu_mesh(shared_data: Path) -> None:
    bench = load_benchmark("labeler_iu_mesh")
    from diffcxr.data.iu_reports import read_iu_reports

    reports = bench.scorable(read_iu_reports(shared_data / "iu-xray" / "NLMCXR_reports.tgz"))
    assert len(reports) > 3800
    table = bench.evaluate(reports, [label_report(r.report) for r in reports])
    for mode, floor in MACRO_F1_FLOOR.items():
        assert table[mode]["macro"]["f1"] >= floor, (mode, table[mode]["macro"]["f1"])
    for finding in ("No Finding", "Cardiomegaly", "Pleural Effusion", "Atelectasis", "Lung Opacity"):
        assert table["uncertain=negative"][finding]["f1"] >= 0.85, (finding, table["uncertain=negative"][finding])


@pytest.mark.realdata
def test_covid_clinical_notes_never_crash(shared_data: Path) -> None:
    import csv

    with (shared_data / "covid-cxr" / "metadata.csv").open(encoding="utf-8", errors="replace", newline="") as handle:
        notes = [row.get("clinical_notes") or "" for row in csv.DictReader(handle)]
    assert len([n for n in notes if n.strip()]) > 500
    opacity = 0
    for note in notes:
        res = label_report(note)
        for e in res.evidence:
            assert note[e.start:e.end] == e.text
        opacity += res.labels["Lung Opacity"] == 1.0 or res.labels["Pneumonia"] == 1.0
    assert opacity > 200  # mostly COVID-19 / other pneumonias
