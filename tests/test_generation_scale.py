"""Synthetic datasets at scale: ``diffcxr generate`` sharded over 2 accelerate (gloo) processes writes the same bytes
as 1 process, and a stopped or killed run continues with ``--resume`` to the same files."""

from __future__ import annotations

import csv
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _launch import ENV, two_processes

MODEL = Path(__file__).resolve().parent / "fixtures" / "tiny_pipeline"


def _reports(path: Path, n: int) -> Path:
    texts = ["Large left pleural effusion.", "Normal chest.", "Moderate cardiomegaly.", "Right pneumothorax."]
    path.write_text("".join(json.dumps({"id": f"r{i}", "report": texts[i % 4]}) + "\n" for i in range(n)))
    return path


def _generate(reports: Path, out: Path, *extra: str, launcher: list[str] | None = None, check: bool = True):
    argv = [*(launcher or [sys.executable]), "-m", "diffcxr", "generate", "--input", str(reports), "--model",
            str(MODEL), "--out", str(out), "--n", "2", "--batch-size", "3", "--steps", "2", "--quiet", *extra]
    proc = subprocess.run(argv, env=ENV, capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and p.name != "generate_run.yaml"}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One process, 5 reports x 2 images in batches of 3 (4 batches, the last one short)."""
    root = tmp_path_factory.mktemp("generation")
    reports = _reports(root / "reports.jsonl", 5)
    _generate(reports, root / "one")
    return reports, root / "one"


def test_index_lists_every_image_in_job_order(reference):
    _, one = reference
    rows = list(csv.DictReader((one / "generated.csv").open()))
    assert [r["img_savename"] for r in rows] == [f"r{i}_{k:02d}.png" for i in range(5) for k in range(2)]
    assert [int(r["seed"]) for r in rows] == list(range(10))
    assert not list(one.glob("index.rank*"))  # the per-process parts are merged away


def test_two_processes_write_the_same_bytes_as_one(reference, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this test is the CPU/gloo variant")
    reports, one = reference
    proc = _generate(reports, tmp_path / "two", launcher=two_processes())
    assert _files(tmp_path / "two") == _files(one)
    assert "by process 1 of 2" not in proc.stdout  # --quiet


def test_resume_writes_only_what_is_missing_and_refuses_other_settings(reference, tmp_path, capsys):
    from diffcxr.cli.main import main

    reports, one = reference
    out = tmp_path / "resumed"
    shutil.copytree(one, out)
    (out / "r1_00.png").unlink()                                   # an image lost
    (out / "r3_01.json").unlink()                                  # a sidecar never written
    (out / "r4_00.png").write_bytes((out / "r4_00.png").read_bytes()[:40])  # a damaged image
    (out / "generated.csv").unlink()
    argv = ["generate", "--input", str(reports), "--model", str(MODEL), "--out", str(out), "--n", "2",
            "--batch-size", "3", "--steps", "2"]
    assert main(argv) == 1 and "continue that run with --resume" in capsys.readouterr().err
    assert main([*argv, "--resume", "--guidance", "3"]) == 1
    assert "other settings (differs in guidance)" in capsys.readouterr().err
    assert main([*argv, "--resume"]) == 0
    said = capsys.readouterr().out
    assert "wrote 3 images" in said and "7 already there" in said
    assert _files(out) == _files(one)


def test_a_killed_run_continues_to_the_same_files(tmp_path):
    reports = _reports(tmp_path / "many.jsonl", 60)
    reference = tmp_path / "reference"
    _generate(reports, reference)
    out = tmp_path / "killed"
    argv = [sys.executable, "-m", "diffcxr", "generate", "--input", str(reports), "--model", str(MODEL), "--out",
            str(out), "--n", "2", "--batch-size", "3", "--steps", "2", "--quiet"]
    proc = subprocess.Popen(argv, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(list(out.glob("*.json"))) < 12 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list(out.glob("*.json")))
    assert proc.returncode == -signal.SIGKILL and 12 <= done < 120, done  # stopped part-way
    _generate(reports, out, "--resume")
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]  # a half-written file of the kill is gone
    assert _files(out) == _files(reference)
