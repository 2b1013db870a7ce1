"""Atomic checkpoints in safetensors + JSON only (no pickle): model, EMA, optimizer, LR scheduler, data
position (:class:`TrainState`) and the global RNG states. A checkpoint is complete or absent, never half-written."""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from diffcxr.atomic import atomic_write_text
from diffcxr.errors import DiffCXRError

logger = logging.getLogger(__name__)


__all__ = ["Checkpointer", "TrainState", "CHECKPOINT_PREFIX", "LATEST", "checkpoint_meta", "load_checkpoint_models",
           "load_checkpoint_weights", "fsync_dir", "write_json", "optimizer_to_safe", "optimizer_from_safe"]


CHECKPOINT_PREFIX = "checkpoint-"
LATEST = "latest"


@dataclass
class TrainState:
    """Position of a run: optimizer steps done, the epoch and the micro-batch index inside it."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    samples_seen: int = 0
    last_loss: float = float("nan")


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}, str(path))
    _fsync_file(path)


def write_json(obj, path: Path) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=1, default=_json_default)
        fh.flush()
        os.fsync(fh.fileno())


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, torch.Tensor) and o.numel() == 1:
        return o.item()
    if isinstance(o, (set, tuple)):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def optimizer_to_safe(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Split ``optimizer.state_dict()`` into tensors (for safetensors) and JSON (param_groups + scalars)."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict] = {}
    for pid, entry in state_dict["state"].items():
        for name, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"state.{pid}.{name}"] = value
            else:
                scalars.setdefault(str(pid), {})[name] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def optimizer_from_safe(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = value
    for pid, entry in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(entry)
    groups = []
    for group in meta["param_groups"]:
        group = dict(group)
        if isinstance(group.get("betas"), list):
            group["betas"] = tuple(group["betas"])
        groups.append(group)
    return {"state": state, "param_groups": groups}


def _rng_state() -> tuple[dict[str, torch.Tensor], dict]:
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = s
    py = random.getstate()
    np_state = np.random.get_state()
    meta = {"python": [py[0], list(py[1]), py[2]],
            "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])]}
    return tensors, meta


def _set_rng_state(tensors: dict[str, torch.Tensor], meta: dict) -> None:
    torch.set_rng_state(tensors["torch_cpu"])
    if torch.cuda.is_available():
        states = [tensors[k] for k in sorted(k for k in tensors if k.startswith("torch_cuda_"))]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)
    if "python" in meta:
        v, internal, gauss = meta["python"]
        random.setstate((v, tuple(internal), gauss))
    if "numpy" in meta:
        name, keys, pos, has_gauss, cached = meta["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


class Checkpointer:
    """``root/checkpoint-00000100/`` folders written atomically, ``root/latest`` naming the newest, last K kept.

    A checkpoint is written into ``root/.tmp-checkpoint-…``, every file fsynced, then renamed into place with
    ``os.replace``; only then is ``latest`` (a one-line text file, itself replaced atomically) updated. A crash
    at any moment leaves the previous checkpoint and ``latest`` untouched; stray temp folders are removed at the
    next save.
    """

    def __init__(self, root: str | os.PathLike, keep_last: int = 2):
        self.root = Path(root)
        self.keep_last = max(1, int(keep_last))

    def list(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        found = [p for p in self.root.iterdir() if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX)
                 and (p / "state.json").is_file()]
        return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):]))

    def latest(self) -> Path | None:
        pointer = self.root / LATEST
        if pointer.is_file():
            target = self.root / pointer.read_text(encoding="utf-8").strip()
            if (target / "state.json").is_file():
                return target
        found = self.list()
        return found[-1] if found else None

    def load_newest_intact(self, models: dict[str, torch.nn.Module], optimizer=None, scheduler=None, ema=None
                           ) -> tuple[Path, TrainState] | None:
        """Load the newest checkpoint that reads back whole, newest first (the ``latest`` pointer's target, then
        older ones); a truncated file or a broken ``state.json`` is skipped with a warning. None when there is
        no checkpoint; an error when none is intact. A checkpoint of another model config is an error, not
        skipped."""
        newest = self.latest()
        if newest is None:
            return None
        candidates = [newest] + [p for p in reversed(self.list()) if p != newest]
        damaged = []
        for path in candidates:
            try:
                state, _ = self.load(path, models, optimizer, scheduler, ema)
                return path, state
            except DiffCXRError:
                raise
            except Exception as exc:  # noqa: BLE001 - any read/parse failure means "damaged"
                reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
                logger.warning("checkpoint %s is damaged (%s); trying the previous one", path, reason)
                damaged.append(path.name)
        raise DiffCXRError(f"no intact checkpoint in {self.root} (damaged: {', '.join(damaged)}); start again "
                           "without --resume in a new --output-dir")

    def save(self, step: int, models: dict[str, torch.nn.Module], optimizer=None, scheduler=None, ema=None,
             state: TrainState | None = None, extra: dict | None = None) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        for stray in self.root.glob(".tmp-*"):
            shutil.rmtree(stray, ignore_errors=True)
        name = f"{CHECKPOINT_PREFIX}{step:08d}"
        tmp = self.root / f".tmp-{name}-{os.getpid()}"
        tmp.mkdir()
        model_tensors = {}
        for prefix, module in models.items():
            for key, value in module.state_dict().items():
                model_tensors[f"{prefix}.{key}"] = value
        _save_tensors(model_tensors, tmp / "model.safetensors")
        meta: dict = {"format": "diffcxr-checkpoint-1", "step": step, "state": asdict(state or TrainState()),
                      "models": list(models), **(extra or {})}
        if optimizer is not None:
            opt_tensors, opt_meta = optimizer_to_safe(optimizer.state_dict())
            _save_tensors(opt_tensors, tmp / "optimizer.safetensors")
            meta["optimizer"] = opt_meta
        if scheduler is not None:
            meta["lr_scheduler"] = {k: ([None] * len(v) if k == "lr_lambdas" else v)
                                  for k, v in scheduler.state_dict().items()}
        if ema is not None:
            ema_state = ema.state_dict()
            _save_tensors({f"shadow.{i}": p for i, p in enumerate(ema_state["shadow_params"])}, tmp / "ema.safetensors")
            meta["ema"] = {k: v for k, v in ema_state.items() if k != "shadow_params"}
        rng_tensors, rng_meta = _rng_state()
        _save_tensors(rng_tensors, tmp / "rng.safetensors")
        meta["rng"] = rng_meta
        write_json(meta, tmp / "state.json")  # written last: its presence marks a complete checkpoint
        fsync_dir(tmp)
        final = self.root / name
        if final.exists():  # re-saving the same step (e.g. final == periodic): swap the old one out first
            old = self.root / f".tmp-old-{name}-{os.getpid()}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        fsync_dir(self.root)
        atomic_write_text(self.root / LATEST, name + "\n")
        fsync_dir(self.root)
        for old in self.list()[: -self.keep_last]:
            if old.name != name:
                shutil.rmtree(old, ignore_errors=True)
        return final

    def load(self, path: Path, models: dict[str, torch.nn.Module], optimizer=None, scheduler=None, ema=None,
             restore_rng: bool = True) -> tuple[TrainState, dict]:
        from safetensors.torch import load_file

        meta = json.loads((path / "state.json").read_text(encoding="utf-8"))
        tensors = load_file(str(path / "model.safetensors"))
        for prefix, module in models.items():
            _load_model(path, tensors, prefix, module)
        if optimizer is not None and "optimizer" in meta:
            opt_tensors = load_file(str(path / "optimizer.safetensors"))
            optimizer.load_state_dict(optimizer_from_safe(opt_tensors, meta["optimizer"]))
        if scheduler is not None and "lr_scheduler" in meta:
            sched_state = dict(meta["lr_scheduler"])
            sched_state["lr_lambdas"] = [None] * len(optimizer.param_groups)
            scheduler.load_state_dict(sched_state)
        if ema is not None and "ema" in meta:
            shadow = load_file(str(path / "ema.safetensors"))
            ema.load_state_dict({**meta["ema"], "shadow_params": [shadow[f"shadow.{i}"] for i in range(len(shadow))]})
        if restore_rng:
            _set_rng_state(load_file(str(path / "rng.safetensors")), meta.get("rng", {}))
        return TrainState(**meta["state"]), meta


def _model_tensors(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def _load_model(path: Path, tensors: dict[str, torch.Tensor], prefix: str, module: torch.nn.Module) -> None:
    """Load the checkpoint tensors of model ``prefix`` into ``module``; every key must match."""
    missing, unexpected = module.load_state_dict(_model_tensors(tensors, prefix), strict=False)
    if missing or unexpected:
        raise DiffCXRError(f"checkpoint {path} does not match model {prefix!r}: missing {missing[:3]}, "
                           f"unexpected {unexpected[:3]} (was it written with another config?)")


def load_checkpoint_models(path: str | os.PathLike, prefix: str) -> dict[str, torch.Tensor]:
    """The weights of one model (``prefix``) from a checkpoint folder, e.g. for inspection or tests."""
    from safetensors.torch import load_file

    return _model_tensors(load_file(str(Path(path) / "model.safetensors")), prefix)


def checkpoint_meta(path: str | os.PathLike) -> dict:
    """A checkpoint folder's ``state.json`` (step, the models it holds, ...); one clear error if it is none."""
    state_file = Path(path) / "state.json"
    if not state_file.is_file():
        raise DiffCXRError(f"{path} is not a training checkpoint (no state.json)")
    return json.loads(state_file.read_text(encoding="utf-8"))


def load_checkpoint_weights(path: str | os.PathLike, module: torch.nn.Module | dict[str, torch.nn.Module],
                            prefix: str | None = None, use_ema: bool = True) -> int:
    """Load one model's weights from a training checkpoint into ``module`` and return the checkpoint's step.

    ``prefix`` names the model inside the checkpoint (``uvit`` for the base stage, ``adapter`` for the knowledge
    adapter; ``state.json`` lists them); ``module`` may also be a ``{prefix: module}`` dict for a stage that
    trained several models under one EMA (the base stage with ``train_squeeze``: ``uvit`` then ``squeeze``).
    With ``use_ema`` (and an ``ema.safetensors`` present) the parameters get the EMA weights, as the stage itself
    exports them: the EMA keeps one tensor per parameter, in ``module.parameters()``
    order (the dict's modules one after another), so the count and every shape are checked. Used to score a
    run's intermediate checkpoints (learning curves) without retraining.
    """
    from safetensors.torch import load_file

    path = Path(path)
    modules = module if isinstance(module, dict) else {prefix: module}
    meta = checkpoint_meta(path)
    tensors = load_file(str(path / "model.safetensors"))
    for name, part in modules.items():
        if name not in meta.get("models", []):
            raise DiffCXRError(f"checkpoint {path} holds {meta.get('models')}, not {name!r}")
        _load_model(path, tensors, name, part)
    ema_file = path / "ema.safetensors"
    if use_ema and ema_file.is_file():
        shadow = load_file(str(ema_file))
        # every parameter: the stages train all of these modules (a pipeline may have switched requires_grad off)
        params = [p for part in modules.values() for p in part.parameters()]
        if len(shadow) != len(params):
            names = " + ".join(type(part).__name__ for part in modules.values())
            raise DiffCXRError(f"checkpoint {path}: {len(shadow)} EMA tensors for the {len(params)} parameters "
                               f"of this {names}")
        with torch.no_grad():
            for i, param in enumerate(params):
                value = shadow[f"shadow.{i}"]
                if value.shape != param.shape:
                    raise DiffCXRError(f"checkpoint {path}: EMA tensor {i} has shape {tuple(value.shape)}, the "
                                       f"parameter {tuple(param.shape)}")
                param.copy_(value.to(param.dtype))
    return int(meta["step"])
