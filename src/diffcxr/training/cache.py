"""Precomputed latents and report/knowledge embeddings (what the paper's training reads), as safetensors shards.

``<cache_dir>/<key>/`` with ``key`` = hash of (VAE weights, report-encoder weights, the records — ids, image
files' size/mtime, reports, knowledge prompts —, image size, storage dtype): a changed model or dataset gets
a new folder, an unchanged one is reused. Layout::

    shard-00000.safetensors   latents (n, C, h, w) float32, report (n, 77, d), knowledge_index (n,) int64
    knowledge.safetensors     table (K, 77, d): the K distinct knowledge prompts; empty (1, 77, d): "" prompt
    index.json                ids, prompts, shapes; written last (its presence = the cache is complete)

With ``token_states=True`` (``base.train_squeeze``: the squeeze trains, the text tower does not) ``report`` and
``empty`` hold the text tower's token states instead, (n, 1 + L, d) and (1, 1 + L, d), next to their attention
masks ``report_mask`` (n, L) and ``empty_mask`` (1, L), uint8.

Shards are written atomically (temp file + ``os.replace``), so an interrupted build resumes at the first
missing shard.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from diffcxr.atomic import atomic_path, atomic_write_text
from diffcxr.errors import DiffCXRError
from diffcxr.models.fingerprint import model_fingerprint

__all__ = ["data_fingerprint", "LatentCache", "build_cache"]

_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def data_fingerprint(records, prompts: list[str], image_size: int) -> str:
    h = hashlib.sha256(f"size={image_size}".encode())
    for r, prompt in zip(records, prompts):
        try:
            st = os.stat(r.image_path)
            stamp = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            stamp = "missing"
        h.update(f"{r.id}\0{r.image_path}\0{stamp}\0{r.report}\0{prompt}\n".encode())
    return h.hexdigest()


def _atomic_save(tensors: dict, path: Path) -> None:
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))


@torch.no_grad()
def build_cache(cache_root, records, vae, encoder, *, image_size: int, dtype: str = "float16", shard_size: int = 1024,
                batch_size: int = 32, progress: bool = True, skip_unreadable: bool = True,
                token_states: bool = False, knowledge_sides: bool = False) -> Path:
    """Encode ``records`` once (VAE posterior means, report and knowledge condition tokens); return the folder.
    ``token_states``: store the text tower's token states and masks instead of the report condition tokens;
    ``knowledge_sides``: encode the side-aware knowledge prompts (``adapter.knowledge_sides``)."""
    from diffcxr.models.vae import encode_images
    from diffcxr.training.data import ImageSet, knowledge_prompts

    prompts = knowledge_prompts(records, sides=knowledge_sides)
    key = hashlib.sha256("|".join([model_fingerprint(vae), model_fingerprint(encoder),
                                   data_fingerprint(records, prompts, image_size), dtype]
                                  + (["token-states"] if token_states else [])).encode()).hexdigest()[:20]
    folder = Path(cache_root) / key
    if (folder / "index.json").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    store = _DTYPES[dtype]
    vae.eval()
    encoder.eval()
    distinct = sorted(set(prompts))
    prompt_index = {p: i for i, p in enumerate(distinct)}

    def encode_text(texts, allow_empty=False):
        out = []
        for s in range(0, len(texts), batch_size):
            out.append(encoder.encode(texts[s:s + batch_size], allow_empty=allow_empty).condition_embeds.float().cpu())
        return torch.cat(out)

    def encode_states(texts, allow_empty=False):  # -> (states (B, 1 + L, d) in the storage dtype, masks (B, L) uint8)
        tokens = encoder.tokenize(texts, allow_empty=allow_empty)
        return (encoder.token_states(**tokens).cpu().to(store),
                tokens["attention_mask"].cpu().to(torch.uint8))

    knowledge = {"table": encode_text(distinct).to(store)}
    if token_states:
        knowledge["empty"], knowledge["empty_mask"] = encode_states([""], allow_empty=True)
    else:
        knowledge["empty"] = encode_text([""], allow_empty=True).to(store)
    _atomic_save(knowledge, folder / "knowledge.safetensors")
    images = ImageSet(records, image_size, in_memory=False, skip_unreadable=skip_unreadable)
    n_shards = (len(records) + shard_size - 1) // shard_size
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(records), desc="cache", unit="img")
    for shard in range(n_shards):
        path = folder / f"shard-{shard:05d}.safetensors"
        lo, hi = shard * shard_size, min((shard + 1) * shard_size, len(records))
        if path.is_file():
            if bar is not None:
                bar.update(hi - lo)
            continue
        latents, reports, masks = [], [], []
        for s in range(lo, hi, batch_size):
            idx = list(range(s, min(s + batch_size, hi)))
            latents.append(encode_images(vae, images.batch(idx)).float().cpu())
            if token_states:
                states, mask = encode_states(images.reports(idx))
                reports.append(states)
                masks.append(mask)
            else:
                reports.append(encode_text(images.reports(idx)).to(store))
            if bar is not None:
                bar.update(len(idx))
        shard_tensors = {"latents": torch.cat(latents), "report": torch.cat(reports),
                         "knowledge_index": torch.tensor([prompt_index[p] for p in prompts[lo:hi]], dtype=torch.int64)}
        if token_states:
            shard_tensors["report_mask"] = torch.cat(masks)
        _atomic_save(shard_tensors, path)
    if bar is not None:
        bar.close()
    index = {"format": 1, "n": len(records), "shard_size": shard_size, "n_shards": n_shards, "ids": [r.id for r in records],
             "knowledge_prompts": distinct, "dtype": dtype, "image_size": image_size, "token_states": token_states,
             "scaling_factor": float(vae.config.scaling_factor)}
    atomic_write_text(folder / "index.json", json.dumps(index))
    return folder


class LatentCache:
    """Read a cache folder: ``get(indices)`` → ``(latents, report_tokens, knowledge_tokens)`` float32 tensors.
    In a ``token_states`` cache ``report_tokens`` and ``empty`` are token states, with ``report_mask(indices)``
    and ``empty_mask`` their attention masks (None otherwise).

    Loaded into memory when it fits in ``max_memory_bytes``, otherwise read lazily (memory-mapped slices).
    """

    def __init__(self, folder, max_memory_bytes: int = 4 * 1024**3):
        from safetensors import safe_open
        from safetensors.torch import load_file

        self.folder = Path(folder)
        index_path = self.folder / "index.json"
        if not index_path.is_file():
            raise DiffCXRError(f"{self.folder} is not a complete latent cache (no index.json)")
        self.index = json.loads(index_path.read_text(encoding="utf-8"))
        self.n, self.shard_size = self.index["n"], self.index["shard_size"]
        know = load_file(str(self.folder / "knowledge.safetensors"))
        self.knowledge_table, self.empty = know["table"].float(), know["empty"].float()
        self.token_states = bool(self.index.get("token_states", False))
        self.empty_mask = know["empty_mask"].long() if self.token_states else None
        shards = [self.folder / f"shard-{i:05d}.safetensors" for i in range(self.index["n_shards"])]
        total = sum(p.stat().st_size for p in shards)
        if total <= max_memory_bytes:
            loaded = [load_file(str(p)) for p in shards]
            self._mem = {k: torch.cat([s[k] for s in loaded]) for k in loaded[0]}
            self._handles = None
        else:
            self._mem = None
            self._handles = [safe_open(str(p), framework="pt") for p in shards]

    def __len__(self) -> int:
        return self.n

    @property
    def ids(self) -> list[str]:
        return self.index["ids"]

    def _rows(self, key: str, indices) -> torch.Tensor:
        if self._mem is not None:
            return self._mem[key][torch.as_tensor(list(indices), dtype=torch.long)]
        rows = []
        for i in indices:
            shard, row = divmod(int(i), self.shard_size)
            rows.append(self._handles[shard].get_slice(key)[row:row + 1])
        return torch.cat(rows)

    def report_mask(self, indices) -> torch.Tensor | None:
        """The attention masks (B, L) of the cached token states (a ``token_states`` cache; None otherwise)."""
        return self._rows("report_mask", indices).long() if self.token_states else None

    def get(self, indices) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        latents = self._rows("latents", indices).float()
        report = self._rows("report", indices).float()
        knowledge = self.knowledge_table[self._rows("knowledge_index", indices)]
        return latents, report, knowledge


def load_frozen_components(run, out_root, device="cpu", tuned_encoder: bool = True):
    """The VAE and report encoder the diffusion stages train on: ``<out>/vae/vae`` (or the model config's
    pretrained VAE) and ``<out>/vlm/report_encoder``, or with ``tuned_encoder`` the squeeze-tuned
    ``<out>/base/report_encoder`` where ``base.train_squeeze`` wrote one. Raises a clear error when a stage has
    not been run."""
    from diffcxr.models.report_encoder import ReportEncoder
    from diffcxr.models.vae import load_vae

    mcfg = run.model_config()
    out_root = Path(out_root)
    vae_dir = out_root / "vae" / "vae"
    if mcfg["vae"].get("pretrained"):
        vae = load_vae(mcfg["vae"]["pretrained"])
    elif (vae_dir / "config.json").is_file():
        vae = load_vae(vae_dir)
    else:
        raise DiffCXRError(f"no trained VAE in {vae_dir}: run `diffcxr train vae` (or `all`) with this --output-dir first")
    enc_dir = out_root / "base" / "report_encoder"
    if not (tuned_encoder and (enc_dir / "config.json").is_file()):
        enc_dir = out_root / "vlm" / "report_encoder"
    if not (enc_dir / "config.json").is_file():
        raise DiffCXRError(f"no trained report encoder in {enc_dir}: run `diffcxr train vlm` (or `all`) with this "
                           "--output-dir first")
    encoder = ReportEncoder.from_pretrained(enc_dir)
    for m in (vae, encoder):
        m.requires_grad_(False)
        m.eval()
        m.to(device)
    return vae, encoder


def prepare_latent_cache(run, session, records, out_root, progress: bool = True, components=None,
                         token_states: bool = False, knowledge_sides: bool | None = None) -> "LatentCache":
    """Build the cache on the main process (others wait), then open it everywhere. ``components``: the frozen
    ``(vae, report_encoder)`` to encode with (default: those trained in ``out_root``); ``token_states``: cache the
    text tower's token states instead of the condition tokens (see :func:`build_cache`); ``knowledge_sides``: the
    side-aware knowledge prompts (default: the model config's ``adapter.knowledge_sides``)."""
    mcfg = run.model_config()
    root = Path(run.cache.dir) if run.cache.dir else Path(out_root) / "cache"
    folder_file = Path(session.out_dir) / ".cache_folder"
    if session.is_main:
        vae, encoder = components or load_frozen_components(run, out_root, session.device)
        folder = build_cache(root, records, vae, encoder, image_size=mcfg["image_size"], dtype=run.cache.dtype,
                             shard_size=run.cache.shard_size, batch_size=run.cache.batch_size, progress=progress,
                             skip_unreadable=run.data.skip_unreadable, token_states=token_states,
                             knowledge_sides=(mcfg["adapter"]["knowledge_sides"] if knowledge_sides is None
                                              else knowledge_sides))
        folder_file.write_text(str(folder), encoding="utf-8")
        del vae, encoder
    session.accelerator.wait_for_everyone()
    return LatentCache(folder_file.read_text(encoding="utf-8").strip())
