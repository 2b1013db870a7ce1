"""The one driver of ``diffcxr filter``: encode a dataset with a frozen VAE (cached), filter, write outputs.

Latent cache (safetensors): tensor ``latents`` ``(N, C, h, w)`` float16 and metadata ``format``
(``diffcxr-latents-v1``), ``ids`` (JSON list), ``vae`` (fingerprint of the VAE's config + weights) and
``image_size``. A cache is reused for the ids it holds only when the fingerprint and image size match; missing
ids are encoded and added. ``--latents CACHE`` filters a cache directly (no VAE needed).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from diffcxr.atomic import atomic_path
from diffcxr.errors import DiffCXRError
from diffcxr.models.fingerprint import model_fingerprint
from diffcxr.models.vae import encode_images, load_frozen_vae, vae_downsample_factor
from diffcxr.filtering.config import FilterConfig

logger = logging.getLogger(__name__)

CACHE_FORMAT = "diffcxr-latents-v1"


# ----------------------------------------------------------------------------------------------------------
# VAE
# ----------------------------------------------------------------------------------------------------------
def check_vae(vae, image_size: int | None) -> int:
    """Validate the VAE against the grayscale images at ``image_size`` (default: the VAE's sample_size)."""
    config = vae.config
    in_channels = int(config.in_channels)
    if in_channels not in (1, 3):
        raise DiffCXRError(f"the VAE takes {in_channels}-channel images; chest X-rays are 1-channel (3-channel VAEs get "
                           "the gray image replicated), so this VAE does not match the data")
    sample_size = config.sample_size
    sample_size = int(sample_size[0] if isinstance(sample_size, (list, tuple)) else sample_size)
    size = int(image_size or sample_size)
    if size != sample_size:
        raise DiffCXRError(f"the VAE was built for {sample_size}×{sample_size} images (config sample_size) but "
                           f"image_size={size}; set image_size={sample_size} or use a VAE trained at {size}")
    factor = vae_downsample_factor(vae)
    if size % factor:
        raise DiffCXRError(f"image_size={size} is not divisible by the VAE's downsampling factor {factor}")
    return size


def encode_records(records, vae, image_size: int, batch_size: int = 16, progress: bool = True,
                   allow_empty: bool = False):
    """Encode every record's image with the frozen VAE (posterior mean × scaling factor).

    Returns ``(latents float16 (n, C, h, w), ids, skipped)`` where ``skipped`` maps unreadable ids → reason. No
    readable image is an error unless ``allow_empty`` (one process's share of a sharded encoding).
    """
    import torch

    from diffcxr.data.image_io import load_image
    from diffcxr.errors import ImageReadError

    ids, skipped, blocks, batch, batch_ids = [], {}, [], [], []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(records), desc="encoding", unit="img")

    def flush():
        if batch:
            with torch.inference_mode():
                latents = encode_images(vae, torch.stack(batch))
            blocks.append(latents.float().cpu().numpy().astype(np.float16))
            ids.extend(batch_ids)
            batch.clear()
            batch_ids.clear()

    for record in records:
        try:
            batch.append(load_image(record.image_path, image_size))
            batch_ids.append(record.id)
        except ImageReadError as exc:
            skipped[record.id] = str(exc)
            logger.warning("skipping unreadable image: %s", exc)
        if len(batch) == batch_size:
            flush()
        if bar is not None:
            bar.update(1)
    flush()
    if bar is not None:
        bar.close()
    if not blocks and allow_empty:
        return np.zeros((0,), np.float16), ids, skipped
    if not blocks:
        raise DiffCXRError(f"none of the {len(records)} images could be read"
                           + (f" (first error: {next(iter(skipped.values()))})" if skipped else ""))
    return np.concatenate(blocks), ids, skipped


# ----------------------------------------------------------------------------------------------------------
# latent cache
# ----------------------------------------------------------------------------------------------------------
def save_latent_cache(path: str | Path, latents: np.ndarray, ids: Sequence[str], vae_id: str = "", image_size: int = 0) -> Path:
    from safetensors.numpy import save_file

    if len(ids) != len(latents):
        raise ValueError(f"{len(ids)} ids for {len(latents)} latents")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file({"latents": np.ascontiguousarray(latents, dtype=np.float16)}, str(tmp),
                  metadata={"format": CACHE_FORMAT, "ids": json.dumps(list(ids)), "vae": vae_id,
                            "image_size": str(image_size)})
    return path


def load_latent_cache(path: str | Path) -> tuple[np.ndarray, list[str], dict[str, str]]:
    """``(latents (N, C, h, w), ids, metadata)`` of a cache written by :func:`save_latent_cache`."""
    from safetensors import safe_open
    from safetensors.numpy import load_file

    path = Path(path)
    if not path.is_file():
        raise DiffCXRError(f"latent cache not found: {path}")
    try:
        with safe_open(str(path), framework="numpy") as handle:
            metadata = handle.metadata() or {}
        tensors = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise DiffCXRError(f"cannot read latent cache {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    if "latents" not in tensors:
        raise DiffCXRError(f"{path} has no 'latents' tensor (tensors: {', '.join(tensors) or 'none'})")
    latents = tensors["latents"]
    if latents.ndim != 4:
        raise DiffCXRError(f"{path}: latents must be (N, C, h, w), got shape {latents.shape}")
    try:
        ids = json.loads(metadata["ids"]) if "ids" in metadata else [str(i) for i in range(len(latents))]
    except json.JSONDecodeError:
        raise DiffCXRError(f"{path}: the 'ids' metadata is not a JSON list") from None
    if len(ids) != len(latents):
        raise DiffCXRError(f"{path}: {len(ids)} ids for {len(latents)} latents")
    return latents, [str(i) for i in ids], metadata


def cached_encode(records, vae, image_size: int, batch_size: int, cache_path: str | Path, progress: bool = True,
                  state=None):
    """Latents for ``records`` in order, reusing/updating the cache at ``cache_path`` (see module docstring).

    Under ``accelerate launch`` (``state`` with several processes) the images not in the cache are cut into batches
    and batch ``b`` is encoded by process ``b % world`` (so the batches, and the latents, are those of one process),
    which writes its share to ``CACHE.rankR.safetensors``; the main process merges the shards into the cache and
    returns the latents, the others return ``None``.
    """
    rank, world = (state.process_index, state.num_processes) if state is not None else (0, 1)
    is_main = rank == 0
    cache_path = Path(cache_path)
    vae_id = model_fingerprint(vae)[:20]
    store: dict[str, np.ndarray] = {}
    if cache_path.is_file():
        latents, ids, meta = load_latent_cache(cache_path)
        if meta.get("vae") == vae_id and meta.get("image_size") == str(image_size):
            store = dict(zip(ids, latents))
        elif is_main:
            logger.warning("latent cache %s was made by another VAE/image size: re-encoding", cache_path)
    todo = [r for r in records if r.id not in store]
    skipped: dict[str, str] = {}
    if world == 1:
        if todo:
            latents, ids, skipped = encode_records(todo, vae, image_size, batch_size, progress)
            store.update(zip(ids, latents))
    else:
        from accelerate.utils import gather_object

        share = [r for b in range(rank, -(-len(todo) // batch_size), world)
                 for r in todo[b * batch_size:(b + 1) * batch_size]]
        latents, ids, skipped = encode_records(share, vae, image_size, batch_size, progress and is_main,
                                               allow_empty=True)
        shard = cache_path.with_name(f"{cache_path.stem}.rank{rank}.safetensors")
        if ids:
            save_latent_cache(shard, latents, ids, vae_id, image_size)
        skipped = {k: v for part in gather_object([skipped]) for k, v in part.items()}
        state.wait_for_everyone()
        if not is_main:
            return None
        for r in range(world):
            shard = cache_path.with_name(f"{cache_path.stem}.rank{r}.safetensors")
            if shard.is_file():
                shard_latents, shard_ids, _ = load_latent_cache(shard)
                store.update(zip(shard_ids, shard_latents))
                shard.unlink()
    if todo and store:
        save_latent_cache(cache_path, np.stack(list(store.values())), list(store), vae_id, image_size)
    order = [r for r in records if r.id in store]
    if not order:
        raise DiffCXRError("no image could be encoded"
                           + (f" (first error: {next(iter(skipped.values()))})" if skipped else ""))
    return np.stack([store[r.id] for r in order]), order, skipped, vae_id, len(records) - len(todo)


# ----------------------------------------------------------------------------------------------------------
# the run
# ----------------------------------------------------------------------------------------------------------
def filter_features(latents: np.ndarray, config: FilterConfig, kept_rows: np.ndarray | None = None) -> np.ndarray:
    """Latents → the features the filter clusters (``config.feature``, optional PCA)."""
    from diffcxr.filtering.features import latent_features, pca_reduce

    features = latent_features(latents, config.feature, config.pool_size)
    if config.pca_components:
        features = pca_reduce(features, config.pca_components, config.seed, config.fit_samples, kept_rows)
    return features


def run_from_config(config: FilterConfig, latents: np.ndarray, progress: bool = False):
    """Features + :func:`latent_noise_filter` with the config's settings; returns ``(result, features)``."""
    from diffcxr.filtering.latent_noise_filter import latent_noise_filter

    features = filter_features(latents, config)
    result = latent_noise_filter(
        features, config.n_clusters, config.remove_fraction, config.rounds, config.seed,
        normalize=config.normalize, min_cluster_fraction=config.min_cluster_fraction, fit_samples=config.fit_samples,
        kmeans_batch_size=config.kmeans_batch_size, n_init=config.n_init, max_iter=config.max_iter, progress=progress,
    )
    return result, features


def evaluate(result, records) -> dict:
    """Ground-truth checks when the records carry them: planted noise (``is_noise`` column) and lateral views."""
    from sklearn.metrics import roc_auc_score

    out: dict = {}
    removed = ~result.kept
    flags = [r.meta.get("is_noise") for r in records]
    if all(f not in (None, "") for f in flags):
        truth = np.array([str(f).strip() in ("1", "1.0", "true", "True") for f in flags])
        if 0 < truth.sum() < len(truth):
            out["planted_noise"] = {
                "n_noise": int(truth.sum()),
                "auroc_final_score": float(roc_auc_score(truth, result.final_score)),
                "auroc_ranking": float(roc_auc_score(truth, result.rank_score())),
                "removed": int(removed.sum()),
                "precision_removed": float(truth[removed].mean()) if removed.any() else None,
                "recall_removed": float(removed[truth].mean()),
            }
            types = [r.meta.get("noise_type", "") for r in records]
            per_type = {}
            for name in sorted({t for t, f in zip(types, truth) if f and t}):
                mask = np.array([t == name for t in types]) & truth
                per_type[name] = {"n": int(mask.sum()), "recall_removed": float(removed[mask].mean())}
            if per_type:
                out["planted_noise"]["per_type"] = per_type
    lateral = np.array([r.view == "L" for r in records])
    if 0 < lateral.sum() < len(lateral):
        out["lateral_views"] = {
            "n_lateral": int(lateral.sum()),
            "auroc_final_score": float(roc_auc_score(lateral, result.final_score)),
            "auroc_ranking": float(roc_auc_score(lateral, result.rank_score())),
            "removed_lateral": int((removed & lateral).sum()),
            "recall_removed": float(removed[lateral].mean()),
        }
    return out


def run_filter(config: FilterConfig, out_dir: str | Path, data: str | None = None, vae: str | Path | None = None,
               latents: str | Path | None = None, progress: bool = True, state=None) -> dict | None:
    """Everything ``diffcxr filter`` does; returns the ``summary.json`` content.

    Either ``data`` + ``vae`` (encode, using/updating the cache), or ``latents`` (a cache; ``data`` optional, to
    get image paths, views and ground truth for the report). With ``state`` (accelerate, several processes) the
    encoding is shared; clustering and outputs stay on the main process, the others return ``None``.
    """
    from diffcxr.filtering import report
    from diffcxr.filtering.manifest import write_manifest

    started = time.perf_counter()
    out_dir = Path(out_dir)
    if data is None and latents is None:
        raise DiffCXRError("give --data SPEC with --vae DIR, or --latents CACHE.safetensors")
    if latents is None and vae is None:
        raise DiffCXRError("--data needs --vae DIR (a saved AutoencoderKL) to encode the images, or give --latents CACHE")
    records = None
    if data is not None:
        from diffcxr.data.sources import read_records

        records = read_records(data, split=config.split, frontal_only=config.frontal_only, derive_labels=False,
                               require_images=latents is None)
        if not records:
            raise DiffCXRError(f"the dataset {data} is empty" + (" after split/frontal_only filtering" if config.split or config.frontal_only else ""))
        duplicates = len(records) - len({r.id for r in records})
        if duplicates:
            seen: set[str] = set()
            records = [r for r in records if not (r.id in seen or seen.add(r.id))]
            logger.warning("%d duplicate ids in %s: keeping the first of each", duplicates, data)
    skipped: dict[str, str] = {}
    info: dict = {}
    if latents is not None:
        array, ids, meta = load_latent_cache(latents)
        info.update(latent_cache=str(latents), vae=meta.get("vae", ""), image_size=meta.get("image_size", ""))
        if records is not None:
            index = {i: k for k, i in enumerate(ids)}
            missing = [r.id for r in records if r.id not in index]
            if missing:
                raise DiffCXRError(f"{len(missing)} of the {len(records)} records of {data} are not in {latents} "
                                   f"(e.g. {missing[0]}); encode them with --vae, or drop --data")
            array = array[[index[r.id] for r in records]]
        else:
            from diffcxr.data.records import Record

            records = [Record(id=i, image_path=None, report="") for i in ids]
    else:
        model = load_frozen_vae(vae)
        size = check_vae(model, config.image_size)
        cache = Path(config.cache) if config.cache else out_dir / "latents.safetensors"
        encoded = cached_encode(records, model, size, config.batch_size, cache, progress, state=state)
        if encoded is None:  # another process's share is written; the main process filters
            return None
        array, records, skipped, vae_id, reused = encoded
        info.update(latent_cache=str(cache), vae=vae_id, vae_path=str(vae), image_size=size, latents_reused=reused)
    if len(array) == 0:
        raise DiffCXRError("the dataset is empty: no latents to filter")
    latent_shape = list(array.shape[1:])
    encode_done = time.perf_counter()
    result, features = run_from_config(config, array, progress=progress)
    del array  # only the features are needed from here on (memory at MIMIC scale)
    filter_done = time.perf_counter()

    out_dir.mkdir(parents=True, exist_ok=True)
    ids = [r.id for r in records]
    paths = [str(r.image_path) if r.image_path else "" for r in records]
    views = [r.view for r in records]
    write_manifest(out_dir / "manifest.csv", ids, result, paths, views)
    removed_rows = [i for i in result.ranking() if not result.kept[i]]
    with (out_dir / "removed.txt").open("w") as handle:
        handle.write("# round\tscore_final\tid\tpath\n")
        for i in sorted(removed_rows, key=lambda i: (result.removed_in_round[i], -result.final_score[i])):
            handle.write(f"{result.removed_in_round[i]}\t{result.final_score[i]:.4g}\t{ids[i]}\t{paths[i]}\n")
    figures = report.write_figures(out_dir, result, features, records, config) if config.figures else []
    summary = {
        "n_samples": len(ids),
        "n_kept": int(result.kept.sum()),
        "n_removed": int((~result.kept).sum()),
        "removed_per_round": [int((result.removed_in_round == r + 1).sum()) for r in range(result.rounds)],
        "thresholds": result.thresholds,
        "cluster_sizes": result.cluster_sizes,
        "small_clusters": result.small_clusters,
        "latent_shape": latent_shape,
        "feature_dim": int(features.shape[1]),
        "skipped_unreadable": skipped,
        "most_anomalous": [{"id": ids[i], "view": views[i], "score_final": float(result.final_score[i]),
                            "removed_in_round": int(result.removed_in_round[i])} for i in result.ranking()[:20]],
        "evaluation": evaluate(result, records),
        "figures": [str(Path(f).name) for f in figures],
        "seconds": {"encode": round(encode_done - started, 2), "filter": round(filter_done - encode_done, 2),
                    "fits": [round(s, 2) for s in result.seconds], "total": round(time.perf_counter() - started, 2)},
        "config": config.to_dict(),
        "data": data,
        **info,
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary
