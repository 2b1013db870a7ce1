"""Phantom generation speed on one core: images/s for rendering alone and for render + 8-bit PNG write.

    .venv/bin/python benchmarks/phantom_speed.py [--size 256] [--n 200]

Prints wall-clock and CPU-time rates (CPU time is the honest number on a shared machine). The target
of issue 4 is >= 50 images/s at 256x256 on one core.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import numpy as np
    from PIL import Image

    from diffcxr.data.phantom import render_phantom, sample_case

    cases = [sample_case(args.seed, index=i) for i in range(args.n)]
    for c in cases[:10]:  # warm-up (imports, caches)
        render_phantom(c, args.size)

    t_wall, t_cpu = time.perf_counter(), time.process_time()
    imgs = [render_phantom(c, args.size) for c in cases]
    wall, cpu = time.perf_counter() - t_wall, time.process_time() - t_cpu

    with tempfile.TemporaryDirectory() as tmp:
        t_wall2, t_cpu2 = time.perf_counter(), time.process_time()
        for i, c in enumerate(cases):
            img = render_phantom(c, args.size)
            Image.fromarray(np.round(img * 255).astype(np.uint8), "L").save(f"{tmp}/{i}.png", compress_level=1)
        wall2, cpu2 = time.perf_counter() - t_wall2, time.process_time() - t_cpu2

    t_s = time.perf_counter()
    for i in range(args.n):
        sample_case(args.seed + 1, index=i)
    sample_ms = (time.perf_counter() - t_s) / args.n * 1e3

    print(f"phantom speed: {args.n} images at {args.size}x{args.size}, one process "
          f"({platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs visible)")
    print(f"  render only        : {args.n / wall:6.1f} images/s wall, {args.n / cpu:6.1f} images/s CPU time")
    print(f"  render + PNG write : {args.n / wall2:6.1f} images/s wall, {args.n / cpu2:6.1f} images/s CPU time")
    print(f"  case sampling + report writing: {sample_ms:.2f} ms/case")
    print(f"  mean pixel {float(np.mean([i.mean() for i in imgs])):.3f}")


if __name__ == "__main__":
    main()
