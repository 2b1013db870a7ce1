"""Benchmark: FID/KID over 50,000 generated 256×256 images (+10,000 real) streamed in batches stays below 2 GB peak RSS.

No Inception weights exist offline, so the feature network is diffcxr's seeded *random* conv extractor widened to
2048-d features (Inception's pool3 width, so the O(D²) statistics have the real size). The images are synthetic
tensors (uniform noise; the "generated" side brightness-shifted), produced batch by batch and never stored.
What is measured is memory and throughput of the streaming statistics, not image quality.

    nice .venv/bin/python benchmarks/fid_memory.py              # 50,000 generated + 10,000 real
    nice .venv/bin/python benchmarks/fid_memory.py --n 5000 --n-real 1000     # quick

Prints peak RSS (``resource.getrusage``: ``ru_maxrss``), the FID/KID values, and the memory a naive
``N × 2048`` float64 feature matrix per side would have needed.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from diffcxr.metrics import ReservoirSampler, StreamingGaussianStats, frechet_distance, kernel_inception_distance
from diffcxr.metrics.extractors import FeatureExtractor


class WideRandomNet(torch.nn.Module):
    """Cheap seeded random conv net with a 2048-d output (like Inception's pool3 width)."""

    def __init__(self, dim: int = 2048) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(1, 16, 8, stride=8), torch.nn.ReLU(), torch.nn.Conv2d(16, 32, 3, stride=2, padding=1),
            torch.nn.ReLU(), torch.nn.Conv2d(32, 64, 3, stride=2, padding=1), torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten(), torch.nn.Linear(64 * 16, dim))

    def forward(self, x):
        return self.net(x)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50_000, help="generated images (default 50000)")
    ap.add_argument("--n-real", type=int, default=10_000, help="real reference images (default 10000)")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--kid-capacity", type=int, default=10_000)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    extractor = FeatureExtractor(WideRandomNet(args.dim), f"random(dim={args.dim})", None)
    base_rss = peak_rss_mb()
    t0 = time.perf_counter()
    sides = {}
    for side, shift, n in (("real", 0.0, args.n_real), ("generated", 0.1, args.n)):
        stats, reservoir = StreamingGaussianStats(), ReservoirSampler(args.kid_capacity, seed=len(sides))
        gen = torch.Generator().manual_seed(len(sides))
        done = 0
        while done < n:
            b = min(args.batch, n - done)
            x = torch.rand(b, 1, args.size, args.size, generator=gen) * (2 - shift) - 1 + shift
            f = extractor(x.clamp(-1, 1))
            stats.update(f)
            reservoir.update(f)
            done += b
        sides[side] = (stats, reservoir)
        print(f"{side}: {stats.n} images streamed, peak RSS so far {peak_rss_mb():.0f} MB "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    (a, ra), (b, rb) = sides["real"], sides["generated"]
    fid = frechet_distance(a.mean, a.cov, b.mean, b.cov)
    kid, kid_std, used = kernel_inception_distance(ra.features, rb.features, subsets=20, subset_size=1000)
    elapsed = time.perf_counter() - t0
    peak = peak_rss_mb()
    naive = (args.n + args.n_real) * args.dim * 8 / 2**20
    print(f"FID {fid:.4f}  KID {kid:.5f} ± {kid_std:.5f} (subset {used})")
    print(f"images: {args.n} generated + {args.n_real} real at {args.size}x{args.size}, features {args.dim}-d, batch {args.batch}, "
          f"{elapsed:.0f} s ({(args.n + args.n_real) / elapsed:.0f} img/s)")
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    print(f"CPU time {cpu.ru_utime + cpu.ru_stime:.0f} s (wall time depends on how loaded the machine is)")
    print(f"peak RSS {peak:.0f} MB (after imports {base_rss:.0f} MB); naive float64 N x D feature matrices "
          f"would add {naive:.0f} MB")
    status = "PASS" if peak < 2048 else "FAIL"
    print(f"{status}: peak RSS {'<' if peak < 2048 else '>='} 2048 MB")
    if peak >= 2048:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
