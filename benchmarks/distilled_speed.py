"""Benchmark: images/s of the distilled students against their guided teacher, measured in one run.

Random weights (speed does not depend on training). Three pipelines share one VAE, report encoder and
knowledge adapter:

* ``teacher``: the guided pipeline, ``--teacher-steps`` DPM-Solver++ steps with classifier-free guidance
  (two denoiser + adapter forwards per step);
* ``guidance``: the guidance-distilled student (``student_from_teacher``: the U-ViT with a guidance embedding),
  the same steps at one forward per step;
* ``consistency``: the same student with diffusers' ``LCMScheduler`` in ``--student-steps`` steps, as a
  consistency-distilled pipeline samples.

Each whole pipeline call on ``--batch`` different reports (text encoding, denoising, VAE decode) is timed;
the pipelines alternate and the fastest of ``--reps`` calls is kept. The matmul rate (2048³ ``torch.mm``, same dtype) is measured in the same
run, and each row gives its denoiser FLOP/s over the whole call ÷ that rate. With ``--clock cpu`` (default) the
time is process CPU time on one thread, robust when other jobs share the cores (seconds are then one-core
seconds; two idle cores take roughly half).

    .venv/bin/python benchmarks/distilled_speed.py                      # cpu-mini, batch 4: 50-step teacher vs students
    .venv/bin/python benchmarks/distilled_speed.py --config paper --batch 1 --dtype bf16 --reps 1
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from sampling_speed import DTYPES, REPORT, build_pipeline, forward_flops, matmul_flops  # noqa: E402

# distinct reports (and so distinct knowledge prompts): a batch pays for every text encoding, as real use does
REPORTS = [REPORT, "Marked cardiomegaly. Lungs are clear.", "Large right pneumothorax. No effusion.",
           "Normal chest radiograph.", "Bilateral lower lobe consolidation. Small left pleural effusion.",
           "Left upper lobe mass. Heart size is normal.", "Pulmonary edema with cardiomegaly.",
           "Healed right rib fracture. No acute cardiopulmonary process."]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="cpu-mini")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--dtype", choices=tuple(DTYPES), default="fp32")
    ap.add_argument("--teacher-steps", type=int, default=50, help="steps of the teacher and the guidance student")
    ap.add_argument("--student-steps", type=int, default=4, help="LCM steps of the consistency student")
    ap.add_argument("--guidance", type=float, default=2.0)
    ap.add_argument("--pipes", default="teacher,guidance,consistency")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    args = ap.parse_args()
    import sampling_speed

    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    sampling_speed.CLOCK = clock
    if args.clock == "cpu":
        torch.set_num_threads(1)
    from diffcxr.pipelines import DiffCXRPipeline
    from diffcxr.training.config import DistillConfig
    from diffcxr.training.distill import distilled_pipeline, student_from_teacher

    dtype = DTYPES[args.dtype]
    teacher, _ = build_pipeline(args.config)
    student = student_from_teacher(teacher.denoiser).eval()
    candidates = {
        "teacher": (teacher, args.teacher_steps, 2),
        "guidance": (DiffCXRPipeline(vae=teacher.vae, denoiser=student, report_encoder=teacher.report_encoder,
                                     scheduler=teacher.scheduler, knowledge_adapter=teacher.knowledge_adapter),
                     args.teacher_steps, 1),
        "consistency": (distilled_pipeline(teacher, student, DistillConfig(method="consistency",
                                                                           sample_steps=args.student_steps)),
                        args.student_steps, 1),
    }
    pipes = {name: candidates[name] for name in args.pipes.split(",")}
    if dtype != torch.float32:
        for pipe, _, _ in pipes.values():
            pipe.to(dtype=dtype)
    peak = matmul_flops(dtype)
    fpf = forward_flops(args.config)
    best = {name: float("inf") for name in pipes}
    with torch.no_grad():
        for _ in range(args.reps):
            for name, (pipe, steps, _) in pipes.items():
                t = clock()
                reports = [REPORTS[i % len(REPORTS)] for i in range(args.batch)]
                pipe(reports, num_inference_steps=steps, guidance_scale=args.guidance, output_type="pt",
                     generator=torch.Generator().manual_seed(0), progress=False)
                best[name] = min(best[name], clock() - t)
    peak = max(peak, matmul_flops(dtype))
    print(f"{args.config}, {args.dtype}, batch {args.batch}, w = {args.guidance}, {args.clock} clock, "
          f"{torch.get_num_threads()} thread(s), best of {args.reps}; {args.dtype} matmul {peak / 1e9:.0f} GFLOP/s")
    reference = best.get("teacher")
    for name, (_, steps, forwards) in pipes.items():
        seconds = best[name]
        achieved = fpf * forwards * steps * args.batch / seconds
        line = (f"  {name:12s} {steps:3d} steps x {forwards} forward(s): {seconds / args.batch:8.3f} s/image "
                f"{args.batch / seconds:8.2f} images/s  denoiser {achieved / 1e9:6.1f} GFLOP/s = "
                f"{achieved / peak:.2f} x matmul")
        if reference is not None and name != "teacher":
            line += f"  speed-up over the teacher {reference / seconds:.2f}x"
        print(line)


if __name__ == "__main__":
    main()
