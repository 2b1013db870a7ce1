"""Benchmark: images/s of a guidance-distilled pipeline against its guided teacher, same steps, measured in one run.

Random weights (speed does not depend on training): the teacher is ``DiffCXRPipeline.from_model_config(CONFIG)``,
the student its ``student_from_teacher`` copy (the U-ViT with a guidance embedding), both with the same adapter,
VAE and report encoder. Each whole pipeline call (text encoding, ``--steps`` DPM-Solver++ steps at guidance
``--guidance``, VAE decode) is timed; teacher and student alternate and the fastest of ``--reps`` calls is kept.
With ``--clock cpu`` (default) the time is process CPU time on one thread, robust when other jobs share the cores.

    .venv/bin/python benchmarks/distilled_speed.py                         # cpu-mini, batch 4, 25 steps
    .venv/bin/python benchmarks/distilled_speed.py --config paper --batch 1 --steps 2 --reps 1
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

REPORT = "Moderate right pleural effusion with adjacent atelectasis. Heart size is normal. No pneumothorax."


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="cpu-mini")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--guidance", type=float, default=2.0)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    args = ap.parse_args()
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.clock == "cpu":
        torch.set_num_threads(1)
    from diffcxr.pipelines import DiffCXRPipeline
    from diffcxr.training.distill import student_from_teacher

    teacher = DiffCXRPipeline.from_model_config(args.config, seed=0)
    student = DiffCXRPipeline(vae=teacher.vae, denoiser=student_from_teacher(teacher.denoiser).eval(),
                              report_encoder=teacher.report_encoder, scheduler=teacher.scheduler,
                              knowledge_adapter=teacher.knowledge_adapter)
    pipes = {"guided teacher": teacher, "distilled student": student}
    best = {name: float("inf") for name in pipes}
    for _ in range(args.reps):
        for name, pipe in pipes.items():
            t = clock()
            pipe([REPORT] * args.batch, num_inference_steps=args.steps, guidance_scale=args.guidance,
                 output_type="pt", generator=torch.Generator().manual_seed(0), progress=False)
            best[name] = min(best[name], clock() - t)
    threads = torch.get_num_threads()
    print(f"{args.config}, batch {args.batch}, {args.steps} DPM-Solver++ steps, w = {args.guidance}, "
          f"{args.clock} clock, {threads} thread(s), best of {args.reps}:")
    for name, seconds in best.items():
        print(f"  {name:18s} {seconds / args.batch:7.3f} s/image  {args.batch / seconds:7.2f} images/s")
    print(f"  speed-up: {best['guided teacher'] / best['distilled student']:.2f}x")


if __name__ == "__main__":
    main()
