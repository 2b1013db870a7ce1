"""Diagnostic: where a trained denoiser's noise prediction goes wrong, by noise level and by latent row / column.

For the first ``--n`` records of ``--data``: each ``--model``'s own VAE encodes the images (posterior mean, as the
training cache does) and its report encoder the reports; the same Gaussian noise is added at each timestep of
``--timesteps`` with the training β schedule, and the ε-prediction MSE is printed per timestep and per model.
Each model's error is shown per latent column as a ratio to its own mean over columns, and where its U-ViT
ends in a 3×3 conv, that conv's weight share by kernel column (left / centre / right, per channel: a learned
shift reads the zero padding at a border). With two models or more, the later ones' error is also shown per
latent column and per latent row as a ratio to the first model's (averaged over timesteps): a defect local to a
border or a position shows up there long before it is visible in the training loss.

    .venv/bin/python benchmarks/denoiser_error.py --model "seed 1=runs/cpu-mini-s1/pipeline" \\
        --model "seed 2=runs/default-s2/pipeline" --data phantom:runs/phantoms-eval-s1
    .venv/bin/python benchmarks/denoiser_error.py --model "4,000=runs/s2/pipeline" \\
        --model "5,000=runs/s2/pipeline,runs/s2/base/checkpoints/checkpoint-00005000" --data ...
"""

from __future__ import annotations

import argparse


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", required=True, metavar="LABEL=FOLDER[,CHECKPOINT]",
                    help="a saved pipeline; with a base-stage checkpoint after a comma, its denoiser at that step")
    ap.add_argument("--data", required=True, help="dataset spec: images and reports")
    ap.add_argument("--n", type=int, default=128, help="records (default 128)")
    ap.add_argument("--timesteps", default="25,100,250,500,750,950")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch
    from diffusers import DDPMScheduler

    from diffcxr.data.sources import read_records
    from diffcxr.models.vae import encode_images
    from diffcxr.pipelines import DiffCXRPipeline
    from diffcxr.training.data import ImageSet
    from diffcxr.training.pipeline_export import load_training_checkpoint

    models = [spec.split("=", 1) for spec in args.model]
    if any(len(m) != 2 for m in models):
        ap.error("--model takes LABEL=FOLDER")
    records = [r for r in read_records(args.data, split=None, derive_labels=True) if r.report][: args.n]
    timesteps = [int(t) for t in args.timesteps.split(",")]
    errors = {}  # label -> (MSE per timestep, error map (rows, cols) averaged over timesteps)
    tap_shares = {}  # label -> (channels, 3): the last conv's squared weight by kernel column, as shares
    for label, folder in models:
        folder, *checkpoints = folder.split(",")
        pipe = DiffCXRPipeline.from_pretrained(folder)
        for checkpoint in checkpoints:
            load_training_checkpoint(pipe, checkpoint)
        pipe.denoiser.eval()
        final = getattr(pipe.denoiser, "final_layer", None)
        if isinstance(final, torch.nn.Conv2d):
            energy = final.weight.detach().float().pow(2).sum((1, 3))  # (out channels, kernel columns)
            tap_shares[label] = energy / energy.sum(1, keepdim=True)
        noise_schedule = DDPMScheduler.from_config(pipe.scheduler.config)
        with torch.no_grad():
            images = ImageSet(records, pipe.image_size).batch(range(len(records)))
            latents = encode_images(pipe.vae, images).float()
            reports = pipe.encode_text([r.report for r in records]).float()
            noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(args.seed))
            per_t, error_map = [], torch.zeros(latents.shape[-2:])
            for t in timesteps:
                tt = torch.full((len(records),), t)
                noisy = noise_schedule.add_noise(latents, noise, tt)
                err = (pipe.denoiser(noisy, tt, reports).sample.float() - noise).pow(2)
                per_t.append(err.mean().item())
                error_map += err.mean((0, 1)) / len(timesteps)
        errors[label] = (per_t, error_map)

    print(f"{len(records)} records; ε-prediction MSE by timestep\n")
    print("| model | " + " | ".join(f"t = {t}" for t in timesteps) + " |\n|---|" + "---:|" * len(timesteps))
    for label, (per_t, _) in errors.items():
        print(f"| {label} | " + " | ".join(f"{e:.4f}" for e in per_t) + " |")
    print("\neach model's error by latent column ÷ its mean over columns (left → right)")
    for label, (_, error_map) in errors.items():
        columns = error_map.mean(0)
        print(f"{label}: " + " ".join(f"{v:.2f}" for v in (columns / columns.mean()).tolist()))
    if tap_shares:
        print("\nlast 3×3 conv, weight share by kernel column per output channel (left / centre / right)")
        for label, shares in tap_shares.items():
            print(f"{label}: " + "; ".join(f"ch {c} " + " / ".join(f"{v:.3f}" for v in row)
                                          for c, row in enumerate(shares.tolist())))
    first, (_, reference) = next(iter(errors.items()))
    for label, (_, error_map) in list(errors.items())[1:]:
        columns, rows = error_map.mean(0) / reference.mean(0), error_map.mean(1) / reference.mean(1)
        print(f"\n{label} ÷ {first}, error by latent column (left → right): "
              + " ".join(f"{v:.2f}" for v in columns.tolist()))
        print(f"{label} ÷ {first}, error by latent row (top → bottom):    "
              + " ".join(f"{v:.2f}" for v in rows.tolist()))


if __name__ == "__main__":
    main()
