"""Does ``diffcxr.knowledge.finding_sides`` read the side each phantom report gives its findings? Per-finding table.

    .venv/bin/python benchmarks/finding_sides_accuracy.py [--n 5000] [--seed 0]

Truth: the side the phantom generator drew for each finding (left, right or bilateral; what its report writes).
Prediction: ``finding_sides(label_report(report))``, the sides of the side-aware knowledge prompt
(``adapter.knowledge_sides``). Counted over findings the labeler reads as present and the generator gave a side:
right side, wrong side (a one-sided finding read on the other side, or as bilateral), and no side read.
"""

from __future__ import annotations

import argparse
from collections import Counter


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--show-misses", type=int, default=5, help="print up to this many wrong-side reports")
    args = ap.parse_args()

    from diffcxr.data.phantom import sample_case
    from diffcxr.knowledge import finding_sides, label_report
    from diffcxr.knowledge.sides import LATERAL_FINDINGS

    by_kind = {f.lower().replace(" ", "_"): f for f in LATERAL_FINDINGS}
    counts: dict[tuple[str, str], Counter] = {}
    misses = []
    for i in range(args.n):
        case = sample_case(args.seed, index=i)
        result = label_report(case.report)
        read = finding_sides(result)
        truth: dict[str, set[str]] = {}
        for f in case.findings:
            if f.side in ("left", "right", "bilateral") and f.kind in by_kind:
                truth.setdefault(by_kind[f.kind], set()).add(f.side)
        for finding, sides in truth.items():
            if len(sides) != 1 or result.labels.get(finding) != 1.0:
                continue
            side = sides.pop()
            got = read.get(finding)
            outcome = "right" if got == side else "none" if got is None else "wrong"
            counts.setdefault((finding, "one-sided" if side != "bilateral" else "bilateral"), Counter())[outcome] += 1
            if outcome == "wrong" and side != "bilateral" and len(misses) < args.show_misses:
                misses.append((finding, side, got, case.report))

    print(f"finding_sides vs the phantom generator's sides: {args.n} reports (seed {args.seed})\n")
    print("| finding | side | n | read right | wrong side | no side read |")
    print("|---|---|---:|---:|---:|---:|")
    total = {"one-sided": Counter(), "bilateral": Counter()}
    for (finding, kind), c in sorted(counts.items()):
        n = sum(c.values())
        total[kind].update(c)
        print(f"| {finding} | {kind} | {n} | {c['right'] / n:.3f} | {c['wrong'] / n:.3f} | {c['none'] / n:.3f} |")
    for kind, c in total.items():
        n = sum(c.values())
        if n:
            print(f"\n{kind}: {n} findings, read right {c['right'] / n:.4f}, wrong side {c['wrong'] / n:.4f}, "
                  f"no side {c['none'] / n:.4f}")
    for finding, side, got, report in misses:
        print(f"- {finding}: phantom {side}, read {got}: {report!r}")


if __name__ == "__main__":
    main()
