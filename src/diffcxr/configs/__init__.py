"""The named configs shipped inside the package: ``model/*.yaml`` (model hyper-parameters) and ``train/*.yaml``
(run configs: a model plus every training stage's settings).

They are package data, read through :mod:`importlib.resources`, so a wheel install finds them as an editable
checkout does. ``$DIFFCXR_MODEL_CONFIG_DIR`` / ``$DIFFCXR_TRAIN_CONFIG_DIR`` point to another folder instead.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

__all__ = ["config_dir", "config_names", "named_config"]

_ENV = {"model": "DIFFCXR_MODEL_CONFIG_DIR", "train": "DIFFCXR_TRAIN_CONFIG_DIR"}


def config_dir(kind: str) -> Path:
    """Folder of the named ``kind`` configs (``"model"`` or ``"train"``)."""
    env = os.environ.get(_ENV[kind])
    if env:
        return Path(env)
    return Path(str(resources.files("diffcxr.configs") / kind))


def config_names(kind: str) -> tuple[str, ...]:
    """Names (file stems) of the ``kind`` configs in :func:`config_dir`, sorted."""
    folder = config_dir(kind)
    return tuple(sorted(p.stem for p in folder.glob("*.yaml"))) if folder.is_dir() else ()


def named_config(kind: str, name: str) -> Path | None:
    """The YAML file of a config given by bare name (no suffix, no folder), or None when ``name`` is not one."""
    if not name or Path(name).suffix or Path(name).name != name:
        return None
    path = config_dir(kind) / f"{name}.yaml"
    return path if path.is_file() else None
