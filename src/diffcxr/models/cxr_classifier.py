"""CXR classifier over the 14 CheXpert findings: the evaluation yardstick (mAUC) and offline FID feature network.

Trained on real images by ``diffcxr train classifier`` (:mod:`diffcxr.training.classifier`) or in memory by
``diffcxr downstream`` (both through :func:`diffcxr.training.classifier.fit_classifier`), saved with ``save_pretrained``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from diffcxr.errors import DiffCXRError
from diffcxr.models.conv_stages import conv_stages

__all__ = ["CXRClassifier", "save_classifier", "load_classifier", "model_image_size", "classifier_scores", "predict_scores"]


class CXRClassifier(ModelMixin, ConfigMixin):
    """:func:`~diffcxr.models.conv_stages.conv_stages` trunk, global average pool, dropout, linear head.

    Input ``(B, 1, S, S)`` in [-1, 1] (S = ``config.image_size`` for the numbers it was trained for; any S
    divisible by ``2**len(channels)`` runs); ``forward`` returns logits ``(B, num_labels)`` in the order of
    ``config.label_names`` (CheXpert's 14 findings); ``features`` the pooled ``(B, channels[-1])`` vector.
    """

    @register_to_config
    def __init__(self, in_channels: int = 1, channels: tuple[int, ...] = (32, 64, 128, 256), num_labels: int = 14,
                 image_size: int = 64, label_names: tuple[str, ...] | None = None, dropout: float = 0.1):
        super().__init__()
        self.body = conv_stages(in_channels, tuple(channels))
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(channels[-1], num_labels)

    @property
    def feature_dim(self) -> int:
        return self.head.in_features

    def features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Pooled features ``(B, feature_dim)`` (for FID/KID statistics)."""
        return self.body(pixel_values.to(self.head.weight.dtype)).mean(dim=(2, 3))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.features(pixel_values)))


def model_image_size(model) -> int | None:
    """``config["image_size"]`` of a diffusers-style or diffcxr model, else an ``image_size`` attribute."""
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "get") and config.get("image_size"):
        return int(config.get("image_size"))
    return getattr(model, "image_size", None)


def save_classifier(model: CXRClassifier, directory) -> Path:
    """``save_pretrained`` (config.json + diffusion_pytorch_model.safetensors) plus ``train_config.json``."""
    directory = Path(directory)
    model.save_pretrained(directory, safe_serialization=True)
    if getattr(model, "train_config", None):
        (directory / "train_config.json").write_text(json.dumps(model.train_config, indent=2), encoding="utf-8")
    return directory


def load_classifier(directory) -> CXRClassifier:
    """Load a classifier folder: a saved :class:`CXRClassifier`, or a ``diffcxr train classifier`` stage folder
    (``OUT/classifier``, whose model lies in ``OUT/classifier/classifier``)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DiffCXRError(f"classifier folder {directory} not found")
    if not (directory / "config.json").is_file() and (directory / "classifier" / "config.json").is_file():
        directory = directory / "classifier"
    config_path = directory / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    if config.get("_class_name") != "CXRClassifier":
        raise DiffCXRError(f"{directory} is not a classifier folder (expected config.json with _class_name "
                           f"'CXRClassifier', as written by 'diffcxr train classifier' or 'diffcxr downstream')")
    return CXRClassifier.from_pretrained(directory, use_safetensors=True).eval()


@torch.no_grad()
def classifier_scores(classifier: nn.Module, images: torch.Tensor) -> np.ndarray:
    """Sigmoid scores ``(B, 14)`` (CheXpert order) for images ``(B, 1, H, W)`` in [-1, 1], resized to the
    classifier's input size when they differ."""
    from diffcxr.findings import CHEXPERT_FINDINGS

    size = model_image_size(classifier)
    if size and images.shape[-1] != size:
        images = nn.functional.interpolate(images, size=(size, size), mode="bilinear", antialias=True,
                                           align_corners=False)
    logits = classifier(images)
    if logits.shape[1] != len(CHEXPERT_FINDINGS):
        raise DiffCXRError(f"the classifier predicts {logits.shape[1]} findings, expected {len(CHEXPERT_FINDINGS)}")
    return torch.sigmoid(logits.float()).cpu().numpy()


@torch.no_grad()
def predict_scores(classifier: nn.Module, dataset, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Sigmoid scores ``(N, 14)`` of ``classifier`` and the labels ``(N, 14)`` of a dataset of
    ``{"pixel_values", "labels"}`` items, in dataset order (on the classifier's device)."""
    classifier.eval()
    device = next(classifier.parameters()).device
    scores, labels = [], []
    for start in range(0, len(dataset), batch_size):
        items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        pixels = torch.stack([it["pixel_values"] for it in items]).float().to(device)
        scores.append(classifier_scores(classifier, pixels))
        labels.append(np.stack([np.asarray(it["labels"], dtype=np.float32) for it in items]))
    return np.concatenate(scores), np.concatenate(labels)
