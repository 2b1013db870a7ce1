"""Report labeler throughput on one core (single process, no torch).

    .venv/bin/python benchmarks/labeler_speed.py [--repeats 3]

Corpora: the 3,955 IU-Xray reports when ``../shared/data`` is present (findings + impression, mean ≈ 270
characters), and always a built-in set of longer MIMIC-style reports (section headers, ~900 characters).
Prints reports/s (best of ``--repeats`` passes; by process CPU time, which is robust to other load on a shared
machine, and by wall clock) and CPU µs/report, plus the one-off import/compile time.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IU_REPORTS = REPO.parent / "shared" / "data" / "iu-xray" / "NLMCXR_reports.tgz"

MIMIC_STYLE = [
    """FINAL REPORT
EXAMINATION:  CHEST (PA AND LAT)
INDICATION:  ___ year old woman with cough and fever, evaluate for pneumonia.
COMPARISON:  ___.
FINDINGS:
PA and lateral views of the chest provided.  There is a new opacity in the right lower lobe concerning for
pneumonia.  Small right pleural effusion.  No pneumothorax.  The heart is mildly enlarged.  Mediastinal
contour is normal.  Right internal jugular central venous catheter terminates in the mid SVC.  Bony structures
are intact.
IMPRESSION:
Right lower lobe pneumonia with small right pleural effusion.  Mild cardiomegaly.
""",
    """FINDINGS:
Lungs are well expanded.  Mild pulmonary vascular congestion without frank interstitial edema.  Bibasilar
atelectasis, left greater than right.  No focal consolidation.  Stable moderate cardiomegaly.  Tortuous
aorta.  No pleural effusion or pneumothorax.  Endotracheal tube terminates 4 cm above the carina.  Enteric
tube courses below the diaphragm, tip not seen.  Old healed left rib fractures.
IMPRESSION:
1.  Mild pulmonary vascular congestion.  2.  Bibasilar atelectasis; pneumonia cannot be excluded.
3.  Support devices in standard position.
""",
    """FINDINGS:
The cardiomediastinal silhouette is within normal limits.  The lungs are clear without focal consolidation,
pleural effusion or pneumothorax.  No pulmonary edema.  There is a 6 mm nodule projecting over the left
mid lung, which may represent a nipple shadow; repeat with nipple markers is recommended.  Mild degenerative
changes of the thoracic spine.
IMPRESSION:
No acute cardiopulmonary process.  Possible left mid lung nodule versus nipple shadow.
""",
]


def throughput(texts: list[str], repeats: int) -> tuple[float, float]:
    """(best reports/s by process CPU time, best reports/s by wall clock) over ``repeats`` full passes.

    CPU time is the fair number on a shared machine (other processes steal wall-clock time, not CPU time).
    """
    from diffcxr.knowledge import label_report

    cpu_rates, wall_rates = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        for text in texts:
            label_report(text)
        cpu_rates.append(len(texts) / max(time.process_time() - c0, 1e-9))
        wall_rates.append(len(texts) / (time.perf_counter() - w0))
    return max(cpu_rates), max(wall_rates)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    import diffcxr.knowledge  # noqa: F401  (compiles every regular expression)

    import_s = time.perf_counter() - t0
    corpora: list[tuple[str, list[str]]] = []
    if IU_REPORTS.exists():
        from diffcxr.data.iu_reports import read_iu_reports

        corpora.append(("IU-Xray findings+impression", [r.report for r in read_iu_reports(IU_REPORTS)]))
    corpora.append(("MIMIC-style full reports (x700)", MIMIC_STYLE * 700))

    print(f"import + regex compilation: {import_s * 1000:.0f} ms; Python {sys.version.split()[0]}, 1 process\n")
    print("| corpus | reports | mean chars | reports/s (CPU time) | reports/s (wall clock) | CPU µs/report |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, texts in corpora:
        cpu, wall = throughput(texts, args.repeats)
        mean_chars = sum(len(t) for t in texts) / len(texts)
        print(f"| {name} | {len(texts)} | {mean_chars:.0f} | {cpu:,.0f} | {wall:,.0f} | {1e6 / cpu:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
