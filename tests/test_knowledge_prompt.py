"""The Diff-CXR knowledge prompt and label overrides."""

from __future__ import annotations

import math

import pytest

from diffcxr.errors import ReportError
from diffcxr.findings import CHEXPERT_FINDINGS, KNOWLEDGE_FINDINGS
from diffcxr.knowledge import (
    NO_FINDING_PROMPT,
    apply_overrides,
    canonical_finding,
    knowledge_prompt,
    label_report,
    parse_label_overrides,
)


def test_prompt_order_is_fixed_and_lower_case() -> None:
    labels = {"Pneumothorax": 1.0, "Atelectasis": 1.0, "Pleural Effusion": 1.0, "Lung Opacity": 1.0}
    assert knowledge_prompt(labels) == (
        "There is atelectasis. There is lung opacity. There is pleural effusion. There is pneumothorax.")


def test_all_knowledge_findings() -> None:
    prompt = knowledge_prompt({f: 1.0 for f in CHEXPERT_FINDINGS})
    assert prompt == " ".join(f"There is {f.lower()}." for f in KNOWLEDGE_FINDINGS)
    assert "no finding" not in prompt and "support devices" not in prompt and "pleural other" not in prompt


@pytest.mark.parametrize("labels", [{}, {"No Finding": 1.0}, {"Cardiomegaly": 0.0}, {"Edema": None},
                                    {"Edema": math.nan}, {"Support Devices": 1.0, "Pleural Other": 1.0}])
def test_no_finding_prompt(labels) -> None:
    assert knowledge_prompt(labels) == NO_FINDING_PROMPT == "There is no finding."


def test_uncertain_handling() -> None:
    labels = {"Atelectasis": -1.0, "Pleural Effusion": 1.0, "Pneumonia": -1.0}
    assert knowledge_prompt(labels) == "There is pleural effusion."
    assert knowledge_prompt(labels, uncertain_as_positive=True) == (
        "There is atelectasis. There is pleural effusion. There is pneumonia.")
    assert knowledge_prompt({"Edema": -1.0}) == NO_FINDING_PROMPT


def test_prompt_from_labeler() -> None:
    res = label_report("Moderate right pleural effusion. No pneumothorax. Possible left basilar atelectasis.")
    assert knowledge_prompt(res.labels) == "There is pleural effusion."
    assert knowledge_prompt(res.labels, uncertain_as_positive=True) == "There is atelectasis. There is pleural effusion."


def test_parse_overrides_names_are_forgiving() -> None:
    assert parse_label_overrides("Pleural Effusion=1,cardiomegaly=0") == {"Pleural Effusion": 1.0, "Cardiomegaly": 0.0}
    assert parse_label_overrides(" pleural_effusion = -1 , LUNG-OPACITY=1, edema= ") == {
        "Pleural Effusion": -1.0, "Lung Opacity": 1.0, "Edema": None}
    assert parse_label_overrides("") == {}
    assert canonical_finding("enlargedcardiomediastinum") == "Enlarged Cardiomediastinum"


@pytest.mark.parametrize("spec,fragment", [
    ("Effusion=1", "valid findings: Atelectasis"),
    ("Pleural Effusion", "FINDING=VALUE"),
    ("Pleural Effusion=2", "1, 0, -1 or blank"),
])
def test_parse_overrides_errors(spec: str, fragment: str) -> None:
    with pytest.raises(ReportError, match=fragment.replace("(", r"\(")):
        parse_label_overrides(spec)


def test_apply_overrides_returns_new_dict() -> None:
    labels = label_report("Small left pleural effusion.").labels
    out = apply_overrides(labels, parse_label_overrides("Pleural Effusion=0,Cardiomegaly=1"))
    assert labels["Pleural Effusion"] == 1.0 and labels["Cardiomegaly"] is None  # unchanged
    assert out["Pleural Effusion"] == 0.0 and out["Cardiomegaly"] == 1.0
    assert knowledge_prompt(out) == "There is cardiomegaly."
    assert apply_overrides(labels, {"cardiomegaly": 1.0})["Cardiomegaly"] == 1.0
    with pytest.raises(ReportError):
        apply_overrides(labels, {"Heart Attack": 1.0})


def test_override_values_are_normalised() -> None:
    out = apply_overrides({}, {"Edema": 1, "Pneumonia": "-1", "Fracture": math.nan, "Atelectasis": "u", "Lung Opacity": 0})
    assert out == {"Edema": 1.0, "Pneumonia": -1.0, "Fracture": None, "Atelectasis": -1.0, "Lung Opacity": 0.0}
    assert all(isinstance(v, float) for v in out.values() if v is not None)
    for bad in (2, "maybe", [1]):
        with pytest.raises(ReportError, match="not 1, 0, -1 or blank"):
            apply_overrides({}, {"Edema": bad})


def test_label_reports_batch() -> None:
    from diffcxr.knowledge import label_reports

    results = label_reports(["Mild cardiomegaly.", "", "No effusion."])
    assert [r.labels["Cardiomegaly"] for r in results] == [1.0, None, None]
    assert results[1].warnings and results[2].labels["Pleural Effusion"] == 0.0
