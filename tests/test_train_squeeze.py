"""``base.train_squeeze``: the report encoder's squeeze trained by the diffusion loss in stage 1 (text tower frozen,
its token states cached), exported as ``base/report_encoder`` and used by every later stage and the pipeline."""

from __future__ import annotations

import pytest
import torch
from _training_fixtures import copy_frozen, frozen_parts, phantom_dir, tiny_run  # noqa: F401 - fixtures

from diffcxr.errors import DiffCXRError


def _squeeze_tensors(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "report_encoder" / "squeeze.safetensors"))


def _tiny_objective(squeeze_init: str = "pooling"):
    from diffcxr.models.report_encoder import ReportEncoder
    from diffcxr.models.uvit import UViT
    from diffcxr.training.base import BaseObjective

    torch.manual_seed(0)
    encoder = ReportEncoder.tiny(max_length=16, num_condition_tokens=5, hidden_size=8,
                                 squeeze_init=squeeze_init).eval()  # no dropout in the text tower
    uvit = UViT(sample_size=4, in_channels=2, patch_size=2, width=16, depth=2, num_heads=2, context_dim=8,
                num_context_tokens=5, final_conv=False)
    return encoder, BaseObjective(uvit, encoder.squeeze)


def test_squeezing_cached_token_states_gives_the_frozen_encoders_condition():
    """The cached-states path of stage 1 reproduces what the frozen encoder feeds the U-ViT, dropout included."""
    from diffcxr.training.base import BaseObjective

    encoder, tuned = _tiny_objective()
    reports = ["Large right pleural effusion.", "No acute cardiopulmonary process."]
    tokens, empty_tokens = encoder.tokenize(reports), encoder.tokenize([""], allow_empty=True)
    states, empty_states = encoder.token_states(**tokens), encoder.token_states(**empty_tokens)
    noisy, t = torch.randn(2, 2, 4, 4), torch.tensor([10, 500])
    drop = torch.tensor([False, True])
    with torch.no_grad():
        frozen = BaseObjective(tuned.uvit)(noisy, t, encoder.encode(reports).condition_embeds, drop,
                                           encoder.encode([""], allow_empty=True).condition_embeds)
        via_states = tuned(noisy, t, states, drop, empty_states, tokens["attention_mask"],
                           empty_tokens["attention_mask"])
    torch.testing.assert_close(via_states, frozen)


def test_the_diffusion_loss_reaches_every_row_of_the_squeeze():
    encoder, tuned = _tiny_objective()
    tokens = encoder.tokenize(["Cardiomegaly.", "Small left apical pneumothorax."])
    empty = encoder.tokenize([""], allow_empty=True)
    with torch.no_grad():
        states, empty_states = encoder.token_states(**tokens), encoder.token_states(**empty)

    def grads():
        tuned.zero_grad()
        out = tuned(torch.randn(2, 2, 4, 4), torch.tensor([3, 700]), states, torch.tensor([False, False]),
                    empty_states, tokens["attention_mask"], empty["attention_mask"])
        out.square().mean().backward()
        return tuned.squeeze.gate.grad, tuned.squeeze.conv2.weight.grad

    gate_grad, _ = grads()
    assert gate_grad.abs().sum() > 0  # pooled init: the gate opens first ...
    with torch.no_grad():
        tuned.squeeze.gate.fill_(0.1)
    _, conv2_grad = grads()  # ... then every condition row of the second convolution learns
    assert (conv2_grad.flatten(1).abs().sum(1)[1:] > 0).all()


def test_train_squeeze_exports_a_tuned_encoder_that_later_stages_use(tmp_path, frozen_parts, phantom_dir):  # noqa: F811
    from diffcxr.models.report_encoder import ReportEncoder
    from diffcxr.training import train_stage
    from diffcxr.training.cache import LatentCache
    from diffcxr.training.pipeline_export import build_pipeline, load_training_checkpoint

    out = copy_frozen(frozen_parts, tmp_path / "run")
    run = tiny_run("base.train_squeeze=true", "base.squeeze_lr=1e-2")
    data = f"phantom:{phantom_dir}"
    before = _squeeze_tensors(out / "vlm")
    train_stage("base", run, data, out, progress=False)
    base_cache = LatentCache((out / "base" / ".cache_folder").read_text().strip())
    assert base_cache.token_states and base_cache.get([0])[1].shape[1] == 65  # [CLS] + 64 token states
    assert base_cache.report_mask([0, 1]).shape == (2, 64)

    after = _squeeze_tensors(out / "base")
    assert before.keys() == after.keys()
    assert not torch.equal(before["gate"], after["gate"])  # the diffusion loss moved the squeeze ...
    for name, value in _squeeze_tensors(out / "vlm").items():  # ... and left the VLM stage's encoder as it was
        assert torch.equal(value, before[name]), name

    train_stage("adapter", run, data, out, progress=False)
    adapter_cache = LatentCache((out / "adapter" / ".cache_folder").read_text().strip())
    assert not adapter_cache.token_states
    with torch.no_grad():  # the adapter's conditions come from the tuned encoder, not the VLM stage's
        tuned_empty = ReportEncoder.from_pretrained(out / "base" / "report_encoder").encode([""], allow_empty=True)
        vlm_empty = ReportEncoder.from_pretrained(out / "vlm" / "report_encoder").encode([""], allow_empty=True)
    torch.testing.assert_close(adapter_cache.empty, tuned_empty.condition_embeds.half().float())
    assert not torch.allclose(adapter_cache.empty, vlm_empty.condition_embeds.half().float())

    pipe = build_pipeline(run, out)
    for name, value in after.items():
        torch.testing.assert_close(pipe.report_encoder.squeeze.state_dict()[name], value)

    # an intermediate checkpoint carries the squeeze too, and loads with the U-ViT
    with torch.no_grad():
        pipe.report_encoder.squeeze.gate.zero_()
    assert load_training_checkpoint(pipe, out / "base" / "checkpoints" / "checkpoint-00000002") == ("denoiser", 2)
    torch.testing.assert_close(pipe.report_encoder.squeeze.gate.detach(), after["gate"])


def test_train_squeeze_resumes_exactly(tmp_path, frozen_parts, phantom_dir):  # noqa: F811
    from diffcxr.training import train_stage

    data = f"phantom:{phantom_dir}"
    straight = copy_frozen(frozen_parts, tmp_path / "straight")
    train_stage("base", tiny_run("base.train_squeeze=true", "base.max_steps=3"), data, straight, progress=False)
    split = copy_frozen(frozen_parts, tmp_path / "split")
    train_stage("base", tiny_run("base.train_squeeze=true", "base.max_steps=2"), data, split, progress=False)
    train_stage("base", tiny_run("base.train_squeeze=true", "base.max_steps=3"), data, split, progress=False,
                resume=True)
    for name, value in _squeeze_tensors(straight / "base").items():
        torch.testing.assert_close(_squeeze_tensors(split / "base")[name], value, rtol=0, atol=0)
    # the setting is part of the run: resuming it without the squeeze is one clear error
    with pytest.raises(DiffCXRError, match="was trained with base.train_squeeze=true"):
        train_stage("base", tiny_run("base.max_steps=4"), data, split, progress=False, resume=True)


def test_train_squeeze_needs_the_learned_squeeze(tmp_path, frozen_parts, phantom_dir):  # noqa: F811
    from diffcxr.training import train_stage

    out = copy_frozen(frozen_parts, tmp_path / "run")
    run = tiny_run("base.train_squeeze=true", "model.report_encoder.token_reduction=mean_pool")
    with pytest.raises(DiffCXRError, match="train_squeeze=true needs the learned squeeze"):
        train_stage("base", run, f"phantom:{phantom_dir}", out, progress=False)


def test_a_plain_base_run_drops_a_stale_tuned_encoder(tmp_path, frozen_parts, phantom_dir):  # noqa: F811
    """A tuned encoder left by an earlier run in the same folder must not reach the adapter and pipeline of a
    plain (frozen-squeeze) base run."""
    import shutil

    from diffcxr.training import train_stage
    from diffcxr.training.cache import load_frozen_components

    out = copy_frozen(frozen_parts, tmp_path / "run")
    data = f"phantom:{phantom_dir}"
    train_stage("base", tiny_run("base.train_squeeze=true"), data, out, progress=False)
    for name in ("checkpoints", "COMPLETE.json"):  # start the base stage over, leaving its exported encoder
        target = out / "base" / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    train_stage("base", tiny_run(), data, out, progress=False)
    assert not (out / "base" / "report_encoder").exists()
    _, encoder = load_frozen_components(tiny_run(), out)
    for name, value in _squeeze_tensors(out / "vlm").items():
        assert torch.equal(encoder.squeeze.state_dict()[name], value), name
