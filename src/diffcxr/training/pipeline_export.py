"""End of ``diffcxr train all``: assemble the trained components into a ``DiffCXRPipeline`` folder.

``<out>/pipeline`` loads with ``DiffCXRPipeline.from_pretrained`` and ``diffcxr generate --model``. The scheduler
is the config's ``sample.solver`` over the training β schedule, with its ``sample.num_inference_steps`` as the
pipeline's default steps; the adapter is included when stage 2 ran. Next to the weights,
``README.md`` (a model card) and ``training_data.json`` say what every component was trained on, read from the
stages' ``run_info.json``: trained weights carry the terms of their training data.
"""

from __future__ import annotations

import json
from pathlib import Path

from diffcxr.errors import DiffCXRError

__all__ = ["export_pipeline", "build_pipeline", "load_training_checkpoint"]


def build_pipeline(run, out_root, include_adapter: bool = True):
    from diffcxr.models.diffusion import sampling_scheduler
    from diffcxr.pipelines import DiffCXRPipeline
    from diffcxr.training.adapter import load_base
    from diffcxr.training.cache import load_frozen_components

    out_root = Path(out_root)
    vae, encoder = load_frozen_components(run, out_root)
    denoiser = load_base(out_root)
    adapter = None
    adapter_dir = out_root / "adapter" / "adapter"
    if include_adapter and (adapter_dir / "config.json").is_file():
        from diffcxr.models.knowledge_adapter import DiseaseKnowledgeAdapter

        adapter = DiseaseKnowledgeAdapter.from_pretrained(adapter_dir, use_safetensors=True)
    scheduler = sampling_scheduler(run.adapter if adapter is not None else run.base, run.sample.solver)
    # the config's sampling steps, guidance and adapter scale (chosen per config by measurement: docs/sampling.md,
    # docs/report-adherence.md) become the pipeline's defaults: `diffcxr generate` / `pipe(report)` without them
    # sample as the run's own grids did
    return DiffCXRPipeline(vae=vae, denoiser=denoiser, report_encoder=encoder, scheduler=scheduler,
                           knowledge_adapter=adapter, default_inference_steps=run.sample.num_inference_steps,
                           default_guidance_scale=run.sample.guidance_scale,
                           default_adapter_scale=run.sample.adapter_scale if adapter is not None else 1.0)


# the model names a stage's checkpoints hold -> the pipeline component they train
_CHECKPOINT_COMPONENT = {"uvit": "denoiser", "adapter": "knowledge_adapter"}


def load_training_checkpoint(pipe, checkpoint: str | Path, use_ema: bool = True) -> tuple[str, int]:
    """Put a base- or adapter-stage checkpoint's weights (EMA by default, as the stages export) into ``pipe``'s
    denoiser or knowledge adapter (and, from a ``base.train_squeeze`` run, the report encoder's squeeze), in
    place; return ``(component, step)``. Scores a run at an intermediate step
    (``<run>/base/checkpoints/checkpoint-00002000``) without retraining; keep more of them with
    ``base.keep_last=8``."""
    from diffcxr.training.checkpoint import checkpoint_meta, load_checkpoint_weights

    models = checkpoint_meta(checkpoint).get("models", [])
    prefix = next((m for m in models if m in _CHECKPOINT_COMPONENT), None)
    if prefix is None:
        raise DiffCXRError(f"checkpoint {checkpoint} holds {models}: only base (uvit) and adapter checkpoints "
                           "load into a pipeline")
    component = _CHECKPOINT_COMPONENT[prefix]
    module = getattr(pipe, component, None)
    if module is None:
        raise DiffCXRError(f"checkpoint {checkpoint} is an adapter checkpoint but this pipeline has no knowledge "
                           "adapter")
    modules = {prefix: module}
    if "squeeze" in models:  # a base stage with train_squeeze: the report encoder's squeeze trained with it
        modules["squeeze"] = pipe.report_encoder.squeeze
    step = load_checkpoint_weights(checkpoint, modules, use_ema=use_ema)
    return component, step


def export_pipeline(run, out_root, folder: str | Path | None = None) -> Path:
    """Save the pipeline to ``folder`` (default ``<out>/pipeline``) and return its path."""
    out_root = Path(out_root)
    target = Path(folder) if folder else out_root / "pipeline"
    try:
        pipe = build_pipeline(run, out_root)
    except ImportError as exc:  # pragma: no cover - the pipeline module is part of the package
        raise DiffCXRError(f"cannot build the DiffCXRPipeline: {exc}") from exc
    pipe.save_pretrained(target, safe_serialization=True)
    write_model_card(run, out_root, target, with_adapter=pipe.knowledge_adapter is not None)
    print(f"[pipeline] saved {target} (adapter: {'yes' if pipe.knowledge_adapter is not None else 'no'})", flush=True)
    return target


_STAGE_COMPONENT = {"vae": "vae", "vlm": "report_encoder", "base": "denoiser", "adapter": "knowledge_adapter"}


def write_model_card(run, out_root, target, with_adapter: bool = True) -> dict:
    """Write ``target/training_data.json`` and ``target/README.md``: the run config's name and, per component,
    the data spec, manifest, number of training records and git SHA it was trained with. Returns the JSON."""
    out_root, target = Path(out_root), Path(target)
    provenance: dict[str, dict] = {}
    for stage, component in _STAGE_COMPONENT.items():
        if component == "knowledge_adapter" and not with_adapter:
            continue
        info_path = out_root / stage / "run_info.json"
        if not info_path.is_file():  # e.g. a pretrained VAE: nothing trained here
            provenance[component] = {"trained": False}
            continue
        info = json.loads(info_path.read_text(encoding="utf-8"))
        provenance[component] = {"trained": True, "stage": stage, "data": info.get("data"),
                                 "manifest": info.get("manifest"), "train_records": info.get("train_records"),
                                 "train_splits": info.get("train_splits"), "frontal_only": info.get("frontal_only"),
                                 "limit": info.get("limit"), "git_sha": info.get("git_sha")}
    text_encoder = run.model_config()["report_encoder"]["text_encoder"]
    content = {"config": run.name, "text_encoder": text_encoder, "components": provenance}
    (target / "training_data.json").write_text(json.dumps(content, indent=2), encoding="utf-8")
    rows = "\n".join(f"| {name} | {p.get('data', 'not trained here')} | {p.get('manifest') or '-'} | "
                      f"{p.get('train_records', '-')} |" for name, p in provenance.items())
    (target / "README.md").write_text(f"""# Diff-CXR pipeline trained with diffcxr (config `{run.name}`)

Load with `DiffCXRPipeline.from_pretrained(folder)` or `diffcxr generate --model folder "REPORT"`.

| component | trained on (dataset spec) | noise-filter manifest | training records |
|---|---|---|---|
{rows}

Text tower: `{text_encoder}` (pretrained weights keep their own licence). Generated images are synthetic and
must not be used for diagnosis. These weights were derived from the data above and carry its terms: check the
licence of every dataset listed (for example, IU-Xray reports are CC BY-NC-ND 4.0, the COVID-19 image
collection has per-image licences, MIMIC-CXR requires a PhysioNet credentialed data use agreement) before
sharing them.
""", encoding="utf-8")
    return content
