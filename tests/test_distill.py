"""Guidance distillation: the guidance-conditioned student, its target, the one-forward pipeline and the stage."""

from __future__ import annotations

import json

import pytest
import torch
from _training_fixtures import phantom_dir  # noqa: F401 - fixture

from diffcxr.cli.main import main
from diffcxr.errors import DiffCXRError


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    from diffcxr.pipelines import DiffCXRPipeline

    out = tmp_path_factory.mktemp("teacher") / "pipeline"
    DiffCXRPipeline.from_model_config("tiny", seed=0).save_pretrained(out, safe_serialization=True)
    return out


@pytest.fixture(scope="module")
def distilled(tmp_path_factory, teacher_dir, phantom_dir):  # noqa: F811
    out = tmp_path_factory.mktemp("distilled")
    rc = main(["train", "distill", "-c", "tiny", "--teacher", str(teacher_dir), "--data", f"phantom:{phantom_dir}",
               "--output-dir", str(out), "--no-progress", "--no-mixed-precision", "distill.max_steps=3"])
    assert rc == 0
    return out


def _inputs(uvit, batch=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    c, s = uvit.config.in_channels, uvit.config.sample_size
    return (torch.randn(batch, c, s, s, generator=g), torch.randint(0, 1000, (batch,), generator=g),
            torch.randn(batch, 77, uvit.config.context_dim, generator=g))


def test_fresh_student_is_the_teachers_conditional_branch_at_every_w():
    from diffcxr.pipelines import DiffCXRPipeline
    from diffcxr.training.distill import student_from_teacher

    teacher = DiffCXRPipeline.from_model_config("tiny", seed=0).denoiser
    student = student_from_teacher(teacher)
    x, t, c = _inputs(teacher)
    expected = teacher(x, t, c).sample
    for w in (1.0, 2.0, torch.tensor([1.0, 4.0, 6.0])):
        torch.testing.assert_close(student(x, t, c, guidance=w).sample, expected)
    # once the embedding's last layer is non-zero the student reads w
    torch.nn.init.normal_(student.guidance_embed[-1].weight, std=0.1)
    assert not torch.allclose(student(x, t, c, guidance=1.0).sample, student(x, t, c, guidance=5.0).sample)


def test_guidance_distilled_uvit_refuses_a_missing_w():
    from diffcxr.models.uvit import UViT

    uvit = UViT(sample_size=8, in_channels=4, patch_size=2, width=32, depth=2, num_heads=2, context_dim=16,
                guidance_embedding=True)
    x, t, c = _inputs(uvit, 1)
    with pytest.raises(DiffCXRError, match="guidance-distilled"):
        uvit(x, t, c)


def test_guided_target_is_the_pipelines_classifier_free_guidance():
    from diffcxr.models.knowledge_adapter import predict_noise
    from diffcxr.pipelines import DiffCXRPipeline
    from diffcxr.training.distill import guided_target

    pipe = DiffCXRPipeline.from_model_config("tiny", seed=0)
    for proj in (pipe.knowledge_adapter.knowledge_proj, pipe.knowledge_adapter.mid_residual_proj,
                 *pipe.knowledge_adapter.skip_residual_proj):  # a non-trivial adapter (they start at zero)
        torch.nn.init.normal_(proj.weight, std=0.05)
    x, t, report = _inputs(pipe.denoiser)
    knowledge, empty = torch.randn_like(report), torch.randn(1, *report.shape[1:])
    w = torch.tensor([1.0, 2.5, 6.0])
    target = guided_target(pipe.denoiser, pipe.knowledge_adapter, x, t, report, knowledge, empty, w)
    with torch.no_grad():
        eps_c = predict_noise(pipe.denoiser, x, t, report, pipe.knowledge_adapter, knowledge)
        eps_u = predict_noise(pipe.denoiser, x, t, empty.expand_as(report), pipe.knowledge_adapter,
                              empty.expand_as(knowledge))
    torch.testing.assert_close(target, eps_u + w.view(-1, 1, 1, 1) * (eps_c - eps_u), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(target[0], eps_c[0], atol=1e-5, rtol=1e-5)  # w = 1: the conditional branch
    # the adapter at another scale (a teacher whose default adapter scale is 2 is distilled at 2)
    scaled = guided_target(pipe.denoiser, pipe.knowledge_adapter, x, t, report, knowledge, empty, w, adapter_scale=2.0)
    with torch.no_grad():
        eps_c2 = predict_noise(pipe.denoiser, x, t, report, pipe.knowledge_adapter, knowledge, conditioning_scale=2.0)
    torch.testing.assert_close(scaled[0], eps_c2[0], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(scaled, target, atol=1e-4)


def test_distilled_pipeline_needs_one_forward_per_step(distilled, teacher_dir):
    from diffcxr.pipelines import DiffCXRPipeline

    batches = {}
    for name, folder in (("teacher", teacher_dir), ("student", distilled / "pipeline")):
        pipe = DiffCXRPipeline.from_pretrained(folder)
        seen = []
        pipe.denoiser.register_forward_hook(lambda m, args, out, seen=seen: seen.append(args[0].shape[0]))
        out = pipe(["Large right pleural effusion.", "Normal chest."], num_inference_steps=3, guidance_scale=4.0,
                   output_type="pt", generator=torch.Generator().manual_seed(0), progress=False)
        assert torch.isfinite(out.images).all() and tuple(out.images.shape) == (2, 1, 32, 32)
        batches[name] = seen
        assert pipe.guidance_distilled == (name == "student")
        assert pipe.guidance_range == ((1.0, 6.0) if name == "student" else None)
    assert batches["teacher"] == [4, 4, 4]  # unconditional + conditional branch per step
    assert batches["student"] == [2, 2, 2]  # the guided noise in one forward


def test_distill_stage_writes_a_pipeline_that_says_what_it_is(distilled, teacher_dir, phantom_dir):  # noqa: F811
    stage = distilled / "distill"
    for name in ("denoiser/config.json", "denoiser/diffusion_pytorch_model.safetensors", "samples/final.png",
                 "log.csv", "COMPLETE.json", "run_info.json"):
        assert (stage / name).exists(), name
    assert json.loads((stage / "denoiser" / "config.json").read_text())["guidance_embedding"] is True
    info = json.loads((stage / "run_info.json").read_text())
    assert info["stage"] == "distill" and info["teacher"] == str(teacher_dir.resolve())
    card = json.loads((distilled / "pipeline" / "training_data.json").read_text())["components"]["denoiser"]
    assert card["stage"] == "distill" and card["data"] == f"phantom:{phantom_dir}"
    assert card["guidance_range"] == [1.0, 6.0]
    assert "guidance-distilled" in (distilled / "pipeline" / "README.md").read_text()
    # the teacher's adapter and report encoder are kept, byte for byte
    for part in ("knowledge_adapter/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors"):
        assert (distilled / "pipeline" / part).read_bytes() == (teacher_dir / part).read_bytes()


def test_distillation_learns_the_guided_target(tmp_path, teacher_dir, phantom_dir):  # noqa: F811
    """After 40 steps the student is far closer to the teacher's guided noise (w = 5) on the training latents
    than the fresh copy (which predicts the conditional branch)."""
    from diffcxr.models.diffusion import noise_latents, training_scheduler
    from diffcxr.models.knowledge_adapter import predict_noise
    from diffcxr.pipelines import DiffCXRPipeline
    from diffcxr.training import load_run_config, train_stage
    from diffcxr.training.cache import LatentCache
    from diffcxr.training.distill import guided_target, student_from_teacher

    teacher = DiffCXRPipeline.from_pretrained(teacher_dir)
    # a teacher whose conditional and unconditional branches differ clearly (a random U-ViT's output is tiny)
    with torch.no_grad():
        teacher.denoiser.context_embed.weight.mul_(20)
        teacher.denoiser.decoder_pred.weight.mul_(30)
    teacher.save_pretrained(tmp_path / "teacher")
    run = load_run_config("tiny", ["mixed_precision=no", "distill.max_steps=40", "distill.lr=5e-4",
                                   "distill.warmup_steps=0", "distill.ema_decay=0", "distill.guidance_min=5",
                                   "distill.guidance_max=5"])
    out = tmp_path / "out"
    train_stage("distill", run, f"phantom:{phantom_dir}", out, teacher=str(tmp_path / "teacher"), progress=False)
    student_pipe = DiffCXRPipeline.from_pretrained(out / "pipeline")
    # the teacher's default w (2) is outside the distilled range: the student's default is the nearest w it knows
    assert teacher.default_guidance_scale == 2.0 and student_pipe.default_guidance_scale == 5.0
    trained = student_pipe.denoiser
    fresh = student_from_teacher(teacher.denoiser)

    cache = LatentCache((out / "distill" / ".cache_folder").read_text().strip())
    latents, report, knowledge = cache.get(list(range(len(cache))))
    noisy, _, t = noise_latents(training_scheduler(teacher.scheduler.config), latents,
                                torch.Generator().manual_seed(123))
    w = torch.full((len(cache),), 5.0)
    target = guided_target(teacher.denoiser, teacher.knowledge_adapter, noisy, t, report, knowledge, cache.empty, w)
    with torch.no_grad():
        errors = {name: torch.mean((predict_noise(net, noisy, t, report, teacher.knowledge_adapter, knowledge,
                                                  guidance=w) - target) ** 2).item()
                  for name, net in (("fresh", fresh), ("trained", trained))}
    assert errors["trained"] < 0.5 * errors["fresh"], errors


def test_distill_bad_input_is_one_error_line(tmp_path, teacher_dir, phantom_dir, capsys):  # noqa: F811
    data = ["--data", f"phantom:{phantom_dir}", "--no-progress"]
    cases = [
        (["train", "distill", "-c", "tiny", *data, "--output-dir", str(tmp_path / "a")], "needs --teacher"),
        (["train", "distill", "-c", "tiny", "--teacher", str(tmp_path), *data, "--output-dir", str(tmp_path / "b")],
         "not a saved pipeline"),
        (["train", "distill", "-c", "demo", "--teacher", str(teacher_dir), *data, "--output-dir",
          str(tmp_path / "c")], "use the config the teacher was trained with"),
        (["train", "base", "-c", "tiny", "--teacher", str(teacher_dir), *data, "--output-dir", str(tmp_path / "d")],
         "for `train distill` only"),
        (["train", "distill", "-c", "tiny", "--teacher", str(teacher_dir), *data, "--output-dir",
          str(tmp_path / "e"), "distill.guidance_min=3", "distill.guidance_max=2"], "guidance_min <= guidance_max"),
    ]
    for argv, message in cases:
        assert main(argv) != 0, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("diffcxr: error:") and message in err[0], err


def test_an_already_distilled_teacher_is_refused(distilled, tmp_path, phantom_dir, capsys):  # noqa: F811
    argv = ["train", "distill", "-c", "tiny", "--teacher", str(distilled / "pipeline"), "--data",
            f"phantom:{phantom_dir}", "--output-dir", str(tmp_path / "again"), "--no-progress"]
    assert main(argv) != 0
    assert "already guidance-distilled" in capsys.readouterr().err


# -- consistency distillation (distill.method=consistency) ---------------------------------------------------------
def test_consistency_function_is_what_lcm_scheduler_denoises_to():
    from diffusers import LCMScheduler

    from diffcxr.training.distill import consistency_function

    scheduler = LCMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                             beta_schedule="scaled_linear", original_inference_steps=50)
    scheduler.set_timesteps(4)
    g = torch.Generator().manual_seed(0)
    for t in scheduler.timesteps[:2]:
        x, eps = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
        scheduler._step_index = None  # each check is a fresh first step at t
        scheduler._init_step_index(t)
        denoised = scheduler.step(eps, t, x, generator=torch.Generator().manual_seed(1)).denoised
        mine = consistency_function(eps, x, torch.full((2,), int(t)), scheduler.alphas_cumprod)
        torch.testing.assert_close(mine, denoised, atol=1e-5, rtol=1e-5)
    # the boundary condition: f(x, 0) = x
    x = torch.randn(1, 4, 8, 8, generator=g)
    torch.testing.assert_close(consistency_function(torch.randn_like(x), x, torch.zeros(1, dtype=torch.long),
                                                    scheduler.alphas_cumprod), x)


def test_ddim_step_with_the_true_noise_lands_on_the_earlier_noisy_latent():
    from diffusers import DDPMScheduler

    from diffcxr.training.distill import ddim_step, ddim_timestep_grid

    schedule = DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    grid = ddim_timestep_grid(1000, 50)
    assert grid[0] == 19 and grid[-1] == 999 and len(grid) == 50
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(3, 4, 8, 8, generator=g), torch.randn(3, 4, 8, 8, generator=g)
    t, prev = torch.tensor([999, 519, 19]), torch.tensor([979, 499, 0])
    stepped = ddim_step(schedule.add_noise(x0, noise, t), noise, t, prev, schedule.alphas_cumprod)
    torch.testing.assert_close(stepped, schedule.add_noise(x0, noise, prev), atol=1e-4, rtol=1e-4)


@pytest.fixture(scope="module")
def consistency_student(tmp_path_factory, teacher_dir, phantom_dir):  # noqa: F811
    out = tmp_path_factory.mktemp("lcm")
    argv = ["train", "distill", "-c", "tiny", "--teacher", str(teacher_dir), "--data", f"phantom:{phantom_dir}",
            "--output-dir", str(out), "--no-progress", "--no-mixed-precision", "distill.method=consistency",
            "distill.max_steps=2", "distill.checkpoint_every=1"]
    assert main(argv) == 0
    assert main(argv[:-2] + ["distill.max_steps=3", "--resume"]) == 0  # the EMA target copy resumes too
    return out


def test_consistency_student_samples_in_its_own_few_steps(consistency_student, caplog):
    from diffusers import LCMScheduler

    from diffcxr.pipelines import DiffCXRPipeline

    rows = [line.split(",")[0] for line in (consistency_student / "distill" / "log.csv").read_text().splitlines()[1:]]
    assert rows[-1] == "3"  # resumed to the new max_steps
    pipe = DiffCXRPipeline.from_pretrained(consistency_student / "pipeline")
    assert isinstance(pipe.scheduler, LCMScheduler) and pipe.default_inference_steps == 4
    assert pipe.guidance_distilled
    calls = []
    pipe.denoiser.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    images = [pipe("Small left pleural effusion.", guidance_scale=3.0, output_type="pt", progress=False,
                   generator=torch.Generator().manual_seed(7)).images for _ in range(2)]
    assert calls == [1] * 8  # 4 steps (the recorded default), one forward each, twice
    torch.testing.assert_close(images[0], images[1])  # LCM's re-noising draws from the caller's generator
    card = json.loads((consistency_student / "pipeline" / "training_data.json").read_text())["components"]["denoiser"]
    assert card["method"] == "consistency" and card["default_inference_steps"] == 4
    assert card["scheduler"] == "LCMScheduler"
    # the w range it was distilled on travels with the pipeline; a call outside it says so
    assert pipe.guidance_range == (1.0, 6.0)
    with caplog.at_level("WARNING"):
        pipe("Small left pleural effusion.", guidance_scale=6.0, output_type="pt", progress=False)
        assert "outside the w range" not in caplog.text
        pipe("Small left pleural effusion.", guidance_scale=9.0, output_type="pt", progress=False)
    assert "outside the w range this student was distilled on [1, 6]" in caplog.text


def test_generate_uses_the_pipelines_own_solver_and_steps(consistency_student, tmp_path):
    import yaml

    out = tmp_path / "gen"
    assert main(["generate", "--model", str(consistency_student / "pipeline"), "Normal chest.", "--n", "1",
                 "--out", str(out), "--quiet"]) == 0
    sidecar = json.loads((out / "0_00.json").read_text())
    assert sidecar["settings"]["solver"] == "lcm" and sidecar["settings"]["steps"] == 4
    assert sidecar["settings"]["scheduler"] == "LCMScheduler"
    run = yaml.safe_load((out / "generate_run.yaml").read_text())
    assert run["solver"] == "lcm" and run["steps"] == 4


def test_unknown_distill_method_is_one_error_line(tmp_path, teacher_dir, phantom_dir, capsys):  # noqa: F811
    argv = ["train", "distill", "-c", "tiny", "--teacher", str(teacher_dir), "--data", f"phantom:{phantom_dir}",
            "--output-dir", str(tmp_path / "x"), "distill.method=progressive"]
    assert main(argv) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "distill.method must be one of guidance, consistency" in err[0], err
