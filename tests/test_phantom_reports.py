"""Phantom reports: structure, labels that match the phantom's findings, and the labeler consistency check."""

from __future__ import annotations

import numpy as np
import pytest

from diffcxr.data.phantom import FINDING_KINDS, Finding, make_case, sample_case, write_report
from diffcxr.data.phantom.reports import PRESENT_AS
from diffcxr.findings import CHEXPERT_FINDINGS

PRIMARY = {  # the CheXpert column every present finding kind must be positive or uncertain in
    "cardiomegaly": "Cardiomegaly", "enlarged_cardiomediastinum": "Enlarged Cardiomediastinum",
    "pleural_effusion": "Pleural Effusion", "pneumothorax": "Pneumothorax", "consolidation": "Consolidation",
    "lung_opacity": "Lung Opacity", "pneumonia": "Pneumonia", "edema": "Edema", "atelectasis": "Atelectasis",
    "lung_lesion": "Lung Lesion", "fracture": "Fracture", "support_devices": "Support Devices",
}
CASES = [sample_case(123, index=i) for i in range(400)]


def test_report_layout_and_label_values():
    for case in CASES[:50]:
        assert case.report.startswith("FINDINGS: ") and "\n\nIMPRESSION: " in case.report
        assert set(case.labels) == set(CHEXPERT_FINDINGS)
        assert all(v in (None, 1.0, 0.0, -1.0) for v in case.labels.values())
        assert case.labels["Pleural Other"] is None


def test_labels_agree_with_the_true_findings():
    for case in CASES:
        present = set(case.kinds)
        for kind in present:
            assert case.labels[PRIMARY[kind]] in (1.0, -1.0), (kind, case.report)
        allowed_negative = set(CHEXPERT_FINDINGS) - {n for k in present for n in PRESENT_AS[k]}
        for name, v in case.labels.items():
            if v == 0.0:
                assert name in allowed_negative, (name, case.report)
        pathology = present - {"support_devices"}
        assert (case.labels["No Finding"] == 1.0) == (
            not any(case.labels[n] in (1.0, -1.0) for n in CHEXPERT_FINDINGS if n not in ("No Finding", "Support Devices"))
        )
        if not pathology:
            assert case.labels["No Finding"] == 1.0


def test_prevalence_many_normals_and_every_finding_occurs():
    normal = np.mean([not (set(c.kinds) - {"support_devices"}) for c in CASES])
    assert 0.3 <= normal <= 0.55
    seen = {k for c in CASES for k in c.kinds}
    assert seen == set(FINDING_KINDS)
    assert any(v == -1.0 for c in CASES for v in c.labels.values())  # some hedging
    assert any("No acute cardiopulmonary" in c.report for c in CASES)


def test_severity_and_side_words():
    rng = np.random.default_rng(0)
    text, labels = write_report([Finding("pleural_effusion", "left", 3)], rng)
    assert "large" in text.lower() and "left" in text.lower() and labels["Pleural Effusion"] == 1.0
    text, labels = write_report([Finding("pneumothorax", "right", 2, detail={"apical": False})], rng)
    assert "moderate right" in text.lower() and labels["Pneumothorax"] == 1.0
    case = make_case([], seed=2)
    assert case.labels["No Finding"] == 1.0


def _f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    tp = float(np.sum(y_true & y_pred))
    denom = float(np.sum(y_true) + np.sum(y_pred))
    return 1.0 if denom == 0 else 2 * tp / denom


def consistency(cases) -> dict:
    """Per-finding F1 of the labeler against the phantom labels, for positive, negative and uncertain mentions."""
    from diffcxr.knowledge import label_report

    got = [label_report(c.report).labels for c in cases]

    def val(v):
        return None if v is None or v != v else float(v)

    table = {}
    for name in CHEXPERT_FINDINGS:
        truth = np.array([np.nan if c.labels[name] is None else c.labels[name] for c in cases])
        pred = np.array([np.nan if val(g[name]) is None else val(g[name]) for g in got])
        table[name] = {cls: _f1(truth == v, pred == v) for cls, v in (("positive", 1.0), ("negative", 0.0), ("uncertain", -1.0))}
        table[name]["support"] = int(np.sum(truth == 1.0))
    return table


def test_labeler_recovers_phantom_labels():
    pytest.importorskip("diffcxr.knowledge")
    table = consistency(CASES)
    scored = [name for name in CHEXPERT_FINDINGS if table[name]["support"] > 0]
    macro = float(np.mean([table[n]["positive"] for n in scored]))
    assert macro >= 0.95, table
    neg = [table[n]["negative"] for n in scored if any(c.labels[n] == 0.0 for c in CASES)]
    assert float(np.mean(neg)) >= 0.9, table


def test_labeler_reads_each_report_sentence_as_its_template_asserts():
    pytest.importorskip("diffcxr.knowledge")
    from diffcxr.knowledge import label_report

    checked, wrong = 0, []
    seen = set()
    for case in CASES[:200]:
        _, _, sentences = write_report(case.findings, case.rng(1), return_sentences=True)
        for text, lab in sentences:
            if text in seen:
                continue
            seen.add(text)
            got = label_report(text).labels
            for name, v in lab.items():
                checked += 1
                g = got[name]
                if g is None or g != g or float(g) != float(v):
                    wrong.append((text, name, v, g))
    assert checked > 100
    assert len(wrong) <= 0.02 * checked, wrong[:10]


def test_write_report_sentences_rebuild_the_case_report():
    case = CASES[3]
    text, labels, sentences = write_report(case.findings, case.rng(1), return_sentences=True)
    assert text == case.report and labels == case.labels
    assert all(s in text for s, _ in sentences)
