"""One way to turn YAML and ``key=value`` overrides into validated config dataclasses.

Used by the run configs (:mod:`diffcxr.training.config`) and the noise filter's config
(:mod:`diffcxr.filtering.config`). Every key must be a field (a typo is an error naming it and the allowed
keys), every value is coerced to its field's type or rejected with the key's name, and override values are
parsed as YAML scalars (``1e-4``, ``true``, ``null``, ``[0.9, 0.99]``).
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from pathlib import Path
from typing import Any

from diffcxr.errors import DiffCXRError

__all__ = ["coerce", "build_dataclass", "apply_overrides", "parse_value", "read_yaml_mapping"]

_TRUE, _FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")


def parse_value(text: str) -> Any:
    """A ``key=value`` value parsed as YAML (a string when it is not valid YAML)."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def coerce(value: Any, hint: Any, key: str, where: str) -> Any:
    """``value`` as the type ``hint`` (bool, int, float, str, ``X | None``, ``tuple[X, ...]``, tuple of n, Any)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):  # Optional[X] and X | None
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return coerce(value, inner[0], key, where)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, (str, int)) and str(value).lower() in _TRUE + _FALSE:
            return str(value).lower() in _TRUE
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif hint is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                pass
        if number is not None:
            if not math.isfinite(number):  # ".nan" / ".inf" in YAML: never a meaningful setting
                raise DiffCXRError(f"{where}: {key} must be a finite number, got {value!r}")
            return number
    elif hint is str:
        if isinstance(value, bool):  # YAML reads a bare `no` / `yes` as a boolean
            return "yes" if value else "no"
        if isinstance(value, (str, int, float)):
            return str(value)
        if value is None:
            return ""
    elif origin is tuple:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool) and args[-1] is Ellipsis:
            value = [value]
        if isinstance(value, (list, tuple)):
            if args and args[-1] is Ellipsis:
                return tuple(coerce(v, args[0], key, where) for v in value)
            if len(value) == len(args):
                return tuple(coerce(v, a, key, where) for v, a in zip(value, args))
    raise DiffCXRError(f"{where}: {key} must be {_type_name(hint)}, got {value!r}")


def _type_name(hint) -> str:
    args = typing.get_args(hint)
    if typing.get_origin(hint) is tuple:
        return f"a list of {args[0].__name__}" if args[-1] is Ellipsis else f"a list of {len(args)} numbers"
    if type(None) in args and len(args) == 2:
        return f"{_type_name(next(a for a in args if a is not type(None)))} or null"
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(hint, str(hint))


def build_dataclass(cls, raw: dict, section: str, where: str, *, hidden: tuple[str, ...] = (), check=None):
    """``cls(**raw)`` with nested dataclass sections, every key checked and every value coerced.

    ``hidden`` fields cannot be set from a file; ``check(cfg, section, where)`` validates the built section.
    """
    if not isinstance(raw, dict):
        raise DiffCXRError(f"{where}: section {section or 'top level'!r} must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.name not in hidden]
    kwargs = {}
    for key, value in raw.items():
        dotted = f"{section}.{key}" if section else key
        if key not in names:
            sect = f"section {section!r}" if section else "the top level"
            raise DiffCXRError(f"{where}: unknown key {key!r} in {sect} (allowed: {', '.join(names)})")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = build_dataclass(hint, value or {}, dotted, where, check=check)
        else:
            kwargs[key] = coerce(value, hint, dotted, where)
    cfg = cls(**kwargs)
    if check is not None:
        check(cfg, section, where)
    return cfg


def apply_overrides(raw: dict, overrides: list[str] | tuple[str, ...], where: str = "override") -> dict:
    """Apply ``a.b=value`` strings (values parsed by :func:`parse_value`) to a raw dict, in place."""
    for item in overrides or ():
        key, sep, text = item.partition("=")
        parts = [p for p in key.strip().split(".") if p]
        if not sep:
            raise DiffCXRError(f"override {item!r} is not key=value (e.g. base.lr=1e-4)")
        if not parts:
            raise DiffCXRError(f"override {item!r} has an empty key")
        node = raw
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise DiffCXRError(f"override {item!r}: {part!r} is not a section")
            node = child
        node[parts[-1]] = parse_value(text.strip()) if text.strip() else None
    return raw


def read_yaml_mapping(path: str | os.PathLike, what: str) -> dict:
    """The top-level mapping of a YAML file (``{}`` for an empty file); one-line errors naming ``what``."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise DiffCXRError(f"{what} file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise DiffCXRError(f"{what} {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    except UnicodeDecodeError:
        raise DiffCXRError(f"{what} {path} is not UTF-8 text") from None
    if not isinstance(data, dict):
        raise DiffCXRError(f"{what} {path} must be a mapping at the top level")
    return data
