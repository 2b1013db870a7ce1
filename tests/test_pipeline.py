"""DiffCXRPipeline on tiny seeded components built in code (+ the committed tiny saved pipeline)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from diffcxr.errors import DiffCXRError
from diffcxr.pipelines import DiffCXRPipeline

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "tiny_pipeline"
REPORT = "Moderate right pleural effusion. Heart size is normal."
STEPS = 3


def _make(adapter=True):
    pipe = DiffCXRPipeline.from_model_config("tiny", seed=0, with_adapter=adapter)
    if adapter:  # a trained-looking adapter: non-zero residuals, so it really influences the output
        torch.manual_seed(1)
        with torch.no_grad():
            for m in [*pipe.knowledge_adapter.skip_residual_proj, pipe.knowledge_adapter.mid_residual_proj,
                      pipe.knowledge_adapter.knowledge_proj]:
                m.weight.normal_(std=0.05)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def pipe():
    return _make()


def _run(pipe, seed=0, **kw):
    kw.setdefault("num_inference_steps", STEPS)
    kw.setdefault("output_type", "np")
    return pipe(kw.pop("prompt", REPORT), generator=torch.Generator().manual_seed(seed), progress=False, **kw)


def test_output_types_and_knowledge(pipe):
    out = _run(pipe, num_images_per_prompt=2, output_type="pil")
    assert len(out.images) == 2 and out.images[0].mode == "L" and out.images[0].size == (32, 32)
    assert out.knowledge_prompts == ["There is pleural effusion."] * 2
    assert out.labels[0]["Pleural Effusion"] == 1.0 and out.reports[0] == REPORT
    arr = _run(pipe).images
    assert arr.shape == (1, 32, 32, 1) and arr.dtype == np.float32 and 0 <= arr.min() and arr.max() <= 1
    pt = _run(pipe, output_type="pt").images
    assert pt.shape == (1, 1, 32, 32) and np.allclose(pt.permute(0, 2, 3, 1).numpy(), arr)
    assert _run(pipe, output_type="latent").images.shape == (1, 4, 8, 8)
    batch = _run(pipe, prompt=[REPORT, "Normal chest radiograph."], num_images_per_prompt=2)
    assert batch.images.shape[0] == 4 and batch.knowledge_prompts[2:] == ["There is no finding."] * 2


def test_same_seed_same_images(pipe):
    a, b, c = _run(pipe, 3).images, _run(pipe, 3).images, _run(pipe, 4).images
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_guidance_one_is_plain_conditional(pipe):
    plain = _run(pipe, guidance_scale=1.0).images            # one conditional forward per step
    cfg_path = _run(pipe, guidance_scale=1.0 + 1e-7).images  # uncond + 1*(cond - uncond) through the CFG branch
    assert np.allclose(plain, cfg_path, atol=1e-4)
    assert not np.allclose(plain, _run(pipe, guidance_scale=3.0).images, atol=1e-4)


def test_prompt_embeds_equal_prompt(pipe):
    ref = _run(pipe).images
    embeds = pipe.encode_text([REPORT])
    know = pipe.encode_text(["There is pleural effusion."])
    assert np.array_equal(_run(pipe, prompt=None, prompt_embeds=embeds, knowledge_embeds=know).images, ref)
    assert np.array_equal(_run(pipe, prompt=None, prompt_embeds=embeds, labels={"Pleural Effusion": 1}).images, ref)


def test_encode_text_encodes_a_repeated_text_once(pipe, monkeypatch):
    texts = ["There is pleural effusion.", REPORT, "There is pleural effusion.", REPORT, "Normal."]
    expected = torch.cat([pipe.encode_text([t]) for t in texts])
    seen = []
    encode = pipe.report_encoder.encode
    monkeypatch.setattr(pipe.report_encoder, "encode", lambda batch, **kw: seen.append(list(batch)) or encode(batch, **kw))
    embeds = pipe.encode_text(texts)
    assert seen == [["There is pleural effusion.", REPORT, "Normal."]]
    assert embeds.shape == expected.shape and torch.allclose(embeds, expected, atol=1e-5)


def test_labels_override_and_adapter_scale(pipe):
    ref = _run(pipe)
    over = _run(pipe, labels="Pleural Effusion=0,Cardiomegaly=1")
    assert over.knowledge_prompts == ["There is cardiomegaly."] and over.labels[0]["Pleural Effusion"] == 0.0
    assert not np.allclose(over.images, ref.images)
    assert _run(pipe, labels={"cardiomegaly": 1}).knowledge_prompts == ["There is cardiomegaly. There is pleural effusion."]
    # scale 0 == the base model alone
    base_only = DiffCXRPipeline(vae=pipe.vae, denoiser=pipe.denoiser, report_encoder=pipe.report_encoder,
                                scheduler=pipe.scheduler, knowledge_adapter=None)
    assert np.array_equal(_run(pipe, adapter_conditioning_scale=0.0).images, _run(base_only).images)


def test_bad_inputs(pipe):
    with pytest.raises(DiffCXRError, match="empty"):
        _run(pipe, prompt="   ")
    with pytest.raises(DiffCXRError, match="characters"):
        _run(pipe, prompt="effusion " * 120_000)
    with pytest.raises(DiffCXRError, match="unknown finding"):
        _run(pipe, labels={"Pleural Efusion": 1})
    with pytest.raises(DiffCXRError, match="latents must have shape"):
        _run(pipe, latents=torch.randn(1, 4, 16, 16))
    with pytest.raises(DiffCXRError, match="prompt_embeds"):
        _run(pipe, prompt=None, prompt_embeds=torch.zeros(1, 10, 32))
    with pytest.raises(DiffCXRError, match="generators"):
        pipe(REPORT, num_images_per_prompt=2, generator=[torch.Generator()], num_inference_steps=1, progress=False)
    with pytest.raises(DiffCXRError, match="output_type"):
        _run(pipe, output_type="jpeg")


def test_swappable_scheduler(pipe):
    from diffusers import DDIMScheduler

    ddim = DiffCXRPipeline(**{**pipe.components, "scheduler": DDIMScheduler.from_config(pipe.scheduler.config)})
    out = _run(ddim).images
    assert out.shape == (1, 32, 32, 1) and np.isfinite(out).all()


def test_save_load_round_trip(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "p")
    loaded = DiffCXRPipeline.from_pretrained(tmp_path / "p")
    assert np.array_equal(_run(loaded).images, _run(pipe).images)
    # the "no disease knowledge" ablation saves and loads without an adapter
    no_adapter = _make(adapter=False)
    no_adapter.save_pretrained(tmp_path / "q")
    loaded = DiffCXRPipeline.from_pretrained(tmp_path / "q")
    assert loaded.knowledge_adapter is None
    assert np.array_equal(_run(loaded).images, _run(no_adapter).images)


def test_bf16_path_close_to_fp32(tmp_path):
    pipe = _make()
    ref = _run(pipe).images
    pipe.save_pretrained(tmp_path / "p")
    bf16 = DiffCXRPipeline.from_pretrained(tmp_path / "p", dtype=torch.bfloat16)
    assert bf16.report_encoder.dtype == torch.bfloat16
    assert bf16.denoiser.dtype == torch.bfloat16
    out = _run(bf16).images
    assert out.dtype == np.float32 and np.abs(out - ref).mean() < 0.02


def test_committed_tiny_pipeline_fixture_loads():
    pipe = DiffCXRPipeline.from_pretrained(FIXTURE)
    assert type(pipe.report_encoder).__name__ == "ReportEncoder" and pipe.knowledge_adapter is not None
    out = pipe("Small left pneumothorax.", num_inference_steps=2, generator=torch.Generator().manual_seed(0),
               output_type="np", progress=False)
    assert out.images.shape == (1, 16, 16, 1) and np.isfinite(out.images).all()
    assert out.knowledge_prompts == ["There is pneumothorax."]


@pytest.mark.parametrize("component", ["denoiser", "text_encoder"])
def test_pickled_weights_are_refused(tmp_path, capsys, component):
    """Weights load from safetensors only: a component re-saved as a pickle (.bin) is an error, not a load."""
    from diffcxr.cli.main import main

    pipe = DiffCXRPipeline.from_model_config("tiny", seed=0)
    pipe.save_pretrained(tmp_path / "p", safe_serialization=True)
    if component == "denoiser":
        folder = tmp_path / "p" / "denoiser"
        pipe.denoiser.save_pretrained(folder, safe_serialization=False)
        (folder / "diffusion_pytorch_model.safetensors").unlink()
    else:
        folder = tmp_path / "p" / "report_encoder" / "text_encoder"
        torch.save(pipe.report_encoder.text_encoder.state_dict(), folder / "pytorch_model.bin")  # a pickle
        (folder / "model.safetensors").unlink()
    assert any(p.suffix == ".bin" for p in folder.iterdir())
    with pytest.raises(DiffCXRError, match="safetensors"):
        DiffCXRPipeline.from_pretrained(tmp_path / "p")
    with pytest.raises(DiffCXRError, match="safetensors files only"):
        DiffCXRPipeline.from_pretrained(tmp_path / "p", use_safetensors=False)
    assert main(["generate", "No acute disease.", "--model", str(tmp_path / "p"), "--out", str(tmp_path / "g"),
                 "--n", "1", "--steps", "1", "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("diffcxr: error:") and "safetensors" in err[-1]
