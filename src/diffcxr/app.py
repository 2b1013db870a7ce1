"""``diffcxr app``: a Gradio page that turns a typed report into chest X-rays and shows what the model read.

The page shows the findings the labeler derived *on the report text itself* (evidence spans coloured present /
absent / uncertain), the knowledge prompt the disease-knowledge adapter receives, a per-finding override (auto /
present / absent) that feeds the pipeline's ``labels=``, the sampling controls, and a gallery whose every image
comes with its PNG, a DICOM marked synthetic and the JSON sidecar (with the seed that regenerates it).

Safe by default: it binds to 127.0.0.1, makes no public share link unless asked, the model is fixed at launch
(nothing typed in the page reaches the filesystem), reports are limited as everywhere in the library, and
requests queue one at a time. The page logic (:func:`read_report`, :class:`AppGenerator`) is plain Python,
tested without a browser; :func:`build_app` only lays it out.

>>> from diffcxr.app import read_report
>>> spans, prompt, _ = read_report("Small left pleural effusion. No pneumothorax.")
>>> prompt
'There is pleural effusion.'
"""

from __future__ import annotations

import random
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from diffcxr.data.reports import MAX_REPORT_CHARS, validate_report
from diffcxr.errors import DiffCXRError
from diffcxr.findings import CHEXPERT_FINDINGS

__all__ = ["EXAMPLE_REPORTS", "OVERRIDE_CHOICES", "DEFAULT_MODEL_DIR", "read_report", "highlight_spans",
           "AppGenerator", "AppResult", "build_app", "launch"]

DEFAULT_MODEL_DIR = Path("runs/demo/model/pipeline")  # where `diffcxr demo` (default --out) saves its pipeline
OVERRIDE_CHOICES = ("auto", "present", "absent")
VALUE_NAMES = {1.0: "present", 0.0: "absent", -1.0: "uncertain"}
COLOURS = {"present": "#e4572e", "absent": "#4c9f70", "uncertain": "#f3a712"}
MAX_IMAGES = 8
KEEP_RUNS = 20  # output folders of the last runs kept on disk (Gradio serves its own copies)

# Written for this page (phantom-style short reports and IU-Xray-style sectioned ones); no dataset text.
EXAMPLE_REPORTS = (
    "Normal chest. The lungs are clear. Heart size is normal. No pleural effusion or pneumothorax.",
    "Large left pleural effusion with adjacent atelectasis. Heart size is normal. No pneumothorax.",
    "Marked cardiomegaly. Mild pulmonary edema. No pleural effusion.",
    "Large right pneumothorax. No pleural effusion. Heart size is normal.",
    "FINDINGS: The cardiomediastinal silhouette is within normal limits. The lungs are clear without focal "
    "consolidation. No pleural effusion or pneumothorax. IMPRESSION: No acute cardiopulmonary abnormality.",
    "INDICATION: Cough and fever. FINDINGS: Right lower lobe airspace opacity. Small right pleural effusion. "
    "Heart size is upper normal. IMPRESSION: Right lower lobe pneumonia with small effusion.",
)


def highlight_spans(text: str, evidence) -> list[tuple[str, str | None]]:
    """``text`` cut into ``(piece, category)`` pieces for Gradio's ``HighlightedText``: an evidence span gets the
    category ``"Finding: present|absent|uncertain"``, the text between spans ``None``. Overlapping spans keep the
    first (longest at a position)."""
    pieces, position = [], 0
    for item in sorted(evidence, key=lambda e: (e.start, -(e.end - e.start))):
        if item.start < position or item.end <= item.start:
            continue
        if item.start > position:
            pieces.append((text[position:item.start], None))
        pieces.append((text[item.start:item.end], f"{item.finding}: {VALUE_NAMES.get(item.value, 'uncertain')}"))
        position = item.end
    if position < len(text):
        pieces.append((text[position:], None))
    return pieces


def _override_labels(overrides: dict[str, str] | None) -> dict[str, float]:
    """``{"Pleural Effusion": "present", "Edema": "auto"}`` → ``{"Pleural Effusion": 1.0}`` (auto = the labeler's)."""
    values = {"present": 1.0, "absent": 0.0}
    out = {}
    for finding, choice in (overrides or {}).items():
        if finding not in CHEXPERT_FINDINGS:
            raise DiffCXRError(f"unknown finding {finding!r}")
        if choice not in OVERRIDE_CHOICES:
            raise DiffCXRError(f"override for {finding} must be one of {', '.join(OVERRIDE_CHOICES)}, got {choice!r}")
        if choice != "auto":
            out[finding] = values[choice]
    return out


def read_report(report: str, overrides: dict[str, str] | None = None, uncertain_as_positive: bool = False,
                sides: bool = False) -> tuple[list[tuple[str, str | None]], str, dict[str, float | None]]:
    """What the model reads from ``report``: highlighted evidence spans, the knowledge prompt and the labels after
    ``overrides`` (``{finding: "auto"|"present"|"absent"}``). An empty report gives no spans and no prompt.
    ``sides``: the side-aware prompt, for a model whose adapter reads one (:attr:`AppGenerator.knowledge_sides`)."""
    from diffcxr.knowledge import apply_overrides, finding_sides, knowledge_prompt, label_report

    forced = _override_labels(overrides)
    if not isinstance(report, str) or not report.strip():
        return [], "", {f: forced.get(f) for f in CHEXPERT_FINDINGS}
    result = label_report(report[:MAX_REPORT_CHARS])
    labels = apply_overrides(result.labels, forced) if forced else result.labels
    prompt = knowledge_prompt(labels, uncertain_as_positive, sides=finding_sides(result) if sides else None)
    return highlight_spans(result.text, result.evidence), prompt, labels


@dataclass
class AppResult:
    """One generation: ``images`` as ``(png_path, caption)``, every file written (PNG, DICOM, JSON per image)."""

    images: list[tuple[str, str]]
    files: list[str]
    knowledge_prompt: str
    labels: dict
    seconds: float


class AppGenerator:
    """The model behind the page: loaded once at launch from a fixed folder, one request at a time."""

    def __init__(self, model_dir: str | Path, output_root: str | Path | None = None, device: str = "cpu"):
        model_dir = Path(model_dir)
        if not (model_dir / "model_index.json").is_file():
            raise DiffCXRError(f"{model_dir} is not a saved DiffCXRPipeline (no model_index.json)")
        self.model_dir = model_dir
        self.device = device
        self.output_root = Path(output_root or tempfile.mkdtemp(prefix="diffcxr-app-"))
        self._pipelines: dict[str, object] = {}
        self._lock = threading.Lock()
        self._runs = 0
        self.pipeline("fp32")  # fail at launch, not at the first click

    def pipeline(self, precision: str):
        """The pipeline in ``precision`` (``fp32`` or ``bf16``), loaded once."""
        import torch

        from diffcxr.pipelines import DiffCXRPipeline

        dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
        if precision not in dtypes:
            raise DiffCXRError(f"precision must be fp32 or bf16, got {precision!r}")
        if precision not in self._pipelines:
            pipe = DiffCXRPipeline.from_pretrained(self.model_dir, dtype=dtypes[precision]).to(self.device)
            pipe.set_progress_bar_config(disable=True)
            self._pipelines[precision] = pipe
        return self._pipelines[precision]

    @property
    def knowledge_sides(self) -> bool:
        """Whether the model's adapter reads side-aware knowledge prompts ("There is left pleural effusion.")."""
        adapter = self.pipeline("fp32").knowledge_adapter
        return adapter is not None and bool(adapter.config.knowledge_sides)

    def defaults(self) -> dict:
        """The model's own sampling defaults (as ``diffcxr generate`` uses them): ``steps``, ``guidance``,
        ``adapter_scale``."""
        pipe = self.pipeline("fp32")
        return {"steps": pipe.default_inference_steps, "guidance": pipe.default_guidance_scale,
                "adapter_scale": pipe.default_adapter_scale}

    def generate(self, report: str, overrides: dict[str, str] | None = None, n: int = 2, steps: int | None = None,
                 guidance: float | None = None, adapter_scale: float | None = None, seed: int = 0,
                 precision: str = "fp32", on_step=None, solver: str = "auto") -> AppResult:
        """Generate ``n`` images for ``report``; image ``k`` uses seed ``seed + k``. ``steps``, ``guidance`` and
        ``adapter_scale`` default to the model's own (:meth:`defaults`). ``on_step(done, total)`` is called after
        every solver step. Raises :class:`DiffCXRError` with a message for the page on bad input."""
        import time

        import torch

        from diffcxr.pipelines.outputs import save_generated

        report = validate_report(report)
        n, seed = int(n), int(seed)
        with self._lock:
            pipe = self.pipeline(precision)
        steps = int(pipe.default_inference_steps if steps is None else steps)
        guidance, adapter_scale = pipe.sampling_scales(guidance, adapter_scale)
        if not 1 <= n <= MAX_IMAGES:
            raise DiffCXRError(f"number of images must be 1..{MAX_IMAGES}, got {n}")
        if not 1 <= steps <= 1000 or seed < 0:
            raise DiffCXRError("steps must be 1..1000 and the seed >= 0")
        forced = _override_labels(overrides)
        from diffcxr.models.diffusion import resolve_solver, solver_scheduler

        with self._lock:
            solver = resolve_solver(solver, pipe.scheduler)
            pipe.scheduler = solver_scheduler(solver, pipe.scheduler.config)
            self._runs += 1
            out_dir = self.output_root / f"run-{self._runs:05d}"
            out_dir.mkdir(parents=True)
            t0 = time.perf_counter()
            callback = None
            if on_step is not None:
                def callback(_pipe, i, _t, kwargs):
                    on_step(i + 1, steps)
                    return kwargs
            result = pipe(report, num_images_per_prompt=n, num_inference_steps=steps, guidance_scale=guidance,
                          adapter_conditioning_scale=adapter_scale, labels=forced or None, output_type="np",
                          generator=[torch.Generator().manual_seed(seed + k) for k in range(n)], progress=False,
                          callback_on_step_end=callback)
            settings = {"steps": steps, "solver": solver, "guidance_scale": guidance, "adapter_conditioning_scale":
                        adapter_scale, "dtype": precision, "device": self.device, "app": True}
            images, files = [], []
            for k in range(n):
                written = save_generated(result.images[k][..., 0], out_dir, f"report_{k:02d}", report=report,
                                         report_id="app", index=k, seed=seed + k, labels=result.labels[k],
                                         label_overrides=forced or None, knowledge_prompt=result.knowledge_prompts[k],
                                         report_sections=result.report_sections[k], model_dir=self.model_dir,
                                         settings=settings, formats=("png", "dcm"))
                images.append((str(written[0]), f"seed {seed + k}"))
                files.extend(str(p) for p in written)
            seconds = time.perf_counter() - t0
            self._forget_old_runs()
        return AppResult(images=images, files=files, knowledge_prompt=result.knowledge_prompts[0],
                         labels=result.labels[0], seconds=seconds)

    def _forget_old_runs(self) -> None:
        runs = sorted(self.output_root.glob("run-*"))
        for old in runs[:-KEEP_RUNS]:
            shutil.rmtree(old, ignore_errors=True)


def _slug(name: str) -> str:
    return name.lower().replace(" ", "-")


def build_app(generator: AppGenerator):
    """The Gradio ``Blocks`` page for ``generator`` (call ``.queue().launch()`` on it, or use :func:`launch`)."""
    import gradio as gr

    color_map = {f"{f}: {v}": COLOURS[v] for f in CHEXPERT_FINDINGS for v in COLOURS}
    defaults = generator.defaults()
    sides = generator.knowledge_sides

    def update_findings(report, *choices):
        spans, prompt, _ = read_report(report or "", dict(zip(CHEXPERT_FINDINGS, choices)), sides=sides)
        return spans, prompt

    def generate(report, *args, progress=gr.Progress()):
        choices, (n, steps, guidance, adapter_scale, seed, precision) = args[:len(CHEXPERT_FINDINGS)], \
            args[len(CHEXPERT_FINDINGS):]
        overrides = dict(zip(CHEXPERT_FINDINGS, choices))
        try:
            result = generator.generate(report, overrides, n=n, steps=steps, guidance=guidance,
                                        adapter_scale=adapter_scale, seed=seed or 0, precision=precision,
                                        on_step=lambda done, total: progress((done, total), desc="denoising"))
        except DiffCXRError as exc:
            raise gr.Error(str(exc)) from None
        spans, prompt, _ = read_report(report, overrides, sides=sides)
        status = (f"{len(result.images)} image(s) in {result.seconds:.1f} s · seeds {int(seed or 0)}–"
                  f"{int(seed or 0) + len(result.images) - 1} · regenerate one with `diffcxr generate --model "
                  f"{generator.model_dir} --n 1 --seed SEED --steps {int(steps)} --guidance {guidance} "
                  f"--adapter-scale {adapter_scale}` and the same report")
        return result.images, result.files, spans, prompt, status

    with gr.Blocks(title="diffcxr: report to chest X-ray") as page:
        gr.Markdown(f"## diffcxr: chest X-rays from a radiology report\nModel: `{generator.model_dir}` "
                    "(synthetic images for research; not for diagnosis)")
        with gr.Row():
            with gr.Column(scale=3):
                report = gr.Textbox(label="Report", lines=5, max_length=MAX_REPORT_CHARS, elem_id="report",
                                    placeholder="Type a report (findings / impression), or pick an example below")
                gr.Examples(examples=[[text] for text in EXAMPLE_REPORTS], inputs=[report], label="Example reports")
                spans = gr.HighlightedText(label="Findings the model reads (present / absent / uncertain)",
                                           color_map=color_map, show_legend=False, combine_adjacent=False,
                                           elem_id="findings")
                prompt = gr.Textbox(label="Knowledge prompt (what the disease-knowledge adapter receives)",
                                    interactive=False, elem_id="knowledge-prompt")
                with gr.Accordion("Override findings (auto = as read from the report)", open=False):
                    with gr.Row():
                        overrides = [gr.Radio(OVERRIDE_CHOICES, value="auto", label=f, min_width=160,
                                              elem_id=f"override-{_slug(f)}") for f in CHEXPERT_FINDINGS]
            with gr.Column(scale=2):
                n = gr.Slider(1, MAX_IMAGES, value=2, step=1, label="Images", elem_id="n-images")
                steps = gr.Slider(1, 100, value=defaults["steps"], step=1, label="Solver steps", elem_id="steps")
                guidance = gr.Slider(1, 8, value=defaults["guidance"], step=0.5, label="Guidance w (1 = off)")
                adapter_scale = gr.Slider(0, 2, value=defaults["adapter_scale"], step=0.25,
                                          label="Adapter scale (0 = no disease knowledge)")
                with gr.Row():
                    seed = gr.Number(value=0, precision=0, minimum=0, label="Seed", elem_id="seed")
                    dice = gr.Button("Random seed", size="sm")
                precision = gr.Radio(["fp32", "bf16"], value="fp32", label="Precision")
                run = gr.Button("Generate", variant="primary", elem_id="generate")
        status = gr.Markdown(elem_id="status")
        gallery = gr.Gallery(label="Generated images", columns=4, height="auto", elem_id="gallery")
        files = gr.File(label="Downloads: PNG, DICOM (marked synthetic) and JSON sidecar per image",
                        file_count="multiple", elem_id="downloads")

        gr.on([report.change, *(o.change for o in overrides)], update_findings, inputs=[report, *overrides],
              outputs=[spans, prompt], show_progress="hidden", api_visibility="private")
        dice.click(lambda: random.randint(0, 2**31 - 1), outputs=seed, api_visibility="private")
        run.click(generate, inputs=[report, *overrides, n, steps, guidance, adapter_scale, seed, precision],
                  outputs=[gallery, files, spans, prompt, status], api_name="generate")
    return page


def launch(model_dir: str | Path, host: str = "127.0.0.1", port: int = 7860, share: bool = False,
           device: str = "cpu", block: bool = True, on_ready=None):
    """Load the model, build the page and serve it; returns the Gradio app when ``block`` is False.
    ``on_ready()``, if given, is called once the model has loaded, just before the server starts."""
    import gradio as gr

    generator = AppGenerator(model_dir, device=device)
    page = build_app(generator)
    if on_ready is not None:
        on_ready()
    page.queue(default_concurrency_limit=1, max_size=64)
    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                              font_mono=["ui-monospace", "monospace"])  # no web fonts: works offline
    page.launch(server_name=host, server_port=port, share=share, theme=theme, ssr_mode=False,
                prevent_thread_lock=not block, quiet=True, allowed_paths=[str(generator.output_root)])
    return page
