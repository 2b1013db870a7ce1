"""``diffcxr label`` in-process: single text, files, formats, overrides and bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from diffcxr.cli.main import main
from diffcxr.findings import CHEXPERT_FINDINGS

REPORT = "Moderate right pleural effusion. No pneumothorax. Possible left basilar atelectasis."


def _jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_single_text(capsys) -> None:
    assert main(["label", REPORT]) == 0
    rows = _jsonl(capsys.readouterr().out)
    assert len(rows) == 1
    row = rows[0]
    assert set(row) >= {"id", "report", "labels", "evidence", "knowledge_prompt"}
    assert row["labels"]["Pleural Effusion"] == 1.0 and row["labels"]["Pneumothorax"] == 0.0
    assert row["labels"]["Atelectasis"] == -1.0 and row["labels"]["Cardiomegaly"] is None
    assert row["knowledge_prompt"] == "There is pleural effusion."
    for ev in row["evidence"]:
        assert REPORT[ev["start"]:ev["end"]] == ev["text"]


def test_uncertain_as_positive_and_overrides(capsys) -> None:
    assert main(["label", REPORT, "--uncertain-as-positive", "--labels", "cardiomegaly=1,Pleural Effusion=0"]) == 0
    row = _jsonl(capsys.readouterr().out)[0]
    assert row["labels"]["Cardiomegaly"] == 1.0 and row["labels"]["Pleural Effusion"] == 0.0
    assert row["knowledge_prompt"] == "There is atelectasis. There is cardiomegaly."


def test_sides_name_the_side_in_the_prompt_jsonl_and_csv(tmp_path: Path, capsys) -> None:
    report = "Small left pleural effusion. Right basilar atelectasis."
    assert main(["label", report]) == 0
    plain = _jsonl(capsys.readouterr().out)[0]
    assert plain["knowledge_prompt"] == "There is atelectasis. There is pleural effusion."
    assert main(["label", report, "--sides"]) == 0
    row = _jsonl(capsys.readouterr().out)[0]
    assert row["sides"] == {"Atelectasis": "right", "Pleural Effusion": "left"}
    assert row["knowledge_prompt"] == "There is right atelectasis. There is left pleural effusion."
    reports = tmp_path / "r.txt"
    reports.write_text(report + "\nNo acute disease.\n")
    assert main(["label", "--input", str(reports), "--sides", "--out", str(tmp_path / "l.csv")]) == 0
    with open(tmp_path / "l.csv", newline="") as handle:
        prompts = [r["knowledge_prompt"] for r in csv.DictReader(handle)]
    assert prompts == [row["knowledge_prompt"], "There is no finding."]


def test_unknown_override_is_one_error_line(capsys) -> None:
    assert main(["label", REPORT, "--labels", "Heart Attack=1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("diffcxr: error: unknown finding 'Heart Attack'")
    assert "Pleural Effusion" in err[0]


@pytest.mark.parametrize("argv,message", [
    (["label", ""], "report is empty"),
    (["label", "   "], "report is empty"),
    (["label"], "no report given"),
    (["label", "x", "--input", "y.txt"], "not both"),
    (["label", "--input", "/nonexistent/reports.txt"], "reports file not found"),
])
def test_bad_input_is_one_error_line(capsys, argv, message) -> None:
    assert main(argv) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("diffcxr: error: ") and message in lines[0]
    assert captured.out == ""


def test_txt_input_to_jsonl_file(tmp_path: Path, capsys) -> None:
    src = tmp_path / "reports.txt"
    src.write_text("Mild cardiomegaly.\n\nNo acute cardiopulmonary process.\nSmall left pneumothorax.\n")
    out = tmp_path / "out" / "labels.jsonl"
    assert main(["label", "--input", str(src), "--out", str(out)]) == 0
    rows = _jsonl(out.read_text())
    assert [r["id"] for r in rows] == ["1", "3", "4"]  # blank line skipped, ids are line numbers
    assert rows[0]["knowledge_prompt"] == "There is cardiomegaly."
    assert rows[1]["knowledge_prompt"] == "There is no finding." and rows[1]["labels"]["No Finding"] == 1.0
    assert rows[2]["labels"]["Pneumothorax"] == 1.0
    assert "wrote 3" in capsys.readouterr().err


def test_jsonl_input_to_csv(tmp_path: Path, capsys) -> None:
    src = tmp_path / "reports.jsonl"
    src.write_text(json.dumps({"id": "a", "report": "Right lower lobe pneumonia."}) + "\n"
                   + json.dumps({"report": "No effusion. Borderline cardiomegaly."}) + "\n")
    assert main(["label", "--input", str(src), "--format", "csv"]) == 0
    rows = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    assert list(rows[0])[:2] == ["id", "Reports"] and list(rows[0])[2:16] == list(CHEXPERT_FINDINGS)
    assert rows[0]["id"] == "a" and rows[0]["Pneumonia"] == "1" and rows[0]["Edema"] == ""
    assert rows[1]["id"] == "2" and rows[1]["Pleural Effusion"] == "0" and rows[1]["Cardiomegaly"] == "-1"
    assert rows[0]["knowledge_prompt"] == "There is pneumonia."


def test_csv_input_csv_output_by_suffix(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    with src.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "report"])
        writer.writerow(["s1", "Large left pleural effusion, with adjacent atelectasis."])
        writer.writerow(["s2", ""])
    out = tmp_path / "labels.csv"
    assert main(["label", "--input", str(src), "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert [r["id"] for r in rows] == ["s1", "s2"]
    assert rows[0]["Pleural Effusion"] == "1" and rows[0]["Atelectasis"] == "1"
    assert all(rows[1][f] == "" for f in CHEXPERT_FINDINGS)  # empty report: nothing labeled, no crash


def test_bad_files(tmp_path: Path, capsys) -> None:
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text('{"report": "ok"}\n{not json\n')
    assert main(["label", "--input", str(bad_json)]) == 1
    assert "bad.jsonl:2: not valid JSON" in capsys.readouterr().err
    no_col = tmp_path / "nocol.csv"
    no_col.write_text("text\nhello\n")
    assert main(["label", "--input", str(no_col)]) == 1
    assert "no report column" in capsys.readouterr().err
    odd = tmp_path / "reports.xlsx"
    odd.write_text("x")
    assert main(["label", "--input", str(odd)]) == 1
    assert "unsupported reports file type" in capsys.readouterr().err
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    assert main(["label", "--input", str(empty)]) == 1
    assert "no reports found" in capsys.readouterr().err


def test_unknown_dataset_spec(capsys) -> None:
    assert main(["label", "--input", "nosuchsource:/tmp/x"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("diffcxr: error: ")


def test_report_over_the_length_limit_is_one_error_line(tmp_path, capsys) -> None:
    text = "Small right pleural effusion. " * 4_000  # 120 kB: over the one limit every command shares
    assert main(["label", text]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "120,000 characters (limit 100,000)" in captured.err
    assert len(captured.err.strip().splitlines()) == 1
    src = tmp_path / "reports.jsonl"  # in a file: named by its id, and no partial --out is left behind
    src.write_text(json.dumps({"id": "ok", "report": "No effusion."}) + "\n" + json.dumps({"id": "big", "report": text}))
    assert main(["label", "--input", str(src), "--out", str(tmp_path / "labels.jsonl")]) == 1
    assert "report #big has 120,000 characters" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reports.jsonl"]


def test_non_utf8_reports_file_is_one_error_line(tmp_path, capsys) -> None:
    src = tmp_path / "reports.txt"
    src.write_bytes("Épanchement pleural.\n".encode("latin-1"))
    assert main(["label", "--input", str(src)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "is not UTF-8 text" in captured.err and len(captured.err.strip().splitlines()) == 1


def test_stdin_input(monkeypatch, capsys) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("Mild cardiomegaly.\nNo acute process.\n"))
    assert main(["label", "--input", "-", "--format", "csv"]) == 0
    rows = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    assert [r["Cardiomegaly"] for r in rows] == ["1", ""] and rows[1]["No Finding"] == "1"


def test_label_out_never_replaces_a_device_fifo_or_link(tmp_path, capsys):
    """--out is written to a temporary file and moved into place; a target that is not a regular file is
    refused with one line (run as root, the old rename turned /dev/full into a regular file)."""
    import os


    fifo, link = tmp_path / "fifo", tmp_path / "link.jsonl"
    os.mkfifo(fifo)
    link.symlink_to(tmp_path / "elsewhere.jsonl")
    for target in (fifo, link):
        assert main(["label", "No acute disease.", "--out", str(target)]) == 1
        err = capsys.readouterr().err
        assert err.startswith("diffcxr: error:") and "not a regular file" in err and len(err.strip().splitlines()) == 1
    assert fifo.exists() and not fifo.is_file() and link.is_symlink() and not (tmp_path / "elsewhere.jsonl").exists()
    assert main(["label", "No acute disease.", "--out", str(tmp_path / "ok.jsonl")]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo", "link.jsonl", "ok.jsonl"]
