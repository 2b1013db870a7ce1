"""Training run configuration: typed dataclasses per stage, YAML loading, ``key=value`` overrides.

A run config (``diffcxr/configs/train/{tiny,demo,cpu-mini,paper}.yaml``) names a model config (``configs/model/*.yaml``,
model hyper-parameters only) and holds everything else: seed, mixed precision, data options, the latent/text
cache, one section per stage (``vae``, ``vlm``, ``base``, ``adapter``, ``classifier``) and sampling settings.

Every key is validated against the dataclasses below: an unknown key (in the file or in a ``key=value``
override) is a :class:`~diffcxr.errors.DiffCXRError` that names the key and its section, and a value of the
wrong type is an error that names the key too.

>>> cfg = load_run_config("tiny", overrides=["base.lr=1e-3", "seed=3"])
>>> cfg.base.lr, cfg.seed
(0.001, 3)
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from diffcxr.configs import config_dir, config_names, named_config
from diffcxr.configs.schema import apply_overrides, build_dataclass, read_yaml_mapping
from diffcxr.errors import DiffCXRError
from diffcxr.findings import LABEL_POLICIES

__all__ = [
    "StageConfig", "VAEConfig", "VLMConfig", "DiffusionConfig", "BaseConfig", "AdapterConfig", "ClassifierConfig",
    "DataConfig", "CacheConfig", "SampleConfig", "RunConfig", "STAGES", "EXTRA_STAGES", "DistillConfig", "TRAIN_CONFIG_NAMES",
    "train_config_dir", "load_run_config", "apply_overrides", "config_to_dict", "save_run_info", "git_sha",
]

STAGES = ("vae", "vlm", "base", "adapter", "classifier")  # what `all` trains, in this order
EXTRA_STAGES = ("distill",)  # trained on an exported pipeline, after `all`
TRAIN_CONFIG_NAMES = ("tiny", "demo", "cpu-mini", "paper")


@dataclasses.dataclass
class StageConfig:
    """Optimisation settings shared by every stage.

    ``batch_size`` is the micro-batch per process; one optimizer step sees ``batch_size × grad_accum ×
    processes`` samples. ``max_steps`` counts optimizer steps. ``ema_decay`` 0 disables EMA; with
    ``ema_warmup`` the decay ramps up as ``1 - (1 + step)^-2/3`` (capped at ``ema_decay``), which suits short
    runs. ``checkpoint_every`` 0 = only at the end.
    """

    enabled: bool = True
    max_steps: int = 1000
    batch_size: int = 16
    grad_accum: int = 1
    lr: float = 1e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 0
    lr_schedule: str = "constant"  # constant | cosine (after warm-up)
    min_lr: float = 0.0
    grad_clip: float = 1.0  # 0 = off
    ema_decay: float = 0.0
    ema_warmup: bool = True
    checkpoint_every: int = 500
    keep_last: int = 2
    log_every: int = 10


@dataclasses.dataclass
class VAEConfig(StageConfig):
    """1-channel ``AutoencoderKL`` from scratch: reconstruction (``l1``/``mse``) + ``kl_weight`` × KL."""

    recon_loss: str = "l1"
    kl_weight: float = 1e-6
    scaling_samples: int = 512  # images encoded at the end to set scaling_factor = 1 / std(latents)


@dataclasses.dataclass
class VLMConfig(StageConfig):
    """AVA-TLS: report encoder + TokenSqueeze + image tower, symmetric InfoNCE on (report, image) pairs, plus
    ``local_loss_weight`` (λ) × the vision-aware local loss on the 77 condition tokens (0 = token 0 only, as
    released: the condition rows of the squeeze then get no gradient).

    ``lr`` is the text tower's rate when it is pretrained; ``head_lr`` is used for the parts trained from
    scratch (squeeze, image tower, local head, and a from-scratch text tower). ``side_swap_negatives``: each
    report that names a side, with "left" and "right" swapped, is a hard negative of both contrastive terms.
    """

    lr: float = 1e-5
    head_lr: float = 1e-4
    lr_schedule: str = "cosine"
    min_lr: float = 1e-6
    weight_decay: float = 0.01
    temperature: float = 0.07
    train_text_encoder: bool = True
    local_loss_weight: float = 1.0
    side_swap_negatives: bool = False


@dataclasses.dataclass
class DiffusionConfig(StageConfig):
    """Stage 1 (base U-ViT): ε-MSE, scaled-linear β, AdamW 2e-4 / 0.03 / (0.9, 0.9), EMA, condition dropout."""

    lr: float = 2e-4
    weight_decay: float = 0.03
    betas: tuple[float, float] = (0.9, 0.9)
    warmup_steps: int = 5000
    ema_decay: float = 0.9999
    num_train_timesteps: int = 1000
    beta_start: float = 0.00085
    beta_end: float = 0.012
    beta_schedule: str = "scaled_linear"
    cond_drop_prob: float = 0.1
    snr_gamma: float | None = None  # min-SNR-γ loss weighting (e.g. 5); None: plain ε-MSE, the paper's


@dataclasses.dataclass
class BaseConfig(DiffusionConfig):
    """Stage 1 (base U-ViT). ``train_squeeze``: also train the report encoder's squeeze with the diffusion loss
    (text tower frozen, its token states cached; the empty-prompt condition recomputed through the squeeze every
    step), at ``squeeze_lr`` (0 = ``lr``); the tuned encoder is saved to ``<out>/base/report_encoder`` and every
    later stage and the exported pipeline use it. Off by default (the paper freezes the squeeze after the VLM stage)."""

    train_squeeze: bool = False
    squeeze_lr: float = 0.0


@dataclasses.dataclass
class AdapterConfig(DiffusionConfig):
    """Stage 2 (knowledge adapter on the frozen base): same loss and recipe, only the adapter trains."""


@dataclasses.dataclass
class DistillConfig(StageConfig):
    """Distillation of an exported pipeline (``diffcxr train distill --teacher PIPELINE``, not part of ``all``)
    into a copy of its U-ViT with a guidance-weight embedding, for ``w`` drawn uniformly from
    [``guidance_min``, ``guidance_max``].

    ``method: guidance`` — predict the teacher's guided ε ``ε_u + w·(ε_c − ε_u)`` in one forward (same steps,
    half the forwards). ``method: consistency`` — latent consistency distillation: one guided DDIM step of the
    teacher on a grid of ``num_ddim_timesteps`` steps, the student's consistency function matched (Huber,
    ``huber_c``) to that of an EMA target copy (``target_ema_decay``); samples with diffusers' ``LCMScheduler`` in
    ``sample_steps`` steps, which the exported pipeline records as its default."""

    lr: float = 1e-4
    warmup_steps: int = 100
    ema_decay: float = 0.999
    method: str = "guidance"  # guidance | consistency
    guidance_min: float = 1.0
    guidance_max: float = 6.0
    num_ddim_timesteps: int = 50
    target_ema_decay: float = 0.95
    huber_c: float = 0.001
    sample_steps: int = 4


@dataclasses.dataclass
class ClassifierConfig(StageConfig):
    """Small CXR CNN over the 14 CheXpert findings (BCE), for mAUC/FID features."""

    lr: float = 1e-3
    weight_decay: float = 1e-4
    channels: tuple[int, ...] = (32, 64, 128, 256)
    # label policy (diffcxr.findings.map_labels): positive | negative | exclude (left out of the loss)
    uncertain: str = "positive"  # uncertain (-1): "U-ones", as CheXpert baselines train
    missing: str = "negative"  # not mentioned (NaN): negative (CheXpert practice); "exclude" leaves it out
    augment: bool = True


@dataclasses.dataclass
class DataConfig:
    """Which records train. ``train_splits`` keeps records of these splits; ``holdout_splits`` provide the
    fixed validation reports of the sample grids. ``limit`` (0 = all) caps the training set (smoke runs)."""

    frontal_only: bool = True
    train_splits: tuple[str, ...] = ("train", "val")
    holdout_splits: tuple[str, ...] = ("test",)
    limit: int = 0
    skip_unreadable: bool = True


@dataclasses.dataclass
class CacheConfig:
    """Precomputed latents and report/knowledge embeddings (safetensors shards keyed by model + data hash);
    the diffusion stages always train on it."""

    dir: str = ""  # "" = <output_dir>/cache
    dtype: str = "float16"  # storage dtype of the text embeddings (latents are float32)
    shard_size: int = 1024
    batch_size: int = 32


@dataclasses.dataclass
class SampleConfig:
    """Sampling for the grids written during/after training (CFG in diffusers' convention). ``solver`` (a teacher
    solver of ``diffcxr.models.diffusion.SOLVERS``) is the exported pipeline's scheduler and
    ``num_inference_steps``, ``guidance_scale`` and ``adapter_scale`` its defaults: what ``diffcxr generate`` uses
    unless told."""

    solver: str = "dpm++2m"
    num_inference_steps: int = 25
    guidance_scale: float = 2.0
    adapter_scale: float = 1.0  # knowledge adapter conditioning scale (0 = the base model alone)
    every: int = 0  # write a sample grid every N optimizer steps of base/adapter (0 = only at the end)
    num_reports: int = 4


@dataclasses.dataclass
class RunConfig:
    """A whole ``diffcxr train`` run."""

    name: str = "run"
    model: Any = "tiny"  # model config name, path (relative to this YAML file) or inline mapping
    seed: int = 0
    mixed_precision: str = "auto"  # auto (bf16 where supported) | bf16 | no
    output_dir: str = ""
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    cache: CacheConfig = dataclasses.field(default_factory=CacheConfig)
    sample: SampleConfig = dataclasses.field(default_factory=SampleConfig)
    vae: VAEConfig = dataclasses.field(default_factory=VAEConfig)
    vlm: VLMConfig = dataclasses.field(default_factory=VLMConfig)
    base: BaseConfig = dataclasses.field(default_factory=BaseConfig)
    adapter: AdapterConfig = dataclasses.field(default_factory=AdapterConfig)
    classifier: ClassifierConfig = dataclasses.field(default_factory=ClassifierConfig)
    distill: DistillConfig = dataclasses.field(default_factory=DistillConfig)
    source: str = ""  # where the config came from (set by the loader)

    def stage(self, name: str) -> StageConfig:
        if name not in STAGES + EXTRA_STAGES:
            raise DiffCXRError(f"unknown stage {name!r} (one of {', '.join(STAGES + EXTRA_STAGES)})")
        return getattr(self, name)

    def model_config(self) -> dict:
        """The validated model config dict (:func:`diffcxr.models.configs.load_model_config`)."""
        from diffcxr.models.configs import load_model_config

        return load_model_config(_model_reference(self.model, self.source))


def _model_reference(model: Any, source: str) -> Any:
    """A run config's ``model``: a name or inline mapping as is; a YAML path relative to the run config's file."""
    if isinstance(model, str) and source and (model.endswith((".yaml", ".yml")) or os.sep in model):
        candidate = Path(source).parent / model
        if not Path(model).is_absolute() and candidate.is_file():
            return str(candidate)
    return model


def _apply_run_overrides(raw: dict, overrides: list[str] | tuple[str, ...], where: str, source: str) -> dict:
    """``apply_overrides`` for a run config, in order. A ``model.SECTION.KEY=value`` override (e.g.
    ``model.uvit.final_conv_init=random``) first turns a named or file ``model`` into its mapping, so one key of
    a shipped model config can change without writing a YAML file."""
    from diffcxr.models.configs import load_model_config

    for item in overrides or ():
        model = raw.get("model", RunConfig.model)
        if item.partition("=")[0].strip().startswith("model.") and isinstance(model, str):
            raw["model"] = load_model_config(_model_reference(model, source))
        apply_overrides(raw, [item], where)
    return raw


# ---------------------------------------------------------------------------------------------------------------
# validation / coercion
# ---------------------------------------------------------------------------------------------------------------
_CHOICES = {"lr_schedule": ("constant", "cosine"), "recon_loss": ("l1", "mse"), "mixed_precision": ("auto", "bf16", "no"),
            "dtype": ("float16", "bfloat16", "float32"), "beta_schedule": ("scaled_linear", "linear", "squaredcos_cap_v2"),
            "uncertain": LABEL_POLICIES, "missing": LABEL_POLICIES, "method": ("guidance", "consistency"),
            # diffcxr.models.diffusion.SOLVERS less lcm (students only), spelled out to keep this module torch-free
            "solver": ("dpm++2m", "dpm++3m", "unipc", "deis", "euler", "ddim")}


def _check(cfg, section: str, where: str) -> None:
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        dotted = f"{section}.{f.name}" if section else f.name
        if f.name in _CHOICES and value not in _CHOICES[f.name]:
            raise DiffCXRError(f"{where}: {dotted} must be one of {', '.join(_CHOICES[f.name])}, got {value!r}")
        if f.name in ("seed", "limit", "warmup_steps", "checkpoint_every", "log_every") and isinstance(value, int) \
                and value < 0:
            raise DiffCXRError(f"{where}: {dotted} must be >= 0, got {value}")
    if isinstance(cfg, StageConfig):
        for name in ("max_steps", "batch_size", "grad_accum", "keep_last"):
            if getattr(cfg, name) < 1:
                raise DiffCXRError(f"{where}: {section}.{name} must be >= 1, got {getattr(cfg, name)}")
        if not 0 <= cfg.ema_decay < 1:
            raise DiffCXRError(f"{where}: {section}.ema_decay must be in [0, 1), got {cfg.ema_decay}")
        if cfg.lr <= 0:
            raise DiffCXRError(f"{where}: {section}.lr must be > 0, got {cfg.lr}")
    if isinstance(cfg, DistillConfig):
        if not 0 <= cfg.guidance_min <= cfg.guidance_max:
            raise DiffCXRError(f"{where}: distill needs 0 <= guidance_min <= guidance_max, got {cfg.guidance_min} "
                               f"and {cfg.guidance_max}")
        if cfg.num_ddim_timesteps < 2 or not 1 <= cfg.sample_steps <= cfg.num_ddim_timesteps:
            raise DiffCXRError(f"{where}: distill needs num_ddim_timesteps >= 2 and 1 <= sample_steps <= "
                               f"num_ddim_timesteps, got {cfg.num_ddim_timesteps} and {cfg.sample_steps}")
        if not 0 <= cfg.target_ema_decay < 1 or cfg.huber_c <= 0:
            raise DiffCXRError(f"{where}: distill needs 0 <= target_ema_decay < 1 and huber_c > 0")
    if isinstance(cfg, DiffusionConfig) and not 0 <= cfg.cond_drop_prob < 1:
        raise DiffCXRError(f"{where}: {section}.cond_drop_prob must be in [0, 1), got {cfg.cond_drop_prob}")
    if isinstance(cfg, DiffusionConfig) and cfg.snr_gamma is not None and not cfg.snr_gamma > 0:
        raise DiffCXRError(f"{where}: {section}.snr_gamma must be > 0 (or null), got {cfg.snr_gamma}")


def train_config_dir() -> Path:
    """Folder of the named run configs: ``$DIFFCXR_TRAIN_CONFIG_DIR`` or the package's ``configs/train``."""
    return config_dir("train")


def load_run_config(name_or_path: str | os.PathLike | dict, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Load a run config by name (``tiny``, ``cpu-mini``, ``paper``), YAML path, or dict; apply overrides."""
    if isinstance(name_or_path, dict):
        raw, where, source = dict(name_or_path), "<dict>", ""
    else:
        path = named_config("train", str(name_or_path)) or Path(name_or_path)
        if not path.is_file():
            raise DiffCXRError(f"training config {str(name_or_path)!r} not found (give one of "
                               f"{', '.join(config_names('train'))} or a YAML file)")
        raw = read_yaml_mapping(path, "training config")
        where, source = f"training config {path}", str(path.resolve())
    merged = _apply_run_overrides(_deepcopy(raw), overrides, where, source)
    try:
        cfg = build_dataclass(RunConfig, merged, "", where, hidden=("source",), check=_check)
    except DiffCXRError as error:
        # validation messages start with ``where``; when the file alone is valid, an override broke it: say so
        message = str(error)
        if overrides and message.startswith(where) and _builds(raw, where):
            raise DiffCXRError(f"{where} + overrides{message[len(where):]}") from None
        raise
    cfg.source = source
    cfg.model_config()  # validate the referenced model config now, not after an hour of VAE training
    return cfg


def _builds(raw: dict, where: str) -> bool:
    """Whether a raw run config (before overrides) validates."""
    try:
        build_dataclass(RunConfig, _deepcopy(raw), "", where, hidden=("source",), check=_check)
    except DiffCXRError:
        return False
    return True


def _deepcopy(d):
    return json.loads(json.dumps(d))


def config_to_dict(cfg) -> dict:
    """Plain dict (tuples as lists) for YAML/JSON."""
    def conv(v):
        if dataclasses.is_dataclass(v):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v
    return conv(cfg)


def git_sha() -> str | None:
    """Commit of the diffcxr source tree (``+dirty`` if modified), or None outside a git checkout."""
    root = Path(__file__).resolve().parents[3]
    if not (root / "pyproject.toml").is_file() or Path(__file__).resolve().parents[2].name != "src":
        return None  # an installed wheel, not a source checkout
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10).stdout.strip()
        if not sha:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "src"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def save_run_info(cfg: RunConfig, out_dir: str | os.PathLike, stage: str, extra: dict | None = None) -> None:
    """Write ``config.yaml`` (resolved run config + model config) and ``run_info.json`` (git SHA, versions)."""
    import importlib.metadata

    import yaml

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    resolved = config_to_dict(cfg)
    resolved["model_resolved"] = cfg.model_config()
    (out / "config.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False), encoding="utf-8")
    versions = {}
    for dist in ("diffcxr", "torch", "diffusers", "transformers", "accelerate", "safetensors", "numpy"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    info = {"stage": stage, "git_sha": git_sha(), "python": platform.python_version(), "platform": platform.platform(),
            "argv": sys.argv, "packages": versions, **(extra or {})}
    (out / "run_info.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
