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
import json
import sys
from pathlib import Path

HELP = "label reports (14 CheXpert findings, evidence spans) and write the knowledge prompt"

PROGRESS_MIN_REPORTS = 1000


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
    parser.add_argument("--labels", metavar="FINDING=V,...",
                        help="override derived labels for every report, e.g. 'Pleural Effusion=1,Cardiomegaly=0' "
                             "(values 1, 0, -1 or blank)")


def _read_txt(path: Path) -> list[tuple[str, str]]:
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return [(str(i), line) for i, line in enumerate(lines, start=1) if line.strip()]


def _read_jsonl(path: Path) -> list[tuple[str, str]]:
    from diffcxr.errors import ReportError

    items = []
    with path.open(encoding="utf-8", errors="replace") as handle:
        for i, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ReportError(f"{path}:{i}: not valid JSON ({exc.msg})") from None
            if not isinstance(obj, dict) or not isinstance(obj.get("report"), str):
                raise ReportError(f"{path}:{i}: each JSON line needs a string 'report' field (optional 'id')")
            items.append((str(obj.get("id", i)), obj["report"]))
    return items


def _read_csv(path: Path) -> list[tuple[str, str]]:
    from diffcxr.errors import ReportError

    csv.field_size_limit(sys.maxsize)
    with path.open(encoding="utf-8", errors="replace", newline="") as handle:
        reader = csv.DictReader(handle)
        columns = {c.strip().lower(): c for c in (reader.fieldnames or [])}
        text_col = columns.get("report") or columns.get("reports")
        if text_col is None:
            raise ReportError(f"{path}: no 'report' column (columns: {', '.join(reader.fieldnames or []) or 'none'})")
        id_col = columns.get("id")
        return [((row.get(id_col) or str(i)) if id_col else str(i), row.get(text_col) or "")
                for i, row in enumerate(reader, start=1)]


def read_inputs(source: str) -> list[tuple[str, str]]:
    """``(id, report)`` pairs from a reports file or a dataset spec."""
    from diffcxr.errors import ReportError

    if source == "-":
        return [(str(i), line) for i, line in enumerate(sys.stdin.read().splitlines(), start=1) if line.strip()]
    path = Path(source).expanduser()
    if path.is_file():
        suffix = path.suffix.lower()
        readers = {".txt": _read_txt, ".jsonl": _read_jsonl, ".ndjson": _read_jsonl, ".csv": _read_csv}
        if suffix not in readers:
            raise ReportError(f"{path}: unsupported input type {suffix or '(no suffix)'!r}; use .txt (one report per "
                              "line), .jsonl (key 'report') or .csv (column 'report'), or a dataset spec SOURCE:PATH")
        return readers[suffix](path)
    if path.is_dir():
        raise ReportError(f"{path} is a folder; give a reports file or a dataset spec such as iu:{path}")
    head, sep, _ = source.partition(":")
    if sep and len(head) > 1 and head.isalpha():
        from diffcxr.data import read_records

        return [(r.id, r.report or "") for r in read_records(source, derive_labels=False)]
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
    if args.text is not None:
        if not args.text.strip():
            raise ReportError("report text is empty")
        items = [("1", args.text)]
    else:
        items = read_inputs(args.input)
        if not items:
            raise ReportError(f"{args.input}: no reports found")
    fmt = args.format or ("csv" if args.out and args.out.lower().endswith(".csv") else "jsonl")

    out = Path(args.out).expanduser() if args.out else None
    if out is None:
        n_warned = _write_labels(sys.stdout, items, fmt, overrides, args.uncertain_as_positive)
    else:
        if out.is_dir():
            raise ReportError(f"--out {out} is a folder; give a file name such as {out / 'labels.jsonl'}")
        out.parent.mkdir(parents=True, exist_ok=True)
        # the output file appears only when complete; a device, FIFO or link at --out is refused, not replaced
        with atomic_path(out) as partial, partial.open("w", encoding="utf-8", newline="") as handle:
            n_warned = _write_labels(handle, items, fmt, overrides, args.uncertain_as_positive)
    if n_warned and len(items) > 1:
        print(f"diffcxr: warning: {n_warned} of {len(items)} reports were empty, truncated or not English "
              "(the jsonl output lists 'warnings' per report)", file=sys.stderr)
    if out is not None:
        print(f"wrote {len(items)} labeled report(s) to {out}", file=sys.stderr)
    return 0


def _write_labels(handle, items, fmt: str, overrides, uncertain_as_positive: bool) -> int:
    """Label every ``(id, text)`` and write one CSV row or JSON line per report; returns how many warned."""
    from tqdm.auto import tqdm

    from diffcxr.findings import CHEXPERT_FINDINGS
    from diffcxr.knowledge import apply_overrides, knowledge_prompt, label_report

    n_warned, writer = 0, None
    if fmt == "csv":
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["id", "Reports", *CHEXPERT_FINDINGS, "knowledge_prompt"])
    for report_id, text in tqdm(items, desc="labeling", unit="report", disable=len(items) < PROGRESS_MIN_REPORTS):
        result = label_report(text)
        labels = apply_overrides(result.labels, overrides) if overrides else result.labels
        prompt = knowledge_prompt(labels, uncertain_as_positive=uncertain_as_positive)
        if result.warnings:
            n_warned += 1
            if len(items) == 1:
                for warning in result.warnings:
                    print(f"diffcxr: warning: {warning}", file=sys.stderr)
        if writer is not None:
            writer.writerow([report_id, text, *(_csv_value(labels[f]) for f in CHEXPERT_FINDINGS), prompt])
        else:
            row = {"id": report_id, "report": text, "labels": labels, "sections": result.sections,
                   "evidence": [e.to_dict() for e in result.evidence], "knowledge_prompt": prompt}
            if result.warnings:
                row["warnings"] = result.warnings
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return n_warned
