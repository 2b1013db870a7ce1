"""Training speed of the diffusion stages: images/s and achieved FLOP/s ÷ measured matmul FLOP/s (same dtype, same
run), fp32 and bf16 autocast, for ``cpu-mini`` and ``paper``.

What is timed is the body of the stage-1 loop (``diffcxr.training.base``) on cached-latent-shaped tensors:
noise/timesteps from a seeded generator, ``add_noise``, U-ViT forward (under bf16 autocast for ``bf16``, fp32
master weights), ε-MSE, backward, gradient clipping, AdamW step — and the same for stage 2 (frozen base +
trainable knowledge adapter). Random weights: speed does not depend on training.

FLOPs per image and step: stage 1 = 3 × the U-ViT forward (forward + backward ≈ 2 × forward);
stage 2 = base forward + 3 × adapter forward + 2 × the base's out-half forward (activation gradients flow back
through the frozen out-blocks into the adapter's residuals; no weight gradients there) — counted from
:func:`diffcxr.flops.denoiser_macs` (linear/conv + attention matmuls, 2 FLOPs per MAC).

Other processes may share the cores: per step the fastest of the measured steps is used, and the matmul rate
(2048³ ``torch.mm`` in the same dtype) is measured before and after each configuration in the same process
(best kept), so the ratio is meaningful even when the absolute numbers are depressed by load. ``--clock cpu``
uses this process's CPU time on one thread (robust under heavy contention; absolute numbers then are 1-thread).

    .venv/bin/python benchmarks/training_speed.py                         # cpu-mini + paper, fp32 + bf16
    .venv/bin/python benchmarks/training_speed.py --configs cpu-mini --steps 5 --clock cpu
    python benchmarks/training_speed.py --device cuda --batch cpu-mini=256,paper=64 --steps 10   # on a GPU

On ``--device cuda`` the clock is CUDA-synchronised and the matmul rate is an 8192³ product.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
CLOCK = time.perf_counter
DEVICE = torch.device("cpu")  # --device


def _cuda_clock() -> float:
    torch.cuda.synchronize()
    return time.perf_counter()


def matmul_flops(dtype: torch.dtype, n: int = 2048, reps: int = 4) -> float:
    from diffcxr.flops import matmul_flops as machine_matmul_flops

    return machine_matmul_flops(dtype, DEVICE, n=8192 if DEVICE.type == "cuda" else n, reps=reps, clock=CLOCK)


def step_flops(config: str) -> dict[str, float]:
    """FLOPs per image of one training step of stage 1 and stage 2."""
    from diffcxr.flops import denoiser_macs

    m = denoiser_macs(config, with_adapter=True)
    base, adapter = 2.0 * m["base"].with_attention, 2.0 * m["adapter"].with_attention
    base_out_half = max(base - adapter, 0.0)  # the out-blocks + head: what the adapter's gradients flow through
    return {"base": 3 * base, "adapter": base + 3 * adapter + 2 * base_out_half}


def make_models(config: str):
    from diffcxr.models.configs import load_model_config, uvit_kwargs
    from diffcxr.models.knowledge_adapter import DiseaseKnowledgeAdapter
    from diffcxr.models.uvit import UViT

    cfg = load_model_config(config)
    torch.manual_seed(0)
    base = UViT(**uvit_kwargs(cfg))
    return cfg, base.to(DEVICE), DiseaseKnowledgeAdapter.from_uvit(base).to(DEVICE)


def time_stage(stage: str, base, adapter, batch: int, dtype: str, steps: int) -> list[float]:
    """Seconds of each of ``steps`` training steps (after one warm-up step)."""
    from diffcxr.models.diffusion import epsilon_loss, noise_latents, training_scheduler
    from diffcxr.models.knowledge_adapter import predict_noise

    sched = training_scheduler()
    c, s = base.config.in_channels, base.config.sample_size
    ctx = torch.randn(batch, base.config.num_context_tokens, base.config.context_dim, device=DEVICE)
    latents = torch.randn(batch, c, s, s, device=DEVICE)
    if stage == "base":
        base.requires_grad_(True)
        base.train()
        params = list(base.parameters())
    else:
        base.requires_grad_(False)
        base.eval()
        adapter.train()
        params = list(adapter.parameters())
    opt = torch.optim.AdamW(params, lr=2e-4, weight_decay=0.03, betas=(0.9, 0.9))
    times = []
    for i in range(steps + 1):
        t0 = CLOCK()
        noisy, noise, t = noise_latents(sched, latents, torch.Generator().manual_seed(i))
        with torch.autocast(DEVICE.type, dtype=torch.bfloat16, enabled=dtype == "bf16"):
            if stage == "base":
                pred = base(noisy, t, ctx).sample
            else:
                pred = predict_noise(base, noisy, t, ctx, knowledge_adapter=adapter, knowledge_hidden_states=ctx)
        loss = epsilon_loss(pred, noise)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i:
            times.append(CLOCK() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default="cpu-mini,paper")
    ap.add_argument("--dtypes", default="fp32,bf16")
    ap.add_argument("--stages", default="base,adapter")
    ap.add_argument("--batch", default="cpu-mini=32,paper=4", help="batch per config, e.g. cpu-mini=32,paper=4")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per setting (after 1 warm-up step)")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    global CLOCK, DEVICE
    DEVICE = torch.device(args.device)
    if DEVICE.type == "cuda":
        CLOCK = _cuda_clock
    if args.clock == "cpu":
        torch.set_num_threads(1)
        CLOCK = time.process_time
    batches = dict(item.split("=") for item in args.batch.split(","))
    dtypes = args.dtypes.split(",")
    results = {"device": torch.cuda.get_device_name() if DEVICE.type == "cuda" else "cpu", "clock": args.clock,
               "threads": torch.get_num_threads(), "loadavg_start": os.getloadavg(), "runs": []}
    peak = {d: matmul_flops(DTYPES[d]) for d in dtypes}
    print(f"load average {results['loadavg_start'][0]:.1f}; torch {torch.__version__}, {results['device']}, "
          f"{torch.get_num_threads()} threads, {args.clock} clock; " + ", ".join(f"{d} matmul {peak[d] / 1e9:.0f} GFLOP/s" for d in dtypes))
    for config in args.configs.split(","):
        flops = step_flops(config)
        cfg, base, adapter = make_models(config)
        batch = int(batches.get(config, 8))
        for d in dtypes:
            for stage in args.stages.split(","):
                peak[d] = max(peak[d], matmul_flops(DTYPES[d], reps=2))
                times = time_stage(stage, base, adapter, batch, d, args.steps)
                best = min(times)
                achieved = flops[stage] * batch / best
                peak[d] = max(peak[d], matmul_flops(DTYPES[d], reps=2))
                row = {"config": config, "image_size": cfg["image_size"], "stage": stage, "dtype": d, "batch": batch,
                       "s_per_step": best, "s_per_step_all": times, "images_per_s": batch / best,
                       "flops_per_image": flops[stage], "achieved_flops": achieved, "matmul_flops": peak[d],
                       "ratio_to_matmul": achieved / peak[d]}
                results["runs"].append(row)
                print(f"{config:>8} {stage:>7} {d} batch {batch:3d}: {best:7.3f} s/step  {batch / best:8.2f} img/s  "
                      f"{achieved / 1e9:7.1f} GFLOP/s = {row['ratio_to_matmul']:.2f} x {d} matmul "
                      f"({peak[d] / 1e9:.0f} GFLOP/s)", flush=True)
    results["matmul_flops"] = peak
    results["loadavg_end"] = os.getloadavg()
    for config in args.configs.split(","):
        rows = {(r["stage"], r["dtype"]): r for r in results["runs"] if r["config"] == config}
        for stage in args.stages.split(","):
            if ("fp32" in dtypes and "bf16" in dtypes) and (stage, "fp32") in rows:
                speedup = rows[(stage, "fp32")]["s_per_step"] / rows[(stage, "bf16")]["s_per_step"]
                print(f"{config} {stage}: bf16 autocast is {speedup:.2f}x the speed of fp32")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
