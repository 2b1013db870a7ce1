"""The condition readout: it learns what a condition carries, and only that; the benchmark script end to end."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from _benchmarks import load_benchmark

from diffcxr.evaluation.condition_readout import (
    ConditionReadout,
    fit_readout,
    presence_mauc,
    read_conditions,
    readout_targets,
    side_accuracy,
)


def _synthetic(n: int, seed: int, carry: bool = True):
    """Conditions (n, 5, 16) over 3 findings: token 2 carries presence (+2 in feature k), token 3 the side (±2 in
    the same feature k, so only attention by position tells them apart); ``carry=False`` gives the same targets
    with conditions that carry nothing."""
    rng = np.random.default_rng(seed)
    present = rng.random((n, 3)) < 0.4
    left = rng.random((n, 3)) < 0.5
    tokens = rng.normal(0, 0.5, (n, 5, 16)).astype(np.float32)
    if carry:
        tokens[:, 2, :3] += 2.0 * present
        tokens[:, 3, :3] += np.where(left, 2.0, -2.0) * present
    presence = present.astype(np.float64)
    side = np.where(present, left.astype(np.float64), np.nan)
    return torch.from_numpy(tokens), presence, side


def test_readout_reads_presence_and_side_only_when_the_condition_carries_them():
    train, test = _synthetic(300, 0), _synthetic(200, 1)
    readout = fit_readout(*train, seed=0, steps=300, width=16)
    scores = read_conditions(readout, test[0])
    assert scores.presence.shape == scores.side.shape == (200, 3)
    assert presence_mauc(scores.presence, test[1], findings=("a", "b", "c")) > 0.95
    assert side_accuracy(scores.side, test[2]) > 0.9

    blind_train, blind_test = _synthetic(300, 0, carry=False), _synthetic(200, 1, carry=False)
    blind = read_conditions(fit_readout(*blind_train, seed=0, steps=300, width=16), blind_test[0])
    assert presence_mauc(blind.presence, blind_test[1], findings=("a", "b", "c")) < 0.7
    assert side_accuracy(blind.side, blind_test[2]) < 0.7


def test_readout_is_seeded_and_checks_shapes():
    tokens, presence, side = _synthetic(40, 2)
    a = read_conditions(fit_readout(tokens, presence, side, seed=3, steps=5, width=8), tokens).presence
    b = read_conditions(fit_readout(tokens, presence, side, seed=3, steps=5, width=8), tokens).presence
    np.testing.assert_array_equal(a, b)
    assert ConditionReadout(16, 5, 3, 8)(tokens)[0].shape == (40, 3)
    with pytest.raises(Exception, match="tokens"):
        fit_readout(tokens[0], presence, side)
    assert np.isnan(side_accuracy(np.zeros((2, 3)), np.full((2, 3), np.nan)))


def test_readout_targets_from_phantoms(tmp_path):
    from diffcxr.data.phantom import make_phantom_dataset
    from diffcxr.data.sources import read_records
    from diffcxr.evaluation.laterality import finding_side
    from diffcxr.findings import CHEXPERT_FINDINGS

    make_phantom_dataset(40, 32, tmp_path / "ph", seed=3, progress=False)
    records = list(read_records(f"phantom:{tmp_path / 'ph'}", derive_labels=True))
    presence, side = readout_targets(records)
    assert presence.shape == side.shape == (40, len(CHEXPERT_FINDINGS))
    assert set(np.unique(presence[~np.isnan(presence)])) <= {0.0, 1.0}
    one_sided = [(i, k) for i, r in enumerate(records) for k, f in enumerate(CHEXPERT_FINDINGS) if finding_side(r.meta, f)]
    assert one_sided and (~np.isnan(side)).sum() == len(one_sided)
    i, k = one_sided[0]
    assert side[i, k] == float(finding_side(records[i].meta, CHEXPERT_FINDINGS[k]) == "left")


def test_condition_readout_benchmark(tmp_path, monkeypatch, capsys):
    from diffcxr.data.phantom import make_phantom_dataset
    from diffcxr.models.report_encoder import ReportEncoder

    make_phantom_dataset(40, 32, tmp_path / "ph", seed=3, progress=False)
    ReportEncoder.tiny(seed=0).eval().save_pretrained(tmp_path / "vlm" / "report_encoder")
    data = f"phantom:{tmp_path / 'ph'}"
    bench = load_benchmark("condition_readout")
    args = ["condition_readout.py", "--vlm", f"tiny={tmp_path / 'vlm'}", "--train", data, "--eval", data, "--lat", data,
            "--readout-seeds", "2", "--steps", "20", "--bootstrap", "10", "--out", str(tmp_path / "out")]
    monkeypatch.setattr(sys, "argv", args)
    bench.main()
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith(("| text tower", "| tiny |"))]
    assert len(rows) == 2 and "| 64 |" in rows[0] and "| 77 |" in rows[1]
    presence = float(rows[1].split("|")[3].split()[0])
    assert 0.0 <= presence <= 1.0 and "±" in rows[1]
    assert (tmp_path / "out" / "readout.json").is_file()
    monkeypatch.setattr(sys, "argv", args[:2] + [f"tiny={tmp_path}"] + args[3:])
    with pytest.raises(SystemExit, match="no report_encoder"):
        bench.main()
