"""The rule-based report labeler on hand-written report language (fast, no data needed)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from diffcxr.findings import CHEXPERT_FINDINGS
from diffcxr.knowledge import Evidence, LabelResult, label_report

POS, NEG, UNC = 1.0, 0.0, -1.0

CASES = [
    # plain statements and lists
    ("Moderate right pleural effusion. No pneumothorax.", {"Pleural Effusion": POS, "Pneumothorax": NEG}),
    ("No pneumothorax, effusion, or consolidation.", {"Pneumothorax": NEG, "Pleural Effusion": NEG, "Consolidation": NEG}),
    ("No focal consolidation, suspicious pulmonary opacity, large pleural effusion, or pneumothorax is identified.",
     {"Consolidation": NEG, "Lung Opacity": NEG, "Pleural Effusion": NEG, "Pneumothorax": NEG}),
    ("The lungs are clear without evidence of focal airspace disease, pleural effusion, or pneumothorax.",
     {"Lung Opacity": NEG, "Pleural Effusion": NEG, "Pneumothorax": NEG}),
    ("Pleural effusion and pneumothorax are not seen.", {"Pleural Effusion": NEG, "Pneumothorax": NEG}),
    # uncertainty
    ("Pneumonia cannot be excluded.", {"Pneumonia": UNC}),
    ("Cannot exclude a small left effusion.", {"Pleural Effusion": UNC}),
    ("Opacity in the left base may represent atelectasis.", {"Lung Opacity": POS, "Atelectasis": UNC}),
    ("Streaky opacity, likely atelectasis.", {"Lung Opacity": POS, "Atelectasis": UNC}),
    ("Possible small right effusion, no pneumothorax.", {"Pleural Effusion": UNC, "Pneumothorax": NEG}),
    ("Findings are concerning for pneumonia.", {"Pneumonia": UNC}),
    ("Atelectasis versus pneumonia in the left lower lobe.", {"Pneumonia": UNC}),
    ("Borderline cardiomegaly.", {"Cardiomegaly": UNC}),
    ("Heart size is upper limits of normal.", {"Cardiomegaly": NEG}),
    ("The heart is top normal in size.", {"Cardiomegaly": NEG}),
    ("The cardiac silhouette is borderline enlarged.", {"Cardiomegaly": UNC}),
    ("No opacity to suggest pneumonia.", {"Lung Opacity": NEG, "Pneumonia": NEG}),
    ("No focal consolidation concerning for pneumonia.", {"Consolidation": NEG, "Pneumonia": NEG}),
    ("Patchy opacity concerning for pneumonia.", {"Lung Opacity": POS, "Pneumonia": UNC}),
    ("There is no longer evidence of pulmonary edema.", {"Edema": NEG}),
    ("ET tube has been removed.", {"Support Devices": NEG}),
    # negation that is not about the finding, and temporal words
    ("No change in the moderate left pleural effusion.", {"Pleural Effusion": POS}),
    ("Right pleural effusion has resolved.", {"Pleural Effusion": NEG}),
    ("Interval resolution of the right lower lobe consolidation.", {"Consolidation": NEG}),
    ("Unchanged small bilateral pleural effusions.", {"Pleural Effusion": POS}),
    ("Stable mild cardiomegaly.", {"Cardiomegaly": POS}),
    ("Resolving left lower lobe pneumonia.", {"Pneumonia": POS}),
    ("Mild pulmonary edema.", {"Edema": POS}),
    ("Trace left pleural effusion, unchanged.", {"Pleural Effusion": POS}),
    # scope terminators
    ("No pneumothorax, but there is a small left effusion.", {"Pneumothorax": NEG, "Pleural Effusion": POS}),
    ("No acute abnormality other than mild cardiomegaly.", {"Cardiomegaly": POS}),
    # heart / mediastinum anatomy + qualifier
    ("The heart is normal in size.", {"Cardiomegaly": NEG}),
    ("Heart size and mediastinal contours are within normal limits.",
     {"Cardiomegaly": NEG, "Enlarged Cardiomediastinum": NEG}),
    ("The cardiomediastinal silhouette is within normal limits for size and contour.",
     {"Enlarged Cardiomediastinum": NEG, "Cardiomegaly": NEG}),
    ("The heart is not enlarged.", {"Cardiomegaly": NEG}),
    ("Mild enlargement of the cardiac silhouette.", {"Cardiomegaly": POS}),
    ("The heart is mildly enlarged.", {"Cardiomegaly": POS}),
    ("Normal heart size.", {"Cardiomegaly": NEG}),
    ("Widened mediastinum.", {"Enlarged Cardiomediastinum": POS}),
    ("Heart size is stable.", {"Cardiomegaly": None}),
    ("Lungs: clear. Pleura: no effusion. Heart: normal size.", {"Cardiomegaly": NEG, "Pleural Effusion": NEG}),
    # hyphenation, British spelling, upper case, de-identification tokens
    ("Small right-sided pleural effusion.", {"Pleural Effusion": POS}),
    ("The cardio-mediastinal silhouette is enlarged.", {"Enlarged Cardiomediastinum": POS}),
    ("Bilateral air-space opacities.", {"Lung Opacity": POS}),
    ("Pulmonary oedema.", {"Edema": POS}),
    ("Small left haemothorax.", {"Pleural Effusion": POS}),
    ("Right hydropneumothorax.", {"Pleural Effusion": POS, "Pneumothorax": POS}),
    ("Large tumour in the right upper lobe.", {"Lung Lesion": POS}),
    ("NO PNEUMOTHORAX. LARGE LEFT PLEURAL EFFUSION.", {"Pneumothorax": NEG, "Pleural Effusion": POS}),
    ("No XXXX pleural effusion. Normal chest x-XXXX.", {"Pleural Effusion": NEG, "No Finding": POS}),
    ("No ___ effusion or pneumothorax.", {"Pleural Effusion": NEG, "Pneumothorax": NEG}),
    # other findings, devices, exclusions
    ("Left rib fractures.", {"Fracture": POS}),
    ("No displaced rib fracture.", {"Fracture": NEG}),
    ("Endotracheal tube terminates 4 cm above the carina. Right PICC line in the SVC.", {"Support Devices": POS}),
    ("Small pericardial effusion.", {"Pleural Effusion": None}),
    ("Lytic lesion in the humerus.", {"Lung Lesion": None}),
    ("Calcified granuloma in the right upper lobe.", {"Lung Lesion": None, "No Finding": None}),
    ("Biapical pleural thickening.", {"Pleural Other": POS}),
    ("Left lower lobe collapse.", {"Atelectasis": POS}),
    ("Pulmonary vascular congestion.", {"Edema": POS}),
    ("Soft tissue edema of the chest wall.", {"Edema": None}),
    # findings explained away as artifacts / overlapping structures
    ("Nodular density overlying the left 4th rib represents a healing rib fracture.", {"Lung Lesion": NEG}),
    ("Opacity in the right mid lung is related to overlying soft tissues.", {"Lung Opacity": NEG}),
    ("Small nodular opacity at the left base likely a nipple shadow.", {"Lung Lesion": NEG}),
    # COVID-style clinical notes
    ("Bilateral ground-glass opacities, worse at the bases.", {"Lung Opacity": POS}),
    ("Infiltrate in the right upper lobe.", {"Lung Opacity": POS}),
    ("Patient with COVID-19 pneumonia, intubated.", {"Pneumonia": POS}),
    ("Fever and cough for 3 days; evaluate for pneumonia.", {"Pneumonia": UNC}),
]


@pytest.mark.parametrize("text,expected", CASES, ids=[c[0][:50] for c in CASES])
def test_sentences(text: str, expected: dict[str, float | None]) -> None:
    labels = label_report(text).labels
    for finding, value in expected.items():
        assert labels[finding] == value, f"{finding}: got {labels[finding]!r}, want {value!r} for {text!r}"


def test_result_shape_and_vector() -> None:
    res = label_report("Moderate right pleural effusion. No pneumothorax.")
    assert isinstance(res, LabelResult)
    assert list(res.labels) == list(CHEXPERT_FINDINGS)
    vec = res.to_vector()
    assert vec.dtype == np.float32 and vec.shape == (14,)
    assert vec[CHEXPERT_FINDINGS.index("Pleural Effusion")] == 1.0
    assert vec[CHEXPERT_FINDINGS.index("Pneumothorax")] == 0.0
    assert math.isnan(vec[CHEXPERT_FINDINGS.index("Cardiomegaly")])
    assert res.positives() == ["Pleural Effusion"]
    assert res.to_dict()["labels"]["Pleural Effusion"] == 1.0


def test_evidence_spans_point_at_the_text() -> None:
    text = "Heart size is normal. Small right-sided PLEURAL EFFUSION. Possible left basilar atelectasis."
    res = label_report(text)
    assert all(isinstance(e, Evidence) for e in res.evidence)
    for e in res.evidence:
        assert text[e.start:e.end] == e.text
    by_finding = {e.finding: e for e in res.evidence}
    assert by_finding["Pleural Effusion"].text == "PLEURAL EFFUSION" and by_finding["Pleural Effusion"].value == 1.0
    assert by_finding["Atelectasis"].text == "atelectasis" and by_finding["Atelectasis"].value == -1.0
    assert by_finding["Cardiomegaly"].text == "Heart size is normal" and by_finding["Cardiomegaly"].value == 0.0
    assert [e.start for e in res.evidence] == sorted(e.start for e in res.evidence)


def test_aggregation_positive_beats_uncertain_beats_negative() -> None:
    assert label_report("No effusion on the left. Small right effusion.").labels["Pleural Effusion"] == POS
    assert label_report("No effusion on the left. Possible right effusion.").labels["Pleural Effusion"] == UNC
    assert label_report("Possible effusion. Effusion is present on the right.").labels["Pleural Effusion"] == POS


@pytest.mark.parametrize("text,no_finding", [
    ("Heart size normal. Lungs are clear. No pneumothorax or pleural effusion.", POS),
    ("Normal chest.", POS),
    ("No active cardiopulmonary disease.", POS),
    ("Lungs are clear. Right PICC line tip in the SVC.", POS),          # devices do not count
    ("Mild cardiomegaly.", None),
    ("Possible small effusion.", None),                                   # uncertain counts
    ("Lungs are hyperexpanded. No effusion.", None),                     # other abnormality
    ("Mild degenerative changes of the thoracic spine.", None),
])
def test_no_finding_aggregation(text: str, no_finding: float | None) -> None:
    assert label_report(text).labels["No Finding"] == no_finding


def test_mimic_style_report_ignores_indication() -> None:
    text = ("FINAL REPORT\nINDICATION:  ___ year old man with fever, evaluate for pneumonia.\n"
            "COMPARISON:  None.\nFINDINGS:\nThe lungs are clear.  No pleural effusion or\npneumothorax.  Heart size "
            "is normal.\n\nIMPRESSION:\nNo acute cardiopulmonary process.\n")
    labels = label_report(text).labels
    assert labels["Pneumonia"] is None
    assert labels["Pleural Effusion"] == NEG and labels["Pneumothorax"] == NEG  # across a line break
    assert labels["No Finding"] == POS


def test_bulleted_lines_are_separate_sentences() -> None:
    labels = label_report("IMPRESSION:\n- No pleural effusion\n- Small right apical pneumothorax\n2) Mild edema").labels
    assert labels["Pleural Effusion"] == NEG and labels["Pneumothorax"] == POS and labels["Edema"] == POS


def test_iu_style_report() -> None:
    text = ("The cardiomediastinal silhouette is within normal limits. Mildly hyperexpanded lungs. There is a calcified "
            "granuloma in the right upper lobe. No pneumothorax or pleural effusion. Degenerative changes of the "
            "thoracic spine. 1. No acute cardiopulmonary abnormality.")
    labels = label_report(text).labels
    assert labels["Pneumothorax"] == NEG and labels["Pleural Effusion"] == NEG
    assert labels["Enlarged Cardiomediastinum"] == NEG
    assert labels["No Finding"] is None  # hyperexpansion, granuloma and degenerative change are findings
    assert all(labels[f] != POS for f in CHEXPERT_FINDINGS if f != "No Finding")


@pytest.mark.parametrize("text", ["", "   \n\t ", None, 12345])
def test_empty_or_non_text_never_raises(text) -> None:
    res = label_report(text)
    assert all(v is None for v in res.labels.values())
    assert res.warnings


@pytest.mark.parametrize("text", ["Keine Auffälligkeiten. Herz normal groß.", "Sin hallazgos patológicos.",
                                  "Pas d'anomalie.", "正常胸片"])
def test_non_english_text(text: str) -> None:
    res = label_report(text)
    assert all(v is None for v in res.labels.values())
    assert any("English" in w for w in res.warnings)


def test_huge_text_is_truncated_not_fatal() -> None:
    from diffcxr.data.reports import MAX_REPORT_CHARS

    text = "Small right pleural effusion. " * 40_000  # 1.2 MB
    res = label_report(text)
    assert res.labels["Pleural Effusion"] == POS
    assert len(res.text) == MAX_REPORT_CHARS
    assert any("first" in w for w in res.warnings)


@pytest.mark.parametrize("text", [
    "?????", ".....", "no no no not not", "XXXX XXXX XXXX.", "é" * 1000, "İSTANBUL ﬀ heart enlarged",
    "(((( [[[ \\d+ $^", "\x00\x01 effusion", "1. 2. 3.", "NO:", ":;:;:;",
])
def test_odd_text_never_raises(text: str) -> None:
    res = label_report(text)
    for e in res.evidence:
        assert res.text[e.start:e.end] == e.text
