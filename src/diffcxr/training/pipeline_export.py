"""End of ``diffcxr train all``: assemble the trained components into a ``DiffCXRPipeline`` folder.

``<out>/pipeline`` loads with ``DiffCXRPipeline.from_pretrained`` and ``diffcxr generate --model``. The scheduler
is DPM-Solver++ over the training β schedule; the adapter is included when stage 2 ran.
"""

from __future__ import annotations

from pathlib import Path

from diffcxr.errors import DiffCXRError

__all__ = ["export_pipeline", "build_pipeline"]


def build_pipeline(run, out_root, include_adapter: bool = True):
    from diffusers import DPMSolverMultistepScheduler

    from diffcxr.pipelines import DiffCXRPipeline
    from diffcxr.training.adapter import load_base
    from diffcxr.training.cache import load_frozen_components
    from diffcxr.training.sampling import scheduler_config

    out_root = Path(out_root)
    vae, encoder = load_frozen_components(run, out_root)
    denoiser = load_base(out_root)
    adapter = None
    adapter_dir = out_root / "adapter" / "adapter"
    if include_adapter and (adapter_dir / "config.json").is_file():
        from diffcxr.models.knowledge_adapter import DiseaseKnowledgeAdapter

        adapter = DiseaseKnowledgeAdapter.from_pretrained(adapter_dir)
    scheduler = DPMSolverMultistepScheduler(**scheduler_config(run.adapter if adapter is not None else run.base),
                                            algorithm_type="dpmsolver++", solver_order=2)
    return DiffCXRPipeline(vae=vae, denoiser=denoiser, report_encoder=encoder, scheduler=scheduler,
                           knowledge_adapter=adapter)


def export_pipeline(run, out_root, folder: str | Path | None = None) -> Path:
    """Save the pipeline to ``folder`` (default ``<out>/pipeline``) and return its path."""
    out_root = Path(out_root)
    target = Path(folder) if folder else out_root / "pipeline"
    try:
        pipe = build_pipeline(run, out_root)
    except ImportError as exc:  # pragma: no cover - the pipeline module is part of the package
        raise DiffCXRError(f"cannot build the DiffCXRPipeline: {exc}") from exc
    pipe.save_pretrained(target, safe_serialization=True)
    print(f"[pipeline] saved {target} (adapter: {'yes' if pipe.knowledge_adapter is not None else 'no'})", flush=True)
    return target
