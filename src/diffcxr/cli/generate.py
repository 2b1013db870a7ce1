"""``diffcxr generate``: chest X-rays from report text with a saved DiffCXRPipeline.

Every image gets a JSON sidecar (report, labels, knowledge prompt, its own seed, model, settings) so that it can
be regenerated: image ``k`` of a run with ``--seed S`` used seed ``S + k`` (k counts over all images of the run).
"""

from __future__ import annotations

import argparse
import itertools
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

from diffcxr.cli.arguments import count, finite_float, non_negative

if TYPE_CHECKING:
    from diffcxr.data.report_files import ReportItem

HELP = "generate chest X-rays from radiology report text with a trained Diff-CXR model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("report", nargs="?", help="report text (findings/impression); or use --input")
    parser.add_argument("--input", help="reports file: .txt (one report per line), .jsonl ({\"report\": ..., "
                                        "optional \"id\", \"labels\"}) or .csv (a 'report', 'prompt' or "
                                        "'annotated_prompt' column, as CheXGenBench's prompt files; optional 'id')")
    parser.add_argument("--model", required=True, help="folder of a saved DiffCXRPipeline")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--n", type=count, default=4, help="images per report (default 4)")
    parser.add_argument("--seed", type=non_negative, default=0, help="base seed; image k uses seed+k (default 0)")
    parser.add_argument("--steps", type=count, default=50, help="solver steps (default 50)")
    parser.add_argument("--guidance", type=finite_float, default=2.0,
                        help="CFG scale w in eps_u + w(eps_c - eps_u); 2 = the authors' s=1 (default 2)")
    parser.add_argument("--labels", help="override derived findings, e.g. 'Pleural Effusion=1,Cardiomegaly=0' (1/0/-1/blank)")
    parser.add_argument("--uncertain-as-positive", action="store_true", help="uncertain findings enter the knowledge prompt")
    parser.add_argument("--adapter-scale", type=finite_float, default=1.0, help="knowledge adapter conditioning scale (default 1)")
    parser.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), default="fp32", help="inference dtype (default fp32)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--batch-size", type=count, default=8, help="images per denoiser batch (default 8)")
    parser.add_argument("--format", choices=("png", "dcm"), default="png", help="image file format (default png)")
    parser.add_argument("--bits", type=int, choices=(8, 16), default=8, help="PNG bit depth (default 8)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace images and sidecars already in --out (default: refuse to overwrite them)")


def write_chexgenbench_csv(path, rows: list[dict]) -> None:
    """Index of a run with the column names CheXGenBench's scripts read: ``prompt`` and ``annotated_prompt`` (the
    report), ``img_savename`` and ``synthetic_filename`` (the image file), plus ``id`` and ``seed``."""
    import csv
    import io

    from diffcxr.atomic import atomic_write_text

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["prompt", "annotated_prompt", "img_savename", "synthetic_filename",
                                                "id", "seed"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def _safe_id(s: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s)[:80] or "report"


def unique_stem(report_id: str, seen: dict[str, int]) -> str:
    """A file stem for a report, unique within a run even when ids differ only in characters a file name cannot
    hold (``a/b`` and ``a?b`` → ``a_b`` and ``a_b-2``); ``seen`` counts the stems given so far."""
    base = _safe_id(report_id)
    seen[base] = seen.get(base, 0) + 1
    return base if seen[base] == 1 else f"{base}-{seen[base]}"


GENERATED_FILE = re.compile(r".+_\d{2,}\.(png|dcm|json)$")  # {stem}_{k:02d}.{ext}: what this command writes


def _image_jobs(items: Iterator[ReportItem], n: int, seed: int) -> Iterator[tuple[ReportItem, str, int, int]]:
    """``(report, stem, k, seed)`` for image ``k`` of every report, streamed; image g of the run uses ``seed + g``."""
    seen: dict[str, int] = {}
    g = 0
    for item in items:
        stem = unique_stem(item.id, seen)
        for k in range(n):
            yield item, stem, k, seed + g
            g += 1


def _batches(jobs: Iterator, size: int) -> Iterator[list]:
    while batch := list(itertools.islice(jobs, size)):
        yield batch


def run(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    import torch
    from tqdm.auto import tqdm

    from diffcxr.data.report_files import ReportItem, iter_report_file
    from diffcxr.data.reports import validate_report
    from diffcxr.errors import DiffCXRError
    from diffcxr.knowledge import parse_label_overrides
    from diffcxr.pipelines import DiffCXRPipeline
    from diffcxr.pipelines.outputs import save_generated

    if (args.report is None) == (args.input is None):
        raise DiffCXRError("give either a REPORT argument or --input FILE (not both)")
    cli_overrides = parse_label_overrides(args.labels) if args.labels else {}
    if args.input:
        items = iter_report_file(args.input)
        first = next(items, None)  # a missing or unreadable file fails here, before the model loads
        if first is None:
            raise DiffCXRError(f"reports file {args.input} contains no reports")
        items = itertools.chain([first], items)
    else:
        validate_report(args.report)
        items = iter([ReportItem(id="0", report=args.report)])

    model_dir = Path(args.model)
    if not (model_dir / "model_index.json").is_file():
        raise DiffCXRError(f"{model_dir} is not a saved DiffCXRPipeline (no model_index.json)")
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise DiffCXRError(f"--out {out_dir} is a file; give a folder")
    if out_dir.is_dir() and not args.overwrite:
        existing = sorted(p.name for p in out_dir.iterdir() if GENERATED_FILE.match(p.name))
        if existing:
            raise DiffCXRError(f"--out {out_dir} already holds {len(existing)} generated files (e.g. {existing[0]}); "
                               "choose another --out or pass --overwrite")
    if args.quiet:
        import diffusers.utils.logging as dl
        import transformers.utils.logging as tl

        dl.disable_progress_bar()
        tl.disable_progress_bar()
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        kind = torch.device(device).type
    except RuntimeError:
        raise DiffCXRError(f"--device {device!r} is not a torch device (e.g. cpu, cuda, cuda:1)") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise DiffCXRError(f"--device {device}: this torch build has no usable CUDA GPU; use --device cpu")
    try:
        pipe = DiffCXRPipeline.from_pretrained(model_dir, dtype=dtype)
    except (OSError, ValueError, KeyError) as exc:
        raise DiffCXRError(f"cannot load the model from {model_dir}: {str(exc).splitlines()[0]}") from exc
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)  # one bar for the whole run below, not one per batch
    out_dir.mkdir(parents=True, exist_ok=True)

    settings = {"steps": args.steps, "guidance_scale": args.guidance, "adapter_conditioning_scale": args.adapter_scale,
                "uncertain_as_positive": args.uncertain_as_positive, "dtype": args.dtype, "device": device,
                "scheduler": type(pipe.scheduler).__name__, "with_adapter": pipe.knowledge_adapter is not None}
    written, index = 0, []
    t0 = time.perf_counter()
    bar = tqdm(desc="generating", unit="image", disable=args.quiet, dynamic_ncols=True)
    for chunk in _batches(_image_jobs(items, args.n, args.seed), args.batch_size):
        labels = []
        for i, (item, _, _, _) in enumerate(chunk):  # checked per batch: a bad report stops the run before its image
            validate_report(item.report, f"{item.id} (line {item.line})" if item.line else None)
            lab = item.labels
            lab = parse_label_overrides(lab) if isinstance(lab, str) else dict(lab or {})
            labels.append({**lab, **cli_overrides} or None)
        gens = [torch.Generator(device="cpu").manual_seed(seed) for _, _, _, seed in chunk]
        out = pipe([item.report for item, _, _, _ in chunk], num_images_per_prompt=1, num_inference_steps=args.steps,
                   guidance_scale=args.guidance, generator=gens, output_type="np", labels=labels,
                   adapter_conditioning_scale=args.adapter_scale, uncertain_as_positive=args.uncertain_as_positive,
                   progress=False)
        for j, (item, stem, k, seed) in enumerate(chunk):
            path = save_generated(out.images[j][..., 0], out_dir, f"{stem}_{k:02d}", report=item.report,
                                  report_id=item.id, index=k, seed=seed, labels=out.labels[j],
                                  label_overrides=labels[j], knowledge_prompt=out.knowledge_prompts[j],
                                  report_sections=out.report_sections[j], model_dir=model_dir, settings=settings,
                                  formats=(args.format,), bits=args.bits)[0]
            index.append({"prompt": item.report, "annotated_prompt": item.report, "img_savename": path.name,
                          "synthetic_filename": path.name, "id": item.id, "seed": seed})
            written += 1
        bar.update(len(chunk))
    bar.close()
    write_chexgenbench_csv(out_dir / "generated.csv", index)
    if not args.quiet:
        dt = time.perf_counter() - t0
        print(f"wrote {written} images to {out_dir} ({dt / written:.2f} s/image)")
    return 0
