"""One atomic writer for every file the library writes for later reading."""

from __future__ import annotations

import os

import pytest

from diffcxr.atomic import atomic_path, atomic_write_text
from diffcxr.errors import DiffCXRError


def test_replaces_content_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "index.json"
    atomic_write_text(target, "old")
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.json"]


def test_an_error_keeps_the_old_content(tmp_path):
    target = tmp_path / "metadata.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half of the n")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metadata.csv"]


def test_refuses_targets_that_are_not_regular_files(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for target in (folder, link, fifo):
        with pytest.raises(DiffCXRError, match="not a regular file"):
            atomic_write_text(target, "x")
    assert folder.is_dir() and link.is_symlink() and not (tmp_path / "elsewhere").exists()
