"""Training run configs: YAML loading, overrides, validation errors that name the key, saved run info."""

from __future__ import annotations

import json

import pytest
import yaml

from diffcxr.errors import DiffCXRError
from diffcxr.training.config import (TRAIN_CONFIG_NAMES, RunConfig, apply_overrides, load_run_config,
                                     save_run_info)


@pytest.mark.parametrize("name", TRAIN_CONFIG_NAMES)
def test_named_configs_load_and_reference_model_configs(name):
    cfg = load_run_config(name)
    assert isinstance(cfg, RunConfig)
    assert cfg.model_config()["name"] == name
    assert cfg.base.betas == (0.9, 0.9)
    assert cfg.base.beta_schedule == "scaled_linear"


def test_paper_config_follows_the_recipe():
    cfg = load_run_config("paper")
    b = cfg.base
    assert (b.lr, b.weight_decay, b.betas, b.warmup_steps, b.ema_decay) == (2e-4, 0.03, (0.9, 0.9), 5000, 0.9999)
    assert (b.num_train_timesteps, b.beta_start, b.beta_end, b.cond_drop_prob) == (1000, 0.00085, 0.012, 0.1)
    assert cfg.vlm.lr == 1e-5 and cfg.vlm.min_lr == 1e-6 and cfg.vlm.lr_schedule == "cosine"
    assert cfg.vlm.temperature == 0.07


def test_overrides_are_typed():
    cfg = load_run_config("tiny", ["base.lr=1e-3", "seed=7", "base.betas=[0.8, 0.95]", "data.train_splits=train",
                                   "adapter.ema_warmup=false"])
    assert cfg.base.lr == 1e-3 and isinstance(cfg.base.lr, float)
    assert cfg.seed == 7
    assert cfg.base.betas == (0.8, 0.95)
    assert cfg.data.train_splits == ("train",)
    assert cfg.adapter.ema_warmup is False


@pytest.mark.parametrize("override, words", [
    ("base.lrr=1", ["'lrr'", "'base'"]),
    ("bogus=1", ["'bogus'", "top level"]),
    ("data.nope=true", ["'nope'", "'data'"]),
])
def test_unknown_key_is_an_error_naming_key_and_section(override, words):
    with pytest.raises(DiffCXRError) as err:
        load_run_config("tiny", [override])
    for w in words:
        assert w in str(err.value)


def test_unknown_key_in_yaml_file(tmp_path):
    path = tmp_path / "my.yaml"
    path.write_text("model: tiny\nvae:\n  max_stepz: 3\n")
    with pytest.raises(DiffCXRError, match=r"unknown key 'max_stepz' in section 'vae'"):
        load_run_config(path)


@pytest.mark.parametrize("override, match", [
    ("base.lr=fast", "base.lr must be a number"),
    ("base.max_steps=0", "base.max_steps must be >= 1"),
    ("base.lr_schedule=linear", "base.lr_schedule must be one of"),
    ("mixed_precision=fp8", "mixed_precision must be one of"),
    ("model=nonexistent-model", "model config 'nonexistent-model' not found"),
    ("base.lr", "key=value"),
])
def test_bad_values(override, match):
    with pytest.raises(DiffCXRError, match=match):
        load_run_config("tiny", [override])


def test_missing_config_file():
    with pytest.raises(DiffCXRError, match="not found"):
        load_run_config("does-not-exist")


def test_model_path_relative_to_yaml(tmp_path):
    from diffcxr.models.configs import model_config_dir

    (tmp_path / "m.yaml").write_text((model_config_dir() / "tiny.yaml").read_text())
    (tmp_path / "run.yaml").write_text("model: m.yaml\n")
    assert load_run_config(tmp_path / "run.yaml").model_config()["image_size"] == 32


def test_model_key_overrides_reach_a_named_or_file_model_config(tmp_path):
    from diffcxr.models.configs import load_model_config, model_config_dir

    run = load_run_config("cpu-mini", ["model.uvit.final_conv_init=random"])
    model = run.model_config()
    assert model["uvit"]["final_conv_init"] == "random"
    shipped = load_model_config("cpu-mini")
    assert {k: v for k, v in model.items() if k != "uvit"} == {k: v for k, v in shipped.items() if k != "uvit"}
    # in order: a later model= replaces the model, then its own key changes
    run = load_run_config("cpu-mini", ["model=cpu-mini-no-squeeze", "model.uvit.final_conv_init=random"])
    assert run.model_config()["report_encoder"]["token_reduction"] == "mean_pool"
    assert run.model_config()["uvit"]["final_conv_init"] == "random"
    # a model file relative to the run config's YAML
    (tmp_path / "m.yaml").write_text((model_config_dir() / "tiny.yaml").read_text())
    (tmp_path / "run.yaml").write_text("model: m.yaml\n")
    assert load_run_config(tmp_path / "run.yaml", ["model.uvit.depth=3"]).model_config()["uvit"]["depth"] == 3
    with pytest.raises(DiffCXRError, match="final_conv_init"):
        load_run_config("cpu-mini", ["model.uvit.final_conv_init=bogus"])
    with pytest.raises(DiffCXRError, match=r"unknown key 'uvit\.nonsense' in model config 'cpu-mini' \(allowed: "):
        load_run_config("cpu-mini", ["model.uvit.nonsense=1"])


@pytest.mark.parametrize("override, message", [
    ("model.adapter.knowledge_sides=maybe", "adapter.knowledge_sides .* must be true or false, got 'maybe'"),
    ("model.uvit.depth=2.5", "uvit.depth .* must be an integer, got 2.5"),
    ("model.uvit.depth=true", "uvit.depth .* must be an integer, got True"),
    ("model.uvit.mlp_ratio=big", "uvit.mlp_ratio .* must be a number"),
    ("model.vae.block_out_channels=64", "vae.block_out_channels .* must be a list"),
])
def test_model_config_values_have_their_keys_types(override, message):
    with pytest.raises(DiffCXRError, match=message):
        load_run_config("cpu-mini", [override]).model_config()
    assert load_run_config("cpu-mini", ["model.uvit.mlp_ratio=4"]).model_config()["uvit"]["mlp_ratio"] == 4


def test_apply_overrides_creates_sections():
    raw = apply_overrides({}, ["a.b.c=1", "x=[1, 2]"])
    assert raw == {"a": {"b": {"c": 1}}, "x": [1, 2]}


def test_save_run_info(tmp_path):
    cfg = load_run_config("tiny", ["seed=5"])
    save_run_info(cfg, tmp_path, "base", {"data": "phantom:x"})
    resolved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert resolved["seed"] == 5 and resolved["base"]["betas"] == [0.9, 0.9]
    assert resolved["model_resolved"]["uvit"]["width"] == 32
    assert load_run_config({k: v for k, v in resolved.items() if k not in ("source", "model_resolved")}).seed == 5
    info = json.loads((tmp_path / "run_info.json").read_text())
    assert info["stage"] == "base" and info["data"] == "phantom:x"
    assert info["packages"]["torch"] and info["packages"]["diffusers"]
    assert "git_sha" in info


@pytest.mark.parametrize("override", ["cache.enabled=false", "data.num_workers=4"])
def test_keys_nothing_reads_are_rejected(override):
    """Keys that no code reads were removed: setting one is an error, not a silent no-op."""
    with pytest.raises(DiffCXRError, match="unknown key"):
        load_run_config("tiny", [override])


def test_an_override_mistake_is_named_as_the_overrides_not_the_file(tmp_path):
    with pytest.raises(DiffCXRError, match=r"cpu-mini\.yaml \+ overrides: unknown key 'max_stepz' in section 'base'"):
        load_run_config("cpu-mini", ["seed=3", "base.max_stepz=3"])
    with pytest.raises(DiffCXRError, match=r"tiny\.yaml \+ overrides: base\.lr must be > 0"):
        load_run_config("tiny", ["base.lr=0"])
    path = tmp_path / "my.yaml"  # a mistake in the file itself stays the file's, overrides or not
    path.write_text("model: tiny\nvae:\n  max_stepz: 3\n")
    with pytest.raises(DiffCXRError, match=r"my\.yaml: unknown key 'max_stepz' in section 'vae'"):
        load_run_config(path, ["seed=1"])
