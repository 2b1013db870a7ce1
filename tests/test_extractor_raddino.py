"""The RadDINO extractor's real loading and preprocessing code, run offline on a randomly initialised DINOv2 of
the same kind saved to a temporary folder (no download)."""

from __future__ import annotations

import pytest
import torch

from diffcxr.errors import DiffCXRError
from diffcxr.metrics.extractors import load_extractor


@pytest.fixture(scope="module")
def tiny_raddino(tmp_path_factory):
    from transformers import BitImageProcessorPil, Dinov2Config, Dinov2Model

    folder = tmp_path_factory.mktemp("rad-dino")
    torch.manual_seed(0)
    config = Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                          image_size=56, patch_size=14)
    Dinov2Model(config).save_pretrained(folder, safe_serialization=True)
    # RadDINO's processor settings, at 56 px instead of 518
    BitImageProcessorPil(size={"shortest_edge": 56}, crop_size={"height": 56, "width": 56}, do_center_crop=True,
                         image_mean=[0.5307, 0.5307, 0.5307], image_std=[0.2583, 0.2583, 0.2583],
                         do_convert_rgb=True).save_pretrained(folder)
    return folder


def test_raddino_features_are_the_cls_embedding_after_its_own_preprocessing(tiny_raddino):
    from transformers import AutoImageProcessor, AutoModel

    ext = load_extractor("raddino", path=str(tiny_raddino))
    x = torch.rand(3, 1, 40, 40, generator=torch.Generator().manual_seed(1)) * 2 - 1
    feats = ext(x)
    assert feats.shape == (3, 32) and torch.isfinite(feats).all()
    # the same numbers by hand, as the model card does it: RGB 8-bit images → processor → pooler_output
    processor, model = AutoImageProcessor.from_pretrained(tiny_raddino), AutoModel.from_pretrained(tiny_raddino)
    rgb = ((x + 1) * 127.5).round().to(torch.uint8).repeat(1, 3, 1, 1).permute(0, 2, 3, 1).numpy()
    with torch.no_grad():
        want = model(**processor(images=list(rgb), return_tensors="pt")).pooler_output
    torch.testing.assert_close(feats, want)
    info = ext.describe()
    assert info["name"] == "raddino" and info["dim"] == 32 and info["features"].startswith("CLS")
    assert info["processor"]["image_mean"] == [0.5307, 0.5307, 0.5307]


def test_missing_raddino_weights_are_one_clear_error(tmp_path):
    with pytest.raises(DiffCXRError, match="cannot load RadDINO.*--extractor-path"):
        load_extractor("raddino", path=str(tmp_path / "nowhere"))
