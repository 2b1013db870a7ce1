"""Benchmark: the autoencoder's ceiling — what survives the trip into latent space and back.

A latent diffusion model can only draw what its autoencoder can reconstruct. This scores the real images of a
split and their VAE reconstructions (posterior mean → decode) with the same classifier: mAUC of each against the
records' labels (95 % bootstrap interval over images), per-finding AUROC side by side (small findings such as
fractures and nodules are the first to be lost), and FID of the reconstructions against the real images
(classifier features). No generator in that latent space can be expected to beat the reconstruction row.

    .venv/bin/python benchmarks/vae_ceiling.py --vae runs/cpu-mini-s0/vae/vae \\
        --classifier runs/yardstick/classifier --data phantom:runs/phantoms5k --split test
"""

from __future__ import annotations

import argparse
import json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vae", required=True, help="saved AutoencoderKL folder (e.g. RUN/vae/vae)")
    ap.add_argument("--classifier", required=True, help="CXRClassifier folder trained on real images")
    ap.add_argument("--data", required=True, help="dataset spec of the real images")
    ap.add_argument("--split", default="test")
    ap.add_argument("--n", type=int, default=0, help="at most N images (0 = all)")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--out", help="write the numbers as JSON here")
    args = ap.parse_args()

    import numpy as np
    import torch

    from diffcxr.data.image_io import load_image
    from diffcxr.data.sources import read_records
    from diffcxr.models.cxr_classifier import classifier_scores
    from diffcxr.models.cxr_classifier import load_classifier
    from diffcxr.metrics import StreamingGaussianStats, bootstrap_interval, frechet_distance, per_finding_auroc
    from diffcxr.metrics.extractors import cxr_extractor
    from diffcxr.models.vae import decode_latents, encode_images, load_vae

    records = [r for r in read_records(args.data, split=args.split, require_images=True, derive_labels=True)]
    records = records[: args.n] if args.n else records
    vae = load_vae(args.vae).eval()
    classifier = load_classifier(args.classifier)
    extractor = cxr_extractor(classifier)
    labels = np.stack([np.asarray(r.labels, np.float32) for r in records])
    real_scores, recon_scores = [], []
    real_stats, recon_stats = StreamingGaussianStats(), StreamingGaussianStats()
    errors = []
    with torch.no_grad():
        for start in range(0, len(records), 64):
            x = torch.stack([load_image(r.image_path, args.size) for r in records[start:start + 64]])
            y = decode_latents(vae, encode_images(vae, x)).float()
            errors.append((y - x).abs().mean(dim=(1, 2, 3)))
            real_scores.append(classifier_scores(classifier, x))
            recon_scores.append(classifier_scores(classifier, y))
            real_stats.update(extractor(x))
            recon_stats.update(extractor(y))
    rows = {}
    for name, scores in (("real", np.concatenate(real_scores)), ("reconstructed", np.concatenate(recon_scores))):
        res = per_finding_auroc(scores, labels)
        ci = bootstrap_interval(lambda idx: per_finding_auroc(scores[idx], labels[idx]).mauc, list(range(len(labels))))
        rows[name] = {"mauc": res.mauc, "interval": ci, "per_finding": res.per_finding}
    fid = frechet_distance(real_stats.mean, real_stats.cov, recon_stats.mean, recon_stats.cov)
    l1 = float(torch.cat(errors).mean())
    print(f"{len(records)} images of {args.data} split {args.split}; reconstruction L1 {l1:.4f} (in [-1, 1]); "
          f"FID(real, reconstructed) {fid:.2f}")
    print("| finding | real | reconstructed |\n|---|---:|---:|")
    for finding, value in rows["real"]["per_finding"].items():
        print(f"| {finding} | {value:.3f} | {rows['reconstructed']['per_finding'].get(finding, float('nan')):.3f} |")
    for name, r in rows.items():
        print(f"| **mAUC {name}** | {r['mauc']:.3f} [{r['interval']['low']:.3f}, {r['interval']['high']:.3f}] | |")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump({"rows": rows, "fid": fid, "l1": l1, "n": len(records), "args": vars(args)}, fh, indent=2)


if __name__ == "__main__":
    main()
