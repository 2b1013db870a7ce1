"""Generating a synthetic dataset into a folder: streamed, sharded over ``accelerate`` processes, resumable.

The run is a fixed sequence of image jobs: image ``k`` of report ``r`` is job ``g`` (reports in file order, ``n``
images each) and uses seed ``seed + g``. Jobs are cut into batches of ``batch_size`` in that order, and batch
``b`` belongs to process ``b % world``. So a batch holds the same images whatever the process count, and one
process, two processes or eight GPUs write the same files (byte-identical on the same hardware).

Each image is written to a temporary file and renamed, its JSON sidecar last: an image counts as done when its
sidecar names the same report and seed and its image file reads back. ``resume=True`` skips done images (a
killed run continues where it stopped); the run's settings are recorded in ``generate_run.yaml`` and a resume with
other settings is refused. Each process appends its images to ``index.rankR.jsonl`` as it goes; at the end the
main process merges them (streaming, in job order) into ``generated.csv`` with CheXGenBench's column names.
Input is streamed and nothing grows with the number of images except the set of file stems given so far.
"""

from __future__ import annotations

import csv
import heapq
import itertools
import json
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from diffcxr.data.report_files import ReportItem
from diffcxr.errors import DiffCXRError

__all__ = ["GenerationSettings", "ImageJob", "image_jobs", "unique_stem", "GENERATED_FILE", "RUN_RECORD",
           "generate_to_folder", "check_out_dir"]

GENERATED_FILE = re.compile(r".+_\d{2,}\.(png|dcm|json)$")  # {stem}_{k:02d}.{ext}: what a run writes
RUN_RECORD = "generate_run.yaml"  # not .json: readers glob *.json for sidecars
INDEX_COLUMNS = ["prompt", "annotated_prompt", "img_savename", "synthetic_filename", "id", "seed"]


@dataclass(frozen=True)
class GenerationSettings:
    """Everything that decides a run's files (a resume must repeat it exactly)."""

    n: int = 4
    seed: int = 0
    steps: int | None = None  # None: the pipeline's default_inference_steps (50; few for a consistency student)
    solver: str = "auto"  # a key of diffcxr.models.diffusion.SOLVERS, or auto: the pipeline's own
    guidance: float | None = None  # None: the pipeline's default_guidance_scale (its training config's choice)
    adapter_scale: float | None = None  # None: the pipeline's default_adapter_scale
    uncertain_as_positive: bool = False
    labels: dict = field(default_factory=dict)  # overrides for every report, on top of each report's own
    dtype: str = "fp32"
    batch_size: int = 8
    format: str = "png"
    bits: int = 8


@dataclass(frozen=True)
class ImageJob:
    """Image ``k`` of ``item``: job number ``g`` of the run, file stem ``stem``, seed ``seed``."""

    item: ReportItem
    stem: str
    k: int
    g: int
    seed: int

    @property
    def name(self) -> str:
        return f"{self.stem}_{self.k:02d}"


def _safe_id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:80] or "report"


def unique_stem(report_id: str, seen: dict[str, int]) -> str:
    """A file stem for a report, unique within a run even when ids differ only in characters a file name cannot
    hold (``a/b`` and ``a?b`` → ``a_b`` and ``a_b-2``); ``seen`` counts the stems given so far."""
    base = _safe_id(report_id)
    seen[base] = seen.get(base, 0) + 1
    return base if seen[base] == 1 else f"{base}-{seen[base]}"


def image_jobs(items: Iterable[ReportItem], n: int, seed: int) -> Iterator[ImageJob]:
    """Every image of the run in order, streamed: image ``k`` of the ``r``-th report is job ``g = r*n + k``."""
    seen: dict[str, int] = {}
    g = 0
    for item in items:
        stem = unique_stem(item.id, seen)
        for k in range(n):
            yield ImageJob(item, stem, k, g, seed + g)
            g += 1


def _batches(jobs: Iterator[ImageJob], size: int) -> Iterator[list[ImageJob]]:
    while batch := list(itertools.islice(jobs, size)):
        yield batch


def check_out_dir(out_dir: str | Path, resume: bool = False, overwrite: bool = False) -> None:
    """Refuse an ``out_dir`` that is a file, or that holds a run's images unless told to continue or replace it."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DiffCXRError(f"--out {out_dir} is a file; give a folder")
    if resume and overwrite:
        raise DiffCXRError("give --resume (continue the run in --out) or --overwrite (replace it), not both")
    existing = sorted(p.name for p in out_dir.iterdir() if GENERATED_FILE.match(p.name)) if out_dir.is_dir() else []
    if existing and not (overwrite or resume):
        raise DiffCXRError(f"--out {out_dir} already holds {len(existing)} generated files (e.g. {existing[0]}); "
                           "continue that run with --resume, choose another --out or pass --overwrite")


def _is_done(job: ImageJob, out_dir: Path, fmt: str) -> bool:
    """The image and its sidecar are there, the sidecar names this report and seed, the image reads back."""
    try:
        sidecar = json.loads((out_dir / f"{job.name}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if sidecar.get("seed") != job.seed or sidecar.get("report") != job.item.report:
        return False
    image = out_dir / f"{job.name}.{fmt}"
    if fmt == "png":
        from PIL import Image

        try:
            with Image.open(image) as handle:
                handle.verify()
        except Exception:  # noqa: BLE001 - any failure to read back means "not done"
            return False
        return True
    return image.is_file() and image.stat().st_size > 0


def _check_run_record(out_dir: Path, record: dict, resume: bool) -> None:
    import yaml

    path = out_dir / RUN_RECORD
    if resume and path.is_file():
        try:
            old = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, ValueError):
            old = None
        if isinstance(old, dict) and old != record:
            differ = sorted(k for k in set(old) | set(record) if old.get(k) != record.get(k))
            raise DiffCXRError(f"--resume: {out_dir} holds a run with other settings (differs in {', '.join(differ)});"
                               " repeat the first run's options or choose another --out")


def generate_to_folder(pipe, items: Iterable[ReportItem], out_dir: str | Path, settings: GenerationSettings, *,
                       model_dir: str | Path, input_name: str | None = None, resume: bool = False,
                       overwrite: bool = False, progress: bool = True, total_reports: int | None = None,
                       state=None) -> dict:
    """Generate every image of ``items`` into ``out_dir`` with ``pipe``, this process's share of the batches.

    ``state`` is accelerate's ``PartialState`` (default: the current one; a plain run is one process). Returns
    ``{"written", "skipped", "seconds", "world"}`` for this process. Raises :class:`DiffCXRError` for an ``out_dir``
    that holds another run's images (unless ``overwrite`` or, for the same run, ``resume``).
    """
    import torch
    import yaml
    from accelerate import PartialState
    from tqdm.auto import tqdm

    from diffcxr.atomic import atomic_write_text
    from diffcxr.models.diffusion import resolve_solver, solver_scheduler

    # what actually runs, recorded as such (a default and its explicit value are the same run for --resume)
    guidance, adapter_scale = pipe.sampling_scales(settings.guidance, settings.adapter_scale)
    settings = replace(settings, solver=resolve_solver(settings.solver, pipe.scheduler),
                       steps=settings.steps or pipe.default_inference_steps, guidance=guidance,
                       adapter_scale=adapter_scale)
    state = state or PartialState(cpu=not torch.cuda.is_available())
    rank, world = state.process_index, state.num_processes
    out_dir, model_dir = Path(out_dir), Path(model_dir)
    check_out_dir(out_dir, resume, overwrite)
    record = {"model": str(model_dir.resolve()), "input": input_name, **asdict(settings)}
    _check_run_record(out_dir, record, resume)
    state.wait_for_everyone()
    if state.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out_dir / RUN_RECORD, yaml.safe_dump(record, sort_keys=False))
        for part in out_dir.glob("index.rank*.jsonl"):  # parts of an earlier (perhaps other-sized) launch
            part.unlink()
        for partial in out_dir.glob(".*.tmp"):  # files a killed run was writing
            partial.unlink()
    state.wait_for_everyone()

    pipe.scheduler = solver_scheduler(settings.solver, pipe.scheduler.config)
    run_settings = {"steps": settings.steps, "solver": settings.solver, "guidance_scale": settings.guidance,
                    "adapter_conditioning_scale": settings.adapter_scale,
                    "uncertain_as_positive": settings.uncertain_as_positive, "dtype": settings.dtype,
                    "scheduler": type(pipe.scheduler).__name__, "with_adapter": pipe.knowledge_adapter is not None}
    total = None
    if total_reports is not None:
        n_batches = -(-total_reports * settings.n // settings.batch_size)
        mine = len(range(rank, n_batches, world))
        total = min(mine * settings.batch_size, total_reports * settings.n)
    bar = tqdm(total=total, desc="generating" if world == 1 else f"generating (process 1 of {world})",
               unit="image", disable=not (progress and state.is_main_process), dynamic_ncols=True)
    written = skipped = 0
    t0 = time.perf_counter()
    with (out_dir / f"index.rank{rank}.jsonl").open("w", encoding="utf-8") as index:
        for b, batch in enumerate(_batches(image_jobs(items, settings.n, settings.seed), settings.batch_size)):
            if b % world != rank:
                continue
            todo = [job for job in batch if not (resume and _is_done(job, out_dir, settings.format))]
            if todo:
                _draw_batch(pipe, batch, todo, out_dir, settings, model_dir, run_settings)
            written += len(todo)
            skipped += len(batch) - len(todo)
            for job in batch:
                file = f"{job.name}.{settings.format}"
                index.write(json.dumps({"g": job.g, "prompt": job.item.report, "annotated_prompt": job.item.report,
                                        "img_savename": file, "synthetic_filename": file, "id": job.item.id,
                                        "seed": job.seed}, ensure_ascii=False) + "\n")
            index.flush()
            bar.update(len(batch))
    bar.close()
    seconds = time.perf_counter() - t0
    state.wait_for_everyone()
    if state.is_main_process:
        merge_index(out_dir)
    return {"written": written, "skipped": skipped, "seconds": seconds, "world": world}


def _draw_batch(pipe, batch: list[ImageJob], todo: list[ImageJob], out_dir: Path, settings: GenerationSettings,
                model_dir: Path, run_settings: dict) -> None:
    """Sample the whole ``batch`` (its images depend on its composition) and write the images of ``todo``."""
    import torch

    from diffcxr.data.reports import validate_report
    from diffcxr.knowledge import parse_label_overrides
    from diffcxr.pipelines.outputs import save_generated

    labels = []
    for job in batch:  # checked per batch: a bad report stops the run before its image
        item = job.item
        validate_report(item.report, f"{item.id} (line {item.line})" if item.line else None)
        own = parse_label_overrides(item.labels) if isinstance(item.labels, str) else dict(item.labels or {})
        labels.append({**own, **settings.labels} or None)
    out = pipe([job.item.report for job in batch], num_images_per_prompt=1, num_inference_steps=settings.steps,
               guidance_scale=settings.guidance, output_type="np", labels=labels,
               generator=[torch.Generator(device="cpu").manual_seed(job.seed) for job in batch],
               adapter_conditioning_scale=settings.adapter_scale,
               uncertain_as_positive=settings.uncertain_as_positive, progress=False)
    for j, job in enumerate(batch):
        if job in todo:
            save_generated(out.images[j][..., 0], out_dir, job.name, report=job.item.report, report_id=job.item.id,
                           index=job.k, seed=job.seed, labels=out.labels[j], label_overrides=labels[j],
                           knowledge_prompt=out.knowledge_prompts[j], report_sections=out.report_sections[j],
                           model_dir=model_dir, settings=run_settings, formats=(settings.format,), bits=settings.bits)


def merge_index(out_dir: Path) -> Path:
    """Merge the processes' ``index.rank*.jsonl`` (each in job order) into ``generated.csv``, streaming."""
    from diffcxr.atomic import atomic_path

    parts = sorted(out_dir.glob("index.rank*.jsonl"))
    handles = [part.open(encoding="utf-8") for part in parts]
    try:
        rows = heapq.merge(*((json.loads(line) for line in handle) for handle in handles), key=lambda row: row["g"])
        target = out_dir / "generated.csv"
        with atomic_path(target) as partial, partial.open("w", encoding="utf-8", newline="") as out:
            writer = csv.DictWriter(out, fieldnames=INDEX_COLUMNS, extrasaction="ignore", lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
    finally:
        for handle in handles:
            handle.close()
    for part in parts:
        part.unlink()
    return target
