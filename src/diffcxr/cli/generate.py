"""``diffcxr generate``: chest X-rays from report text with a saved DiffCXRPipeline.

Every image gets a JSON sidecar (report, labels, knowledge prompt, its own seed, model, settings) so that it can
be regenerated: image ``k`` of a run with ``--seed S`` used seed ``S + k`` (k counts over all images of the run).
"""

from __future__ import annotations

import argparse

from diffcxr.cli.arguments import count, finite_float, non_negative

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


def read_reports(path: str) -> list[dict]:
    """Reports file → ``[{"id": str, "report": str, "labels": ...}]`` (.txt: one per non-blank line; .jsonl)."""
    import json
    from pathlib import Path

    from diffcxr.errors import DiffCXRError

    p = Path(path)
    if not p.is_file():
        raise DiffCXRError(f"reports file {p} not found")
    items: list[dict] = []
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DiffCXRError(f"reports file {p} is not UTF-8 text (byte {exc.start}); re-save it as UTF-8") from None
    if p.suffix.lower() in (".jsonl", ".ndjson"):
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DiffCXRError(f"{p}:{lineno}: not valid JSON ({exc.msg})") from exc
            if not isinstance(rec, dict) or not isinstance(rec.get("report"), str):
                raise DiffCXRError(f"{p}:{lineno}: each line must be an object with a \"report\" string")
            if rec.get("labels") is not None and not isinstance(rec["labels"], (dict, str)):
                raise DiffCXRError(f"{p}:{lineno}: \"labels\" must be an object such as {{\"Edema\": 1}} or a string "
                                   f"such as \"Edema=1\", got {type(rec['labels']).__name__}")
            items.append({"id": str(rec.get("id", len(items))), "report": rec["report"], "labels": rec.get("labels")})
    elif p.suffix.lower() == ".csv":
        items = _csv_reports(p, text)
    else:
        for line in text.splitlines():
            if line.strip():
                items.append({"id": str(len(items)), "report": line.strip(), "labels": None})
    if not items:
        raise DiffCXRError(f"reports file {p} contains no reports")
    return items


PROMPT_COLUMNS = ("report", "prompt", "annotated_prompt")  # the first one present is read


def _csv_reports(path, text: str) -> list[dict]:
    """A CSV of reports: the first of :data:`PROMPT_COLUMNS` it has (CheXGenBench's prompt files have
    ``prompt`` / ``annotated_prompt``), an optional ``id`` column."""
    import csv
    import io

    from diffcxr.errors import DiffCXRError

    reader = csv.DictReader(io.StringIO(text))
    column = next((c for c in PROMPT_COLUMNS if c in (reader.fieldnames or [])), None)
    if column is None:
        raise DiffCXRError(f"{path}: no report column; the CSV needs one of {', '.join(PROMPT_COLUMNS)} "
                           f"(it has {', '.join(reader.fieldnames or []) or 'no header'})")
    items = []
    for row in reader:
        if (row.get(column) or "").strip():
            items.append({"id": str(row.get("id") or len(items)), "report": row[column].strip(), "labels": None})
    return items


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


def file_stems(items: list[dict]) -> list[str]:
    """One file stem per report, unique even when ids differ only in characters a file name cannot hold
    (``a/b`` and ``a?b`` → ``a_b`` and ``a_b-2``)."""
    stems, seen = [], {}
    for item in items:
        base = _safe_id(item["id"])
        seen[base] = seen.get(base, 0) + 1
        stems.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    return stems


def run(args: argparse.Namespace) -> int:
    import json
    import time
    from pathlib import Path

    import torch

    from diffcxr import __version__
    from diffcxr.data.image_io import save_dicom, save_png
    from diffcxr.errors import DiffCXRError
    from diffcxr.knowledge import parse_label_overrides
    from diffcxr.models.report_encoder import validate_report
    from diffcxr.pipelines import DiffCXRPipeline

    if (args.report is None) == (args.input is None):
        raise DiffCXRError("give either a REPORT argument or --input FILE (not both)")
    for name in ("n", "steps", "batch_size"):
        if getattr(args, name) < 1:
            raise DiffCXRError(f"--{name.replace('_', '-')} must be >= 1")
    items = read_reports(args.input) if args.input else [{"id": "0", "report": args.report, "labels": None}]
    cli_overrides = parse_label_overrides(args.labels) if args.labels else {}
    for i, item in enumerate(items):
        validate_report(item["report"], i if len(items) > 1 else None)
        lab = item["labels"]
        lab = parse_label_overrides(lab) if isinstance(lab, str) else dict(lab or {})
        item["labels"] = {**lab, **cli_overrides} or None

    model_dir = Path(args.model)
    if not (model_dir / "model_index.json").is_file():
        raise DiffCXRError(f"{model_dir} is not a saved DiffCXRPipeline (no model_index.json)")
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
    pipe.set_progress_bar_config(disable=args.quiet)

    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise DiffCXRError(f"--out {out_dir} is a file; give a folder")
    for item, stem in zip(items, file_stems(items)):
        item["stem"] = stem
    targets = [out_dir / f"{it['stem']}_{k:02d}{ext}" for it in items for k in range(args.n)
               for ext in (f".{args.format}", ".json")]
    existing = [t for t in targets if t.exists() or t.is_symlink()]
    if existing and not args.overwrite:
        raise DiffCXRError(f"--out {out_dir} already holds {len(existing)} of the files this run would write "
                           f"(e.g. {existing[0].name}); choose another --out or pass --overwrite")
    out_dir.mkdir(parents=True, exist_ok=True)
    # one job per image: (item, k-th image of that report, global seed)
    jobs = [(item, k, args.seed + g) for g, (item, k) in
            enumerate((it, k) for it in items for k in range(args.n))]
    settings = {"steps": args.steps, "guidance_scale": args.guidance, "adapter_conditioning_scale": args.adapter_scale,
                "uncertain_as_positive": args.uncertain_as_positive, "dtype": args.dtype, "device": device,
                "scheduler": type(pipe.scheduler).__name__, "with_adapter": pipe.knowledge_adapter is not None}
    written, index = 0, []
    t0 = time.perf_counter()
    for start in range(0, len(jobs), args.batch_size):
        chunk = jobs[start:start + args.batch_size]
        gens = [torch.Generator(device="cpu").manual_seed(seed) for _, _, seed in chunk]
        out = pipe([it["report"] for it, _, _ in chunk], num_images_per_prompt=1, num_inference_steps=args.steps,
                   guidance_scale=args.guidance, generator=gens, output_type="np",
                   labels=[it["labels"] for it, _, _ in chunk], adapter_conditioning_scale=args.adapter_scale,
                   uncertain_as_positive=args.uncertain_as_positive, progress=not args.quiet)
        for j, (item, k, seed) in enumerate(chunk):
            stem = f"{item['stem']}_{k:02d}"
            img = out.images[j][..., 0]
            if args.format == "png":
                path = save_png(img, out_dir / f"{stem}.png", bits=args.bits, value_range=(0.0, 1.0))
            else:
                path = save_dicom(img, out_dir / f"{stem}.dcm", value_range=(0.0, 1.0), report=item["report"],
                                  seed=seed, model_name=model_dir.name)
            sidecar = {
                "file": path.name, "report": item["report"], "id": item["id"], "index": k, "seed": seed,
                "labels": out.labels[j], "label_overrides": item["labels"], "knowledge_prompt": out.knowledge_prompts[j],
                "report_sections": out.report_sections[j],
                "model": str(model_dir.resolve()), "settings": settings, "diffcxr_version": __version__,
            }
            (out_dir / f"{stem}.json").write_text(json.dumps(sidecar, indent=2), encoding="utf-8")
            index.append({"prompt": item["report"], "annotated_prompt": item["report"], "img_savename": path.name,
                          "synthetic_filename": path.name, "id": item["id"], "seed": seed})
            written += 1
    write_chexgenbench_csv(out_dir / "generated.csv", index)
    if not args.quiet:
        dt = time.perf_counter() - t0
        print(f"wrote {written} images to {out_dir} ({dt / written:.2f} s/image)")
    return 0
