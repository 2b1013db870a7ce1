"""Full reports as radiologists write them: only FINDINGS and IMPRESSION become disease knowledge, whether the
report keeps its line breaks or is flattened onto one line."""

from __future__ import annotations

import pytest

from diffcxr.data.reports import find_sections, reading_spans, report_text
from diffcxr.knowledge import knowledge_prompt, label_report

# MIMIC-style reports written for these tests (no real report text)
TRAUMA = """FINAL REPORT
EXAMINATION: CHEST (PA AND LAT)

INDICATION: ___M with trauma, evaluate for pneumothorax.

COMPARISON: ___

FINDINGS:
Small right apical pneumothorax. No pleural effusion.

IMPRESSION:
Small right pneumothorax.
"""
HISTORY_ONLY = """FINAL REPORT
INDICATION: History of pneumothorax, evaluate for interval change.

FINDINGS: The lungs are clear. No pleural effusion. No pneumothorax.

IMPRESSION: No acute cardiopulmonary process.
"""
QUESTION_ONLY = """EXAMINATION: Chest radiograph.
REASON FOR EXAM: ? pneumonia, rule out effusion. s/p CABG, known CHF.
FINDINGS: Lungs are clear. Heart size is normal.
IMPRESSION: No acute process.
"""
WET_AND_FINAL = """WET READ: ___ ___ 2:14 AM
  Possible left lower lobe pneumonia.

FINAL REPORT
EXAMINATION: CHEST (PORTABLE AP)
FINDINGS: Left lower lobe atelectasis. No consolidation to suggest pneumonia.
IMPRESSION: Left basilar atelectasis.
"""
NO_COLONS = """FINAL REPORT
INDICATION
Dyspnea and edema, history of cardiomegaly.
FINDINGS
Moderate left pleural effusion.
IMPRESSION
Left pleural effusion.
"""
LOWER_CASE = "indication: cough, r/o pneumonia.  findings: right lower lobe consolidation.  impression: pneumonia."
SPACED = "CLINICAL   HISTORY: fever, edema?\nFindings :  Mild pulmonary edema.\nImpressions: Edema."


def flat(report: str) -> str:
    """The same report on one line, as CSV exports and prompt files hold it."""
    return " ".join(report.split())


CASES = [
    # report, findings that must be positive, findings that must not be positive, sections read
    (TRAUMA, {"Pneumothorax"}, {"Pleural Effusion"}, ["findings", "impression"]),
    (HISTORY_ONLY, set(), {"Pneumothorax", "Pleural Effusion"}, ["findings", "impression"]),
    (QUESTION_ONLY, set(), {"Pneumonia", "Pleural Effusion", "Edema", "Cardiomegaly", "Support Devices"},
     ["findings", "impression"]),
    (WET_AND_FINAL, {"Atelectasis"}, {"Pneumonia"}, ["findings", "impression"]),
    (NO_COLONS, {"Pleural Effusion"}, {"Edema", "Cardiomegaly"}, ["findings", "impression"]),
    (LOWER_CASE, {"Consolidation", "Pneumonia"}, set(), ["findings", "impression"]),
    (SPACED, {"Edema"}, set(), ["findings", "impression"]),
]


@pytest.mark.parametrize("layout", ["line breaks", "one line"])
@pytest.mark.parametrize(("report", "positive", "not_positive", "sections"), CASES)
def test_knowledge_comes_from_findings_and_impression_only(report, positive, not_positive, sections, layout):
    text = report if layout == "line breaks" else flat(report)
    result = label_report(text)
    got = {f for f, v in result.labels.items() if v == 1.0 and f != "No Finding"}
    assert positive <= got, (positive - got, result.labels)
    assert not (not_positive & got), (not_positive & got, [(e.finding, e.section, e.text) for e in result.evidence])
    assert result.sections == sections
    prompt = knowledge_prompt(result.labels)
    for finding in not_positive:
        assert finding.lower() not in prompt


def test_the_issues_two_one_line_reports():
    trauma = label_report("INDICATION: Trauma. FINDINGS: Small right apical pneumothorax. IMPRESSION: Small right "
                          "pneumothorax.")
    assert trauma.labels["Pneumothorax"] == 1.0 and trauma.labels["No Finding"] is None
    assert knowledge_prompt(trauma.labels) == "There is pneumothorax."
    history = label_report("FINAL REPORT INDICATION: History of pneumothorax, evaluate for interval change. "
                           "FINDINGS: The lungs are clear. No pleural effusion.")
    assert history.labels["Pneumothorax"] is None and history.labels["No Finding"] == 1.0
    assert knowledge_prompt(history.labels) == "There is no finding."


def test_a_report_without_headers_is_read_whole():
    result = label_report("Small left pneumothorax. History of CHF.")
    assert result.sections == ["all"] and result.labels["Pneumothorax"] == 1.0
    assert reading_spans("No acute process.") == [("all", 0, len("No acute process."))]
    assert report_text("  No acute\nprocess. ") == ("No acute process.", ["all"])


def test_final_report_supersedes_the_wet_read():
    names = [s.name for s in find_sections(WET_AND_FINAL)]
    assert "wet_read" not in names and names[0] == "final_report"
    assert label_report(WET_AND_FINAL).labels["Pneumonia"] in (None, 0.0)


@pytest.mark.parametrize("layout", ["line breaks", "one line"])
def test_evidence_points_into_the_original_text_and_its_section(layout):
    text = TRAUMA if layout == "line breaks" else flat(TRAUMA)
    result = label_report(text)
    assert result.evidence
    for e in result.evidence:
        assert text[e.start:e.end] == e.text
        assert e.section in ("findings", "impression")
        assert e.section_start <= e.start < e.end <= e.section_end
        body = text[e.section_start:e.section_end]
        assert "INDICATION" not in body and "FINDINGS" not in body and "IMPRESSION" not in body


def test_report_text_is_what_the_encoder_reads():
    text, names = report_text(flat(TRAUMA))
    assert text == "Small right apical pneumothorax. No pleural effusion. Small right pneumothorax."
    assert names == ["findings", "impression"]
    assert report_text(flat(TRAUMA)) == report_text(TRAUMA)


def test_abbreviations_and_misspellings():
    labels = label_report("FINDINGS: Small left ptx. Cardiomegally. Bilateral effusions. ETT and NGT in place.").labels
    assert (labels["Pneumothorax"], labels["Cardiomegaly"], labels["Pleural Effusion"], labels["Support Devices"]) == (
        1.0, 1.0, 1.0, 1.0)
    assert label_report("IMPRESSION: PTX. CHF.").labels["Pneumothorax"] == 1.0
    assert label_report("IMPRESSION: CHF.").labels["Edema"] == 1.0


def test_clinical_questions_are_not_findings():
    for text in ("? pneumonia.", "Evaluate for pneumonia.", "Rule out pneumonia.", "Concern for pneumonia?"):
        assert label_report(text).labels["Pneumonia"] != 1.0, text
    assert label_report("Pneumonia.").labels["Pneumonia"] == 1.0
    assert label_report("Persistent pneumonia, improving.").labels["Pneumonia"] == 1.0  # resolving is present


def test_pipeline_reads_the_same_sections_and_records_them():
    import torch

    from diffcxr.pipelines import DiffCXRPipeline

    pipe = DiffCXRPipeline.from_model_config("tiny", seed=0, with_adapter=True)
    kwargs = dict(num_inference_steps=2, output_type="pt", progress=False)
    full = pipe(flat(TRAUMA), generator=torch.Generator().manual_seed(0), **kwargs)
    part = pipe("Small right apical pneumothorax. No pleural effusion. Small right pneumothorax.",
                generator=torch.Generator().manual_seed(0), **kwargs)
    assert full.report_sections == [["findings", "impression"]] and part.report_sections == [["all"]]
    assert full.knowledge_prompts == part.knowledge_prompts == ["There is pneumothorax."]
    torch.testing.assert_close(full.images, part.images)  # the indication and comparison change nothing
