"""``diffcxr flops``: multiply-accumulates per denoiser forward, counted the way the Diff-CXR paper did."""

from __future__ import annotations

import argparse

from diffcxr.cli.arguments import count
import json

HELP = "count MACs and parameters of the denoiser (+ knowledge adapter) for a model config"

PAPER_GMACS = 29.641  # Diff-CXR paper, per denoiser forward at 256x256


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="paper", help="model config: tiny, cpu-mini, paper or a YAML path (default paper)")
    parser.add_argument("--steps", type=count, default=50, help="solver steps for the per-image sampling cost (default 50)")
    parser.add_argument("--no-guidance", action="store_true", help="sampling cost without classifier-free guidance")
    parser.add_argument("--no-adapter", action="store_true", help="count the base U-ViT only")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def run(args: argparse.Namespace) -> int:
    from diffcxr.errors import DiffCXRError
    from diffcxr.flops import denoiser_macs, sample_cost

    if args.steps < 1:
        raise DiffCXRError(f"--steps must be >= 1 (got {args.steps})")
    counts = denoiser_macs(args.config, with_adapter=False if args.no_adapter else None)
    cost = sample_cost(counts["total"], steps=args.steps, guidance=not args.no_guidance)
    if args.json:
        print(json.dumps({"config": args.config, **{k: v.as_dict() for k, v in counts.items()}, "sample": cost}, indent=2))
        return 0
    g, m = 1e9, 1e6
    print(f"config {args.config}: MACs per denoiser forward (batch 1)")
    print(f"  {'':<9} {'linear+conv':>12} {'+attn matmuls':>14} {'+LayerNorm':>11} {'params':>10}")
    for name in ("base", "adapter", "total"):
        c = counts[name]
        print(f"  {name:<9} {c.linear_conv / g:>10.3f} G {c.with_attention / g:>12.3f} G "
              f"{(c.linear_conv + c.norm) / g:>9.3f} G {c.params / m:>8.2f} M")
    total = counts["total"].linear_conv / g
    if args.config == "paper" and not args.no_adapter:
        print(f"  paper reports {PAPER_GMACS} G: ours {total:.3f} G ({100 * (total / PAPER_GMACS - 1):+.2f} %)")
    print("  linear+conv = thop-style count (nn.Linear/nn.Conv hooks; attention matmuls inside SDPA invisible),")
    print("  the paper's convention; +attn matmuls adds Q.K^T and A.V (2*L^2*width per block).")
    kind = "CFG" if not args.no_guidance else "no-CFG"
    print(f"one image, {args.steps}-step {kind} sample: {cost['forwards']} forwards = {cost['macs'] / 1e12:.3f} T MACs "
          f"({cost['macs_with_attention'] / 1e12:.3f} T with attention = {cost['flops_with_attention'] / 1e12:.3f} TFLOP)")
    return 0
