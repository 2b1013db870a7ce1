"""Command-line glue shared by benchmark scripts: ``NAME=PATH`` arguments and one-line errors.

Scripts import it after ``sys.path.insert(0, <benchmarks folder>)`` (they run as files, not as a package).
"""

from __future__ import annotations

from typing import Callable, TypeVar

T = TypeVar("T")


def named_paths(specs: list[str], flag: str, what: str) -> dict[str, str]:
    """``{"NAME": "PATH"}`` from repeated ``--flag NAME=PATH`` arguments; exits with one line on a malformed one."""
    out = {}
    for spec in specs:
        name, _, path = spec.partition("=")
        if not name or not path:
            raise SystemExit(f"error: give {flag} as NAME={what}, got {spec!r}")
        out[name] = path
    return out


def one_line_errors(fn: Callable[..., T], *args, **kwargs) -> T:
    """``fn(*args, **kwargs)``, turning the errors a user can cause (bad paths, bad data, DiffCXRError) into one
    ``error: ...`` line and a non-zero exit instead of a traceback; bugs still raise."""
    from diffcxr.errors import DiffCXRError

    try:
        return fn(*args, **kwargs)
    except (DiffCXRError, OSError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
