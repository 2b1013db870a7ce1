"""Model hyper-parameter configs (``diffcxr/configs/model/{tiny,cpu-mini,paper}.yaml``) and builders.

A model config holds model hyper-parameters only (VAE, U-ViT, adapter, report encoder, image tower); run
settings (learning rate, steps, data) live in the training configs. Unknown keys raise
:class:`~diffcxr.errors.DiffCXRError` naming the key, so a typo never silently falls back to a default.
``extends: NAME_OR_PATH`` starts from another model config and overrides the sections given (key by key), e.g.
``cpu-mini-no-squeeze``.

Derived values: the U-ViT ``sample_size`` is ``image_size / 2**(len(vae.block_out_channels) - 1)``, its
``in_channels`` is ``vae.latent_channels`` and its ``context_dim`` is ``report_encoder.hidden_size``.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

from diffcxr.configs import config_dir, config_names, named_config
from diffcxr.configs.schema import read_yaml_mapping
from diffcxr.errors import DiffCXRError

__all__ = ["MODEL_CONFIG_NAMES", "TOKEN_REDUCTIONS", "SQUEEZE_INITS", "FINAL_CONV_INITS", "load_model_config", "model_config_dir", "uvit_kwargs", "adapter_kwargs", "vae_kwargs",
           "latent_size"]

MODEL_CONFIG_NAMES = ("tiny", "cpu-mini", "paper")
# report_encoder.token_reduction: the learned squeeze, or parameter-free mean pooling in windows over the whole
# context (the ablation) or over each report's own tokens (TokenMeanPool)
TOKEN_REDUCTIONS = ("squeeze", "mean_pool", "report_pool")
# report_encoder.squeeze_init: the squeeze starts as mean pooling (windows over the whole context), as report_pool
# (windows over each report's own tokens), or as released (TokenSqueeze)
SQUEEZE_INITS = ("pooling", "report_pooling", "random")
FINAL_CONV_INITS = ("identity", "random")  # uvit.final_conv_init: the U-ViT's last 3x3 conv starts as identity or
                                           # as PyTorch's default (U-ViT as released; seed-dependent, see UViT)

# section -> {key: default}; ``None`` default = optional
_SCHEMA: dict[str, dict[str, Any]] = {
    "vae": {"pretrained": None, "in_channels": 1, "latent_channels": 4, "block_out_channels": [128, 256, 512, 512],
            "layers_per_block": 2, "norm_num_groups": 32, "scaling_factor": 0.18215},
    "uvit": {"patch_size": 2, "width": 512, "depth": 16, "num_heads": 8, "mlp_ratio": 4.0, "qkv_bias": False,
             "mlp_time_embed": False, "final_conv": True, "final_conv_init": "identity"},
    "adapter": {"enabled": True, "knowledge_sides": False},
    "report_encoder": {"text_encoder": "minilm", "hidden_size": 384, "max_length": 256, "num_condition_tokens": 77,
                       "token_reduction": "squeeze", "squeeze_init": "pooling"},
    "image_tower": {"channels": [32, 64, 128, 256]},
}
_TOP_LEVEL = {"name", "extends", "image_size", *(_SCHEMA)}


def model_config_dir() -> Path:
    """Folder of the named model configs: ``$DIFFCXR_MODEL_CONFIG_DIR`` or the package's ``configs/model``."""
    return config_dir("model")


def load_model_config(name_or_path: str | os.PathLike | dict) -> dict[str, Any]:
    """Load and validate a model config by name (``tiny``, ``cpu-mini``, ``paper``), YAML path, or dict.

    Returns a new dict with every section filled with defaults for absent keys.
    """
    if isinstance(name_or_path, dict):
        raw = copy.deepcopy(name_or_path)
        where = repr(raw["name"]) if isinstance(raw.get("name"), str) else "<dict>"  # a named config, as a mapping
    else:
        path = named_config("model", str(name_or_path)) or Path(name_or_path)
        if not path.is_file():
            raise DiffCXRError(
                f"model config {str(name_or_path)!r} not found (give one of {', '.join(config_names('model'))} "
                f"or a path to a YAML file)"
            )
        raw = read_yaml_mapping(path, "model config")
        where = str(path)
    if not isinstance(raw, dict):
        raise DiffCXRError(f"model config {where} must be a mapping at the top level")
    raw = _resolve_extends(raw, where)
    for key in raw:
        if key not in _TOP_LEVEL:
            raise DiffCXRError(f"unknown key {key!r} in model config {where} (allowed: {', '.join(sorted(_TOP_LEVEL))})")
    if "image_size" not in raw:
        raise DiffCXRError(f"model config {where} needs 'image_size'")
    size = raw["image_size"]
    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise DiffCXRError(f"model config {where}: image_size must be an integer >= 8, got {size!r}")
    cfg: dict[str, Any] = {"name": raw.get("name", Path(where).stem), "image_size": size}
    for section, defaults in _SCHEMA.items():
        given = raw.get(section) or {}
        if not isinstance(given, dict):
            raise DiffCXRError(f"section {section!r} of model config {where} must be a mapping")
        for key in given:
            if key not in defaults:
                raise DiffCXRError(
                    f"unknown key {f'{section}.{key}'!r} in model config {where} (allowed: {', '.join(defaults)})"
                )
        cfg[section] = {**copy.deepcopy(defaults), **given}
        for key, value in given.items():
            _check_type(f"{section}.{key}", value, defaults[key], where)
    if cfg["report_encoder"]["token_reduction"] not in TOKEN_REDUCTIONS:
        raise DiffCXRError(f"report_encoder.token_reduction in model config {where} must be one of "
                           f"{', '.join(TOKEN_REDUCTIONS)}, got {cfg['report_encoder']['token_reduction']!r}")
    if cfg["uvit"]["final_conv_init"] not in FINAL_CONV_INITS:
        raise DiffCXRError(f"uvit.final_conv_init in model config {where} must be one of "
                           f"{', '.join(FINAL_CONV_INITS)}, got {cfg['uvit']['final_conv_init']!r}")
    if cfg["report_encoder"]["squeeze_init"] not in SQUEEZE_INITS:
        raise DiffCXRError(f"report_encoder.squeeze_init in model config {where} must be one of "
                           f"{', '.join(SQUEEZE_INITS)}, got {cfg['report_encoder']['squeeze_init']!r}")
    if cfg["image_size"] % latent_downsample(cfg):
        raise DiffCXRError(f"image_size {cfg['image_size']} is not divisible by the VAE factor {latent_downsample(cfg)}")
    return cfg


def _check_type(name: str, value: Any, default: Any, where: str) -> None:
    """``value`` has the type of the key's default (a float key takes an integer too; a ``None`` default: any)."""
    if default is None:
        return
    if isinstance(default, bool):
        ok, kind = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        ok, kind = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif isinstance(default, float):
        ok, kind = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
    elif isinstance(default, str):
        ok, kind = isinstance(value, str), "a string"
    elif isinstance(default, list):
        ok, kind = isinstance(value, list), "a list"
    else:
        return
    if not ok:
        raise DiffCXRError(f"{name} in model config {where} must be {kind}, got {value!r}")


def _resolve_extends(raw: dict, where: str, depth: int = 0) -> dict:
    """``extends: BASE`` → BASE's raw mapping with this one's sections merged over it (key by key)."""
    if "extends" not in raw:
        return raw
    if depth > 8:
        raise DiffCXRError(f"model config {where}: 'extends' chain is too deep (a cycle?)")
    base_name = str(raw["extends"])
    path = named_config("model", base_name) or Path(base_name)
    sibling = Path(where).parent / base_name
    if path == Path(base_name) and not path.is_absolute() and where != "<dict>" and sibling.is_file():
        path = sibling
    if not path.is_file():
        raise DiffCXRError(f"model config {where} extends {base_name!r}, which was not found")
    base = _resolve_extends(read_yaml_mapping(path, "model config"), str(path), depth + 1)
    merged = {k: copy.deepcopy(v) for k, v in base.items()}
    for key, value in raw.items():
        if key == "extends":
            continue
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def latent_downsample(cfg: dict) -> int:
    return 2 ** (len(cfg["vae"]["block_out_channels"]) - 1)


def latent_size(cfg: dict) -> int:
    """Side length of the latent (the U-ViT ``sample_size``)."""
    return cfg["image_size"] // latent_downsample(cfg)


def uvit_kwargs(cfg: dict) -> dict[str, Any]:
    """Constructor arguments of :class:`~diffcxr.models.uvit.UViT` for a loaded model config."""
    u = cfg["uvit"]
    return dict(sample_size=latent_size(cfg), in_channels=cfg["vae"]["latent_channels"], patch_size=u["patch_size"],
                width=u["width"], depth=u["depth"], num_heads=u["num_heads"], mlp_ratio=float(u["mlp_ratio"]),
                qkv_bias=bool(u["qkv_bias"]), context_dim=cfg["report_encoder"]["hidden_size"],
                num_context_tokens=cfg["report_encoder"]["num_condition_tokens"],
                mlp_time_embed=bool(u["mlp_time_embed"]), final_conv=bool(u["final_conv"]),
                final_conv_init=u["final_conv_init"])


def adapter_kwargs(cfg: dict) -> dict[str, Any]:
    """Constructor arguments of the knowledge adapter (same input half as the U-ViT)."""
    kw = uvit_kwargs(cfg)
    kw.pop("final_conv")
    kw.pop("final_conv_init")
    return kw


def vae_kwargs(cfg: dict) -> dict[str, Any]:
    """Constructor arguments of the 1-channel ``AutoencoderKL`` (see :func:`diffcxr.models.vae.make_vae`)."""
    v = cfg["vae"]
    return dict(in_channels=v["in_channels"], latent_channels=v["latent_channels"],
                block_out_channels=list(v["block_out_channels"]), layers_per_block=v["layers_per_block"],
                norm_num_groups=v["norm_num_groups"], scaling_factor=float(v["scaling_factor"]),
                sample_size=cfg["image_size"])
