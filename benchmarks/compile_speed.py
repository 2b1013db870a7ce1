"""Benchmark: does ``torch.compile`` (inductor) speed up the denoiser + adapter forward on this CPU?

Random weights. Times ``predict_noise`` (U-ViT + knowledge adapter, one forward) eagerly and after
``torch.compile`` of both modules, at batch 1 (a distilled student's step), 2 (a guided step for one image) and
8; fastest and median of ``--reps`` forwards after warm-up, process CPU time on one thread (robust when other
jobs share the cores). Prints the compile time (first call; the compiler's worker processes are not counted)
and the speed-up per batch.

    .venv/bin/python benchmarks/compile_speed.py                 # cpu-mini, fp32
    .venv/bin/python benchmarks/compile_speed.py --dtype bf16
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from sampling_speed import DTYPES, build_pipeline


def time_forward(forward, batch: int, config, dtype, reps: int) -> tuple[float, float]:
    """(fastest, median) seconds of ``forward(x, context)`` at ``batch``."""
    x = torch.randn(batch, config.in_channels, config.sample_size, config.sample_size)
    context = torch.randn(batch, config.num_context_tokens, config.context_dim, dtype=dtype)
    with torch.no_grad():
        for _ in range(3):
            forward(x, context)
        times = []
        for _ in range(reps):
            t = time.process_time()
            forward(x, context)
            times.append(time.process_time() - t)
    return min(times), sorted(times)[len(times) // 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="cpu-mini")
    ap.add_argument("--dtype", choices=tuple(DTYPES), default="fp32")
    ap.add_argument("--batches", default="1,2,8")
    ap.add_argument("--reps", type=int, default=30)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from diffcxr.models.knowledge_adapter import predict_noise

    dtype = DTYPES[args.dtype]
    pipe, _ = build_pipeline(args.config)
    denoiser, adapter = pipe.denoiser.to(dtype).eval(), pipe.knowledge_adapter.to(dtype).eval()
    config = denoiser.config
    batches = [int(b) for b in args.batches.split(",")]

    def eager(x, context):
        return predict_noise(denoiser, x, 500, context, adapter, context)

    compiled_denoiser, compiled_adapter = torch.compile(denoiser), torch.compile(adapter)

    def compiled(x, context):
        return predict_noise(compiled_denoiser, x, 500, context, compiled_adapter, context)

    t = time.process_time()
    time_forward(compiled, batches[0], config, dtype, reps=1)
    compile_seconds = time.process_time() - t
    print(f"{args.config} {args.dtype}, 1 thread, CPU clock; torch.compile first call {compile_seconds:.1f} s")
    for batch in batches:
        e, c = time_forward(eager, batch, config, dtype, args.reps), time_forward(compiled, batch, config, dtype, args.reps)
        print(f"  batch {batch}: eager {e[0] * 1e3:7.1f} ms (median {e[1] * 1e3:.1f})  compiled {c[0] * 1e3:7.1f} ms "
              f"(median {c[1] * 1e3:.1f})  speed-up {e[0] / c[0]:.2f}x")


if __name__ == "__main__":
    main()
