"""Phantom datasets on disk and the ``diffcxr phantom`` command."""

from __future__ import annotations

import csv
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from diffcxr.cli.main import main
from diffcxr.data.phantom import NOISE_TYPES, make_phantom_dataset, noise_assignment, sample_case
from diffcxr.errors import DiffCXRError
from diffcxr.findings import CHEXPERT_FINDINGS


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("phantoms")
    csv_path = make_phantom_dataset(20, 64, out, noise_fraction=0.5, seed=3, progress=False)
    return out, read_rows(csv_path)


def test_dataset_files_and_columns(dataset):
    out, rows = dataset
    assert len(rows) == 20
    for col in ("id", "path", "report", "patient_id", "view", "split", "is_noise", "noise_type", "severity", *CHEXPERT_FINDINGS):
        assert col in rows[0]
    for r in rows:
        im = Image.open(out / r["path"])
        assert im.mode == "L" and im.size == (64, 64)
        assert all(r[n] in ("", "1", "0", "-1") for n in CHEXPERT_FINDINGS)
        assert r["report"].startswith("FINDINGS:")
        assert r["split"] in ("train", "val", "test") and r["view"] in ("PA", "AP")
    assert len({r["id"] for r in rows}) == 20


def test_noise_columns_and_fraction(dataset):
    _, rows = dataset
    noisy = [r for r in rows if r["is_noise"] == "1"]
    assert len(noisy) == 10
    assert all(r["noise_type"] in NOISE_TYPES for r in noisy)
    assert len({r["noise_type"] for r in noisy}) == 10  # 10 noisy samples: every type once
    assert all(r["noise_type"] == "" for r in rows if r["is_noise"] == "0")


def test_noise_assignment_is_exact_and_balanced():
    types = noise_assignment(1000, 0.2, seed=1)
    counts = Counter(t for t in types if t)
    assert sum(counts.values()) == 200 and set(counts) == set(NOISE_TYPES)
    assert max(counts.values()) - min(counts.values()) <= 1
    assert noise_assignment(50, 0.0, seed=1) == [""] * 50
    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(DiffCXRError):
            noise_assignment(10, bad, seed=1)


def test_mismatched_report_pairs_another_report(dataset):
    _, rows = dataset
    r = next(r for r in rows if r["noise_type"] == "mismatched_report")
    i = int(r["id"][2:])
    own = sample_case(3, index=i)
    assert r["report"] != own.report
    assert r["image_findings"] == ";".join(f.describe() for f in own.findings)


def test_dataset_is_deterministic(tmp_path, dataset):
    out, rows = dataset
    again = read_rows(make_phantom_dataset(20, 64, tmp_path / "b", noise_fraction=0.5, seed=3, progress=False))
    assert again == rows
    for r in rows[:5]:
        a = np.asarray(Image.open(out / r["path"]))
        b = np.asarray(Image.open(tmp_path / "b" / r["path"]))
        np.testing.assert_array_equal(a, b)


def test_output_folder_rules(tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(DiffCXRError, match="not empty"):
        make_phantom_dataset(2, 32, other, progress=False)
    make_phantom_dataset(2, 32, other, progress=False, overwrite=True)
    assert (other / "notes.txt").read_text() == "mine"
    # a previous phantom folder is replaced without --overwrite, stale images removed
    ph = tmp_path / "ph"
    make_phantom_dataset(4, 32, ph, progress=False)
    make_phantom_dataset(2, 32, ph, progress=False)
    assert len(list((ph / "images").glob("*.png"))) == 2 and len(read_rows(ph / "metadata.csv")) == 2


def test_cli_writes_images_and_csv(tmp_path, capsys):
    out = tmp_path / "cli"
    rc = main(["phantom", "--n", "6", "--size", "64", "--noise-fraction", "0.3", "--seed", "2", "--out", str(out), "--no-progress"])
    assert rc == 0
    rows = read_rows(out / "metadata.csv")
    assert len(rows) == 6 and sum(r["is_noise"] == "1" for r in rows) == 2
    assert len(list((out / "images").glob("*.png"))) == 6
    assert "wrote 6 phantoms" in capsys.readouterr().out


@pytest.mark.parametrize("args,message", [
    (["--n", "0"], "--n: '0' must be >= 1"),
    (["--n", "2", "--size", "16"], "between 32 and 1024"),
    (["--n", "2", "--size", "2048"], "between 32 and 1024"),
    (["--n", "2", "--noise-fraction", "1"], "noise fraction"),
    (["--n", "2", "--noise-fraction", "-0.5"], "must be between 0 and 1"),
])
def test_cli_bad_arguments_exit_1_with_one_line(tmp_path, capsys, args, message):
    rc = main(["phantom", *args, "--out", str(tmp_path / "x"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.count("\n") == 1 and err.startswith("diffcxr: error:") and message in err
    assert not (tmp_path / "x" / "metadata.csv").exists()


def test_cli_refuses_foreign_non_empty_folder(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("x")
    assert main(["phantom", "--n", "2", "--size", "32", "--out", str(tmp_path), "--no-progress"]) == 1
    assert "--overwrite" in capsys.readouterr().err


def test_phantom_folder_reads_with_the_csv_source(dataset):
    out, rows = dataset
    sources = pytest.importorskip("diffcxr.data.sources")
    records = sources.read_phantom(out) if hasattr(sources, "read_phantom") else None
    if records is None:
        pytest.skip("data layer has no phantom reader")
    assert len(records) == len(rows)


def test_an_interrupted_run_leaves_the_previous_dataset_intact(tmp_path, monkeypatch):
    from diffcxr.data.phantom import generator

    out = tmp_path / "ph"
    generator.make_phantom_dataset(4, 32, out, seed=0, progress=False)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    calls = {"n": 0}
    real = generator.render_phantom

    def interrupted(case, size):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(case, size)

    monkeypatch.setattr(generator, "render_phantom", interrupted)
    with pytest.raises(KeyboardInterrupt):
        generator.make_phantom_dataset(6, 32, out, seed=1, progress=False)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ph"]  # no staging folder left behind
    monkeypatch.setattr(generator, "render_phantom", real)
    generator.make_phantom_dataset(6, 32, out, seed=1, progress=False)
    assert len(list((out / "images").glob("*.png"))) == 6 and len(read_rows(out / "metadata.csv")) == 6
