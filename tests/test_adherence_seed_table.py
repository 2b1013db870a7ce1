"""benchmarks/adherence_sweep.py --seed-table: mean ± SD over seeds, the paired baseline, the per-finding table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "adherence_sweep.py"
REAL = {"Atelectasis": 0.9, "Edema": 1.0, "Fracture": 0.7}


def _sweep(path: Path, rows: list[tuple[float, float, dict]]) -> str:
    """A sweep.json with one row per (w, adapter scale, per-finding AUCs); its mAUC is the findings' mean."""
    def row(w, a, pf):
        return {"mauc": float(np.mean(list(pf.values()))), "per_finding": pf, "fid": 5.0 + a,
                "settings": {"solver": "dpm++2m", "num_inference_steps": 25, "guidance_scale": w, "adapter_scale": a}}
    sweep = {"real": {"mauc": float(np.mean(list(REAL.values()))), "per_finding": REAL},
             "rows": [row(*r) for r in rows]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(sweep), encoding="utf-8")
    return str(path)


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCHMARK), *args], capture_output=True, text=True)


def _table_row(out: str, first_cell: str) -> list[str]:
    line = next(ln for ln in out.splitlines() if ln.startswith(f"| {first_cell} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_seed_table_per_finding_pairs_seeds_with_the_baseline(tmp_path: Path) -> None:
    arm, base = {}, {}
    for seed, (atel, frac) in {"s1": (0.80, 0.60), "s2": (0.84, 0.70)}.items():
        arm[seed] = _sweep(tmp_path / f"arm-{seed}.json",
                           [(4.0, 2.0, {"Atelectasis": atel, "Edema": 0.98, "Fracture": frac}),
                            (4.0, 0.0, {"Atelectasis": atel - 0.1, "Edema": 0.90, "Fracture": frac})])
        base[seed] = _sweep(tmp_path / f"base-{seed}.json",
                            [(4.0, 2.0, {"Atelectasis": atel - 0.02, "Edema": 0.98, "Fracture": frac + 0.05})])
    res = _run("--seed-table", *(f"{s}={p}" for s, p in arm.items()),
               "--baseline", *(f"{s}={p}" for s, p in base.items()), "--per-finding", "4,2")
    assert res.returncode == 0, res.stderr
    atel = _table_row(res.stdout, "Atelectasis")
    assert atel[1] == "0.900" and atel[2] == f"0.820 ± {np.std([0.80, 0.84], ddof=1):.3f}" and atel[3] == "+0.080"
    assert atel[5].startswith("+0.020 ± 0.000 (+0.020 / +0.020)")  # paired per seed, not a difference of means
    assert _table_row(res.stdout, "Fracture")[5].startswith("-0.050 ± 0.000")
    # the adapter's paired gain in the seed table: (+0.10 + 0.08 + 0) / 3 findings, in each seed
    scale2 = [r for r in res.stdout.splitlines() if r.startswith("| dpm++2m | 25 | 4 | 2 |")][0]
    assert "+0.060 ± 0.000 (+0.060 / +0.060)" in scale2


def test_seed_table_per_finding_errors_are_one_line(tmp_path: Path) -> None:
    a = _sweep(tmp_path / "a.json", [(4.0, 2.0, {"Atelectasis": 0.8, "Edema": 0.9, "Fracture": 0.6})])
    for flag, expected in (("4,1", "matches 0 settings"), ("four", "takes W,ADAPTER")):
        res = _run("--seed-table", f"s1={a}", "--per-finding", flag)
        assert res.returncode != 0 and expected in res.stderr and "Traceback" not in res.stderr


def test_baseline_table_pairs_the_seeds_both_arms_trained(tmp_path: Path) -> None:
    """The ablation table gives, beside the difference of arm means, the per-seed differences of the seeds both
    arms trained (mean ± SD, ÷ SD, t-interval); a seed only one arm has is left out of the pairing."""
    arm_values = {"s1": 0.90, "s2": 0.86, "s3": 0.88}
    base_values = {"s1": 0.86, "s2": 0.84, "s3": 0.83, "s9": 0.70}
    pf = lambda v: {"Atelectasis": v, "Edema": v, "Fracture": v}  # noqa: E731 (mAUC = v)
    arm = [f"{s}={_sweep(tmp_path / f'a-{s}.json', [(4.0, 2.0, pf(v))])}" for s, v in arm_values.items()]
    base = [f"{s}={_sweep(tmp_path / f'b-{s}.json', [(4.0, 2.0, pf(v))])}" for s, v in base_values.items()]
    res = _run("--seed-table", *arm, "--baseline", *base)
    assert res.returncode == 0, res.stderr
    assert "paired run for run (3 seeds" in res.stdout
    row = [r for r in res.stdout.splitlines() if r.startswith("| dpm++2m | 25 | 4 | 2 |")][-1]
    cells = [c.strip() for c in row.strip("|").split("|")]
    diffs = np.array([0.04, 0.02, 0.05])
    half = 4.302652729911275 * diffs.std(ddof=1) / np.sqrt(3)  # t(0.975, df=2)
    assert cells[7] == (f"+{diffs.mean():.3f} ± {diffs.std(ddof=1):.3f} ({diffs.mean() / diffs.std(ddof=1):+.1f} SD) "
                        f"[{diffs.mean() - half:+.3f}, {diffs.mean() + half:+.3f}]")
    # the difference of means uses every seed of each arm, s9 included
    assert cells[6].startswith(f"{np.mean(list(arm_values.values())) - np.mean(list(base_values.values())):+.3f}")
