"""Shared pytest fixtures.

``shared_data`` points at ``../shared/data`` (real, licence-restricted data that is never copied into the
repository). Tests that use it skip with a reason when it is absent, e.g. on a user's machine.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("DIFFCXR_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ../shared/data; skips the test when the folder is not there."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} not present (set DIFFCXR_SHARED_DATA to point at it)")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _offline_hub(monkeypatch):
    """Tests never touch the network: any hub download attempt fails fast."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
