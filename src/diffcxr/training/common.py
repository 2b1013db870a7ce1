"""What every training stage shares: accelerator, optimizer/LR/EMA, deterministic data order, atomic checkpoints,
NaN guard, progress/CSV/TensorBoard logging and the loss plot.

Each stage file (``vae.py``, ``vlm.py``, ``base.py``, ``adapter.py``, ``classifier.py``) writes its own loop top
to bottom with a :class:`Session`::

    session = Session(run, "base", out_dir, resume=resume)
    ... build model, optimizer = session.optimizer(groups), scheduler = session.lr_scheduler(optimizer)
    model, optimizer = session.accelerator.prepare(model, optimizer)
    ema = session.ema(model)
    state = session.restore({"uvit": model}, optimizer, scheduler, ema)
    batches = session.batches(len(dataset), state)
    while state.step < cfg.max_steps:
        for micro in range(cfg.grad_accum):
            indices = next(batches); generator = session.generator(state, micro)
            loss = ...; session.check_finite(loss, state); session.backward(loss, model, micro)
        session.optimizer_step(model, optimizer, scheduler, ema, state)
        session.log(state, loss=...); session.maybe_checkpoint(state, ...)

Resume is exact: the data order of epoch ``e`` is a permutation seeded by ``(seed, e)``, the per-step noise /
timesteps / dropout masks come from a generator seeded by ``(seed, step, micro-batch, rank)``, and a
checkpoint holds model, EMA, optimizer, LR scheduler, data position and global RNG states — in safetensors and
JSON only (no pickle anywhere).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from diffcxr.atomic import atomic_write_text
from diffcxr.errors import DiffCXRError

logger = logging.getLogger(__name__)

__all__ = ["TrainState", "Session", "Checkpointer", "bf16_supported", "resolve_mixed_precision", "epoch_permutation",
           "TrainingDiverged", "plot_loss_curve", "fsync_dir", "read_log"]

CHECKPOINT_PREFIX = "checkpoint-"
LATEST = "latest"


class TrainingDiverged(DiffCXRError):
    """The loss became NaN/inf; the last good checkpoint is left intact."""


# ----------------------------------------------------------------------------------------------------------------
# mixed precision
# ----------------------------------------------------------------------------------------------------------------
def _cpu_has_bf16() -> bool:
    cap = str(getattr(torch.backends.cpu, "get_cpu_capability", lambda: "")()).upper()
    if "AVX512" not in cap and "AMX" not in cap:
        return False
    if "BF16" in cap or "AMX" in cap:
        return True
    try:  # get_cpu_capability() says "AVX512" for AVX512-BF16 CPUs too: read the CPU flags
        flags = Path("/proc/cpuinfo").read_text(errors="ignore")
        return "avx512_bf16" in flags or "amx_bf16" in flags
    except OSError:
        return False


def bf16_supported(device: str | torch.device = "cpu") -> bool:
    """True where bf16 autocast pays: a CUDA GPU with bf16, or a CPU with AVX512-BF16 / AMX."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return _cpu_has_bf16()
    return False


def resolve_mixed_precision(setting: str, cpu: bool) -> str:
    """``auto`` → ``bf16`` where supported else ``no``; ``bf16`` / ``no`` pass through."""
    if setting == "auto":
        return "bf16" if bf16_supported("cpu" if cpu or not torch.cuda.is_available() else "cuda") else "no"
    return setting


# ----------------------------------------------------------------------------------------------------------------
# deterministic data order and randomness
# ----------------------------------------------------------------------------------------------------------------
def _mix(*numbers: int) -> int:
    digest = hashlib.sha256(":".join(str(int(n)) for n in numbers).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def epoch_permutation(n: int, seed: int, epoch: int) -> list[int]:
    """The data order of one epoch: a permutation of ``range(n)`` that depends only on ``(seed, epoch)``."""
    g = torch.Generator().manual_seed(_mix(seed, epoch, 0x5EED))
    return torch.randperm(n, generator=g).tolist()


def _rank_batches(n: int, batch_size: int, seed: int, epoch: int, rank: int, world: int) -> list[list[int]]:
    perm = epoch_permutation(n, seed, epoch)
    shard = perm[rank::world][: max(1, n // world)]
    while len(shard) < batch_size:  # tiny datasets: wrap around
        shard = shard + shard
    return [shard[i:i + batch_size] for i in range(0, len(shard) - batch_size + 1, batch_size)]


@dataclass
class TrainState:
    """Position of a run: optimizer steps done, the epoch and the micro-batch index inside it."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    samples_seen: int = 0
    last_loss: float = float("nan")


# ----------------------------------------------------------------------------------------------------------------
# safetensors + JSON state (no pickle)
# ----------------------------------------------------------------------------------------------------------------
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


def _write_json(obj, path: Path) -> None:
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


# ----------------------------------------------------------------------------------------------------------------
# atomic checkpoints
# ----------------------------------------------------------------------------------------------------------------
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
        _write_json(meta, tmp / "state.json")  # written last: its presence marks a complete checkpoint
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
            sub = {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
            missing, unexpected = module.load_state_dict(sub, strict=False)
            if missing or unexpected:
                raise DiffCXRError(f"checkpoint {path} does not match model {prefix!r}: missing {missing[:3]}, "
                                   f"unexpected {unexpected[:3]} (was it written with another config?)")
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


def load_checkpoint_models(path: str | os.PathLike, prefix: str) -> dict[str, torch.Tensor]:
    """The weights of one model (``prefix``) from a checkpoint folder, e.g. for inspection or tests."""
    from safetensors.torch import load_file

    tensors = load_file(str(Path(path) / "model.safetensors"))
    return {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


# ----------------------------------------------------------------------------------------------------------------
# logging
# ----------------------------------------------------------------------------------------------------------------
LOG_FIELDS = ("step", "epoch", "loss", "lr", "grad_norm", "samples_per_s", "elapsed_s")


def read_log(path: str | os.PathLike) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def plot_loss_curve(log_csv: str | os.PathLike, out_png: str | os.PathLike, title: str = "") -> Path | None:
    """Loss (and a smoothed curve) vs. step from a ``log.csv`` → PNG (matplotlib Agg). None without rows."""
    rows = [r for r in read_log(log_csv) if r.get("loss") not in (None, "", "nan")]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.array([int(r["step"]) for r in rows])
    loss = np.array([float(r["loss"]) for r in rows])
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(steps, loss, lw=0.8, alpha=0.5, label="loss")
    if len(loss) >= 10:
        k = max(2, len(loss) // 20)
        smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
        ax.plot(steps[k - 1:], smooth, lw=1.5, label=f"mean of {k}")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    if np.all(loss > 0) and loss.max() / max(loss.min(), 1e-12) > 20:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png)
    plt.close(fig)
    return Path(out_png)


# ----------------------------------------------------------------------------------------------------------------
# the session
# ----------------------------------------------------------------------------------------------------------------
class Session:
    """Accelerator, checkpoints, data order and logs of one stage of a run (see the module docstring)."""

    def __init__(self, run, stage: str, out_dir: str | os.PathLike, *, resume: bool = False,
                 mixed_precision: str | None = None, progress: bool = True, step_callback=None):
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        self.run = run
        self.stage = stage
        self.cfg = run.stage(stage)
        self.out_dir = Path(out_dir)
        self.resume = resume
        self.step_callback = step_callback
        setting = mixed_precision or run.mixed_precision
        cpu = not torch.cuda.is_available()
        self.mixed_precision = resolve_mixed_precision(setting, cpu)
        if self.mixed_precision == "bf16" and not bf16_supported("cpu" if cpu else "cuda"):
            logger.warning("bf16 requested but not supported well on this device; it may be slow")
        from accelerate.state import AcceleratorState

        # AcceleratorState is a per-process singleton: a later stage (or test) in the same process may use another
        # precision. Reset it but keep the process group (PartialState) of a distributed run.
        AcceleratorState._reset_state(reset_partial_state=False)
        self.accelerator = Accelerator(mixed_precision=self.mixed_precision, cpu=cpu)
        acc = self.accelerator
        self.rank, self.world = acc.process_index, acc.num_processes
        self.is_main = acc.is_main_process
        set_seed(run.seed + self.rank)
        self.checkpointer = Checkpointer(self.out_dir / "checkpoints", self.cfg.keep_last)
        existing = self.checkpointer.latest()  # every process checks (shared file system): no one waits alone
        if existing is not None and not resume:
            raise DiffCXRError(f"{self.out_dir} already holds a {stage} run ({existing.name}); pass --resume to "
                               "continue it or choose another --output-dir")
        if self.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        acc.wait_for_everyone()
        self.log_path = self.out_dir / "log.csv"
        self._tb = None
        self._bar = None
        self._progress = progress
        self._t0 = time.perf_counter()
        self._t_last = self._t0
        self._samples_last = 0
        self._last_saved_step = -1
        self._loss_accum: list[float] = []

    # -- building blocks ---------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    def optimizer(self, param_groups) -> torch.optim.Optimizer:
        cfg = self.cfg
        return torch.optim.AdamW(param_groups, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=tuple(cfg.betas))

    def lr_scheduler(self, optimizer) -> torch.optim.lr_scheduler.LambdaLR:
        """Linear warm-up over ``warmup_steps``, then constant (the paper) or cosine down to ``min_lr``."""
        cfg = self.cfg
        warm, total = cfg.warmup_steps, cfg.max_steps

        def factor_for(base_lr: float):
            floor = min(1.0, cfg.min_lr / base_lr) if base_lr > 0 else 0.0

            def f(step: int) -> float:
                if warm and step < warm:
                    return (step + 1) / warm
                if cfg.lr_schedule == "cosine":
                    progress = min(1.0, (step - warm) / max(1, total - warm))
                    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
                return 1.0
            return f

        return torch.optim.lr_scheduler.LambdaLR(optimizer, [factor_for(g["lr"]) for g in optimizer.param_groups])

    def ema(self, model: torch.nn.Module):
        """``diffusers.training_utils.EMAModel`` over the trainable parameters (None when ``ema_decay`` is 0)."""
        if not self.cfg.ema_decay:
            return None
        from diffusers.training_utils import EMAModel

        params = [p for p in self.accelerator.unwrap_model(model).parameters() if p.requires_grad]
        return EMAModel(params, decay=self.cfg.ema_decay, use_ema_warmup=self.cfg.ema_warmup, inv_gamma=1.0,
                        power=2 / 3)

    def restore(self, models: dict, optimizer=None, scheduler=None, ema=None) -> TrainState:
        """Load the latest checkpoint when resuming (all processes); a fresh state otherwise."""
        unwrapped = {k: self.accelerator.unwrap_model(m) for k, m in models.items()}
        self._models, self._optimizer, self._scheduler, self._ema = unwrapped, optimizer, scheduler, ema
        state = TrainState()
        if self.resume:
            latest = self.checkpointer.latest()
            if latest is not None:
                state, _ = self.checkpointer.load(latest, unwrapped, optimizer, scheduler, ema)
                self._last_saved_step = state.step
                if self.is_main:
                    print(f"[{self.stage}] resumed from {latest} (step {state.step})", flush=True)
        if self.is_main:
            self._truncate_log(state.step)
        return state

    def batches(self, n: int, state: TrainState):
        """Endless stream of this process's micro-batch index lists, continuing from ``state``.

        Updates ``state.epoch`` / ``state.batch_in_epoch`` as it goes (so a checkpoint records the position).
        """
        if n < 1:
            raise DiffCXRError(f"{self.stage}: the training set is empty")
        bs = self.cfg.batch_size
        while True:
            epoch_batches = _rank_batches(n, bs, self.run.seed, state.epoch, self.rank, self.world)
            while state.batch_in_epoch < len(epoch_batches):
                indices = epoch_batches[state.batch_in_epoch]
                state.batch_in_epoch += 1
                yield indices
            state.epoch += 1
            state.batch_in_epoch = 0

    def generator(self, state: TrainState, micro: int = 0, device=None) -> torch.Generator:
        """A generator seeded by (seed, step, micro-batch, rank): noise/timesteps/dropout of that micro-step."""
        g = torch.Generator(device=device or "cpu")
        g.manual_seed(_mix(self.run.seed, state.step, micro, self.rank, 0xD1FF))
        return g

    # -- one optimizer step --------------------------------------------------------------------------------------
    def check_finite(self, loss: torch.Tensor, state: TrainState) -> float:
        """Mean loss over processes; raises :class:`TrainingDiverged` (all processes) when it is NaN/inf."""
        value = self.accelerator.reduce(loss.detach().float().reshape(1), reduction="mean").item()
        if not math.isfinite(value):
            latest = self.checkpointer.latest()
            where = f"the last good checkpoint {latest} is intact (resume with --resume, e.g. with a lower lr)" \
                if latest else "no checkpoint had been written yet"
            raise TrainingDiverged(f"{self.stage}: loss became {value} at step {state.step + 1}; training stopped, "
                                   f"{where}")
        self._loss_accum.append(value)
        return value

    def backward(self, loss: torch.Tensor, model, micro: int) -> None:
        """``loss / grad_accum`` backward; gradient sync across processes only on the last micro-batch."""
        acc = self.accelerator
        scaled = loss / self.cfg.grad_accum
        if micro < self.cfg.grad_accum - 1 and self.world > 1:
            with acc.no_sync(model):
                acc.backward(scaled)
        else:
            acc.backward(scaled)

    def optimizer_step(self, model, optimizer, scheduler, ema, state: TrainState, params=None) -> float:
        """Clip, step, schedule, zero, EMA; advance ``state``. Returns the gradient norm (before clipping)."""
        params = list(params if params is not None else (p for p in model.parameters() if p.requires_grad))
        if self.cfg.grad_clip:
            norm = self.accelerator.clip_grad_norm_(params, self.cfg.grad_clip)
        else:
            norm = torch.norm(torch.stack([p.grad.detach().norm() for p in params if p.grad is not None]))
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            ema.step([p for p in self.accelerator.unwrap_model(model).parameters() if p.requires_grad])
        state.step += 1
        state.samples_seen += self.cfg.batch_size * self.cfg.grad_accum * self.world
        state.last_loss = float(np.mean(self._loss_accum)) if self._loss_accum else float("nan")
        self._loss_accum = []
        return float(norm)

    # -- logging / checkpoints ------------------------------------------------------------------------------------
    def _truncate_log(self, step: int) -> None:
        rows = [r for r in read_log(self.log_path) if int(r["step"]) <= step]
        with open(self.log_path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=LOG_FIELDS)
            writer.writeheader()
            writer.writerows(rows)

    def start_progress(self, state: TrainState) -> None:
        if self.is_main and self._progress:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.cfg.max_steps, initial=state.step, desc=self.stage, unit="step",
                             dynamic_ncols=True, mininterval=1.0)
        if self.is_main:
            try:
                from torch.utils.tensorboard import SummaryWriter  # only if tensorboard is installed

                self._tb = SummaryWriter(str(self.out_dir / "tensorboard"))
            except Exception:  # noqa: BLE001 - tensorboard is optional
                self._tb = None
        self._t_last = time.perf_counter()
        self._samples_last = state.samples_seen

    def log(self, state: TrainState, grad_norm: float = float("nan"), **extra) -> None:
        """Update the bar every step; append a CSV row every ``log_every`` steps and at the end."""
        if not self.is_main:
            return
        lr = self._scheduler.get_last_lr()[0] if self._scheduler is not None else float("nan")
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(loss=f"{state.last_loss:.4f}", lr=f"{lr:.2e}", refresh=False)
        if state.step % self.cfg.log_every and state.step != self.cfg.max_steps:
            return
        now = time.perf_counter()
        rate = (state.samples_seen - self._samples_last) / max(now - self._t_last, 1e-9)
        self._t_last, self._samples_last = now, state.samples_seen
        row = {"step": state.step, "epoch": state.epoch, "loss": f"{state.last_loss:.6g}", "lr": f"{lr:.6g}",
               "grad_norm": f"{grad_norm:.4g}", "samples_per_s": f"{rate:.3g}", "elapsed_s": f"{now - self._t0:.1f}"}
        with open(self.log_path, "a", newline="", encoding="utf-8") as fh:
            csv.DictWriter(fh, fieldnames=LOG_FIELDS).writerow(row)
        if self._tb is not None:
            self._tb.add_scalar(f"{self.stage}/loss", state.last_loss, state.step)
            self._tb.add_scalar(f"{self.stage}/lr", lr, state.step)
            for k, v in extra.items():
                self._tb.add_scalar(f"{self.stage}/{k}", v, state.step)

    def save_checkpoint(self, state: TrainState) -> Path | None:
        path = None
        if self.is_main:
            path = self.checkpointer.save(state.step, self._models, self._optimizer, self._scheduler, self._ema, state,
                                          extra={"stage": self.stage})
        self._last_saved_step = state.step
        self.accelerator.wait_for_everyone()
        return path

    def after_step(self, state: TrainState) -> None:
        """Periodic checkpoint, then the (test) step callback."""
        every = self.cfg.checkpoint_every
        if every and state.step % every == 0:
            self.save_checkpoint(state)
        if self.step_callback is not None:
            self.step_callback(self, state)

    def finish(self, state: TrainState) -> None:
        """Final checkpoint (if not just written), close logs, loss plot."""
        if self._last_saved_step != state.step:
            self.save_checkpoint(state)
        if self._bar is not None:
            self._bar.close()
        if self._tb is not None:
            self._tb.close()
        if self.is_main:
            plot_loss_curve(self.log_path, self.out_dir / "loss.png", title=f"{self.run.name}: {self.stage}")

    def ema_weights(self, model):
        """Context manager: the model's trainable weights temporarily replaced by the EMA weights."""
        import contextlib

        ema = self._ema
        if ema is None:
            return contextlib.nullcontext()

        @contextlib.contextmanager
        def swap():
            params = [p for p in self.accelerator.unwrap_model(model).parameters() if p.requires_grad]
            ema.store(params)
            ema.copy_to(params)
            try:
                yield
            finally:
                ema.restore(params)
        return swap()

    def mark_complete(self, info: dict | None = None) -> None:
        if self.is_main:
            (self.out_dir / "COMPLETE.json").unlink(missing_ok=True)
            _write_json({"stage": self.stage, "steps": self.cfg.max_steps, **(info or {})}, self.out_dir / "COMPLETE.json")
        self.accelerator.wait_for_everyone()


def stage_complete(out_dir: str | os.PathLike, max_steps: int | None = None) -> bool:
    """True when the stage finished (with at least ``max_steps`` steps: a larger ``max_steps`` continues it)."""
    path = Path(out_dir) / "COMPLETE.json"
    if not path.is_file():
        return False
    if max_steps is None:
        return True
    return int(json.loads(path.read_text(encoding="utf-8")).get("steps", 0)) >= max_steps
