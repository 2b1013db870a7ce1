"""``diffcxr filter`` end to end, in-process: a tiny csv dataset + a tiny random AutoencoderKL (seconds)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from diffcxr.cli.main import main
from diffcxr.filtering import load_manifest, read_manifest

N = 24


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("lnfs")
    rng = np.random.default_rng(0)
    (root / "images").mkdir()
    yy, xx = np.mgrid[0:32, 0:32] / 31.0
    lines = ["id,path,report,view,is_noise,noise_type"]
    for i in range(N):
        image = 0.3 + 0.4 * np.exp(-((xx - 0.5) ** 2 + (yy - 0.5) ** 2) / 0.1) + rng.normal(0, 0.02, (32, 32))
        noise = i >= N - 2
        if noise:
            image = 1.0 - image  # inverted
        Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8), "L").save(root / "images" / f"im{i:02d}.png")
        lines.append(f"im{i:02d},images/im{i:02d}.png,report {i},PA,{int(noise)},{'inverted' if noise else ''}")
    (root / "data.csv").write_text("\n".join(lines) + "\n")
    (root / "empty.csv").write_text("id,path,report,split\nx,images/im00.png,r,train\n")

    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=1, out_channels=1, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), layers_per_block=1,
                        latent_channels=4, norm_num_groups=4, sample_size=32)
    vae.save_pretrained(root / "vae")
    vae3 = AutoencoderKL(in_channels=2, out_channels=2, down_block_types=("DownEncoderBlock2D",),
                         up_block_types=("UpDecoderBlock2D",), block_out_channels=(8,), layers_per_block=1,
                         latent_channels=4, norm_num_groups=4, sample_size=32)
    vae3.save_pretrained(root / "vae2ch")
    return root


def test_filter_cli_end_to_end_and_cache_reuse(tiny, capsys):
    out = tiny / "out"
    code = main(["filter", "--data", f"csv:{tiny / 'data.csv'}", "--vae", str(tiny / "vae"), "--out", str(out),
                 "--no-progress", "n_clusters=2", "rounds=2", "remove_fraction=0.05", "sheet_images=4"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "removed 2 (per round: 1, 1)" in printed and "planted noise: AUROC" in printed
    for name in ("manifest.csv", "summary.json", "removed.txt", "latents.safetensors", "pca.png", "score_hist.png",
                 "most_anomalous.png", "most_typical.png"):
        assert (out / name).is_file(), name
    kept = load_manifest(out / "manifest.csv")
    assert len(kept) == N - 2
    rows = read_manifest(out)
    assert rows[0]["path"].endswith("im00.png") and rows[0]["view"] == "PA"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_samples"] == N and summary["removed_per_round"] == [1, 1]
    assert summary["latents_reused"] == 0 and summary["latent_shape"] == [4, 16, 16]
    assert "planted_noise" in summary["evaluation"]
    assert len((out / "removed.txt").read_text().strip().splitlines()) == 3  # header + 2

    # same VAE + size: the cache is reused; same seed gives the same manifest
    code = main(["filter", "--data", f"csv:{tiny / 'data.csv'}", "--vae", str(tiny / "vae"), "--out", str(out),
                 "--no-progress", "n_clusters=2", "rounds=2", "remove_fraction=0.05", "figures=false"])
    assert code == 0
    assert json.loads((out / "summary.json").read_text())["latents_reused"] == N
    assert load_manifest(out) == kept

    # filtering the cache directly (no VAE)
    out2 = tiny / "out2"
    assert main(["filter", "--latents", str(out / "latents.safetensors"), "--out", str(out2), "--no-progress",
                 "n_clusters=2", "rounds=2", "remove_fraction=0.05", "figures=false"]) == 0
    assert load_manifest(out2) == kept


@pytest.mark.parametrize(
    "extra, message",
    [
        (["n_clusters=30"], "too few for n_clusters=30"),
        (["rounds=2", "remove_fraction=0.5"], "100 %"),
        (["image_size=64"], "built for 32×32"),
        (["split=val"], "empty"),
        (["n_clusterz=3"], "filter config overrides: unknown key 'n_clusterz'"),
    ],
)
def test_filter_cli_bad_input(tiny, capsys, extra, message):
    data = f"csv:{tiny / ('empty.csv' if 'split=val' in extra else 'data.csv')}"
    code = main(["filter", "--data", data, "--vae", str(tiny / "vae"), "--out", str(tiny / "bad"), "--no-progress",
                 "figures=false", *extra])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("diffcxr: error:") and message in err and len(err.strip().splitlines()) == 1


def test_filter_cli_vae_channel_mismatch_and_missing_inputs(tiny, capsys):
    assert main(["filter", "--data", f"csv:{tiny / 'data.csv'}", "--vae", str(tiny / "vae2ch"), "--out",
                 str(tiny / "bad"), "--no-progress"]) == 1
    assert "2-channel images" in capsys.readouterr().err
    assert main(["filter", "--data", f"csv:{tiny / 'data.csv'}", "--out", str(tiny / "bad")]) == 1
    assert "--vae" in capsys.readouterr().err
    assert main(["filter", "--data", f"csv:{tiny / 'data.csv'}", "--vae", str(tiny / "nope"), "--out", str(tiny / "b")]) == 1
    assert "VAE folder not found" in capsys.readouterr().err


def test_two_processes_share_the_encoding_and_filter_the_same(tiny, tmp_path):
    """Under 2 accelerate (gloo) processes each encodes half the images into a cache shard; the main process
    merges them into the one cache and filters: the same latents, manifest and scores as one process."""
    import subprocess
    import sys

    import torch
    from _launch import ENV, two_processes

    from diffcxr.filtering.driver import load_latent_cache

    if torch.cuda.is_available():
        pytest.skip("this test is the CPU/gloo variant")
    args = ["-m", "diffcxr", "filter", "--data", f"csv:{tiny / 'data.csv'}", "--vae", str(tiny / "vae"),
            "--no-progress", "n_clusters=2", "rounds=2", "remove_fraction=0.05", "figures=false"]
    for name, launcher in (("one", [sys.executable]), ("two", two_processes())):
        proc = subprocess.run([*launcher, *args, "--out", str(tmp_path / name)], env=ENV, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    one, two = (load_latent_cache(tmp_path / name / "latents.safetensors") for name in ("one", "two"))
    assert one[1] == two[1] and np.array_equal(one[0], two[0])
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())
    assert (tmp_path / "two" / "manifest.csv").read_text() == (tmp_path / "one" / "manifest.csv").read_text()
    summaries = [json.loads((tmp_path / name / "summary.json").read_text()) for name in ("one", "two")]
    for summary in summaries:
        summary.pop("timing_s", None)
    assert summaries[0]["removed_per_round"] == summaries[1]["removed_per_round"] == [1, 1]
