"""A table of bad inputs through ``main(argv)``: each exits 1 with one ``diffcxr: error:`` line on stderr and
leaves the files it was pointed at unchanged."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from diffcxr.cli.main import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def bad_files(tmp_path):
    (tmp_path / "existing.txt").write_text("keep me")
    (tmp_path / "latin1.txt").write_bytes("Épanchement pleural.\n".encode("latin-1"))
    (tmp_path / "latin1.yaml").write_bytes("name: caf\xe9\n".encode("latin-1"))
    (tmp_path / "nan.yaml").write_text("extends: tiny\nimage_size: -64\n")
    (tmp_path / "model").mkdir()
    return tmp_path


def _cases(d):
    return [
        # usage errors: numbers checked where they are parsed
        ["phantom", "--n", "2", "--seed", "-1", "--out", f"{d}/ph"],
        ["phantom", "--n", "0", "--out", f"{d}/ph"],
        ["phantom", "--n", "2", "--noise-fraction", "nan", "--out", f"{d}/ph"],
        ["generate", "x", "--model", f"{d}/model", "--out", f"{d}/g", "--guidance", "nan"],
        ["generate", "x", "--model", f"{d}/model", "--out", f"{d}/g", "--adapter-scale", "inf"],
        ["generate", "x", "--model", f"{d}/model", "--out", f"{d}/g", "--steps", "0"],
        ["evaluate", "--real", "phantom:x", "--generated", "y", "--out", f"{d}/e", "--memorization-threshold", "nan"],
        ["downstream", "--real", "phantom:x", "--out", f"{d}/ds", "--lr", "nan"],
        ["data", "show", "phantom:x", "--size", "0", "--out", f"{d}/s.png"],
        ["data", "show", "phantom:x", "--out", f"{d}/no-extension"],
        ["phantom", "--n", "999999999999", "--out", f"{d}/ph"],  # a limit, not a MemoryError
        ["downstream", "--real", "phantom:x", "--out", f"{d}/ds", "--channels", "0,0"],
        ["downstream", "--real", "phantom:x", "--out", f"{d}/ds", "--channels", "nan"],
        ["downstream", "--real", "phantom:x", "--out", f"{d}/ds", "--channels", "100000000"],
        ["flops", "--config", "paper", "--steps", "-3"],
        ["nonexistent-command"],
        ["generate", "x"],  # required options missing
        # config values: finite, in range, UTF-8
        ["train", "vae", "-c", "tiny", "--data", "phantom:x", "--output-dir", f"{d}/t", "vae.lr=.nan"],
        ["train", "vae", "-c", "tiny", "--data", "phantom:x", "--output-dir", f"{d}/t", "seed=-1"],
        ["train", "vae", "-c", f"{d}/latin1.yaml", "--data", "phantom:x", "--output-dir", f"{d}/t"],
        ["flops", "--config", f"{d}/nan.yaml"],
        # inputs
        ["generate", "--input", f"{d}/latin1.txt", "--model", f"{d}/model", "--out", f"{d}/g"],
        ["label", "--input", f"{d}/missing.txt"],
        ["generate", "x", "--model", str(ROOT / "tests" / "fixtures" / "tiny_pipeline"), "--out", f"{d}/g", "--device", "bogus"],
        ["demo", "-c", "nope", "--out", f"{d}/demo"],  # refused before any phantom is written
        ["demo", "--size", "32", "--out", f"{d}/demo"],  # the config's image size is 64
        ["data", "info", f"csv:{d}/model"],
    ]


@pytest.mark.parametrize("index", range(27))
def test_bad_input_is_one_line_and_exit_1(bad_files, capsys, index):
    argv = _cases(bad_files)[index]
    before = {p.name: p.read_bytes() for p in bad_files.iterdir() if p.is_file()}
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 1, (argv, err)
    assert err.startswith("diffcxr: error:") and len(err.splitlines()) == 1, (argv, err)
    assert "Traceback" not in err
    after = {p.name: p.read_bytes() for p in bad_files.iterdir() if p.is_file()}
    assert after == before
    assert sorted(os.listdir(bad_files)) == sorted(["existing.txt", "latin1.txt", "latin1.yaml", "nan.yaml", "model"])


def test_the_case_table_is_complete(bad_files):
    assert len(_cases(bad_files)) == 27


def test_verbose_keeps_the_traceback(bad_files):
    from diffcxr.errors import DiffCXRError

    with pytest.raises(DiffCXRError):
        main(["-v", "phantom", "--n", "2", "--seed", "-1", "--out", str(bad_files / "ph")])


def test_errors_name_columns_but_never_echo_a_file_that_is_not_a_csv(tmp_path, capsys):
    secret = tmp_path / "passwd.csv"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n")
    header = tmp_path / "other.csv"
    header.write_text("a,b\n1,2\n")
    for argv in (["data", "info", f"csv:{secret}"], ["label", "--input", str(secret)]):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert "/bin/bash" not in err and "not a header of column names (1 field)" in err
    assert main(["data", "info", f"csv:{header}"]) == 1
    assert "it has columns a, b" in capsys.readouterr().err


def test_generate_streams_its_jobs_and_refuses_a_folder_of_earlier_results(tmp_path, capsys):
    """A billion images per report start at once (nothing is materialised first); image g of the run has seed
    seed+g; an --out that already holds generated files is refused before the model loads."""
    import itertools

    from diffcxr.data.report_files import ReportItem
    from diffcxr.pipelines.batch_generation import image_jobs

    reports = (ReportItem(id=i, report="Effusion.") for i in ("a/b", "a?b"))
    first = list(itertools.islice(image_jobs(reports, 10**9, seed=5), 3))
    assert [(job.item.id, job.stem, job.k, job.seed) for job in first] == [
        ("a/b", "a_b", 0, 5), ("a/b", "a_b", 1, 6), ("a/b", "a_b", 2, 7)]
    out = tmp_path / "g"
    out.mkdir()
    (out / "other_03.png").write_bytes(b"earlier run")
    assert main(["generate", "x", "--model", str(tmp_path / "no-model-needed"), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "not a saved DiffCXRPipeline" in err  # model checked first, then the folder
    model = ROOT / "tests" / "fixtures" / "tiny_pipeline"
    assert main(["generate", "x", "--model", str(model), "--out", str(out), "--n", "1000000000"]) == 1
    assert "already holds 1 generated files (e.g. other_03.png); continue that run with --resume" in capsys.readouterr().err
    assert (out / "other_03.png").read_bytes() == b"earlier run"


def test_generate_refuses_an_empty_report_in_a_file_naming_its_line(tmp_path, capsys):
    import json

    reports = tmp_path / "r.jsonl"
    reports.write_text(json.dumps({"id": "ok", "report": "Effusion."}) + "\n" + json.dumps({"id": "e", "report": " "}))
    model = ROOT / "tests" / "fixtures" / "tiny_pipeline"
    assert main(["generate", "--input", str(reports), "--model", str(model), "--out", str(tmp_path / "g"),
                 "--steps", "1", "--n", "1", "--quiet"]) == 1
    assert "report #e (line 2) is empty" in capsys.readouterr().err


_FULL_DISK_SCRIPT = r"""
set -u
D="$1"; shift
if ! mount -t tmpfs -o size=64k diffcxr-full "$D" 2>/dev/null; then echo "NO_MOUNT"; exit 0; fi
printf 'old labels\n' > "$D/labels.jsonl"
"$@" --out "$D/labels.jsonl" 2>"$D/../stderr.txt"
echo "rc=$?"
ls -A "$D"
cat "$D/labels.jsonl"
"""


def test_a_full_disk_while_writing_output_is_one_line_and_keeps_the_old_file(tmp_path):
    """A real ENOSPC: ``label`` writes 64 kB+ of output onto a 64 kB tmpfs (mounted in a private user and mount
    namespace). Where namespaces are not allowed the same write runs under a 64 kB file-size limit (EFBIG), the
    same failure class. Either way: exit 1, one line, the old output intact, no temporary file left."""
    import json
    import resource
    import shutil
    import signal
    import subprocess
    import sys

    reports = tmp_path / "reports.jsonl"
    reports.write_text("".join(json.dumps({"id": i, "report": "Large right pleural effusion. " * 20}) + "\n"
                               for i in range(200)))  # labels with evidence: ~600 kB of output
    command = [sys.executable, "-m", "diffcxr", "label", "--input", str(reports)]
    target = tmp_path / "disk"
    target.mkdir()
    result = None
    if shutil.which("unshare"):
        result = subprocess.run(["unshare", "-rm", "sh", "-c", _FULL_DISK_SCRIPT, "sh", str(target), *command],
                                capture_output=True, text=True, timeout=120)
    if result is not None and result.returncode == 0 and "NO_MOUNT" not in result.stdout:
        lines = result.stdout.splitlines()
        assert lines[0] == "rc=1", result.stdout
        assert lines[1:] == ["labels.jsonl", "old labels"]  # no partial file, the old output unchanged
        err = (tmp_path / "stderr.txt").read_text()
        expected = "No space left on device"
    else:  # no user namespaces here: a file-size limit fails the write the same way (EFBIG)
        (target / "labels.jsonl").write_text("old labels\n")

        def limit_file_size():
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

        proc = subprocess.run([*command, "--out", str(target / "labels.jsonl")], capture_output=True, text=True,
                              timeout=120, preexec_fn=limit_file_size)
        assert proc.returncode == 1
        assert sorted(p.name for p in target.iterdir()) == ["labels.jsonl"]
        assert (target / "labels.jsonl").read_text() == "old labels\n"
        err, expected = proc.stderr, "File too large"
    assert err.startswith("diffcxr: error:") and expected in err and len(err.strip().splitlines()) == 1, err
