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
    session.start_progress(state)                                 # progress bar; arms the Ctrl-C stop
    while state.step < cfg.max_steps:
        for micro in range(cfg.grad_accum):
            indices = next(batches); generator = session.generator(state, micro)
            loss = ...; session.check_finite(loss, state); session.backward(loss, model, micro)
        session.optimizer_step(model, optimizer, scheduler, ema, state)
        session.log(state, grad_norm); session.after_step(state)   # periodic checkpoint; a checkpoint + stop on Ctrl-C
    session.finish(state)

Resume is exact: the data order of epoch ``e`` is a permutation seeded by ``(seed, e)``, the per-step noise /
timesteps / dropout masks come from a generator seeded by ``(seed, step, micro-batch, rank)``, and a
checkpoint holds model, EMA, optimizer, LR scheduler, data position and global RNG states — in safetensors and
JSON only (no pickle anywhere).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import signal
import time
from pathlib import Path

import numpy as np
import torch

from diffcxr.errors import DiffCXRError, ResumeConfigError
from diffcxr.training.checkpoint import Checkpointer, TrainState, write_json
from diffcxr.training.data_order import mix_seeds, rank_batches
from diffcxr.training.precision import bf16_supported, resolve_mixed_precision
from diffcxr.training.run_log import LOG_FIELDS, plot_loss_curve, read_log
from diffcxr.training.stop_request import TrainingInterrupted, arm, disarm, requested

logger = logging.getLogger(__name__)


class TrainingDiverged(DiffCXRError):
    """The loss became NaN/inf; the last good checkpoint is left intact."""


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
        if existing is not None:
            self._check_same_model()
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

    def _check_same_model(self) -> None:
        """``--resume`` continues the model the run started with: another model config (``model=cpu-mini`` on a
        ``tiny`` run) is one error naming what differs, before any weights are loaded or ``config.yaml`` rewritten."""
        import yaml

        saved_path = self.out_dir / "config.yaml"
        if not saved_path.is_file():
            return
        try:
            saved = (yaml.safe_load(saved_path.read_text(encoding="utf-8")) or {}).get("model_resolved")
        except (yaml.YAMLError, UnicodeDecodeError, AttributeError):
            return  # an unreadable record of the old config: the checkpoint's shapes still guard the load
        if not isinstance(saved, dict):
            return
        from diffcxr.models.configs import load_model_config

        try:  # a key added to the schema since the run started takes its default (which keeps the old behaviour)
            saved = load_model_config(saved)
        except DiffCXRError:
            pass  # a key since removed: compare the record as it is
        now = json.loads(json.dumps(self.run.model_config()))
        saved = json.loads(json.dumps(saved))
        differ = sorted(_differing_keys(saved, now))
        if differ:
            shown = ", ".join(differ[:6]) + (f" and {len(differ) - 6} more" if len(differ) > 6 else "")
            overrides = _resume_overrides(saved, differ)
            how = (f"add {' '.join(overrides)} to resume it as it was trained" if overrides
                   else "resume with the run's own model config")
            raise ResumeConfigError(
                f"--resume: {self.out_dir} was trained with model {saved.get('name', '?')!r}, this command asks for "
                f"{now.get('name', '?')!r} (differs in {shown}); {how}, or start a new --output-dir", overrides)

    # -- building blocks ---------------------------------------------------------------------------------------
    # -- provenance and data -------------------------------------------------------------------------------------
    def save_run_info(self, extra: dict) -> None:
        """``config.yaml`` + ``run_info.json`` of this stage (main process), with ``extra`` and the precision."""
        from diffcxr.training.config import save_run_info

        if self.is_main:
            save_run_info(self.run, self.out_dir, self.stage, {**extra, "mixed_precision": self.mixed_precision})

    def stage_records(self, data_spec: str, manifest: str | None = None, **extra) -> tuple[list, list]:
        """``(train_records, holdout_records)`` of ``data_spec`` under the run's data settings, recorded in
        ``run_info.json`` (what this stage trained on, with ``extra``)."""
        from diffcxr.training.data import select_records

        train, holdout = select_records(data_spec, self.run.data, manifest)
        data = self.run.data
        self.save_run_info({"data": data_spec, "manifest": manifest, "train_records": len(train),
                            "train_splits": list(data.train_splits), "frontal_only": data.frontal_only,
                            "limit": data.limit, **extra})
        return train, holdout

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
            loaded = self.checkpointer.load_newest_intact(unwrapped, optimizer, scheduler, ema)
            if loaded is not None:
                latest, state = loaded
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
            epoch_batches = rank_batches(n, bs, self.run.seed, state.epoch, self.rank, self.world)
            while state.batch_in_epoch < len(epoch_batches):
                indices = epoch_batches[state.batch_in_epoch]
                state.batch_in_epoch += 1
                yield indices
            state.epoch += 1
            state.batch_in_epoch = 0

    def generator(self, state: TrainState, micro: int = 0, device=None) -> torch.Generator:
        """A generator seeded by (seed, step, micro-batch, rank): noise/timesteps/dropout of that micro-step."""
        g = torch.Generator(device=device or "cpu")
        g.manual_seed(mix_seeds(self.run.seed, state.step, micro, self.rank, 0xD1FF))
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
        arm()  # from here on Ctrl-C / SIGTERM stop at a step boundary with a checkpoint (stop_request.py)

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
        """Periodic checkpoint, the (test) step callback, then a stop on Ctrl-C / SIGTERM (checkpoint first)."""
        every = self.cfg.checkpoint_every
        if every and state.step % every == 0:
            self.save_checkpoint(state)
        if self.step_callback is not None:
            self.step_callback(self, state)
        signum = self._stop_signal()
        if signum:
            if self._last_saved_step != state.step:
                self.save_checkpoint(state)
            self._close_logs()
            disarm()
            name = signal.Signals(signum).name
            raise TrainingInterrupted(
                f"{self.stage}: stopped by {name} at step {state.step} of {self.cfg.max_steps}; checkpoint "
                f"{self.checkpointer.latest()} written; continue with --resume", signum)

    def _stop_signal(self) -> int:
        """The stop signal any process received (0 if none); every process agrees, so all stop at this step."""
        signum = requested() or 0
        if self.world > 1:
            flag = torch.tensor([float(signum)], device=self.device)
            signum = int(self.accelerator.reduce(flag, reduction="max").item())
        return signum

    def _close_logs(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    def finish(self, state: TrainState) -> None:
        """Final checkpoint (if not just written), close logs, loss plot."""
        disarm()
        if self._last_saved_step != state.step:
            self.save_checkpoint(state)
        self._close_logs()
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
            write_json({"stage": self.stage, "steps": self.cfg.max_steps, **(info or {})}, self.out_dir / "COMPLETE.json")
        self.accelerator.wait_for_everyone()


def stage_complete(out_dir: str | os.PathLike, max_steps: int | None = None) -> bool:
    """True when the stage finished (with at least ``max_steps`` steps: a larger ``max_steps`` continues it)."""
    path = Path(out_dir) / "COMPLETE.json"
    if not path.is_file():
        return False
    if max_steps is None:
        return True
    return int(json.loads(path.read_text(encoding="utf-8")).get("steps", 0)) >= max_steps


def _resume_overrides(saved: dict, differ: list[str], most: int = 3) -> list[str]:
    """The ``model.KEY=VALUE`` overrides that give back a run's own model config when only a few scalar keys
    differ (e.g. a preset whose default changed since the run started); ``[]`` when that is not possible."""
    if len(differ) > most:
        return []
    overrides = []
    for key in differ:
        value = saved
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, bool):
            overrides.append(f"model.{key}={str(value).lower()}")
        elif isinstance(value, (int, float, str)):
            overrides.append(f"model.{key}={value}")
        else:  # not in the record, a list, a section or null: no one-word override
            return []
    return overrides


def _differing_keys(a, b, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested config dicts (``name`` itself is not compared)."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(set(a) | set(b))
        return [k for key in keys if not (prefix == "" and key == "name")
                for k in _differing_keys(a.get(key), b.get(key), f"{prefix}{key}.")]
    return [] if a == b else [prefix.rstrip(".")]
