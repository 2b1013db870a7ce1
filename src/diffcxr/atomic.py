"""Writing a file so that readers see the old content or the new one, never half of it.

Every file the library writes for later reading (cache shards and indexes, latent caches, dataset metadata,
checkpoint pointers) goes through :func:`atomic_path`: the content is written to a temporary file next to the
target, flushed to disk, and moved over the target with ``os.replace``. A crash leaves at most a stray
``.tmp`` file. Targets that are not regular files (a device such as ``/dev/null``, a FIFO, a folder, a
symbolic link) are refused rather than replaced.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from diffcxr.errors import DiffCXRError

__all__ = ["atomic_path", "atomic_write_text"]


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is fsynced and replaces ``path``, on error it is removed."""
    path = Path(path)
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise DiffCXRError(f"{path} exists and is not a regular file: not replacing it")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
