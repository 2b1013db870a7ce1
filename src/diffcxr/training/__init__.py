"""Training of every Diff-CXR stage on ``accelerate`` (one explicit loop per stage; what they share is ``session.py``).

>>> from diffcxr.training import load_run_config, train
>>> run = load_run_config("tiny", ["base.max_steps=10"])
>>> train("all", run, "phantom:phantoms/", "runs/tiny")          # doctest: +SKIP

Stages, in the order ``all`` runs them: ``vae`` → ``vlm`` → ``base`` → ``adapter`` → ``classifier``, then the
``DiffCXRPipeline`` export to ``<out>/pipeline``. ``distill`` (not part of ``all``) guidance-distils an exported
pipeline (``teacher=``) into ``<out>/pipeline``.
"""

from __future__ import annotations

from pathlib import Path

from diffcxr.training.config import EXTRA_STAGES, STAGES, RunConfig, load_run_config

__all__ = ["STAGES", "EXTRA_STAGES", "RunConfig", "load_run_config", "train", "train_stage"]


def train_stage(stage: str, run: RunConfig, data_spec: str, out_root, **kwargs):
    """Run one stage (``vae``, ``vlm``, ``base``, ``adapter``, ``classifier``, or ``distill`` with ``teacher``);
    kwargs: manifest, resume, mixed_precision, progress, step_callback, teacher.

    Ctrl-C or SIGTERM during its steps writes a checkpoint at the step boundary and raises
    :class:`~diffcxr.training.stop_request.TrainingInterrupted` (``resume=True`` continues from there)."""
    from diffcxr.errors import DiffCXRError

    if stage == "vae":
        from diffcxr.training.vae import train_vae as fn
    elif stage == "vlm":
        from diffcxr.training.vlm import train_vlm as fn
    elif stage == "base":
        from diffcxr.training.base import train_base as fn
    elif stage == "adapter":
        from diffcxr.training.adapter import train_adapter as fn
    elif stage == "classifier":
        from diffcxr.training.classifier import train_classifier as fn
    elif stage == "distill":
        from diffcxr.training.distill import train_distill as fn
    else:
        raise DiffCXRError(f"unknown stage {stage!r} (one of {', '.join(STAGES + EXTRA_STAGES)}, all)")
    if stage != "distill" and kwargs.pop("teacher", None):
        raise DiffCXRError(f"--teacher is for `train distill` only, not `train {stage}`")
    if not run.stage(stage).enabled:
        print(f"[{stage}] disabled in the config ({stage}.enabled: false)", flush=True)
        return None
    from diffcxr.training.stop_request import stop_requests

    with stop_requests():  # Ctrl-C / SIGTERM in the step loop: checkpoint, then TrainingInterrupted
        return fn(run, data_spec, out_root, **kwargs)


def train(stage: str, run: RunConfig, data_spec: str, out_root, export: bool = True, **kwargs) -> Path:
    """``stage`` or ``"all"`` (every stage in order, then the pipeline export). Returns the output folder."""
    out_root = Path(out_root)
    if stage != "all":
        train_stage(stage, run, data_spec, out_root, **kwargs)
        return out_root
    for name in STAGES:
        train_stage(name, run, data_spec, out_root, **kwargs)
    if export:
        from accelerate import PartialState

        if PartialState().is_main_process:
            from diffcxr.training.pipeline_export import export_pipeline

            export_pipeline(run, out_root)
        PartialState().wait_for_everyone()
    return out_root
