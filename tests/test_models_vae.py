"""VAE factory and the one-place latent scaling."""

from __future__ import annotations

import pytest
import torch

from diffcxr.errors import DiffCXRError
from diffcxr.models.configs import load_model_config, vae_kwargs
from diffcxr.models.vae import decode_latents, encode_images, make_vae, vae_from_model_config


def _tiny(**kw):
    torch.manual_seed(0)
    return make_vae(**{**vae_kwargs(load_model_config("tiny")), **kw}).eval()


def test_shapes_and_scaling_factor_in_one_place():
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    v1 = _tiny(scaling_factor=1.0)
    v2 = _tiny(scaling_factor=0.5)
    with torch.no_grad():
        z1, z2 = encode_images(v1, x), encode_images(v2, x)
        assert z1.shape == (2, 4, 8, 8)
        assert torch.allclose(z2, 0.5 * z1, atol=1e-6)
        # decoding undoes the factor: same image from both
        assert torch.allclose(decode_latents(v1, z1), decode_latents(v2, z2), atol=1e-5)
        img = decode_latents(v1, z1)
    assert img.shape == (2, 1, 32, 32) and img.min() >= -1 and img.max() <= 1


def test_grayscale_with_three_channel_vae():
    v = _tiny(in_channels=3)
    with torch.no_grad():
        z = encode_images(v, torch.zeros(1, 1, 32, 32))
        assert decode_latents(v, z).shape == (1, 1, 32, 32)
        assert decode_latents(v, z, grayscale=False).shape == (1, 3, 32, 32)


def test_bf16_decode_runs_channels_last_and_matches_fp32():
    vae = _tiny()
    z = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference = decode_latents(vae, z)
        half = decode_latents(vae.to(torch.bfloat16), z)
    assert half.dtype == torch.bfloat16 and half.is_contiguous()  # handed back in the usual layout
    assert (half.float() - reference).abs().mean() < 0.02


def test_bad_sizes_and_config_build(tmp_path):
    v = _tiny()
    with pytest.raises(DiffCXRError, match="divisible"):
        encode_images(v, torch.zeros(1, 1, 30, 30))
    with pytest.raises(DiffCXRError, match="channel"):
        encode_images(v, torch.zeros(1, 2, 32, 32))
    assert vae_from_model_config(load_model_config("tiny")).config.latent_channels == 4
    v.save_pretrained(tmp_path / "vae")
    cfg = load_model_config("tiny")
    cfg["vae"]["pretrained"] = str(tmp_path / "vae")
    loaded = vae_from_model_config(cfg).eval()
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(encode_images(loaded, x), encode_images(v, x))


def test_fingerprint_follows_weights_and_config_not_the_folder(tmp_path):
    """A run copied elsewhere keeps its latent cache: the fingerprint ignores where the model was loaded from."""
    import shutil

    from diffusers import AutoencoderKL

    from diffcxr.models.fingerprint import model_fingerprint

    vae = _tiny()
    vae.save_pretrained(tmp_path / "a", safe_serialization=True)
    shutil.copytree(tmp_path / "a", tmp_path / "moved")
    loaded = [AutoencoderKL.from_pretrained(tmp_path / name, use_safetensors=True) for name in ("a", "moved")]
    assert loaded[0].config["_name_or_path"] != loaded[1].config["_name_or_path"]
    assert model_fingerprint(loaded[0]) == model_fingerprint(loaded[1]) == model_fingerprint(vae)
    assert model_fingerprint(_tiny(scaling_factor=0.5)) != model_fingerprint(vae)  # the config counts
    with torch.no_grad():
        next(loaded[1].parameters()).add_(1e-3)
    assert model_fingerprint(loaded[1]) != model_fingerprint(vae)  # and every weight
