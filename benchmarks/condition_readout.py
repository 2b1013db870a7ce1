"""Benchmark: how much of the report can be read back from the condition the denoiser sees? No generation.

For each VLM stage output (``--vlm NAME=RUN/vlm``) the report encoder turns ``--train`` reports into their 77
condition tokens, and a small cross-attention readout (``diffcxr.evaluation.condition_readout``: one query per
finding, as the denoiser reads the condition) learns from them which findings the report names and, where it puts
one on one side, which side. On held-out reports it scores:

- **presence mAUC** on the ``--eval`` reports (the first ``--n-eval``, scored as the adherence benchmarks score
  generated images, so the numbers sit next to theirs and the yardstick's on real images);
- **side accuracy** on the one-sided findings of the ``--lat`` reports (the laterality benchmark's reports).

The first row reads the text tower's own token states (257 tokens, no reduction): what the tower carries before
any squeeze or pooling. Each readout is trained with ``--readout-seeds`` seeds: mean ± SD, and a 95 % bootstrap
interval over reports for the first seed.

    .venv/bin/python benchmarks/condition_readout.py --vlm default=runs/abl/default-s1/vlm \\
        --vlm meanpool=runs/abl/meanpool-s1/vlm --train phantom:runs/abl/phantoms \\
        --eval phantom:runs/abl/phantoms-eval --lat phantom:runs/abl/phantoms-lat
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cli import named_paths, one_line_errors  # noqa: E402

TOWER = "text tower states (no reduction)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vlm", action="append", required=True, metavar="NAME=VLM_FOLDER",
                    help="a VLM stage's output folder (its report_encoder/) and its name (repeatable)")
    ap.add_argument("--train", required=True, help="dataset spec whose train split trains the readouts")
    ap.add_argument("--eval", required=True, help="dataset spec: presence is scored on its first --n-eval reports")
    ap.add_argument("--lat", default=None, help="phantom dataset spec: side is scored on its one-sided reports")
    ap.add_argument("--n-train", type=int, default=1500)
    ap.add_argument("--n-eval", type=int, default=200)
    ap.add_argument("--n-lat", type=int, default=100)
    ap.add_argument("--readout-seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=800, help="readout training steps (batch 128)")
    ap.add_argument("--no-tower", action="store_true", help="skip the text tower's own states")
    ap.add_argument("--bootstrap", type=int, default=200)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--out", default=None, help="write readout.json here")
    args = ap.parse_args()
    rows = one_line_errors(measure_all, named_paths(args.vlm, "--vlm", "VLM_FOLDER"), args)
    print(f"\nreadouts trained on {args.n_train} reports of {args.train}; presence on {args.n_eval} reports of "
          f"{args.eval}" + (f", side on {rows[0]['n_side_pairs']} one-sided findings of {args.lat}" if args.lat else "")
          + f"; mean ± SD over {args.readout_seeds} readout seeds [95 % CI, first seed]\n")
    print("| condition | tokens | presence mAUC | side accuracy |")
    print("|---|---:|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r['tokens']} | {_cell(r, 'presence')} | {_cell(r, 'side')} |")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "readout.json").write_text(json.dumps({"rows": rows, "args": vars(args)}, indent=2), encoding="utf-8")


def _cell(row: dict, key: str) -> str:
    from diffcxr.metrics import mean_sd_text

    values = row.get(key)
    if not values:
        return "–"
    ci = row.get(f"{key}_interval")
    return mean_sd_text(values) + (f" [{ci['low']:.3f}, {ci['high']:.3f}]" if ci else "")


def measure_all(folders: dict[str, str], args) -> list[dict]:
    """Encode the reports once per distinct text tower, reduce them with each encoder, train and score readouts."""
    import torch

    from diffcxr.data.sources import read_records
    from diffcxr.errors import DiffCXRError
    from diffcxr.evaluation.condition_readout import readout_targets
    from diffcxr.evaluation.laterality import one_sided_records
    from diffcxr.models.report_encoder import ReportEncoder

    if args.threads:
        torch.set_num_threads(args.threads)
    train = [r for r in read_records(args.train, derive_labels=True) if r.report and r.split == "train"][: args.n_train]
    held = [r for r in read_records(args.eval, derive_labels=True) if r.report][: args.n_eval]
    lat = one_sided_records(args.lat, limit=args.n_lat) if args.lat else []
    if len(train) < 10 or len(held) < 2:
        raise DiffCXRError(f"need 10+ training and 2+ evaluation reports, got {len(train)} and {len(held)}")
    parts = {"train": train, "eval": held, "lat": lat}
    targets = {k: readout_targets(v) for k, v in parts.items() if v}
    labels = {"eval": _labels(held)}
    states, rows = {}, []
    for index, (name, folder) in enumerate(folders.items()):
        if not (Path(folder) / "report_encoder").is_dir():
            raise DiffCXRError(f"{folder} has no report_encoder/: give a VLM stage's output folder (RUN/vlm)")
        encoder = ReportEncoder.from_pretrained(Path(folder) / "report_encoder").eval()
        key = _tower_key(encoder)
        if key not in states:
            states[key] = {k: _token_states(encoder, [r.report for r in v]) for k, v in parts.items() if v}
        if index == 0 and not args.no_tower:
            rows.append(score(TOWER, {k: s[0][:, 1:] for k, s in states[key].items()}, targets, labels, args))
        with torch.no_grad():
            conditions = {k: encoder.reduce(s, m).condition_embeds for k, (s, m) in states[key].items()}
        rows.append(score(name, conditions, targets, labels, args))
    return rows


def _labels(records):
    import numpy as np

    return np.stack([np.asarray(r.labels, dtype=np.float64) for r in records])


def _tower_key(encoder) -> tuple:
    """Tells text towers apart by their weights (the VLM stage freezes MiniLM unless it trains it)."""
    import torch

    with torch.no_grad():
        return tuple(round(float(p.double().sum()), 6) for p in encoder.text_encoder.parameters())


def _token_states(encoder, reports: list[str], batch_size: int = 32):
    """``(states (N, 1 + L, d), attention_mask (N, L))`` of the encoder's text tower, with a progress bar."""
    import torch
    from tqdm.auto import tqdm

    states, masks = [], []
    with torch.no_grad():
        for i in tqdm(range(0, len(reports), batch_size), desc="text tower", unit="batch", leave=False):
            batch = encoder.tokenize(reports[i:i + batch_size])
            states.append(encoder.token_states(**batch).float())
            masks.append(batch["attention_mask"])
    return torch.cat(states), torch.cat(masks)


def score(name: str, conditions: dict, targets: dict, labels: dict, args) -> dict:
    """Train ``--readout-seeds`` readouts on the training conditions, score presence and side on the held-out."""
    import numpy as np

    from diffcxr.evaluation.condition_readout import (
        fit_readout,
        presence_mauc,
        read_conditions,
        side_accuracy,
    )
    from diffcxr.metrics import bootstrap_interval

    row = {"name": name, "tokens": int(conditions["train"].shape[1]), "presence": [], "side": []}
    for seed in range(args.readout_seeds):
        readout = fit_readout(conditions["train"], *targets["train"], seed=seed, steps=args.steps)
        held = read_conditions(readout, conditions["eval"])
        row["presence"].append(presence_mauc(held.presence, labels["eval"]))
        if "lat" in conditions:
            lat = read_conditions(readout, conditions["lat"])
            row["side"].append(side_accuracy(lat.side, targets["lat"][1]))
        if seed == 0 and args.bootstrap:
            scores, truth = held.presence, labels["eval"]
            row["presence_interval"] = bootstrap_interval(lambda i, s=scores, t=truth: presence_mauc(s[i], t[i]),
                                                          list(range(len(scores))), args.bootstrap)
            if "lat" in conditions:
                side_scores, side = lat.side, targets["lat"][1]
                row["side_interval"] = bootstrap_interval(lambda i, s=side_scores, t=side: side_accuracy(s[i], t[i]),
                                                          list(range(len(side))), args.bootstrap)
    if "lat" in targets:
        row["n_side_pairs"] = int((~np.isnan(targets["lat"][1])).sum())
    print(f"[{name}] presence {np.mean(row['presence']):.3f}"
          + (f", side {np.mean(row['side']):.3f}" if row["side"] else ""), flush=True)
    return row


if __name__ == "__main__":
    main()
