"""Benchmark: does a trained report encoder tell left from right? No generation, seconds per encoder.

For the phantom reports of ``--data`` that name a finding on one side, and each VLM stage output (``--vlm
NAME=RUN/vlm``: its ``report_encoder`` and ``image_tower``):

- **condition side sensitivity**: how far the 77 condition tokens (what the denoiser reads) move when "left" and
  "right" are swapped, ÷ the distance between two different reports (0 = side-blind;
  ``diffcxr.evaluation.laterality.condition_side_sensitivity``);
- **knowledge side sensitivity**: the same for the side-aware knowledge prompt of each report ("There is left
  pleural effusion.", what an adapter trained with ``adapter.knowledge_sides=true`` reads; the plain prompt names
  no side, 0);
- **side retrieval**: how often the image tower's embedding of the real image is closer (cosine) to its own
  report's global token than to the side-swapped report's (0.5 = side-blind), with a 95 % bootstrap interval
  over reports; and the mean cosine margin (own − swapped).

The generation benchmark (``laterality_adherence.py``) says whether images follow the side; this one says whether
the condition carries it, e.g. to compare VLM-stage variants before training the diffusion stages on them.

    .venv/bin/python benchmarks/encoder_laterality.py --vlm default=runs/cpu-s4/vlm \\
        --vlm swapneg=runs/vlm-swapneg-s4/vlm --data phantom:runs/phantoms-lat-s2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cli import named_paths, one_line_errors  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vlm", action="append", required=True, metavar="NAME=VLM_FOLDER",
                    help="a VLM stage's output folder (report_encoder/, image_tower/) and its name (repeatable)")
    ap.add_argument("--data", required=True, help="a phantom dataset spec (its metadata gives each finding's side)")
    ap.add_argument("--n-reports", type=int, default=200,
                    help="the first N frontal reports naming a finding on one side (default 200)")
    ap.add_argument("--size", type=int, default=None, help="image side (default: the VLM run's model.image_size)")
    ap.add_argument("--bootstrap", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = ap.parse_args()
    rows = one_line_errors(measure_all, named_paths(args.vlm, "--vlm", "VLM_FOLDER"), args)
    print(f"\n{rows[0]['n']} reports of {args.data} naming a finding on one side\n")
    print("| VLM stage | condition side sensitivity | knowledge side sensitivity (side-aware prompt) "
          "| side retrieval [95 % CI] | cosine margin own − swapped |")
    print("|---|---:|---:|---|---:|")
    for r in rows:
        ci = r.get("interval")
        cell = f"{r['side_retrieval']:.3f}" + (f" [{ci['low']:.3f}, {ci['high']:.3f}]" if ci else "")
        print(f"| {r['name']} | {r['sensitivity']:.3f} | {r['knowledge_sensitivity']:.3f} | {cell} "
              f"| {r['margin']:+.4f} |")


def measure_all(folders: dict[str, str], args) -> list[dict]:
    """The side measures of each VLM stage output; the reports are read and labeled once, the images read once
    per size."""
    import torch

    from diffcxr.data.image_io import load_image
    from diffcxr.errors import DiffCXRError
    from diffcxr.evaluation.laterality import one_sided_records
    from diffcxr.knowledge import finding_sides, knowledge_prompt, label_report

    if args.threads:
        torch.set_num_threads(args.threads)
    records = one_sided_records(args.data, limit=args.n_reports)
    if len(records) < 2:
        raise DiffCXRError(f"{args.data} has {len(records)} frontal report(s) naming a finding on one side; need 2+")
    reports = [r.report for r in records]
    prompts = [knowledge_prompt(res.labels, sides=finding_sides(res)) for res in map(label_report, reports)]
    images = {}  # image side -> (N, 1, side, side) real images
    rows = []
    for name, folder in folders.items():
        folder = Path(folder)
        for part in ("report_encoder", "image_tower"):
            if not (folder / part).is_dir():
                raise DiffCXRError(f"{folder} has no {part}/: give a VLM stage's output folder (RUN/vlm)")
        size = args.size or _image_size(folder)
        if size not in images:
            images[size] = torch.stack([load_image(r.image_path, size) for r in records])
        rows.append(measure(name, folder, reports, prompts, images[size], args))
    return rows


def _image_size(folder: Path) -> int:
    """The image side the VLM run trained at (its config.yaml), 64 when it does not say."""
    import yaml

    config = folder / "config.yaml"
    resolved = yaml.safe_load(config.read_text(encoding="utf-8")).get("model_resolved", {}) if config.is_file() else {}
    return resolved.get("image_size", 64)


def measure(name: str, folder: Path, reports: list[str], prompts: list[str], images, args) -> dict:
    """The side measures of one VLM stage output on ``reports``, their side-aware knowledge ``prompts`` and their
    real ``images`` (N, 1, H, W)."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from diffcxr.evaluation.laterality import condition_side_sensitivity, swap_sides
    from diffcxr.metrics import bootstrap_interval
    from diffcxr.models.report_encoder import ImageTower, ReportEncoder

    encoder = ReportEncoder.from_pretrained(folder / "report_encoder").eval()
    tower = ImageTower.from_pretrained(folder / "image_tower").eval()
    with torch.no_grad():
        sensitivity = condition_side_sensitivity(encoder, reports)
        knowledge = condition_side_sensitivity(encoder, prompts)
        image = F.normalize(tower(images).float(), dim=-1)
        own = F.normalize(encoder.encode(reports).global_embeds.float(), dim=-1)
        twin = F.normalize(encoder.encode([swap_sides(t) for t in reports]).global_embeds.float(), dim=-1)
    margin = ((image * own).sum(-1) - (image * twin).sum(-1)).numpy()
    wins = (margin > 0).astype(np.float64)
    out = {"name": name, "n": len(reports), "sensitivity": sensitivity, "knowledge_sensitivity": knowledge,
           "side_retrieval": float(wins.mean()),
           "margin": float(margin.mean())}
    if args.bootstrap:
        out["interval"] = bootstrap_interval(lambda i: float(wins[i].mean()), list(range(len(wins))),
                                             args.bootstrap, seed=args.seed)
    print(f"[{name}] sensitivity {sensitivity:.3f}, knowledge {knowledge:.3f}, side retrieval {out['side_retrieval']:.3f}", flush=True)
    return out


if __name__ == "__main__":
    main()
