"""Print the MAC / parameter table of the denoiser (+ knowledge adapter) for every model config.

    .venv/bin/python benchmarks/flops.py
"""

from __future__ import annotations

from diffcxr.flops import denoiser_macs, sample_cost
from diffcxr.models.configs import MODEL_CONFIG_NAMES


def main() -> None:
    print(f"{'config':<9} {'part':<8} {'MACs lin+conv':>14} {'+attn':>10} {'params':>9}   50-step CFG sample")
    for name in MODEL_CONFIG_NAMES:
        counts = denoiser_macs(name)
        cost = sample_cost(counts["total"], steps=50, guidance=True)
        for part in ("base", "adapter", "total"):
            c = counts[part]
            extra = (f"   {cost['macs'] / 1e12:.3f} T MACs ({cost['flops_with_attention'] / 1e12:.3f} TFLOP incl. attention)"
                     if part == "total" else "")
            print(f"{name:<9} {part:<8} {c.linear_conv / 1e9:>12.3f} G {c.with_attention / 1e9:>8.3f} G "
                  f"{c.params / 1e6:>7.2f} M{extra}")
    print("paper reports 29.641 G (thop: Linear/Conv MACs; attention matmuls are invisible to its hooks)")


if __name__ == "__main__":
    main()
