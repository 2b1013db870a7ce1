"""Mixed precision: bf16 autocast where the device runs it well, fp32 master weights."""

from __future__ import annotations

from pathlib import Path

import torch

__all__ = ["bf16_supported", "resolve_mixed_precision"]


def _cpu_has_bf16() -> bool:
    cap = str(getattr(torch.backends.cpu, "get_cpu_capability", lambda: "")()).upper()
    if "AVX512" not in cap and "AMX" not in cap:
        return False
    if "BF16" in cap or "AMX" in cap:
        return True
    try:  # get_cpu_capability() says "AVX512" for AVX512-BF16 CPUs too: read the CPU flags
        flags = Path("/proc/cpuinfo").read_text(errors="ignore")
        return "avx512_bf16" in flags or "amx_bf16" in flags
    except OSError:
        return False


def bf16_supported(device: str | torch.device = "cpu") -> bool:
    """True where bf16 autocast pays: a CUDA GPU with bf16, or a CPU with AVX512-BF16 / AMX."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return _cpu_has_bf16()
    return False


def resolve_mixed_precision(setting: str, cpu: bool) -> str:
    """``auto`` → ``bf16`` where supported else ``no``; ``bf16`` / ``no`` pass through."""
    if setting == "auto":
        return "bf16" if bf16_supported("cpu" if cpu or not torch.cuda.is_available() else "cuda") else "no"
    return setting
