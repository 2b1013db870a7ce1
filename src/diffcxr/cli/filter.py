"""``diffcxr filter``: Latent Noise Filtering (LNFS) — rank and remove noisy training images in VAE latent space."""

from __future__ import annotations

import argparse

HELP = "latent noise filtering (LNFS): cluster VAE latents, remove the most anomalous images gradually, write a manifest"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config overrides, e.g. n_clusters=8 rounds=3 remove_fraction=0.02 feature=flatten")
    parser.add_argument("--data", help="dataset spec SOURCE:PATH (covid, csv, phantom, mimic, iu), e.g. phantom:runs/ph")
    parser.add_argument("--vae", help="folder of a saved diffusers AutoencoderKL (save_pretrained), or a pipeline with vae/")
    parser.add_argument("--latents", help="a latent cache (.safetensors) to filter instead of encoding (--vae not needed)")
    parser.add_argument("-c", "--config", help="YAML file of filter settings (keys as in key=value)")
    parser.add_argument("--out", required=True, help="output folder: manifest.csv, summary.json, removed.txt, figures")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    import torch
    from accelerate import PartialState

    from diffcxr.filtering.config import load_config
    from diffcxr.filtering.driver import run_filter

    config = load_config(args.config, args.overrides)
    state = PartialState(cpu=not torch.cuda.is_available())  # several under `accelerate launch`: encoding shared
    summary = run_filter(config, args.out, data=args.data, vae=args.vae, latents=args.latents,
                         progress=not args.no_progress, state=state)
    if summary is None:  # not the main process
        return 0
    rounds = ", ".join(str(n) for n in summary["removed_per_round"])
    print(f"filtered {summary['n_samples']} samples: removed {summary['n_removed']} (per round: {rounds}), "
          f"kept {summary['n_kept']}; K={config.n_clusters}, feature={config.feature}")
    evaluation = summary.get("evaluation", {})
    if "planted_noise" in evaluation:
        e = evaluation["planted_noise"]
        print(f"planted noise: AUROC {e['auroc_final_score']:.3f}, precision of removed {e['precision_removed']:.3f}, "
              f"recall {e['recall_removed']:.3f}")
    if "lateral_views" in evaluation:
        e = evaluation["lateral_views"]
        print(f"lateral views: AUROC {e['auroc_final_score']:.3f}, removed {e['removed_lateral']}/{e['n_lateral']}")
    if summary.get("skipped_unreadable"):
        print(f"{len(summary['skipped_unreadable'])} unreadable images skipped (listed in summary.json)")
    print(f"wrote {args.out}/manifest.csv, summary.json, removed.txt" + (", figures" if summary["figures"] else ""))
    return 0
