"""``DiffCXRPipeline``: radiology report → chest X-ray.

Steps of ``pipe(report)``: label the report with the rule-based knowledge labeler (``diffcxr.knowledge``) →
canonical knowledge prompt ("There is pleural effusion.", or "There is right pleural effusion." for an adapter
trained with ``knowledge_sides``) — or the user's label overrides → encode report and
knowledge with the frozen report encoder (77 tokens each) → classifier-free-guided denoising of VAE latents with
the U-ViT (+ the disease-knowledge adapter) and DPM-Solver++ (any diffusers scheduler can be swapped in) → VAE
decode → grayscale images.

Load saved pipelines with ``DiffCXRPipeline.from_pretrained(folder)`` (not ``DiffusionPipeline``): it is a
custom pipeline whose components live in ``diffcxr.models.*``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from diffusers import DiffusionPipeline, DPMSolverMultistepScheduler
from diffusers.utils import BaseOutput, logging
from diffusers.utils.torch_utils import randn_tensor

from diffcxr.data.reports import report_text, validate_report
from diffcxr.errors import DiffCXRError
from diffcxr.models.diffusion import sampling_scheduler
from diffcxr.models.knowledge_adapter import DiseaseKnowledgeAdapter, predict_noise
from diffcxr.models.report_encoder import ReportEncoder
from diffcxr.models.uvit import UViT
from diffcxr.models.vae import decode_latents, vae_downsample_factor

logger = logging.get_logger(__name__)

__all__ = ["DiffCXRPipeline", "DiffCXRPipelineOutput", "default_scheduler"]


def default_scheduler() -> DPMSolverMultistepScheduler:
    """DPM-Solver++ (2nd order multistep) over the paper's training schedule: 1000 steps, scaled-linear β
    0.00085–0.012 (:func:`diffcxr.models.diffusion.sampling_scheduler`)."""
    return sampling_scheduler()


@dataclass
class DiffCXRPipelineOutput(BaseOutput):
    """``images``: list of PIL images (mode ``"L"``), ``(N, H, W, 1)`` numpy in [0, 1], ``(N, 1, H, W)`` torch
    in [0, 1], or latents. ``reports``, ``knowledge_prompts``, ``labels`` and ``report_sections`` (the sections
    of the report that were read: ``["findings", "impression"]``, or ``["all"]`` for a report without headers)
    are per image (same order)."""

    images: Any
    reports: list[str | None] = field(default_factory=list)
    knowledge_prompts: list[str | None] = field(default_factory=list)
    labels: list[dict | None] = field(default_factory=list)
    report_sections: list[list[str]] = field(default_factory=list)


class DiffCXRPipeline(DiffusionPipeline):
    r"""Report-to-CXR generation with Diff-CXR.

    Components: ``vae`` (``AutoencoderKL``), ``denoiser`` (:class:`~diffcxr.models.uvit.UViT`),
    ``report_encoder`` (:class:`~diffcxr.models.report_encoder.ReportEncoder`), ``scheduler`` (default
    :func:`default_scheduler`), ``knowledge_adapter`` (:class:`DiseaseKnowledgeAdapter` or ``None`` — the
    "no disease knowledge" ablation).

    Example::

        pipe = DiffCXRPipeline.from_pretrained("path/to/model")             # dtype=torch.bfloat16 for bf16
        out = pipe("Moderate right pleural effusion.", num_images_per_prompt=4,
                   generator=torch.Generator().manual_seed(0))
        out.images[0].save("cxr.png")
        out.knowledge_prompts[0]  # 'There is right pleural effusion.' (side-aware adapter)
    """

    model_cpu_offload_seq = "report_encoder->knowledge_adapter->denoiser->vae"
    _optional_components = ["knowledge_adapter"]

    # NOTE: ``scheduler`` must stay without a default: diffusers' loader treats defaulted arguments (other than
    # ``_optional_components``) as plain config values, not components. Use ``default_scheduler()``.
    # ``default_inference_steps`` is a plain config value saved in model_index.json (50; a consistency-distilled
    # pipeline records its own few steps): what a call without ``num_inference_steps`` uses.
    # ``guidance_range`` ([w_min, w_max], distilled pipelines only) is the span of w the student was trained on.
    # ``default_guidance_scale`` / ``default_adapter_scale``: what a call without ``guidance_scale`` /
    # ``adapter_conditioning_scale`` uses; ``diffcxr train`` records its config's measured choice (2 and 1 when absent).
    def __init__(self, vae, denoiser: UViT, report_encoder: ReportEncoder, scheduler,
                 knowledge_adapter: DiseaseKnowledgeAdapter | None = None, default_inference_steps: int = 50,
                 guidance_range: list[float] | None = None, default_guidance_scale: float = 2.0,
                 default_adapter_scale: float = 1.0):
        super().__init__()
        self.register_modules(vae=vae, denoiser=denoiser, report_encoder=report_encoder,
                              scheduler=scheduler if scheduler is not None else default_scheduler(),
                              knowledge_adapter=knowledge_adapter)
        self.register_to_config(default_inference_steps=int(default_inference_steps),
                                guidance_range=[float(w) for w in guidance_range] if guidance_range else None,
                                default_guidance_scale=float(default_guidance_scale),
                                default_adapter_scale=float(default_adapter_scale))

    # -- helpers -------------------------------------------------------------------------------------------
    @property
    def default_inference_steps(self) -> int:
        """Solver steps of a call that does not say (50; the few steps of a consistency-distilled pipeline)."""
        return int(self.config.get("default_inference_steps", 50))

    @property
    def default_guidance_scale(self) -> float:
        """Guidance ``w`` of a call that does not say: the training config's measured choice (2 when not recorded)."""
        return float(self.config.get("default_guidance_scale", 2.0))

    @property
    def default_adapter_scale(self) -> float:
        """Knowledge adapter scale of a call that does not say: the training config's choice (1 when not recorded)."""
        return float(self.config.get("default_adapter_scale", 1.0))

    def sampling_scales(self, guidance_scale: float | None = None,
                        adapter_conditioning_scale: float | None = None) -> tuple[float, float]:
        """``(w, adapter scale)`` a call with these arguments samples at: each given value, else this pipeline's
        default (:attr:`default_guidance_scale`, :attr:`default_adapter_scale`)."""
        return (self.default_guidance_scale if guidance_scale is None else float(guidance_scale),
                self.default_adapter_scale if adapter_conditioning_scale is None else float(adapter_conditioning_scale))

    @property
    def guidance_distilled(self) -> bool:
        """True for a guidance-distilled denoiser (``diffcxr train distill``): one forward per step at any w."""
        return bool(getattr(self.denoiser.config, "guidance_embedding", False))

    @property
    def guidance_range(self) -> tuple[float, float] | None:
        """``(w_min, w_max)`` a distilled student was trained on (None: a teacher, or not recorded)."""
        span = self.config.get("guidance_range")
        return (float(span[0]), float(span[1])) if span else None

    @property
    def image_size(self) -> int:
        return self.denoiser.config.sample_size * vae_downsample_factor(self.vae)

    @staticmethod
    def _as_list(value, n: int, name: str) -> list:
        if value is None or isinstance(value, (dict, str)):
            return [value] * n
        value = list(value)
        if len(value) != n:
            raise DiffCXRError(f"{name} has {len(value)} entries but there are {n} prompts")
        return value

    def derive_knowledge(self, reports: list[str | None], labels=None, uncertain_as_positive: bool = False
                         ) -> tuple[list[dict | None], list[str]]:
        """Labels (labeler output with the user's overrides applied) and knowledge prompts, one per report.

        ``labels`` per report: ``None`` (labeler only), a dict ``{finding: 1/0/-1/None}`` or a spec string
        ``"Pleural Effusion=1,Cardiomegaly=0"``; overrides are applied on top of the labeler's labels. Unknown
        finding names raise :class:`~diffcxr.errors.ReportError`. With an adapter trained on side-aware prompts
        (``knowledge_adapter.config.knowledge_sides``) each prompt names the sides the report gives
        (:func:`~diffcxr.knowledge.finding_sides`).
        """
        from diffcxr.knowledge import (apply_overrides, finding_sides, knowledge_prompt, label_report,
                                       parse_label_overrides)

        with_sides = self.knowledge_adapter is not None and self.knowledge_adapter.config.knowledge_sides
        out_labels, prompts = [], []
        for report, override in zip(reports, self._as_list(labels, len(reports), "labels")):
            result = label_report(report) if report else None
            lab = dict(result.labels) if result else {}
            sides = finding_sides(result) if with_sides and result else None
            if isinstance(override, str):
                override = parse_label_overrides(override)
            if override:
                if not isinstance(override, dict):
                    raise DiffCXRError(f"labels must be dicts or 'Finding=1,...' strings, got {type(override).__name__}")
                lab = apply_overrides(lab, override)
            out_labels.append(lab)
            prompts.append(knowledge_prompt(lab, uncertain_as_positive=uncertain_as_positive, sides=sides))
        return out_labels, prompts

    @torch.no_grad()
    def encode_text(self, texts: list[str], allow_empty: bool = False) -> torch.Tensor:
        """Condition tokens ``(len(texts), 77, d)`` of the report encoder. A text that occurs several times in
        ``texts`` (a knowledge prompt shared by reports with the same findings) is encoded once: on a CPU the
        text tower costs more than a few-step sampler's denoiser forwards."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        row = {}
        for text in texts:
            row.setdefault(text, len(row))
        embeds = self.report_encoder.encode(list(row), allow_empty=allow_empty).condition_embeds
        if len(row) == len(texts):
            return embeds
        return embeds[torch.tensor([row[text] for text in texts], device=embeds.device)]

    def _check_embeds(self, embeds: torch.Tensor, name: str, batch: int | None = None) -> torch.Tensor:
        cfg = self.denoiser.config
        if embeds.ndim != 3 or tuple(embeds.shape[1:]) != (cfg.num_context_tokens, cfg.context_dim):
            raise DiffCXRError(f"{name} must have shape (B, {cfg.num_context_tokens}, {cfg.context_dim}), "
                               f"got {tuple(embeds.shape)}")
        if batch is not None and embeds.shape[0] not in (1, batch):
            raise DiffCXRError(f"{name} has batch {embeds.shape[0]}, expected 1 or {batch}")
        return embeds

    # -- generation ----------------------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        num_images_per_prompt: int = 1,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str = "pil",
        labels=None,
        adapter_conditioning_scale: float | None = None,
        prompt_embeds: torch.Tensor | None = None,
        knowledge_embeds: torch.Tensor | None = None,
        negative_prompt: str | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        negative_knowledge_embeds: torch.Tensor | None = None,
        latents: torch.Tensor | None = None,
        uncertain_as_positive: bool = False,
        progress: bool = True,
        callback_on_step_end=None,
        return_dict: bool = True,
    ):
        r"""Generate chest X-rays from reports.

        Args:
            prompt: report text(s): a whole report as radiologists write it (with or without line breaks) or just
                its findings/impression. With section headers, only FINDINGS and IMPRESSION are read (by the
                labeler and the report encoder); without, the whole text. Longer than the encoder's context → last
                words kept.
            num_images_per_prompt: images per report.
            num_inference_steps: solver steps (default :attr:`default_inference_steps`: 50 as in the paper, or the
                few steps a consistency-distilled pipeline was trained for).
            guidance_scale: classifier-free guidance ``w`` in diffusers' convention ``ε_u + w·(ε_c − ε_u)``.
                The authors write ``ε_c + s·(ε_c − ε_u)`` with ``s = 1``, which is ``w = s + 1 = 2``. Default:
                :attr:`default_guidance_scale`, the value the training config chose by measurement (2 if unrecorded).
                ``w <= 1`` disables guidance (``w = 1`` is the plain conditional model, one forward per step).
                A guidance-distilled pipeline (``diffcxr train distill``) takes ``w`` as an input of its denoiser
                and needs one forward per step at any ``w``, in the range it was distilled for.
            generator: ``torch.Generator`` (or one per image) for reproducible noise.
            output_type: ``"pil"`` (mode ``"L"``), ``"np"`` ((N, H, W, 1) in [0, 1]), ``"pt"`` ((N, 1, H, W) in
                [0, 1]) or ``"latent"``.
            labels: per-prompt overrides of the labeler's findings: a dict ``{"Pleural Effusion": 1, ...}`` or a
                string ``"Pleural Effusion=1,Cardiomegaly=0"`` (or a list with one per prompt). Values 1/0/-1/None.
            adapter_conditioning_scale: multiplies the knowledge adapter's residuals (0 = base model only). Default:
                :attr:`default_adapter_scale` (the training config's choice; 1 if unrecorded).
            prompt_embeds / knowledge_embeds: precomputed ``(B, 77, d)`` condition tokens instead of text.
            negative_prompt / negative_prompt_embeds / negative_knowledge_embeds: the unconditional branch
                (default: the empty-prompt embedding for both report and knowledge, as in training).
            latents: initial noise ``(N, C, h, w)`` instead of sampling it.
            uncertain_as_positive: uncertain findings (−1) enter the knowledge prompt as present.
            progress: show a progress bar.
            callback_on_step_end: ``f(pipeline, step_index, timestep, {"latents": latents}) -> dict`` called after
                every solver step (diffusers' convention; a returned ``"latents"`` replaces them), e.g. to drive
                a progress bar in an app.
        """
        device = self._execution_device
        if num_inference_steps is None:
            num_inference_steps = self.default_inference_steps
        guidance_scale, adapter_conditioning_scale = self.sampling_scales(guidance_scale, adapter_conditioning_scale)
        if num_images_per_prompt < 1 or num_inference_steps < 1:
            raise DiffCXRError("num_images_per_prompt and num_inference_steps must be >= 1")
        if output_type not in ("pil", "np", "pt", "latent"):
            raise DiffCXRError(f"output_type must be 'pil', 'np', 'pt' or 'latent', got {output_type!r}")
        use_adapter = self.knowledge_adapter is not None and adapter_conditioning_scale != 0

        # 1. reports, labels and knowledge prompts
        if prompt is None and prompt_embeds is None:
            raise DiffCXRError("give a report (prompt=...) or prompt_embeds")
        if prompt is not None:
            reports = [prompt] if isinstance(prompt, str) else list(prompt)
            if not reports:
                raise DiffCXRError("prompt is an empty list")
            reports = [validate_report(r, i if len(reports) > 1 else None) for i, r in enumerate(reports)]
        else:
            reports = [None] * self._check_embeds(prompt_embeds, "prompt_embeds").shape[0]
        n_prompts = len(reports)
        need_knowledge_text = knowledge_embeds is None and (
            prompt is not None or labels is not None or use_adapter)
        if need_knowledge_text and prompt is None and labels is None:
            raise DiffCXRError("with prompt_embeds and a knowledge adapter, also give knowledge_embeds, labels or prompt")
        if need_knowledge_text:
            label_list, knowledge_prompts = self.derive_knowledge(reports, labels, uncertain_as_positive)
        else:
            label_list, knowledge_prompts = [None] * n_prompts, [None] * n_prompts

        # 2. condition tokens
        # the report encoder reads FINDINGS + IMPRESSION of a sectioned report (the whole text otherwise), as in
        # training; the labeler reads the same sections
        read = [report_text(r) if r is not None else (None, []) for r in reports]
        cond = prompt_embeds if prompt_embeds is not None else self.encode_text([text for text, _ in read])
        cond = self._check_embeds(cond.to(device), "prompt_embeds", n_prompts)
        know = None
        if use_adapter:
            know = knowledge_embeds if knowledge_embeds is not None else self.encode_text(knowledge_prompts)
            know = self._check_embeds(know.to(device), "knowledge_embeds", n_prompts)
        # a guidance-distilled denoiser reads w and predicts the guided noise in one forward: no unconditional branch
        guidance_distilled = self.guidance_distilled
        span = self.guidance_range if guidance_distilled else None
        if span and not span[0] - 1e-6 <= guidance_scale <= span[1] + 1e-6:
            logger.warning(f"guidance_scale {guidance_scale:g} is outside the w range this student was distilled on "
                           f"[{span[0]:g}, {span[1]:g}]: it extrapolates (or, for a single w, ignores the change)")
        do_cfg = guidance_scale > 1.0 and not guidance_distilled
        if do_cfg:
            if negative_prompt_embeds is None:
                negative_prompt_embeds = self.encode_text([negative_prompt or ""], allow_empty=True)
            uncond = self._check_embeds(negative_prompt_embeds.to(device), "negative_prompt_embeds", n_prompts)
            if use_adapter:
                if negative_knowledge_embeds is None:
                    negative_knowledge_embeds = self.encode_text([""], allow_empty=True)
                uncond_k = self._check_embeds(negative_knowledge_embeds.to(device), "negative_knowledge_embeds", n_prompts)

        batch = n_prompts * num_images_per_prompt

        def expand(x: torch.Tensor) -> torch.Tensor:
            x = x.expand(n_prompts, -1, -1) if x.shape[0] == 1 else x
            return x.repeat_interleave(num_images_per_prompt, dim=0)

        cond = expand(cond)
        know = expand(know) if know is not None else None
        if do_cfg:
            cond = torch.cat([expand(uncond), cond])
            if know is not None:
                know = torch.cat([expand(uncond_k), know])

        # 3. noise
        c, s = self.denoiser.config.in_channels, self.denoiser.config.sample_size
        shape = (batch, c, s, s)
        if isinstance(generator, list) and len(generator) != batch:
            raise DiffCXRError(f"got {len(generator)} generators for {batch} images (one per image, or a single one)")
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=torch.float32)
        else:
            if tuple(latents.shape) != shape:
                raise DiffCXRError(f"latents must have shape {shape} for this model "
                                   f"({self.image_size}x{self.image_size} images), got {tuple(latents.shape)}")
            latents = latents.to(device=device, dtype=torch.float32)
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        latents = latents * self.scheduler.init_noise_sigma

        # 4. denoise (latents and solver in float32; the networks in their own dtype)
        self.set_progress_bar_config(disable=not progress)
        adapter = self.knowledge_adapter if use_adapter else None
        # stochastic solvers (LCM's multistep sampling re-noises between steps) draw from the caller's generator
        step_kwargs = {"generator": generator} if "generator" in inspect.signature(self.scheduler.step).parameters \
            else {}
        for i, t in enumerate(self.progress_bar(self.scheduler.timesteps)):
            model_in = torch.cat([latents] * 2) if do_cfg else latents
            model_in = self.scheduler.scale_model_input(model_in, t)
            eps = predict_noise(self.denoiser, model_in, t, cond, adapter, know, adapter_conditioning_scale,
                                guidance=guidance_scale if guidance_distilled else None).float()
            if do_cfg:
                eps_u, eps_c = eps.chunk(2)
                eps = eps_u + guidance_scale * (eps_c - eps_u)
            latents = self.scheduler.step(eps, t, latents, **step_kwargs, return_dict=False)[0]
            if callback_on_step_end is not None:
                latents = (callback_on_step_end(self, i, t, {"latents": latents}) or {}).get("latents", latents)

        # 5. decode
        per_image = lambda xs: [x for x in xs for _ in range(num_images_per_prompt)]  # noqa: E731
        if output_type == "latent":
            images = latents
        else:
            pixels = ((decode_latents(self.vae, latents).float() + 1) / 2).clamp(0, 1).cpu()
            if output_type == "pt":
                images = pixels
            else:
                arr = pixels.permute(0, 2, 3, 1).numpy()
                images = arr if output_type == "np" else self.numpy_to_pil_gray(arr)
        self.maybe_free_model_hooks()
        out = DiffCXRPipelineOutput(images=images, reports=per_image(reports),
                                    knowledge_prompts=per_image(knowledge_prompts), labels=per_image(label_list),
                                    report_sections=per_image([names for _, names in read]))
        return out if return_dict else (images,)

    @staticmethod
    def numpy_to_pil_gray(images: np.ndarray):
        """``(N, H, W, 1)`` floats in [0, 1] → list of 8-bit grayscale PIL images (mode ``"L"``)."""
        from PIL import Image

        return [Image.fromarray(np.round(img[..., 0] * 255).astype(np.uint8), mode="L") for img in images]

    # -- construction --------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs) -> "DiffCXRPipeline":
        """Load a saved pipeline folder (diffusers' loader). Weights are read from safetensors files only: a
        component saved as a pickle (``diffusion_pytorch_model.bin``, ``pytorch_model.bin``) is refused."""
        if kwargs.get("use_safetensors") is False:
            raise DiffCXRError("diffcxr loads weights from safetensors files only (use_safetensors=False is refused)")
        kwargs["use_safetensors"] = True
        try:
            return super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        except (OSError, ValueError) as exc:
            raise DiffCXRError(f"cannot load a DiffCXRPipeline from {pretrained_model_name_or_path}: "
                               f"{str(exc).strip().splitlines()[0]}") from exc
        except (TypeError, KeyError, AttributeError, RuntimeError) as exc:  # a component's config.json is damaged
            raise DiffCXRError(f"cannot load a DiffCXRPipeline from {pretrained_model_name_or_path}: a component's "
                               f"config.json holds a value of the wrong type or shape ({type(exc).__name__}: "
                               f"{str(exc).strip().splitlines()[0][:200]})") from exc

    @classmethod
    def from_model_config(cls, config="tiny", seed: int | None = 0, report_encoder: ReportEncoder | None = None,
                          with_adapter: bool | None = None) -> "DiffCXRPipeline":
        """Randomly initialised components from a model config (``tiny`` / ``cpu-mini`` / ``paper`` / path).

        For tests, benchmarks and as the starting point of training. The report encoder is built from the config's
        ``report_encoder.text_encoder`` (``tiny-bert``, ``minilm`` or a hub id) unless one is given.
        """
        from diffcxr.models.configs import load_model_config, uvit_kwargs
        from diffcxr.models.vae import vae_from_model_config

        cfg = load_model_config(config)
        if seed is not None:
            torch.manual_seed(seed)
        if report_encoder is None:
            report_encoder = ReportEncoder.from_model_config(cfg)
        vae = vae_from_model_config(cfg)
        denoiser = UViT(**uvit_kwargs(cfg))
        if with_adapter is None:
            with_adapter = cfg["adapter"]["enabled"]
        adapter = (DiseaseKnowledgeAdapter.from_uvit(denoiser, knowledge_sides=cfg["adapter"]["knowledge_sides"])
                   if with_adapter else None)
        return cls(vae=vae.eval(), denoiser=denoiser.eval(), report_encoder=report_encoder.eval(),
                   scheduler=default_scheduler(), knowledge_adapter=adapter.eval() if adapter is not None else None)
