"""``diffcxr generate``: chest X-rays from report text with a saved DiffCXRPipeline.

Every image gets a JSON sidecar (report, labels, knowledge prompt, its own seed, model, settings) so that it can
be regenerated: image ``k`` of a run with ``--seed S`` used seed ``S + k`` (k counts over all images of the run).
Under ``accelerate launch`` the batches are shared between the processes (same files whatever their number);
``--resume`` continues a stopped run. The work is :func:`diffcxr.pipelines.batch_generation.generate_to_folder`.

    diffcxr generate --input reports.jsonl --model DIR --out gen/
    accelerate launch --multi_gpu --num_processes 8 -m diffcxr generate --input reports.jsonl --model DIR --out gen/
"""

from __future__ import annotations

import argparse

from diffcxr.cli.arguments import count, finite_float, non_negative

SOLVER_NAMES = ("auto", "dpm++2m", "dpm++3m", "unipc", "deis", "euler", "ddim", "lcm")  # diffcxr.models.diffusion.SOLVERS (tested)

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
    parser.add_argument("--steps", type=count, default=None,
                        help="solver steps (default: the model's own, 50, or 4 for a consistency-distilled model)")
    parser.add_argument("--solver", choices=SOLVER_NAMES, default="auto",
                        help="diffusers solver over the model's schedule (default auto: the model's own, DPM-Solver++ "
                             "2M or LCM for a consistency-distilled model)")
    parser.add_argument("--guidance", type=finite_float, default=None,
                        help="CFG scale w in eps_u + w(eps_c - eps_u); 2 = the authors' s=1 (default: the model's own, "
                             "chosen by measurement when it was trained; 2 for a model that does not record one)")
    parser.add_argument("--labels", help="override derived findings, e.g. 'Pleural Effusion=1,Cardiomegaly=0' (1/0/-1/blank)")
    parser.add_argument("--uncertain-as-positive", action="store_true", help="uncertain findings enter the knowledge prompt")
    parser.add_argument("--adapter-scale", type=finite_float, default=None,
                        help="knowledge adapter conditioning scale, 0 = off (default: the model's own; 1 if unrecorded)")
    parser.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), default="fp32", help="inference dtype (default fp32)")
    parser.add_argument("--device", default=None, help="torch device (default: this process's accelerate device: cuda:RANK or cpu)")
    parser.add_argument("--batch-size", type=count, default=8, help="images per denoiser batch (default 8)")
    parser.add_argument("--format", choices=("png", "dcm"), default="png", help="image file format (default png)")
    parser.add_argument("--bits", type=int, choices=(8, 16), default=8, help="PNG bit depth (default 8)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out: images whose file and sidecar are there and read back are "
                             "skipped (the settings must be the first run's)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace images and sidecars already in --out (default: refuse to overwrite them)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch
    from accelerate import PartialState

    from diffcxr.data.report_files import ReportItem, iter_report_file
    from diffcxr.data.reports import validate_report
    from diffcxr.errors import DiffCXRError
    from diffcxr.knowledge import parse_label_overrides
    from diffcxr.pipelines import DiffCXRPipeline
    from diffcxr.pipelines.batch_generation import GenerationSettings, check_out_dir, generate_to_folder

    if (args.report is None) == (args.input is None):
        raise DiffCXRError("give either a REPORT argument or --input FILE (not both)")
    settings = GenerationSettings(n=args.n, seed=args.seed, steps=args.steps, solver=args.solver, guidance=args.guidance,
                                  adapter_scale=args.adapter_scale, uncertain_as_positive=args.uncertain_as_positive,
                                  labels=parse_label_overrides(args.labels) if args.labels else {}, dtype=args.dtype,
                                  batch_size=args.batch_size, format=args.format, bits=args.bits)
    if args.input:
        first = next(iter_report_file(args.input), None)  # a missing or unreadable file fails here, before the model
        if first is None:
            raise DiffCXRError(f"reports file {args.input} contains no reports")
        items = lambda: iter_report_file(args.input)  # noqa: E731 - read again for the run, streamed
    else:
        validate_report(args.report)
        items = lambda: iter([ReportItem(id="0", report=args.report)])  # noqa: E731

    model_dir = Path(args.model)
    if not (model_dir / "model_index.json").is_file():
        raise DiffCXRError(f"{model_dir} is not a saved DiffCXRPipeline (no model_index.json)")
    out_dir = Path(args.out)
    check_out_dir(out_dir, args.resume, args.overwrite)  # before the model loads; generate_to_folder checks again
    if args.quiet:
        import diffusers.utils.logging as dl
        import transformers.utils.logging as tl

        dl.disable_progress_bar()
        tl.disable_progress_bar()
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    state = PartialState(cpu=not torch.cuda.is_available())  # gloo processes on a CPU machine
    device = args.device or str(state.device)
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
    pipe.set_progress_bar_config(disable=True)  # one bar for the whole run, not one per batch

    total_reports = sum(1 for _ in items()) if args.input else 1  # for the progress bar's ETA (a streamed pass)
    result = generate_to_folder(pipe, items(), out_dir, settings, model_dir=model_dir, input_name=args.input,
                                resume=args.resume, overwrite=args.overwrite, progress=not args.quiet,
                                total_reports=total_reports, state=state)
    if not args.quiet and state.is_main_process:
        done = result["written"]
        rate = f" ({result['seconds'] / done:.2f} s/image)" if done else ""
        skipped = f", {result['skipped']} already there" if result["skipped"] else ""
        scope = f" by process 1 of {result['world']}" if result["world"] > 1 else ""
        print(f"wrote {done} images to {out_dir}{scope}{rate}{skipped}; index {out_dir / 'generated.csv'}")
    return 0
