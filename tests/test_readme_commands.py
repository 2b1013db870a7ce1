"""The README's two commands and .ci/run stay in step (ground rule: CI installs exactly as the README says)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _first_bash_blocks(n: int) -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", text, flags=re.S)[:n]]


def test_readme_starts_with_install_plus_demo_then_tests():
    install, tests = _first_bash_blocks(2)
    steps = [s.strip() for s in install.split("&&")]
    assert steps[0] == "python3 -m venv .venv" and steps[-1].startswith("diffcxr demo")
    assert "pip install torch==2.13.0" in steps and "pip install -e '.[test]'" in steps
    assert tests == "python -m pytest -q"


def test_ci_installs_and_tests_like_the_readme():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "python3 -m venv .venv" in ci
    assert "pip install --quiet torch==2.13.0" in ci and "pip install --quiet -e '.[test]'" in ci
    assert "python -m pytest -q" in ci
