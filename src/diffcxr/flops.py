"""Multiply-accumulate (MAC) counts of the Diff-CXR denoiser, counted the way the paper did.

The paper's "29.641 GFLOPs" is a ``thop``-style count: forward hooks on ``nn.Linear`` / ``nn.Conv*`` layers,
one MAC per weight use (``in_features * out.numel()`` for a linear layer, ``out.numel() * C_in/groups * k*k``
for a convolution, biases not counted). Functional ops — the attention matmuls ``Q·Kᵀ`` and ``A·V`` inside
``scaled_dot_product_attention``, softmax, GELU, additions — are invisible to such hooks and therefore excluded.
We reproduce that count (``linear_conv``) and report, separately, the attention matmuls (``attention``:
``2·L²·width`` per block per image) and LayerNorm (``norm``: what thop ≥ 0.1 adds for affine LayerNorms,
``4·numel``), so the full cost of a forward is visible too.

Counting runs on the ``meta`` device: no memory, no arithmetic, well under a second even for the paper size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

__all__ = ["MacCount", "count_macs", "denoiser_macs", "sample_cost", "matmul_flops"]


@dataclass
class MacCount:
    """MACs of one forward (batch 1) by kind, and the parameter count."""

    linear_conv: int = 0
    attention: int = 0
    norm: int = 0
    params: int = 0
    by_layer_type: dict[str, int] = field(default_factory=dict)

    @property
    def with_attention(self) -> int:
        return self.linear_conv + self.attention

    def __add__(self, other: "MacCount") -> "MacCount":
        types = dict(self.by_layer_type)
        for k, v in other.by_layer_type.items():
            types[k] = types.get(k, 0) + v
        return MacCount(self.linear_conv + other.linear_conv, self.attention + other.attention,
                        self.norm + other.norm, self.params + other.params, types)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["with_attention"] = self.with_attention
        return d


def count_macs(model: nn.Module, *args, **kwargs) -> MacCount:
    """Run ``model(*args, **kwargs)`` once with counting hooks; returns the MACs per forward of that batch.

    Divide by the batch size yourself if it is not 1. Attention matmuls are counted on modules that have a
    ``num_heads`` instance attribute and a ``qkv`` linear (the U-ViT ``Attention``).
    """
    count = MacCount(params=sum(p.numel() for p in model.parameters()))
    handles = []

    def add(kind: str, name: str, n: int) -> None:
        setattr(count, kind, getattr(count, kind) + int(n))
        count.by_layer_type[name] = count.by_layer_type.get(name, 0) + int(n)

    def linear_hook(m: nn.Linear, inp, out):
        add("linear_conv", "Linear", m.in_features * out.numel())

    def conv_hook(m: nn.modules.conv._ConvNd, inp, out):
        k = 1
        for s in m.kernel_size:
            k *= s
        add("linear_conv", type(m).__name__, out.numel() * (m.in_channels // m.groups) * k)

    def norm_hook(m: nn.Module, inp, out):
        add("norm", type(m).__name__, 4 * out.numel() if getattr(m, "elementwise_affine", getattr(m, "affine", True))
            else 2 * out.numel())

    def attn_hook(m: nn.Module, inp, out):
        b, n, c = inp[0].shape
        add("attention", "attention matmuls", 2 * b * n * n * c)

    for m in model.modules():
        if isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
        elif isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, (nn.LayerNorm, nn.GroupNorm)):
            handles.append(m.register_forward_hook(norm_hook))
        elif "num_heads" in vars(m) and isinstance(getattr(m, "qkv", None), nn.Linear):
            handles.append(m.register_forward_hook(attn_hook))
    try:
        with torch.no_grad():
            model(*args, **kwargs)
    finally:
        for h in handles:
            h.remove()
    return count


def denoiser_macs(config="paper", with_adapter: bool | None = None) -> dict[str, MacCount]:
    """MACs per denoiser forward (batch 1) for a model config name/path/dict.

    Returns ``{"base": ..., "adapter": ..., "total": ...}`` (``adapter`` is zero when the config disables it or
    ``with_adapter=False``). Models are built on the meta device.
    """
    from diffcxr.models.configs import adapter_kwargs, load_model_config, uvit_kwargs
    from diffcxr.models.knowledge_adapter import DiseaseKnowledgeAdapter
    from diffcxr.models.uvit import UViT

    cfg = load_model_config(config)
    if with_adapter is None:
        with_adapter = bool(cfg["adapter"]["enabled"])
    kw = uvit_kwargs(cfg)
    with torch.device("meta"):
        base = UViT(**kw)
        x = torch.empty(1, kw["in_channels"], kw["sample_size"], kw["sample_size"])
        ctx = torch.empty(1, kw["num_context_tokens"], kw["context_dim"])
        t = torch.zeros(1)
        out = {"base": count_macs(base, x, t, ctx)}
        if with_adapter:
            adapter = DiseaseKnowledgeAdapter(**adapter_kwargs(cfg))
            out["adapter"] = count_macs(adapter, x, t, ctx, ctx)
        else:
            out["adapter"] = MacCount()
    out["total"] = out["base"] + out["adapter"]
    return out


def sample_cost(total: MacCount, steps: int = 50, guidance: bool = True) -> dict[str, float]:
    """MACs / FLOPs of one image sampled with ``steps`` solver steps (CFG doubles the forwards)."""
    forwards = steps * (2 if guidance else 1)
    return {
        "forwards": forwards,
        "macs": forwards * total.linear_conv,
        "macs_with_attention": forwards * total.with_attention,
        "flops_with_attention": 2 * forwards * total.with_attention,
    }


def matmul_flops(dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu", n: int | None = None,
                 reps: int = 5, clock=None) -> float:
    """This machine's practical peak: FLOP/s of the fastest of ``reps`` ``n × n`` matmuls (``2·n³`` FLOPs each;
    ``n`` 2048 on CPU, 8192 on CUDA). Speed benchmarks divide achieved FLOP/s by it, and timings recorded next to
    it compare across machines. ``clock`` (default ``time.perf_counter``, CUDA-synchronised on a GPU) may be
    ``time.process_time`` when other processes share the cores."""
    import time

    device = torch.device(device)
    n = n or (8192 if device.type == "cuda" else 2048)
    if clock is None:
        def clock() -> float:
            if device.type == "cuda":
                torch.cuda.synchronize()
            return time.perf_counter()
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(reps):
        start = clock()
        a @ b
        best = min(best, clock() - start)
    return 2 * n**3 / best
