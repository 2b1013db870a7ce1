"""Diff-CXR model components (diffusers ``ModelMixin`` + ``ConfigMixin`` classes).

Saved pipelines record each component's defining module (``diffcxr.models.uvit`` ...), not this package:
renaming those modules breaks checkpoints (``tests/fixtures/tiny_pipeline`` guards this).
"""

from diffcxr.models.cxr_classifier import CXRClassifier
from diffcxr.models.knowledge_adapter import DiseaseKnowledgeAdapter, predict_noise
from diffcxr.models.local_alignment import LocalAlignment
from diffcxr.models.report_encoder import ImageTower, ReportEncoder, TokenSqueeze, clip_loss
from diffcxr.models.uvit import UViT, UViTOutput

__all__ = ["UViT", "UViTOutput", "DiseaseKnowledgeAdapter", "predict_noise", "ReportEncoder", "TokenSqueeze",
           "ImageTower", "clip_loss", "CXRClassifier", "LocalAlignment"]
