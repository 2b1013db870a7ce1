"""Pluggable feature extractors for FID/KID/memorisation: ``(B, 1, S, S)`` images in ``[-1, 1]`` → ``(B, D)``.

- ``cxr`` (default, offline): the penultimate (pooled) features of a trained diffcxr CXR classifier — any
  ``torch.nn.Module`` with a ``features(x)`` method (or mapping images to ``(B, D)`` directly), or a classifier
  folder (:func:`diffcxr.models.cxr_classifier.load_classifier`). Images are resized to the classifier's
  ``image_size``.
- ``random``: a small seeded random conv net (deterministic, no training). For tests and memory benchmarks
  only: it measures pixel-statistics distances, not realism.
- ``inception`` (optional, online): torch-fidelity's InceptionV3 pool3 (2048-d), the standard FID network;
  grayscale is repeated to 3 channels and fed as uint8 (torch-fidelity resizes to 299×299 itself).
- ``raddino`` (optional; weights from the hub, ``microsoft/rad-dino``, or a local folder): RadDINO, the DINOv2
  ViT-B trained on chest X-rays that CheXGenBench reports FID/KID/PRDC on. Preprocessing is the model's own image
  processor, as its model card prescribes (grayscale replicated to RGB, resize + centre crop to 518, its mean and
  std); features = the CLS embedding (``pooler_output``, 768-d). The processor settings are recorded.
- ``xrv`` (optional, online): torchxrayvision DenseNet-121 ``densenet121-res224-all`` pooled features (1024-d)
  at 224×224, inputs rescaled to xrv's [-1024, 1024] range.

The optional backends import their package only when built and raise :class:`DiffCXRError` naming the missing
package. ``describe()`` returns what must be recorded next to every number (name, dim, resize).
"""

from __future__ import annotations

import torch
from torch import nn

from diffcxr.errors import DiffCXRError

__all__ = ["FeatureExtractor", "random_extractor", "cxr_extractor", "inception_extractor", "xrv_extractor",
           "raddino_extractor", "load_extractor", "EXTRACTORS", "RADDINO_HUB_ID"]

EXTRACTORS = ("cxr", "random", "inception", "xrv", "raddino")
RADDINO_HUB_ID = "microsoft/rad-dino"


class FeatureExtractor:
    """Wraps a module: resizes ``(B, 1, S, S)`` ``[-1, 1]`` inputs to ``input_size`` and returns ``(B, D)`` float32."""

    def __init__(self, module: nn.Module, name: str, input_size: int | None = None, preprocess=None,
                 call=None, device: str | torch.device = "cpu", info: dict | None = None) -> None:
        self.module = module.eval().to(device)
        self.name = name
        self.input_size = input_size
        self.preprocess = preprocess
        self.device = torch.device(device)
        self._call = call or (module.features if hasattr(module, "features") and callable(module.features) else module)
        self.info = dict(info or {})
        self.dim: int | None = None

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(images).float()
        if x.ndim == 3:
            x = x.unsqueeze(1)
        if x.ndim != 4 or x.shape[1] != 1:
            raise DiffCXRError(f"extractor input must be (B, 1, H, W) grayscale, got {tuple(x.shape)}")
        if self.input_size and tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            x = nn.functional.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear",
                                          antialias=True, align_corners=False)
        if self.preprocess is not None:
            x = self.preprocess(x)
        feats = self._call(x.to(self.device))
        if isinstance(feats, (tuple, list)):
            feats = feats[0]
        feats = feats.reshape(feats.shape[0], -1).float().cpu()
        self.dim = feats.shape[1]
        return feats

    def describe(self) -> dict:
        return {"name": self.name, "dim": self.dim, "resize": self.input_size and
                f"{self.input_size}x{self.input_size} bilinear antialias", **self.info}


class _RandomConv(nn.Module):
    def __init__(self, dim: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 16, 4, stride=4), nn.ReLU(), nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, dim, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
            nn.Linear(dim * 4, dim))

    def forward(self, x):
        return self.net(x)


def random_extractor(seed: int = 0, dim: int = 64, input_size: int | None = 64, device="cpu") -> FeatureExtractor:
    """A seeded random conv net (same seed → same weights on every machine); for tests/benchmarks only."""
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        module = _RandomConv(dim)
    finally:
        torch.random.set_rng_state(gen_state)
    return FeatureExtractor(module, f"random(seed={seed},dim={dim})", input_size, device=device,
                            info={"note": "untrained random conv net: for tests/benchmarks, not a realism metric"})


def cxr_extractor(classifier, device="cpu", input_size: int | None = None) -> FeatureExtractor:
    """Penultimate features of a diffcxr CXR classifier (a module, or a folder to load)."""
    source = None
    if not isinstance(classifier, nn.Module):
        if classifier is None:
            raise DiffCXRError("the 'cxr' feature extractor needs a trained classifier: pass --classifier DIR "
                               "(diffcxr train classifier / diffcxr downstream --save-classifier), or choose "
                               "--extractor inception|xrv|random")
        from diffcxr.models.cxr_classifier import load_classifier

        source = str(classifier)
        classifier = load_classifier(classifier)
    from diffcxr.models.cxr_classifier import model_image_size

    size = input_size or model_image_size(classifier)
    return FeatureExtractor(classifier, "cxr", size, device=device, info={"classifier": source})


def _need(package: str, pip_name: str, backend: str):
    import importlib

    try:
        return importlib.import_module(package)
    except Exception as exc:  # ImportError, or a broken torchvision underneath
        raise DiffCXRError(f"the '{backend}' feature extractor needs the optional package {pip_name} "
                           f"(pip install {pip_name}; it downloads weights on first use): {type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc


def inception_extractor(device="cpu") -> FeatureExtractor:
    """torch-fidelity InceptionV3 (FID's standard 2048-d pool3 features). Needs ``torch-fidelity`` + network."""
    fidelity = _need("torch_fidelity.feature_extractor_inceptionv3", "torch-fidelity", "inception")
    net = fidelity.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])

    def to_uint8_rgb(x):
        return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).repeat(1, 3, 1, 1)

    return FeatureExtractor(net, "inception", None, preprocess=to_uint8_rgb, device=device,
                            info={"weights": "pt_inception-2015-12-05 (torch-fidelity)", "resize": "299x299 inside torch-fidelity"})


def xrv_extractor(weights: str = "densenet121-res224-all", device="cpu") -> FeatureExtractor:
    """torchxrayvision DenseNet-121 pooled features (1024-d) at 224×224. Needs ``torchxrayvision`` + network."""
    xrv = _need("torchxrayvision", "torchxrayvision", "xrv")
    net = xrv.models.DenseNet(weights=weights)
    return FeatureExtractor(net, "xrv", 224, preprocess=lambda x: x.clamp(-1, 1) * 1024, call=net.features2,
                            device=device, info={"weights": weights})


def raddino_extractor(path: str = RADDINO_HUB_ID, device="cpu") -> FeatureExtractor:
    """RadDINO CLS features (768-d) with its own image processor. ``path``: a local folder holding the model and
    its ``preprocessor_config.json``, or a hub id (downloads unless ``HF_HUB_OFFLINE`` is set). Weights are read
    from safetensors only."""
    import logging

    import numpy as np
    from transformers import AutoImageProcessor, AutoModel
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity(logging.ERROR)  # "BitImageProcessor requires torchvision ... falling back": expected
    try:
        processor = AutoImageProcessor.from_pretrained(path)
        model = AutoModel.from_pretrained(path, use_safetensors=True)
    except (OSError, ValueError) as exc:
        raise DiffCXRError(f"cannot load RadDINO from {path!r} ({str(exc).strip().splitlines()[0]}); download it "
                           f"(huggingface-cli download {RADDINO_HUB_ID} --local-dir DIR) and pass --extractor-path DIR"
                           ) from None
    finally:
        hf_logging.set_verbosity(level)

    def pixel_values(x: torch.Tensor) -> torch.Tensor:
        # [-1, 1] grayscale → 8-bit RGB arrays, then the model's own resize / crop / normalisation
        arrays = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).repeat(1, 3, 1, 1).permute(0, 2, 3, 1)
        return processor(images=list(arrays.cpu().numpy().astype(np.uint8)), return_tensors="pt")["pixel_values"]

    def cls_embedding(pixels: torch.Tensor) -> torch.Tensor:
        return model(pixel_values=pixels.to(model.dtype)).pooler_output

    settings = {k: getattr(processor, k, None) for k in ("size", "crop_size", "image_mean", "image_std",
                                                          "do_center_crop", "resample")}
    settings = {k: (dict(v) if hasattr(v, "items") else list(v) if isinstance(v, tuple) else v)
                for k, v in settings.items()}
    return FeatureExtractor(model, "raddino", None, preprocess=pixel_values, call=cls_embedding, device=device,
                            info={"weights": str(path), "features": "CLS embedding (pooler_output)",
                                  "processor": {k: (v if isinstance(v, (int, float, str, bool, list, dict, type(None)))
                                                    else str(v)) for k, v in settings.items()}})


def load_extractor(name: str, *, classifier=None, device="cpu", seed: int = 0, path: str | None = None
                   ) -> FeatureExtractor:
    """Build an extractor by name (``cxr``, ``random``, ``inception``, ``xrv``, ``raddino`` with ``path``)."""
    if name == "cxr":
        return cxr_extractor(classifier, device)
    if name == "random":
        return random_extractor(seed, device=device)
    if name == "inception":
        return inception_extractor(device)
    if name == "xrv":
        return xrv_extractor(device=device)
    if name == "raddino":
        return raddino_extractor(path or RADDINO_HUB_ID, device=device)
    raise DiffCXRError(f"unknown feature extractor {name!r}; choose one of {', '.join(EXTRACTORS)}")
