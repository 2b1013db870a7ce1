"""The diffusion process lives in one module (diffcxr.models.diffusion); the paths that used to write it by hand
(training noising, the training-grid sampler) must give what the hand-written versions gave."""

from __future__ import annotations

import json

import pytest
import torch

from diffcxr.models.diffusion import (PAPER_SCHEDULE, epsilon_loss, noise_latents, sampling_scheduler,
                                      schedule_config, training_scheduler)
from diffcxr.models.knowledge_adapter import predict_noise
from diffcxr.models.vae import decode_latents
from diffcxr.pipelines import DiffCXRPipeline
from diffcxr.training.config import load_run_config


def test_noise_latents_is_the_closed_form_forward_process():
    sched = training_scheduler()
    latents = torch.randn(6, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    noisy, noise, t = noise_latents(sched, latents, torch.Generator().manual_seed(7))
    # the hand-written version the training stages had: same draws in the same order
    g = torch.Generator().manual_seed(7)
    ref_noise = torch.randn(latents.shape, generator=g)
    ref_t = torch.randint(0, 1000, (6,), generator=g)
    a = sched.alphas_cumprod[ref_t].view(-1, 1, 1, 1)
    torch.testing.assert_close(noise, ref_noise)
    assert torch.equal(t, ref_t)
    torch.testing.assert_close(noisy, a.sqrt() * latents + (1 - a).sqrt() * ref_noise)
    # the next draw of the generator (condition dropout) is unchanged by the refactor as well
    assert epsilon_loss(noise, noise) == 0 and epsilon_loss(noise.half(), noise) < 1e-5


def test_min_snr_weighting_down_weights_only_the_nearly_clean_timesteps():
    sched = training_scheduler()
    noise = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    predicted = noise + 1.0  # squared error 1 everywhere
    alphas = sched.alphas_cumprod
    snr = alphas / (1 - alphas)
    low_t, high_t = 10, 900  # SNR far above 5 near t = 0, below 1 near t = T
    assert snr[low_t] > 5 > 1 > snr[high_t]
    for t, expected in ((low_t, 5 / snr[low_t].item()), (high_t, 1.0)):
        timesteps = torch.full((2,), t)
        loss = epsilon_loss(predicted, noise, timesteps=timesteps, scheduler=sched, snr_gamma=5.0)
        assert abs(loss.item() - expected) < 1e-5
    # gamma None is the plain mean whatever the timesteps; gamma without the draw is an error
    assert epsilon_loss(predicted, noise, timesteps=torch.full((2,), low_t), scheduler=sched).item() == 1.0
    with pytest.raises(ValueError, match="timesteps"):
        epsilon_loss(predicted, noise, snr_gamma=5.0)
    run = load_run_config("tiny", ["base.snr_gamma=5", "adapter.snr_gamma=5"])
    assert run.base.snr_gamma == 5.0 and run.adapter.snr_gamma == 5.0


def test_min_snr_is_the_default_only_where_it_was_measured():
    """cpu-mini and demo train with min-SNR-5 (measured over 2 and 3 seeds); paper keeps the paper's plain
    eps-MSE, and null switches cpu-mini back to it."""
    for name in ("cpu-mini", "demo"):
        run = load_run_config(name, [])
        assert (run.base.snr_gamma, run.adapter.snr_gamma) == (5.0, 5.0)
    paper = load_run_config("paper", [])
    assert paper.base.snr_gamma is None and paper.adapter.snr_gamma is None
    plain = load_run_config("cpu-mini", ["base.snr_gamma=null", "adapter.snr_gamma=null"])
    assert plain.base.snr_gamma is None and plain.adapter.snr_gamma is None


def test_schedulers_follow_the_stage_config():
    run = load_run_config("tiny", ["base.beta_end=0.02", "base.num_train_timesteps=500"])
    assert schedule_config()["beta_end"] == PAPER_SCHEDULE["beta_end"]
    train, sample = training_scheduler(run.base), sampling_scheduler(run.base)
    for s in (train, sample):
        assert s.config.beta_end == 0.02 and s.config.num_train_timesteps == 500
        assert s.config.prediction_type == "epsilon"
    assert sample.config.algorithm_type == "dpmsolver++" and sample.config.solver_order == 2


@torch.no_grad()
def test_pipeline_with_knowledge_embeds_equals_the_hand_written_grid_sampler():
    """The training grids now sample through an in-memory DiffCXRPipeline; this is the loop they had."""
    pipe = DiffCXRPipeline.from_model_config("tiny", seed=0, with_adapter=True)
    with torch.no_grad():  # a non-zero adapter, so that its conditioning matters
        for p in [*pipe.knowledge_adapter.skip_residual_proj.parameters(),
                  *pipe.knowledge_adapter.knowledge_proj.parameters()]:
            p.normal_(0, 0.05)
    reports, knowledge = ["Large right pleural effusion.", "No acute disease."], ["There is pleural effusion.",
                                                                                  "There is no finding."]
    w, steps, seed = 3.0, 4, 5
    know = pipe.encode_text(knowledge)
    got = pipe(reports, knowledge_embeds=know, guidance_scale=w, num_inference_steps=steps, output_type="pt",
               generator=torch.Generator().manual_seed(seed), progress=False).images

    enc, uvit = pipe.report_encoder, pipe.denoiser
    cond = enc.encode(reports).condition_embeds.float()
    empty = enc.encode([""], allow_empty=True).condition_embeds.float().expand(2, -1, -1)
    sched = sampling_scheduler()
    sched.set_timesteps(steps)
    c, s = uvit.config.in_channels, uvit.config.sample_size
    latents = torch.randn((2, c, s, s), generator=torch.Generator().manual_seed(seed)) * sched.init_noise_sigma
    for t in sched.timesteps:
        eps = predict_noise(uvit, torch.cat([latents, latents]), t, torch.cat([empty, cond]),
                            knowledge_adapter=pipe.knowledge_adapter,
                            knowledge_hidden_states=torch.cat([empty, know])).float()
        eps_u, eps_c = eps.chunk(2)
        latents = sched.step(eps_u + w * (eps_c - eps_u), t, latents).prev_sample
    expected = ((decode_latents(pipe.vae, latents).float() + 1) / 2).clamp(0, 1)
    torch.testing.assert_close(got, expected)
    # and the knowledge embeddings matter: other knowledge, other images
    other = pipe(reports, knowledge_embeds=know.flip(0), guidance_scale=w, num_inference_steps=steps,
                 output_type="pt", generator=torch.Generator().manual_seed(seed), progress=False).images
    assert not torch.allclose(got, other)


def test_every_solver_samples_the_same_image_as_dpm_solver_at_many_steps():
    """Swapped into a saved pipeline, each ODE solver of SOLVERS lands on DPM-Solver++'s image from the same noise:
    far closer than another noise draw is (first-order DDIM and Euler converge slowest). ``lcm`` is the sampler
    of consistency-distilled students (``tests/test_distill.py``), not a solver of an ε-model's ODE; ``auto``
    is ``lcm`` for an LCM pipeline and ``dpm++2m`` for every other."""
    from pathlib import Path

    import numpy as np
    import pytest

    from diffcxr.errors import DiffCXRError
    from diffcxr.models.diffusion import SOLVERS, solver_scheduler
    from diffcxr.pipelines import DiffCXRPipeline

    pipe = DiffCXRPipeline.from_pretrained(Path(__file__).parent / "fixtures" / "tiny_pipeline")
    pipe.set_progress_bar_config(disable=True)
    shape = (1, pipe.denoiser.config.in_channels, pipe.denoiser.config.sample_size, pipe.denoiser.config.sample_size)
    noise, other = (torch.randn(shape, generator=torch.Generator().manual_seed(s)) for s in (0, 1))

    def sample(latents, steps):
        return pipe("Large left pleural effusion.", num_inference_steps=steps, latents=latents, output_type="np",
                    progress=False).images

    reference = sample(noise, 20)
    spread = np.abs(sample(other, 20) - reference).mean()
    for name in [n for n in SOLVERS if n != "lcm"]:
        pipe.scheduler = solver_scheduler(name, pipe.scheduler.config)
        assert np.abs(sample(noise, 20) - reference).mean() < 0.25 * spread, name
    lcm = solver_scheduler("lcm", pipe.scheduler.config)
    assert type(lcm).__name__ == "LCMScheduler"
    assert type(solver_scheduler("auto", lcm.config)).__name__ == "LCMScheduler"
    assert type(solver_scheduler("auto", pipe.scheduler.config)).__name__ == "DPMSolverMultistepScheduler"
    with pytest.raises(DiffCXRError, match="unknown solver"):
        solver_scheduler("heun++", pipe.scheduler.config)


def test_auto_reads_back_the_solver_a_pipeline_was_saved_with(tmp_path):
    from diffcxr.models.diffusion import SOLVERS, resolve_solver, sampling_scheduler, solver_scheduler

    for name in SOLVERS:
        scheduler = solver_scheduler(name, sampling_scheduler().config)
        scheduler.save_config(tmp_path / name)
        saved = json.loads((tmp_path / name / "scheduler_config.json").read_text())
        assert resolve_solver("auto", scheduler) == name  # what generate and the app pass: pipe.scheduler
        assert resolve_solver("auto", saved) == name  # a config as saved names its class
    assert type(sampling_scheduler(None, "deis")).__name__ == "DEISMultistepScheduler"


def test_a_student_solver_is_refused_as_a_run_config_solver(tmp_path, capsys):
    from diffcxr.cli.main import main

    rc = main(["train", "all", "-c", "tiny", "--data", "phantom:nowhere", "--output-dir", str(tmp_path / "r"),
               "sample.solver=lcm"])
    err = capsys.readouterr().err
    assert rc != 0 and "sample.solver must be one of" in err and "Traceback" not in err


def test_the_cli_solver_choices_are_the_library_solvers():
    from diffcxr.cli.generate import SOLVER_NAMES
    from diffcxr.models.diffusion import SOLVERS

    assert SOLVER_NAMES == ("auto", *SOLVERS)


def test_the_run_config_solver_choices_are_the_library_teacher_solvers():
    from diffcxr.models.diffusion import SOLVERS
    from diffcxr.training.config import _CHOICES

    assert _CHOICES["solver"] == tuple(name for name in SOLVERS if name != "lcm")
