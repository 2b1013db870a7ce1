"""2-step smoke runs of every stage on the tiny config (through the CLI), the exported pipeline, the manifest."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from _training_fixtures import frozen_parts, phantom_dir, tiny_run  # noqa: F401 - fixtures

from diffcxr.cli.main import main

STAGE_FILES = {
    "vae": ["vae/config.json", "vae/diffusion_pytorch_model.safetensors", "reconstructions.png"],
    "vlm": ["report_encoder/config.json", "report_encoder/squeeze.safetensors", "image_tower/config.json",
            "metrics.json"],
    "base": ["uvit/config.json", "uvit/diffusion_pytorch_model.safetensors", "samples/final.png"],
    "adapter": ["adapter/config.json", "adapter/diffusion_pytorch_model.safetensors", "samples/final.png"],
    "classifier": ["classifier/config.json", "classifier/diffusion_pytorch_model.safetensors", "metrics.json"],
}
COMMON_FILES = ["config.yaml", "run_info.json", "log.csv", "loss.png", "COMPLETE.json", "checkpoints/latest"]


@pytest.fixture(scope="module")
def trained_all(tmp_path_factory, phantom_dir):  # noqa: F811
    out = tmp_path_factory.mktemp("all")
    rc = main(["train", "all", "-c", "tiny", "--data", f"phantom:{phantom_dir}", "--output-dir", str(out),
               "--no-progress", "--no-mixed-precision", "sample.solver=deis", "sample.guidance_scale=3",
               "sample.adapter_scale=0.5"])
    assert rc == 0
    return out


def test_all_stages_write_their_artifacts(trained_all):
    for stage, files in STAGE_FILES.items():
        for name in files + COMMON_FILES:
            assert (trained_all / stage / name).exists(), f"{stage}/{name}"
        rows = list(csv.DictReader(open(trained_all / stage / "log.csv")))
        assert [r["step"] for r in rows] == ["1", "2"], stage
        info = json.loads((trained_all / stage / "run_info.json").read_text())
        assert info["stage"] == stage and info["mixed_precision"] == "no"
    scale = json.loads((trained_all / "vae" / "vae" / "config.json").read_text())["scaling_factor"]
    assert scale != 1.0 and scale > 0  # set from the data
    assert list((trained_all / "cache").glob("*/index.json"))


def test_exported_pipeline_generates(trained_all):
    from diffcxr.pipelines import DiffCXRPipeline

    pipe = DiffCXRPipeline.from_pretrained(trained_all / "pipeline")
    assert pipe.knowledge_adapter is not None
    assert pipe.default_inference_steps == 2  # the tiny config's sample.num_inference_steps
    # ... and the run's sample.solver is the pipeline's scheduler, which generate's --solver auto reads back
    from diffcxr.models.diffusion import resolve_solver

    assert type(pipe.scheduler).__name__ == "DEISMultistepScheduler"
    assert resolve_solver("auto", pipe.scheduler.config) == "deis"
    out = pipe("Moderate right pleural effusion.", num_inference_steps=2, output_type="pt",
               generator=torch.Generator().manual_seed(0))
    assert tuple(out.images.shape) == (1, 1, 32, 32)
    assert torch.isfinite(out.images).all()
    assert out.knowledge_prompts[0] == "There is pleural effusion."


def test_exported_pipeline_samples_with_its_configs_guidance_and_adapter_scale(trained_all):
    from diffcxr.pipelines import DiffCXRPipeline

    pipe = DiffCXRPipeline.from_pretrained(trained_all / "pipeline")
    assert (pipe.default_guidance_scale, pipe.default_adapter_scale) == (3.0, 0.5)  # the run's sample.* values

    def draw(**kwargs):
        return pipe("Moderate right pleural effusion.", num_inference_steps=2, output_type="pt", progress=False,
                    generator=torch.Generator().manual_seed(0), **kwargs).images

    implicit = draw()
    assert torch.equal(implicit, draw(guidance_scale=3.0, adapter_conditioning_scale=0.5))
    assert not torch.equal(implicit, draw(guidance_scale=2.0, adapter_conditioning_scale=0.5))
    assert not torch.equal(implicit, draw(guidance_scale=3.0, adapter_conditioning_scale=1.0))


def test_training_checkpoints_load_into_the_pipeline(trained_all):
    """A base or adapter checkpoint's EMA weights are what the stage exported (learning curves score them)."""
    from diffcxr.errors import DiffCXRError
    from diffcxr.pipelines import DiffCXRPipeline
    from diffcxr.training.pipeline_export import load_training_checkpoint

    pipe = DiffCXRPipeline.from_pretrained(trained_all / "pipeline")
    for stage, component in (("base", "denoiser"), ("adapter", "knowledge_adapter")):
        module = getattr(pipe, component)
        exported = {k: v.clone() for k, v in module.state_dict().items()}
        with torch.no_grad():
            for p in module.parameters():
                p.zero_()
        checkpoint = trained_all / stage / "checkpoints" / "checkpoint-00000002"
        assert load_training_checkpoint(pipe, checkpoint) == (component, 2)
        loaded = module.state_dict()
        assert all(torch.equal(loaded[k], v) for k, v in exported.items()), stage
        load_training_checkpoint(pipe, checkpoint, use_ema=False)  # the raw weights: not the EMA ones
        assert any(not torch.equal(module.state_dict()[k], v) for k, v in exported.items()), stage
    with pytest.raises(DiffCXRError, match="not a training checkpoint"):
        load_training_checkpoint(pipe, trained_all / "pipeline")
    with pytest.raises(DiffCXRError, match="only base"):
        load_training_checkpoint(pipe, trained_all / "vae" / "checkpoints" / "checkpoint-00000002")
    pipe.knowledge_adapter = None
    with pytest.raises(DiffCXRError, match="no knowledge adapter"):
        load_training_checkpoint(pipe, trained_all / "adapter" / "checkpoints" / "checkpoint-00000002")


def test_exported_pipeline_says_what_it_was_trained_on(trained_all, phantom_dir):  # noqa: F811
    card = json.loads((trained_all / "pipeline" / "training_data.json").read_text())
    assert set(card["components"]) == {"vae", "report_encoder", "denoiser", "knowledge_adapter"}
    for component in card["components"].values():
        assert component["trained"] and component["data"] == f"phantom:{phantom_dir}"
        assert component["train_records"] > 0
    readme = (trained_all / "pipeline" / "README.md").read_text()
    assert f"phantom:{phantom_dir}" in readme and "licence" in readme


def test_classifier_loads_for_evaluation(trained_all):
    from diffcxr.training.classifier import CXRClassifier

    model = CXRClassifier.from_pretrained(trained_all / "classifier" / "classifier")
    x = torch.zeros(2, 1, 32, 32)
    assert model(x).shape == (2, 14)
    assert model.features(x).shape == (2, model.feature_dim)
    assert len(model.config.label_names) == 14


def test_resume_skips_completed_stages(trained_all, phantom_dir, capsys):  # noqa: F811
    rc = main(["train", "all", "-c", "tiny", "--data", f"phantom:{phantom_dir}", "--output-dir", str(trained_all),
               "--no-progress", "--no-mixed-precision", "--resume"])
    assert rc == 0
    assert capsys.readouterr().out.count("already complete") == 5


def test_manifest_restricts_training_set(tmp_path, phantom_dir):  # noqa: F811
    from diffcxr.data import read_records

    train_ids = [r.id for r in read_records(f"phantom:{phantom_dir}") if r.split in ("train", "val")]
    keep = set(train_ids[:7])
    manifest = tmp_path / "manifest.csv"
    with open(manifest, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "kept"])
        w.writerows([(i, int(i in keep)) for i in train_ids])
    out = tmp_path / "run"
    rc = main(["train", "classifier", "-c", "tiny", "--data", f"phantom:{phantom_dir}", "--manifest", str(manifest),
               "--output-dir", str(out), "--no-progress", "classifier.max_steps=1"])
    assert rc == 0
    info = json.loads((out / "classifier" / "run_info.json").read_text())
    assert info["train_records"] == 7 and info["manifest"] == str(manifest)


def test_cli_errors_are_one_line(tmp_path, phantom_dir, capsys):  # noqa: F811
    rc = main(["train", "vae", "-c", "tiny", "--data", f"phantom:{phantom_dir}", "--output-dir", str(tmp_path),
               "vae.learning_rate=1"])
    err = capsys.readouterr().err
    assert rc == 1 and "unknown key 'learning_rate' in section 'vae'" in err and len(err.strip().splitlines()) == 1
    rc = main(["train", "base", "-c", "tiny", "--data", f"phantom:{phantom_dir}", "--output-dir", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert rc == 1 and "run `diffcxr train vae`" in err


def test_classifier_label_policy_not_mentioned_is_negative_by_default():
    from diffcxr.training.classifier import masked_bce, policy_targets
    from diffcxr.training.config import ClassifierConfig

    assert (ClassifierConfig().uncertain, ClassifierConfig().missing) == ("positive", "negative")
    nan = float("nan")
    logits = torch.tensor([[4.0, 4.0, 4.0]])
    labels = torch.tensor([[1.0, nan, -1.0]])
    # not mentioned -> negative: a confident positive logit on the NaN finding is penalised
    as_negative = masked_bce(logits, policy_targets(labels, "positive", "negative"))
    excluded = masked_bce(logits, policy_targets(labels, "positive", "exclude"))
    assert as_negative > 1.0 > excluded
    assert torch.isclose(excluded, torch.nn.functional.softplus(torch.tensor(-4.0)))  # two positives, NaN left out


def test_classifier_missing_policy_is_validated(phantom_dir, tmp_path):  # noqa: F811
    rc = main(["train", "classifier", "-c", "tiny", "--data", f"phantom:{phantom_dir}", "--output-dir",
               str(tmp_path), "--no-progress", "classifier.missing=ignore"])
    assert rc == 1


def test_diffusion_stages_weight_their_loss_with_snr_gamma(tmp_path, frozen_parts, phantom_dir, monkeypatch):  # noqa: F811
    import diffcxr.models.diffusion as diffusion
    import diffcxr.training.adapter as adapter_stage
    from _training_fixtures import copy_frozen

    seen = []
    plain = diffusion.epsilon_loss

    def recording_loss(predicted, noise, **kwargs):
        seen.append(kwargs.get("snr_gamma"))
        return plain(predicted, noise, **kwargs)

    monkeypatch.setattr(diffusion, "epsilon_loss", recording_loss)  # the base stage imports it when it runs
    monkeypatch.setattr(adapter_stage, "epsilon_loss", recording_loss)  # the adapter stage at import
    out = copy_frozen(frozen_parts, tmp_path / "run")
    for stage in ("base", "adapter"):
        rc = main(["train", stage, "-c", "tiny", "--data", f"phantom:{phantom_dir}", "--output-dir", str(out),
                   "--no-progress", "--no-mixed-precision", f"{stage}.max_steps=1", f"{stage}.snr_gamma=5"])
        assert rc == 0
    assert seen == [5.0, 5.0]  # one step of each stage, each with its gamma


def test_bad_snr_gamma_is_one_line(tmp_path, phantom_dir, capsys):  # noqa: F811
    rc = main(["train", "base", "-c", "tiny", "--data", f"phantom:{phantom_dir}", "--output-dir", str(tmp_path),
               "base.snr_gamma=0"])
    err = capsys.readouterr().err
    assert rc == 1 and "base.snr_gamma must be > 0" in err and len(err.strip().splitlines()) == 1
