"""``diffcxr downstream`` in-process on a tiny phantom set (a few optimizer steps, tiny classifier)."""

import json

import numpy as np
import pytest

from diffcxr.cli.main import main
from diffcxr.evaluation.downstream import nested_subsets


def test_nested_subsets():
    s = nested_subsets(200, [0.01, 0.1, 1.0], seed=3)
    assert [len(v) for v in s.values()] == [2, 20, 200]
    assert set(s[0.01]) <= set(s[0.1]) <= set(s[1.0])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from diffcxr.data import read_records, save_png
    from diffcxr.data.phantom import make_phantom_dataset

    root = tmp_path_factory.mktemp("downstream")
    make_phantom_dataset(40, 32, root / "real", seed=1, progress=False)
    records = read_records(f"phantom:{root / 'real'}")
    assert {"train", "test"} <= {r.split for r in records}
    syn = root / "syn"
    syn.mkdir()
    for i, r in enumerate(records[:5]):
        save_png(np.full((32, 32), 0.5), syn / f"s{i}_00.png", value_range=(0.0, 1.0))
        (syn / f"s{i}_00.json").write_text(json.dumps({"report": r.report, "id": r.id}))  # labels via the labeler
    return root, syn


def test_downstream_runs_and_writes_table(tiny, capsys):
    root, syn = tiny
    out = root / "out"
    code = main(["downstream", "--real", f"phantom:{root / 'real'}", "--synthetic", str(syn), "--fractions", "0.5,1",
                 "--steps", "2", "--batch-size", "8", "--channels", "4,8", "--size", "32", "--out", str(out), "--quiet"])
    assert code == 0
    result = json.loads((out / "downstream.json").read_text())
    assert [r["fraction"] for r in result["rows"]] == [0.5, 1.0]
    assert result["rows"][0]["n_real"] * 2 == pytest.approx(result["rows"][1]["n_real"], abs=1)
    assert all(r["n_synthetic"] == 5 and r["mauc_with_synthetic"] is not None for r in result["rows"])
    assert result["synthetic_only"] is not None
    assert (out / "classifiers" / "real1" / "classifier" / "diffusion_pytorch_model.safetensors").is_file()
    printed = capsys.readouterr().out
    assert "mAUC real only" in printed and "50%" in printed


@pytest.mark.parametrize("extra, message", [
    (["--fractions", "0,1"], "--fractions"),
    (["--fractions", "a,b"], "--fractions"),
    (["--model", "nowhere"], "--n-synthetic"),
])
def test_downstream_bad_input(tiny, capsys, extra, message):
    root, _ = tiny
    code = main(["downstream", "--real", f"phantom:{root / 'real'}", "--out", str(root / "bad"), "--quiet", *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and message in err[0]


def test_trained_classifier_loads_as_extractor(tiny):
    import torch

    from diffcxr.models.cxr_classifier import load_classifier
    from diffcxr.metrics.extractors import load_extractor

    root, _ = tiny
    folder = root / "out" / "classifiers" / "real1"
    if not folder.is_dir():
        pytest.skip("needs the downstream run above")
    model = load_classifier(folder)
    ext = load_extractor("cxr", classifier=folder)
    x = torch.zeros(2, 1, 48, 48)
    assert ext(x).shape == (2, 8) and model(torch.zeros(2, 1, 32, 32)).shape == (2, 14)
