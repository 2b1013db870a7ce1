"""The side-aware knowledge prompt: which side a report gives each finding, and the adapter option that reads it."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from _training_fixtures import frozen_parts, phantom_dir  # noqa: F401 - fixtures

from diffcxr.cli.main import main
from diffcxr.findings import CHEXPERT_FINDINGS
from diffcxr.knowledge import finding_sides, knowledge_prompt, label_report


@pytest.mark.parametrize("report, sides", [
    ("Small right pleural effusion and left basilar atelectasis.", {"Atelectasis": "left", "Pleural Effusion": "right"}),
    ("Left lower lobe opacity. Large right pneumothorax.", {"Lung Opacity": "left", "Pneumothorax": "right"}),
    # the clause has no side word: the sentence's
    ("Large left pleural effusion with adjacent atelectasis.", {"Atelectasis": "left", "Pleural Effusion": "left"}),
    ("Bilateral large pleural effusions. Bibasilar atelectasis.", {"Atelectasis": "bilateral",
                                                                  "Pleural Effusion": "bilateral"}),
    ("Right pleural effusion. Left pleural effusion.", {"Pleural Effusion": "bilateral"}),  # mentions disagree
    ("FINDINGS: Small left pneumothorax. IMPRESSION: Pneumothorax.", {"Pneumothorax": "left"}),  # no side: no vote
    ("Hazy opacity in the lingula.", {"Lung Opacity": "left"}),
    ("No right pleural effusion. Left pneumothorax.", {"Pneumothorax": "left"}),  # negated findings have no side
    ("Moderate cardiomegaly. Small pneumothorax.", {}),  # the heart has no side; no side word: left out
    ("", {}),
])
def test_finding_sides_reads_the_side_next_to_each_positive_mention(report, sides):
    assert finding_sides(label_report(report)) == sides


def test_the_side_aware_prompt_names_the_side_before_the_finding():
    result = label_report("Small right pleural effusion and left basilar atelectasis. Moderate cardiomegaly.")
    assert knowledge_prompt(result.labels) == ("There is atelectasis. There is cardiomegaly. "
                                               "There is pleural effusion.")
    assert knowledge_prompt(result.labels, sides=finding_sides(result)) == (
        "There is left atelectasis. There is cardiomegaly. There is right pleural effusion.")
    assert knowledge_prompt({"Edema": 0.0}, sides={"Edema": "left"}) == "There is no finding."  # sides add no findings


def test_training_prompts_take_the_labels_from_the_record_and_the_sides_from_its_report():
    from diffcxr.training.data import knowledge_prompts

    labels = np.full(len(CHEXPERT_FINDINGS), np.nan, dtype=np.float32)
    labels[CHEXPERT_FINDINGS.index("Pneumothorax")] = 1.0
    records = [SimpleNamespace(labels=labels, report="Large right pneumothorax."),
               SimpleNamespace(labels=labels, report="")]
    assert knowledge_prompts(records) == ["There is pneumothorax."] * 2
    assert knowledge_prompts(records, sides=True) == ["There is right pneumothorax.", "There is pneumothorax."]


def test_a_side_aware_adapter_makes_the_pipeline_write_sided_prompts_and_keeps_the_option(tmp_path):
    from diffcxr.models.configs import load_model_config
    from diffcxr.pipelines import DiffCXRPipeline

    report = "Moderate left pleural effusion."
    plain = DiffCXRPipeline.from_model_config("tiny")
    assert plain.derive_knowledge([report])[1] == ["There is pleural effusion."]
    cfg = load_model_config("tiny")
    cfg["adapter"]["knowledge_sides"] = True
    pipe = DiffCXRPipeline.from_model_config(cfg)
    assert pipe.knowledge_adapter.config.knowledge_sides
    pipe.save_pretrained(tmp_path / "pipe")
    loaded = DiffCXRPipeline.from_pretrained(tmp_path / "pipe")
    out = loaded(report, num_inference_steps=2, output_type="pt", generator=torch.Generator().manual_seed(0))
    assert out.knowledge_prompts == ["There is left pleural effusion."]
    # a label override keeps the side the report gives
    assert loaded.derive_knowledge([report], labels=["Pleural Effusion=1"])[1] == ["There is left pleural effusion."]


def test_the_adapter_stage_trains_on_side_aware_prompts_when_the_model_config_says_so(tmp_path, frozen_parts,  # noqa: F811
                                                                                     phantom_dir):  # noqa: F811
    from _training_fixtures import copy_frozen

    out = copy_frozen(frozen_parts, tmp_path / "run")
    for stage in ("base", "adapter"):
        rc = main(["train", stage, "-c", "tiny", "--data", f"phantom:{phantom_dir}", "--output-dir", str(out),
                   "--no-progress", "--no-mixed-precision", f"{stage}.max_steps=1", "model.adapter.knowledge_sides=true"])
        assert rc == 0
    assert json.loads((out / "adapter" / "adapter" / "config.json").read_text())["knowledge_sides"] is True
    prompts = [p for index in (out / "cache").glob("*/index.json") for p in json.loads(index.read_text())["knowledge_prompts"]]
    assert any(" left " in p or " right " in p for p in prompts), prompts


def test_the_app_shows_the_prompt_the_model_reads():
    from diffcxr.app import read_report

    report = "Large right pneumothorax."
    assert read_report(report)[1] == "There is pneumothorax."
    assert read_report(report, sides=True)[1] == "There is right pneumothorax."


def test_finding_sides_reads_the_phantom_generators_sides(monkeypatch, capsys):
    """``benchmarks/finding_sides_accuracy.py`` on 300 phantom reports: one-sided findings read on their side."""
    import runpy
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "finding_sides_accuracy.py"
    monkeypatch.setattr(sys, "argv", [str(script), "--n", "300", "--show-misses", "0"])
    runpy.run_path(str(script), run_name="__main__")
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("one-sided:"))
    right, wrong = (float(line.split(f"{key} ")[1].split(",")[0]) for key in ("read right", "wrong side"))
    assert right > 0.95 and wrong < 0.03, line


def test_distilling_a_side_aware_teacher_feeds_its_adapter_side_aware_prompts(tmp_path, phantom_dir):  # noqa: F811
    """The student's run config says nothing about sides; the teacher's adapter does, and its prompts follow it."""
    from diffcxr.models.configs import load_model_config
    from diffcxr.pipelines import DiffCXRPipeline

    cfg = load_model_config("tiny")
    cfg["adapter"]["knowledge_sides"] = True
    DiffCXRPipeline.from_model_config(cfg, seed=0).save_pretrained(tmp_path / "teacher", safe_serialization=True)
    out = tmp_path / "student"
    assert main(["train", "distill", "-c", "tiny", "--teacher", str(tmp_path / "teacher"), "--data",
                 f"phantom:{phantom_dir}", "--output-dir", str(out), "--no-progress", "--no-mixed-precision",
                 "distill.max_steps=1"]) == 0
    prompts = [p for index in (out / "cache").glob("*/index.json") for p in json.loads(index.read_text())["knowledge_prompts"]]
    assert any(" left " in p or " right " in p for p in prompts), prompts


@pytest.mark.parametrize("preset, sides", [("cpu-mini", True), ("cpu-mini-no-squeeze", True),
                                           ("cpu-mini-squeeze-released", True), ("paper", False), ("tiny", False)])
def test_cpu_mini_and_its_ablation_presets_read_the_side_aware_prompt(preset, sides):
    """cpu-mini's measured default (and the ablation presets that extend it, so arms differ only in the squeeze);
    ``paper`` keeps the plain prompt."""
    from diffcxr.models.configs import load_model_config

    assert load_model_config(preset)["adapter"]["knowledge_sides"] is sides


def test_the_demo_reads_the_side_aware_prompt_as_cpu_mini_does():
    """``diffcxr demo`` trains the recipe ``cpu-mini`` ships, side-aware prompt included (its model is inline)."""
    from diffcxr.models.configs import load_model_config
    from diffcxr.training.config import load_run_config

    assert load_model_config(load_run_config("demo", []).model)["adapter"]["knowledge_sides"] is True
