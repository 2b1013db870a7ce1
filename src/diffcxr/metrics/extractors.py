"""Pluggable feature extractors for FID/KID/memorisation: ``(B, 1, S, S)`` images in ``[-1, 1]`` → ``(B, D)``.

- ``cxr`` (default, offline): the penultimate (pooled) features of a trained diffcxr CXR classifier — any
  ``torch.nn.Module`` with a ``features(x)`` method (or mapping images to ``(B, D)`` directly), or a classifier
  folder (:func:`diffcxr.models.cxr_classifier.load_classifier`). Images are resized to the classifier's
  ``image_size``.
- ``random``: a small seeded random conv net (deterministic, no training). For tests and memory benchmarks
  only: it measures pixel-statistics distances, not realism.
- ``inception`` (optional, online): torch-fidelity's InceptionV3 pool3 (2048-d), the standard FID network;
  grayscale is repeated to 3 channels and fed as uint8 (torch-fidelity resizes to 299×299 itself).
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
           "load_extractor", "EXTRACTORS"]

EXTRACTORS = ("cxr", "random", "inception", "xrv")


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


def load_extractor(name: str, *, classifier=None, device="cpu", seed: int = 0) -> FeatureExtractor:
    """Build an extractor by name (``cxr``, ``random``, ``inception``, ``xrv``)."""
    if name == "cxr":
        return cxr_extractor(classifier, device)
    if name == "random":
        return random_extractor(seed, device=device)
    if name == "inception":
        return inception_extractor(device)
    if name == "xrv":
        return xrv_extractor(device=device)
    raise DiffCXRError(f"unknown feature extractor {name!r}; choose one of {', '.join(EXTRACTORS)}")
