"""Generation pipelines (diffusers ``DiffusionPipeline`` subclasses)."""

from diffcxr.pipelines.pipeline_diffcxr import DiffCXRPipeline, DiffCXRPipelineOutput, default_scheduler

__all__ = ["DiffCXRPipeline", "DiffCXRPipelineOutput", "default_scheduler"]
