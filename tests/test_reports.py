"""Report text: de-identification cleaning, section extraction and the findings+impression policy."""

from __future__ import annotations

import pytest

from diffcxr.data.iu_reports import parse_iu_xml
from diffcxr.data.reports import clean_report_text, compose_report, extract_sections, report_from_text
from diffcxr.errors import DatasetError


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Normal chest x-XXXX.", "Normal chest x-ray."),
        ("There are no XXXX of a pleural effusion.", "There are no of a pleural effusion."),
        ("No pneumothorax.XXXX. Heart normal.", "No pneumothorax. Heart normal."),
        ("XXXX.No acute disease.", "No acute disease."),
        ("Compared to ___ , no   change .", "Compared to, no change."),
        ("  \n\t ", ""),
    ],
)
def test_clean_report_text(raw, clean):
    assert clean_report_text(raw) == clean


MIMIC_REPORT = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PORTABLE AP)

 INDICATION:  ___F with dyspnea

 COMPARISON:  ___

 FINDINGS:
 Heart size is mildly enlarged.  There is a small right pleural effusion.

 IMPRESSION:
 1. Mild cardiomegaly.
 2. Small right effusion.
"""


def test_mimic_sections_and_policy():
    sections = extract_sections(MIMIC_REPORT)
    # "FINAL REPORT" is a header now, not a preamble
    assert set(sections) == {"examination", "indication", "comparison", "findings", "impression"}
    assert report_from_text(MIMIC_REPORT) == (
        "Heart size is mildly enlarged. There is a small right pleural effusion. 1. Mild cardiomegaly. 2. Small right effusion."
    )


def test_policy_fallbacks():
    assert compose_report({"impression": "No acute process"}) == "No acute process."
    assert compose_report({"indication": "cough", "preamble": "Lungs clear."}) == "Lungs clear."
    assert compose_report({"indication": "cough", "preamble": "Lungs clear."}, fallback="none") == ""
    assert report_from_text("Bilateral opacities in a febrile patient.") == "Bilateral opacities in a febrile patient."


def test_iu_xml_parse_and_errors():
    xml = """<eCitation><uId id="CXR7"/><AbstractText Label="FINDINGS">Clear lungs.</AbstractText>
    <AbstractText Label="IMPRESSION">No XXXX disease.</AbstractText><MeSH><major>normal</major><minor>x</minor></MeSH>
    <parentImage id="CXR7_IM-1"/></eCitation>"""
    report = parse_iu_xml(xml)
    assert (report.uid, report.mesh_major, report.mesh_minor, report.image_ids) == ("CXR7", ("normal",), ("x",), ("CXR7_IM-1",))
    assert report.report == "Clear lungs. No disease."
    with pytest.raises(DatasetError, match="bad.xml"):
        parse_iu_xml("<eCitation>", "bad.xml")
