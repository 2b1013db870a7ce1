"""Dataset sources on fake MIMIC / IU / COVID / CSV trees written here, plus the real data in ../shared."""

from __future__ import annotations

import csv
import gzip
import json
import math
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from diffcxr.data import CXRDataset, parse_spec, patient_split, read_records
from diffcxr.errors import DatasetError, ImageReadError
from diffcxr.findings import CHEXPERT_FINDINGS

FINDING = {name: i for i, name in enumerate(CHEXPERT_FINDINGS)}


def write_png(path, size=(48, 40), value=128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(abs(hash(path.name)) % 2**32)
    Image.fromarray(np.clip(rng.normal(value, 30, size[::-1]), 0, 255).astype(np.uint8)).save(path)


def write_csv(path, rows: list[dict], gz: bool = False) -> None:
    opener = gzip.open if gz else open
    with opener(path, "wt", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


# --------------------------------------------------------------------------------------------------------
# MIMIC-CXR-JPG
# --------------------------------------------------------------------------------------------------------
@pytest.fixture
def mimic_root(tmp_path):
    root = tmp_path / "mimic"
    studies = [  # subject, study, dicom ids + views, split, report, chexpert row
        ("10000032", "50414267", [("d1", "PA"), ("d2", "LATERAL")], "train",
         "FINAL REPORT\n EXAMINATION: CHEST (PA AND LAT)\n INDICATION: ___ with cough\n FINDINGS: Small left pleural effusion.\n"
         " No pneumothorax.\n IMPRESSION: Small left effusion.", {"Pleural Effusion": "1.0", "Pneumothorax": "0.0"}),
        ("10000032", "53189527", [("d3", "AP")], "train",
         "FINDINGS: Lungs are clear.\nIMPRESSION: No acute process.", {"No Finding": "1.0"}),
        ("10000764", "57375967", [("d4", "PA")], "validate",
         "IMPRESSION: Possible mild edema.", {"Edema": "-1.0"}),
        ("11000011", "51234567", [("d5", "AP")], "test", None, {"Cardiomegaly": "1.0"}),
    ]
    metadata, chexpert, split = [], [], []
    for subject, study, images, split_name, report, labels in studies:
        folder = root / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}"
        for dicom_id, view in images:
            write_png(folder / f"{dicom_id}.jpg".replace(".jpg", ".png"))  # placeholder, renamed below
            (folder / f"{dicom_id}.png").rename(folder / f"{dicom_id}.jpg")
            metadata.append({"dicom_id": dicom_id, "subject_id": subject, "study_id": study, "ViewPosition": view})
            split.append({"dicom_id": dicom_id, "study_id": study, "subject_id": subject, "split": split_name})
        if report is not None:
            (folder.parent / f"s{study}.txt").write_text(report)
        chexpert.append({"subject_id": subject, "study_id": study, **{n: labels.get(n, "") for n in CHEXPERT_FINDINGS}})
    write_csv(root / "mimic-cxr-2.0.0-metadata.csv.gz", metadata, gz=True)
    write_csv(root / "mimic-cxr-2.0.0-chexpert.csv.gz", chexpert, gz=True)
    write_csv(root / "mimic-cxr-2.0.0-split.csv", split)
    return root


def test_mimic_records_labels_splits_reports(mimic_root):
    records = {r.id: r for r in read_records(f"mimic:{mimic_root}", derive_labels=False)}
    assert set(records) == {"d1", "d2", "d3", "d4", "d5"}
    d1 = records["d1"]
    assert d1.report == "Small left pleural effusion. No pneumothorax. Small left effusion."  # no indication/exam
    assert d1.labels[FINDING["Pleural Effusion"]] == 1 and d1.labels[FINDING["Pneumothorax"]] == 0
    assert math.isnan(d1.labels[FINDING["Cardiomegaly"]])
    assert records["d4"].labels[FINDING["Edema"]] == -1  # uncertain kept distinguishable
    assert records["d4"].split == "val" and records["d5"].split == "test"
    assert records["d5"].report == ""
    assert d1.patient_id == "10000032" and d1.view == "PA" and d1.image_path.is_file()
    assert d1.labels_source == "dataset"


def test_mimic_frontal_filter_and_split(mimic_root):
    frontal = read_records(f"mimic:{mimic_root}", frontal_only=True, derive_labels=False)
    assert {r.id for r in frontal} == {"d1", "d3", "d4", "d5"}
    train = read_records(f"mimic:{mimic_root}", split="train", derive_labels=False)
    assert {r.id for r in train} == {"d1", "d2", "d3"}


def test_mimic_dataset_items(mimic_root):
    dataset = CXRDataset.from_spec(f"mimic:{mimic_root}", image_size=32, frontal_only=True)
    item = dataset[0]
    assert item["pixel_values"].shape == (1, 32, 32)
    assert -1 <= item["pixel_values"].min() and item["pixel_values"].max() <= 1
    assert item["labels"].shape == (14,) and item["labels"].dtype == torch.float32
    assert set(item) == {"pixel_values", "report", "labels", "id", "patient_id", "view", "split"}
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=4)))
    assert batch["pixel_values"].shape == (4, 1, 32, 32)


def test_mimic_missing_metadata_is_clear(tmp_path):
    (tmp_path / "files").mkdir()
    with pytest.raises(DatasetError, match="metadata.csv"):
        read_records(f"mimic:{tmp_path}")


# --------------------------------------------------------------------------------------------------------
# IU-Xray
# --------------------------------------------------------------------------------------------------------
IU_XML = """<?xml version="1.0" encoding="utf-8"?>
<eCitation><uId id="CXR{n}"/><MedlineCitation><Article><Abstract>
<AbstractText Label="COMPARISON">None.</AbstractText>
<AbstractText Label="INDICATION">XXXX-year-old with cough</AbstractText>
<AbstractText Label="FINDINGS">{findings}</AbstractText>
<AbstractText Label="IMPRESSION">{impression}</AbstractText>
</Abstract></Article></MedlineCitation>
<MeSH><major>{mesh}</major></MeSH>
<parentImage id="CXR{n}_IM-000{n}-1001"><caption>Xray Chest PA and Lateral</caption></parentImage>
<parentImage id="CXR{n}_IM-000{n}-2001"><caption>Xray Chest PA and Lateral</caption></parentImage>
</eCitation>"""


@pytest.fixture
def iu_folder(tmp_path):
    root = tmp_path / "iu"
    xml_dir = root / "ecgen-radiology"
    xml_dir.mkdir(parents=True)
    cases = [(1, "The heart is normal in size. No XXXX effusion.", "Normal chest x-XXXX.", "normal"),
             (2, "", "Mild cardiomegaly.", "Cardiomegaly/mild"),
             (3, "", "", "normal")]
    for n, findings, impression, mesh in cases:
        (xml_dir / f"{n}.xml").write_text(IU_XML.format(n=n, findings=findings, impression=impression, mesh=mesh))
        for suffix in ("1001", "2001"):
            write_png(root / "images" / f"CXR{n}_IM-000{n}-{suffix}.png")
    write_csv(root / "nlmcxr_dicom_metadata.csv.gz",
              [{"imageid": f"CXR{n}_IM-000{n}-{s}", "View Position": v}
               for n in (1, 2, 3) for s, v in (("1001", "PA"), ("2001", "LATERAL"))], gz=True)
    with tarfile.open(root / "NLMCXR_reports.tgz", "w:gz") as archive:
        archive.add(xml_dir, arcname="ecgen-radiology")
    return root


@pytest.mark.parametrize("target", ["folder", "xml_dir", "tgz"])
def test_iu_reads_reports_images_and_views(iu_folder, target):
    path = {"folder": iu_folder, "xml_dir": iu_folder / "ecgen-radiology", "tgz": iu_folder / "NLMCXR_reports.tgz"}[target]
    spec = f"iu:{path}?images={iu_folder / 'images'}&metadata={iu_folder / 'nlmcxr_dicom_metadata.csv.gz'}"
    records = {r.id: r for r in read_records(spec, derive_labels=False)}
    assert len(records) == 6
    first = records["CXR1_IM-0001-1001"]
    assert first.report == "The heart is normal in size. No effusion. Normal chest x-ray."  # de-id cleaned
    assert first.view == "PA" and records["CXR1_IM-0001-2001"].view == "LATERAL"
    assert first.image_path.name == "CXR1_IM-0001-1001.png"
    assert records["CXR2_IM-0002-1001"].report == "Mild cardiomegaly."  # impression alone
    assert records["CXR3_IM-0003-1001"].report == ""
    assert first.patient_id == "CXR1" and first.meta["mesh_major"] == "normal"
    frontal = read_records(spec, frontal_only=True, derive_labels=False)
    assert {r.id for r in frontal} == {"CXR1_IM-0001-1001", "CXR2_IM-0002-1001", "CXR3_IM-0003-1001"}


def test_iu_patient_level_split_has_no_leakage(iu_folder):
    records = read_records(f"iu:{iu_folder}", derive_labels=False)
    by_patient = {}
    for record in records:
        by_patient.setdefault(record.patient_id, set()).add(record.split)
    assert all(len(splits) == 1 for splits in by_patient.values())


def test_patient_split_is_deterministic_and_proportional():
    splits = [patient_split(f"patient{i}") for i in range(5000)]
    assert splits == [patient_split(f"patient{i}") for i in range(5000)]
    assert 0.77 < splits.count("train") / 5000 < 0.83
    assert 0.08 < splits.count("test") / 5000 < 0.12


def test_r2gen_annotation(tmp_path):
    annotation = {
        "train": [{"id": "CXR10_IM-0002", "report": "No acute disease.", "image_path": ["CXR10_IM-0002/0.png", "CXR10_IM-0002/1.png"], "split": "train"}],
        "val": [{"id": "CXR11_IM-0003", "report": "Small effusion.", "image_path": ["CXR11_IM-0003/0.png"], "split": "val"}],
        "    ": [{"id": "CXR12_IM-0004", "report": "Clear lungs.", "image_path": ["CXR12_IM-0004/0.png"], "split": "test"}],
    }
    (tmp_path / "annotation.json").write_text(json.dumps(annotation))
    for entries in annotation.values():
        for entry in entries:
            for relative in entry["image_path"]:
                write_png(tmp_path / "images" / relative)
    records = read_records(f"iu:{tmp_path / 'annotation.json'}", derive_labels=False)
    assert [r.split for r in records] == ["train", "train", "val", "test"]
    assert records[0].id == "CXR10_IM-0002/0" and records[0].patient_id == "CXR10_IM-0002"
    dataset = CXRDataset(records, 16)
    assert dataset[3]["report"] == "Clear lungs." and dataset[3]["pixel_values"].shape == (1, 16, 16)


def test_iu_without_images_cannot_make_a_dataset(iu_folder, tmp_path):
    alone = tmp_path / "reports_only"
    alone.mkdir()
    (iu_folder / "NLMCXR_reports.tgz").rename(alone / "NLMCXR_reports.tgz")
    records = read_records(f"iu:{alone / 'NLMCXR_reports.tgz'}", derive_labels=False)
    assert len(records) == 6 and all(r.image_path is None for r in records)
    assert read_records(f"iu:{alone}", derive_labels=False, require_images=True) == []
    with pytest.raises(DatasetError, match="no image"):
        CXRDataset(records, 16)


# --------------------------------------------------------------------------------------------------------
# COVID and CSV
# --------------------------------------------------------------------------------------------------------
def test_covid_duplicates_views_and_finding_labels(tmp_path):
    rows = [
        {"patientid": "1", "finding": "COVID-19", "view": "PA", "modality": "X-ray", "filename": "a.png", "clinical_notes": "Fever.  Bilateral opacities."},
        {"patientid": "1", "finding": "COVID-19", "view": "PA", "modality": "X-ray", "filename": "a.png", "clinical_notes": "Fever. duplicate"},
        {"patientid": "2", "finding": "No Finding", "view": "L", "modality": "X-ray", "filename": "b.png", "clinical_notes": ""},
        {"patientid": "3", "finding": "todo", "view": "AP Supine", "modality": "CT", "filename": "c.png", "clinical_notes": "CT scan"},
    ]
    write_csv(tmp_path / "metadata.csv", rows)
    for name in ("a.png", "b.png", "c.png"):
        write_png(tmp_path / "images" / name)
    records = read_records(f"covid:{tmp_path}", derive_labels=False)
    assert [r.id for r in records] == ["a", "b"]  # duplicate row and the CT row dropped
    assert records[0].report == "Fever. Bilateral opacities."
    assert records[0].labels[FINDING["Pneumonia"]] == 1 and records[1].labels[FINDING["No Finding"]] == 1
    assert records[1].view == "L" and not records[1].is_frontal


def test_csv_manifest_and_phantom_alias(tmp_path):
    rows = [
        {"path": "images/0.png", "report": "Large right effusion.", "id": "p0", "patient_id": "A", "Pleural Effusion": "1", "Cardiomegaly": "0", "is_noise": "0"},
        {"path": "images/1.png", "report": "Normal.", "id": "p1", "patient_id": "B", "Pleural Effusion": "", "Cardiomegaly": "-1", "is_noise": "1"},
    ]
    write_csv(tmp_path / "metadata.csv", rows)
    for row in rows:
        write_png(tmp_path / row["path"])
    for spec in (f"csv:{tmp_path / 'metadata.csv'}", f"phantom:{tmp_path}"):
        records = read_records(spec, derive_labels=False)
        assert [r.id for r in records] == ["p0", "p1"]
        assert records[0].labels[FINDING["Pleural Effusion"]] == 1 and records[0].labels[FINDING["Cardiomegaly"]] == 0
        assert math.isnan(records[1].labels[FINDING["Pleural Effusion"]]) and records[1].labels[FINDING["Cardiomegaly"]] == -1
        assert records[1].meta["is_noise"] == "1" and records[0].labels_source == "dataset"
    bad = tmp_path / "bad.csv"
    write_csv(bad, [{"path": "images/0.png", "report": "x", "Edema": "2"}])
    with pytest.raises(DatasetError, match="Edema"):
        read_records(f"csv:{bad}")


# --------------------------------------------------------------------------------------------------------
# specs, skipping unreadable files
# --------------------------------------------------------------------------------------------------------
def test_spec_errors_are_clear(tmp_path):
    with pytest.raises(DatasetError, match="unknown dataset source 'foo'"):
        parse_spec(f"foo:{tmp_path}")
    with pytest.raises(DatasetError, match="SOURCE:PATH"):
        parse_spec("just-a-path")
    with pytest.raises(DatasetError, match="not found"):
        parse_spec(f"covid:{tmp_path / 'missing'}")
    with pytest.raises(DatasetError, match="unknown option"):
        read_records(f"covid:{tmp_path}?colour=blue")
    assert parse_spec(f"iu:{tmp_path}?images=/x&metadata=/y")[2] == {"images": "/x", "metadata": "/y"}


def test_skip_unreadable_lists_instead_of_crashing(tmp_path):
    rows = [{"path": f"images/{i}.png", "report": f"r{i}", "id": f"i{i}"} for i in range(4)]
    write_csv(tmp_path / "metadata.csv", rows)
    for i in (0, 2, 3):
        write_png(tmp_path / f"images/{i}.png")
    (tmp_path / "images/1.png").write_bytes(b"\x89PNG broken")
    records = read_records(f"csv:{tmp_path}", derive_labels=False)
    strict = CXRDataset(records, 16)
    with pytest.raises(ImageReadError, match="1.png"):
        strict[1]
    lenient = CXRDataset(records, 16, skip_unreadable=True)
    ids = [lenient[i]["id"] for i in range(len(lenient))]
    assert "i1" not in ids and ids[1] == "i2"
    assert list(lenient.skipped) == ["i1"] and "1.png" in lenient.skipped_report()


# --------------------------------------------------------------------------------------------------------
# real data in ../shared (skipped when absent)
# --------------------------------------------------------------------------------------------------------
def test_all_iu_reports_parse(shared_data):
    records = read_records(f"iu:{shared_data / 'iu-xray' / 'NLMCXR_reports.tgz'}", derive_labels=False)
    studies = {r.patient_id for r in records}
    assert len(records) == 7470
    from diffcxr.data.iu_reports import read_iu_reports

    reports = read_iu_reports(shared_data / "iu-xray" / "NLMCXR_reports.tgz")
    assert len(reports) == 3955 and len(studies) == 3955 - sum(1 for r in reports if not r.image_ids)
    assert sum(1 for r in reports if r.report) >= 3900
    assert not any("XXXX" in r.report for r in reports)
    views = {r.view for r in records}
    assert {"PA", "AP", "LL", "UNKNOWN"} <= views


def test_r2gen_real_split_sizes(shared_data):
    records = read_records(f"iu:{shared_data / 'iu-xray' / 'r2gen_annotation.json'}", derive_labels=False)
    studies = {split: {r.patient_id for r in records if r.split == split} for split in ("train", "val", "test")}
    assert {k: len(v) for k, v in studies.items()} == {"train": 2069, "val": 296, "test": 590}


def test_every_covid_image_loads(shared_data):
    records = read_records(f"covid:{shared_data / 'covid-cxr'}", derive_labels=False)
    assert len(records) == 648  # 653 metadata rows, 5 duplicates
    dataset = CXRDataset(records, 64)
    for index in range(len(dataset)):
        pixels = dataset[index]["pixel_values"]
        assert pixels.shape == (1, 64, 64) and torch.isfinite(pixels).all()
    assert sum(1 for r in records if r.view == "L") > 50


def test_builtin_sample_is_generated_once_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFCXR_CACHE", str(tmp_path / "cache"))
    records = read_records("sample:4?size=64&seed=3", derive_labels=False)
    assert len(records) == 4 and all(r.image_path.is_file() for r in records)
    assert all(r.report for r in records) and records[0].labels_source == "dataset"
    first_mtime = records[0].image_path.stat().st_mtime_ns
    again = read_records("sample:4?size=64&seed=3", derive_labels=False)
    assert [r.report for r in again] == [r.report for r in records]
    assert again[0].image_path.stat().st_mtime_ns == first_mtime  # cached, not regenerated
    assert CXRDataset(records, 64)[0]["pixel_values"].shape == (1, 64, 64)
    with pytest.raises(DatasetError, match="integers"):
        read_records("sample:many")


def test_labels_are_derived_from_report_text_where_the_dataset_has_none(iu_folder):
    plain = {r.id: r for r in read_records(f"iu:{iu_folder}")}
    assert plain["CXR2_IM-0002-1001"].labels_source != "labeler"  # reading alone does not run the labeler
    records = {r.id: r for r in read_records(f"iu:{iu_folder}", derive_labels=True)}
    cardiomegaly = records["CXR2_IM-0002-1001"]
    assert cardiomegaly.labels_source == "labeler"
    assert cardiomegaly.labels[FINDING["Cardiomegaly"]] == 1
    assert math.isnan(records["CXR3_IM-0003-1001"].labels[FINDING["Cardiomegaly"]])  # empty report
