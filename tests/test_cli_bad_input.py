"""A table of bad inputs through ``main(argv)``: each exits 1 with one ``diffcxr: error:`` line on stderr and
leaves the files it was pointed at unchanged."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from diffcxr.cli.main import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def bad_files(tmp_path):
    (tmp_path / "existing.txt").write_text("keep me")
    (tmp_path / "latin1.txt").write_bytes("Épanchement pleural.\n".encode("latin-1"))
    (tmp_path / "latin1.yaml").write_bytes("name: caf\xe9\n".encode("latin-1"))
    (tmp_path / "nan.yaml").write_text("extends: tiny\nimage_size: -64\n")
    (tmp_path / "model").mkdir()
    return tmp_path


def _cases(d):
    return [
        # usage errors: numbers checked where they are parsed
        ["phantom", "--n", "2", "--seed", "-1", "--out", f"{d}/ph"],
        ["phantom", "--n", "0", "--out", f"{d}/ph"],
        ["phantom", "--n", "2", "--noise-fraction", "nan", "--out", f"{d}/ph"],
        ["generate", "x", "--model", f"{d}/model", "--out", f"{d}/g", "--guidance", "nan"],
        ["generate", "x", "--model", f"{d}/model", "--out", f"{d}/g", "--adapter-scale", "inf"],
        ["generate", "x", "--model", f"{d}/model", "--out", f"{d}/g", "--steps", "0"],
        ["evaluate", "--real", "phantom:x", "--generated", "y", "--out", f"{d}/e", "--memorization-threshold", "nan"],
        ["downstream", "--real", "phantom:x", "--out", f"{d}/ds", "--lr", "nan"],
        ["data", "show", "phantom:x", "--size", "0", "--out", f"{d}/s.png"],
        ["flops", "--config", "paper", "--steps", "-3"],
        ["nonexistent-command"],
        ["generate", "x"],  # required options missing
        # config values: finite, in range, UTF-8
        ["train", "vae", "-c", "tiny", "--data", "phantom:x", "--output-dir", f"{d}/t", "vae.lr=.nan"],
        ["train", "vae", "-c", "tiny", "--data", "phantom:x", "--output-dir", f"{d}/t", "seed=-1"],
        ["train", "vae", "-c", f"{d}/latin1.yaml", "--data", "phantom:x", "--output-dir", f"{d}/t"],
        ["flops", "--config", f"{d}/nan.yaml"],
        # inputs
        ["generate", "--input", f"{d}/latin1.txt", "--model", f"{d}/model", "--out", f"{d}/g"],
        ["label", "--input", f"{d}/missing.txt"],
        ["generate", "x", "--model", str(ROOT / "tests" / "fixtures" / "tiny_pipeline"), "--out", f"{d}/g", "--device", "bogus"],
        ["demo", "-c", "nope", "--out", f"{d}/demo"],  # refused before any phantom is written
        ["demo", "--size", "32", "--out", f"{d}/demo"],  # the config's image size is 64
        ["data", "info", f"csv:{d}/model"],
    ]


@pytest.mark.parametrize("index", range(22))
def test_bad_input_is_one_line_and_exit_1(bad_files, capsys, index):
    argv = _cases(bad_files)[index]
    before = {p.name: p.read_bytes() for p in bad_files.iterdir() if p.is_file()}
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 1, (argv, err)
    assert err.startswith("diffcxr: error:") and len(err.splitlines()) == 1, (argv, err)
    assert "Traceback" not in err
    after = {p.name: p.read_bytes() for p in bad_files.iterdir() if p.is_file()}
    assert after == before
    assert sorted(os.listdir(bad_files)) == sorted(["existing.txt", "latin1.txt", "latin1.yaml", "nan.yaml", "model"])


def test_the_case_table_is_complete(bad_files):
    assert len(_cases(bad_files)) == 22


def test_verbose_keeps_the_traceback(bad_files):
    from diffcxr.errors import DiffCXRError

    with pytest.raises(DiffCXRError):
        main(["-v", "phantom", "--n", "2", "--seed", "-1", "--out", str(bad_files / "ph")])
