"""``diffcxr generate`` and ``diffcxr flops`` against the committed tiny saved pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffcxr.cli.main import main

MODEL = str(Path(__file__).resolve().parent / "fixtures" / "tiny_pipeline")
BASE = ["--model", MODEL, "--steps", "2", "--quiet"]


def test_generate_png_with_sidecars(tmp_path):
    out = tmp_path / "out"
    rc = main(["generate", "Small left pleural effusion.", *BASE, "--n", "2", "--seed", "7", "--out", str(out),
               "--labels", "Cardiomegaly=1"])
    assert rc == 0
    pngs = sorted(out.glob("*.png"))
    assert [p.name for p in pngs] == ["0_00.png", "0_01.png"]
    img = Image.open(pngs[1])
    assert img.mode == "L" and img.size == (16, 16)
    meta = json.loads((out / "0_01.json").read_text())
    assert meta["seed"] == 8 and meta["report"] == "Small left pleural effusion."
    assert meta["knowledge_prompt"] == "There is cardiomegaly. There is pleural effusion."
    assert meta["labels"]["Pleural Effusion"] == 1.0 and meta["settings"]["steps"] == 2
    # the sidecar's seed regenerates that image alone
    again = tmp_path / "again"
    assert main(["generate", "Small left pleural effusion.", *BASE, "--n", "1", "--seed", "8", "--out", str(again),
                 "--labels", "Cardiomegaly=1"]) == 0
    a = np.asarray(Image.open(pngs[1]), dtype=np.int16)
    b = np.asarray(Image.open(again / "0_00.png"), dtype=np.int16)
    assert np.abs(a - b).max() <= 1


def test_generate_from_jsonl_and_dicom(tmp_path):
    reports = tmp_path / "r.jsonl"
    reports.write_text(json.dumps({"id": "s1", "report": "Cardiomegaly."}) + "\n"
                       + json.dumps({"id": "s/2", "report": "Normal chest.", "labels": "Edema=1"}) + "\n")
    out = tmp_path / "o"
    assert main(["generate", "--input", str(reports), *BASE, "--n", "1", "--format", "dcm", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.glob("*.dcm")) == ["s1_00.dcm", "s_2_00.dcm"]
    assert json.loads((out / "s_2_00.json").read_text())["knowledge_prompt"] == "There is edema."
    txt = tmp_path / "r.txt"
    txt.write_text("Cardiomegaly.\n\nNo acute disease.\n")
    assert main(["generate", "--input", str(txt), *BASE, "--n", "1", "--out", str(tmp_path / "t")]) == 0
    assert len(list((tmp_path / "t").glob("*.png"))) == 2


@pytest.mark.parametrize("argv, message", [
    (["generate", "   "], "empty"),
    (["generate", "ok", "--labels", "Pleural Efusion=1"], "unknown finding"),
    (["generate", "ok", "--n", "0"], "--n"),
])
def test_generate_bad_input_one_line(tmp_path, capsys, argv, message):
    assert main([*argv, *BASE, "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("diffcxr: error:") and message in err and "\n" not in err


def test_generate_bad_model_and_huge_report(tmp_path, capsys):
    assert main(["generate", "ok", "--model", str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    assert "not a saved DiffCXRPipeline" in capsys.readouterr().err
    big = tmp_path / "big.txt"
    big.write_text("effusion " * 120_000)
    assert main(["generate", "--input", str(big), *BASE, "--out", str(tmp_path / "o")]) == 1
    assert "characters" in capsys.readouterr().err


def test_generate_never_overwrites_or_collides(tmp_path, capsys):
    """Ids that map to one file name get distinct files; an --out that holds this run's files is refused
    unless --overwrite; wrong label types in a JSONL file are one line."""
    from diffcxr.cli.main import main

    model = Path(__file__).resolve().parent / "fixtures" / "tiny_pipeline"
    reports = tmp_path / "r.jsonl"
    reports.write_text("\n".join(json.dumps({"id": i, "report": "Small left effusion."}) for i in ("a/b", "a?b")))
    argv = ["generate", "--input", str(reports), "--model", str(model), "--out", str(tmp_path / "g"), "--n", "1",
            "--steps", "1", "--quiet"]
    assert main(argv) == 0
    assert sorted(p.name for p in (tmp_path / "g").glob("*.png")) == ["a_b-2_00.png", "a_b_00.png"]
    before = (tmp_path / "g" / "a_b_00.png").read_bytes()
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert "already holds 4 generated files" in err and "--overwrite" in err and len(err.splitlines()) == 1
    assert (tmp_path / "g" / "a_b_00.png").read_bytes() == before
    assert main(argv + ["--overwrite"]) == 0
    reports.write_text(json.dumps({"report": "x", "labels": 5}))
    assert main(argv + ["--out", str(tmp_path / "h")]) == 1
    assert "\"labels\" must be an object" in capsys.readouterr().err


def test_generate_reads_chexgenbench_prompt_csvs_and_writes_their_index(tmp_path, capsys):
    import csv

    from diffcxr.cli.main import main

    model = Path(__file__).resolve().parent / "fixtures" / "tiny_pipeline"
    prompts = tmp_path / "prompts.csv"
    prompts.write_text('annotated_prompt,other\n"Small left effusion, no pneumothorax.",x\nNormal chest.,y\n')
    assert main(["generate", "--input", str(prompts), "--model", str(model), "--out", str(tmp_path / "g"), "--n", "1",
                 "--steps", "1", "--quiet"]) == 0
    rows = list(csv.DictReader((tmp_path / "g" / "generated.csv").open()))
    assert [r["prompt"] for r in rows] == ["Small left effusion, no pneumothorax.", "Normal chest."]
    for r in rows:
        assert r["annotated_prompt"] == r["prompt"] and r["img_savename"] == r["synthetic_filename"]
        assert (tmp_path / "g" / r["img_savename"]).is_file()
    prompts.write_text("text\nNormal chest.\n")
    assert main(["generate", "--input", str(prompts), "--model", str(model), "--out", str(tmp_path / "h")]) == 1
    err = capsys.readouterr().err.strip()
    assert "needs one of report, reports, prompt, annotated_prompt" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("damage", ["random bytes for weights", "wrong config type"])
def test_a_damaged_saved_pipeline_is_one_error_line(tmp_path, capsys, damage):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(MODEL, model)
    if damage == "random bytes for weights":
        (model / "denoiser" / "diffusion_pytorch_model.safetensors").write_bytes(np.random.default_rng(0).bytes(4096))
    else:
        config = json.loads((model / "denoiser" / "config.json").read_text())
        config["context_dim"] = "sixteen"
        (model / "denoiser" / "config.json").write_text(json.dumps(config))
    assert main(["generate", "x", "--model", str(model), "--steps", "1", "--n", "1", "--quiet",
                 "--out", str(tmp_path / "g")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("diffcxr: error: cannot load a DiffCXRPipeline") and len(err.splitlines()) == 1
    assert not (tmp_path / "g").exists()


def test_generate_with_another_solver_records_it(tmp_path):
    out = tmp_path / "g"
    assert main(["generate", "Small left pleural effusion.", *BASE, "--n", "1", "--solver", "unipc", "--out", str(out)]) == 0
    settings = json.loads((out / "0_00.json").read_text())["settings"]
    assert settings["solver"] == "unipc" and settings["scheduler"] == "UniPCMultistepScheduler"


def test_generate_uses_the_models_recorded_guidance_and_adapter_scale(tmp_path):
    import shutil

    import yaml

    def settings_of(out):
        return json.loads((out / "0_00.json").read_text())["settings"]

    old = tmp_path / "old"  # a pipeline that records no defaults: w = 2, adapter scale 1
    assert main(["generate", "Small left pleural effusion.", *BASE, "--n", "1", "--out", str(old)]) == 0
    assert (settings_of(old)["guidance_scale"], settings_of(old)["adapter_conditioning_scale"]) == (2.0, 1.0)

    model = tmp_path / "model"
    shutil.copytree(MODEL, model)
    index = json.loads((model / "model_index.json").read_text())
    (model / "model_index.json").write_text(json.dumps({**index, "default_guidance_scale": 3.5,
                                                        "default_adapter_scale": 0.0}))
    own, explicit = tmp_path / "own", tmp_path / "explicit"
    args = ["generate", "Small left pleural effusion.", "--model", str(model), "--steps", "2", "--quiet", "--n", "1"]
    assert main([*args, "--out", str(own)]) == 0
    assert main([*args, "--out", str(explicit), "--guidance", "3.5", "--adapter-scale", "0"]) == 0
    assert (settings_of(own)["guidance_scale"], settings_of(own)["adapter_conditioning_scale"]) == (3.5, 0.0)
    record = yaml.safe_load((own / "generate_run.yaml").read_text())
    assert (record["guidance"], record["adapter_scale"]) == (3.5, 0.0)
    assert np.array_equal(np.asarray(Image.open(own / "0_00.png")), np.asarray(Image.open(explicit / "0_00.png")))
    assert not np.array_equal(np.asarray(Image.open(own / "0_00.png")), np.asarray(Image.open(old / "0_00.png")))
