"""``diffcxr label``: CheXpert-style labels, evidence and the Diff-CXR knowledge prompt for reports.

    diffcxr label "Moderate right pleural effusion. No pneumothorax."
    diffcxr label --input reports.txt|reports.jsonl|reports.csv [--out labels.jsonl] [--format jsonl|csv]
    diffcxr label --input iu:/data/NLMCXR_reports.tgz --out iu_labels.csv
    diffcxr label "..." --uncertain-as-positive --labels "Pleural Effusion=1,Cardiomegaly=0"

Input files: ``.txt`` or ``-`` for standard input (one report per line; blank lines skipped, ids are line
numbers), ``.jsonl`` (key ``report``, optional ``id``), ``.csv`` (column ``report`` or ``Reports``, optional
``id``); anything else that is ``SOURCE:PATH`` is read as a dataset spec (``iu``, ``mimic``, ``covid``, ``csv``
...).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

HELP = "label reports (14 CheXpert findings, evidence spans) and write the knowledge prompt"

PROGRESS_DELAY_S = 2.0  # the progress bar appears only for runs longer than this


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("text", nargs="?", help="one report text (quote it); or use --input")
    parser.add_argument("--input", "-i", metavar="FILE|SPEC",
                        help="reports file (.txt one per line, .jsonl with 'report', .csv with 'report'; '-' = stdin lines) or a dataset "
                             "spec SOURCE:PATH, e.g. iu:NLMCXR_reports.tgz")
    parser.add_argument("--out", "-o", metavar="PATH", help="output file (default: standard output)")
    parser.add_argument("--format", "-f", choices=["jsonl", "csv"],
                        help="jsonl (labels, evidence, knowledge prompt) or csv (CheXpert-style columns); "
                             "default from --out's suffix, else jsonl")
    parser.add_argument("--uncertain-as-positive", action="store_true",
                        help="uncertain findings (-1) count as present in the knowledge prompt")
    parser.add_argument("--sides", action="store_true",
                        help="name each finding's side in the knowledge prompt ('There is left pleural effusion.'), "
                             "the prompt an adapter trained with adapter.knowledge_sides reads (cpu-mini's default)")
    parser.add_argument("--labels", metavar="FINDING=V,...",
                        help="override derived labels for every report, e.g. 'Pleural Effusion=1,Cardiomegaly=0' "
                             "(values 1, 0, -1 or blank)")


def read_inputs(source: str) -> Iterator[tuple[str, str]]:
    """``(id, report)`` pairs from a reports file (streamed) or a dataset spec."""
    from diffcxr.data.report_files import REPORT_FILE_SUFFIXES, iter_report_file
    from diffcxr.errors import ReportError

    path = Path(source).expanduser()
    if source == "-" or path.is_file() or path.suffix.lower() in REPORT_FILE_SUFFIXES:
        return ((item.id, item.report) for item in iter_report_file(source))
    if path.is_dir():
        raise ReportError(f"{path} is a folder; give a reports file or a dataset spec such as iu:{path}")
    head, sep, _ = source.partition(":")
    if sep and len(head) > 1 and head.isalpha():
        from diffcxr.data import read_records

        return ((r.id, r.report or "") for r in read_records(source, derive_labels=False))
    raise ReportError(f"input not found: {source} (give a .txt/.jsonl/.csv file or a dataset spec SOURCE:PATH)")


def _csv_value(value: float | None) -> str:
    return "" if value is None else str(int(value))


def run(args: argparse.Namespace) -> int:
    from diffcxr.atomic import atomic_path
    from diffcxr.errors import ReportError
    from diffcxr.knowledge import parse_label_overrides

    if args.text is not None and args.input:
        raise ReportError("give either a report text or --input, not both")
    if args.text is None and not args.input:
        raise ReportError("no report given: pass the report text as an argument or --input FILE|SPEC")
    overrides = parse_label_overrides(args.labels) if args.labels else {}
    single = args.text is not None
    items = iter([("1", args.text)]) if single else read_inputs(args.input)
    first = next(items, None)  # a missing or unreadable file fails here, before any output exists
    if first is None:
        raise ReportError(f"{args.input}: no reports found")
    items = itertools.chain([first], items)
    fmt = args.format or ("csv" if args.out and args.out.lower().endswith(".csv") else "jsonl")

    out = Path(args.out).expanduser() if args.out else None
    if out is None:
        n, n_warned = _write_labels(sys.stdout, items, fmt, overrides, args.uncertain_as_positive, args.sides, single)
    else:
        if out.is_dir():
            raise ReportError(f"--out {out} is a folder; give a file name such as {out / 'labels.jsonl'}")
        out.parent.mkdir(parents=True, exist_ok=True)
        # the output file appears only when complete; a device, FIFO or link at --out is refused, not replaced
        with atomic_path(out) as partial, partial.open("w", encoding="utf-8", newline="") as handle:
            n, n_warned = _write_labels(handle, items, fmt, overrides, args.uncertain_as_positive, args.sides,
                                        single)
    if n_warned and not single:
        print(f"diffcxr: warning: {n_warned} of {n} reports were empty or not English "
              "(the jsonl output lists 'warnings' per report)", file=sys.stderr)
    if out is not None:
        print(f"wrote {n} labeled report(s) to {out}", file=sys.stderr)
    return 0


def _write_labels(handle, items: Iterable[tuple[str, str]], fmt: str, overrides, uncertain_as_positive: bool,
                  with_sides: bool, single: bool) -> tuple[int, int]:
    """Label every ``(id, text)`` and write one CSV row or JSON line per report; returns (reports, how many warned).
    ``with_sides``: the knowledge prompt names the side the report gives each finding.
    A report over the length limit stops the run with one error (the partial ``--out`` is never kept)."""
    from tqdm.auto import tqdm

    from diffcxr.data.reports import validate_report
    from diffcxr.findings import CHEXPERT_FINDINGS
    from diffcxr.knowledge import apply_overrides, finding_sides, knowledge_prompt, label_report

    n, n_warned, writer = 0, 0, None
    if fmt == "csv":
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["id", "Reports", *CHEXPERT_FINDINGS, "knowledge_prompt"])
    for report_id, text in tqdm(items, desc="labeling", unit="report", delay=PROGRESS_DELAY_S, disable=single):
        validate_report(text, None if single else report_id, allow_empty=not single)
        result = label_report(text)
        labels = apply_overrides(result.labels, overrides) if overrides else result.labels
        sides = finding_sides(result) if with_sides or writer is None else None  # CSV rows carry no sides
        prompt = knowledge_prompt(labels, uncertain_as_positive=uncertain_as_positive,
                                  sides=sides if with_sides else None)
        n += 1
        if result.warnings:
            n_warned += 1
            if single:
                for warning in result.warnings:
                    print(f"diffcxr: warning: {warning}", file=sys.stderr)
        if writer is not None:
            writer.writerow([report_id, text, *(_csv_value(labels[f]) for f in CHEXPERT_FINDINGS), prompt])
        else:
            row = {"id": report_id, "report": text, "labels": labels, "sections": result.sections,
                   "evidence": [e.to_dict() for e in result.evidence], "sides": sides,
                   "knowledge_prompt": prompt}
            if result.warnings:
                row["warnings"] = result.warnings
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return n, n_warned
