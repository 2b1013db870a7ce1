"""Figure: the same four reports and noise seeds through a guided teacher and its consistency student.

Columns: a normal report and reports of a large left effusion, marked cardiomegaly and a large right
pneumothorax; image ``j`` of both rows starts from the noise of seed ``j``. Top row: the teacher with
``--teacher-steps`` DPM-Solver++ steps at guidance ``--guidance`` (two forwards per step); bottom row: the
student in its own default steps (one forward each).

    .venv/bin/python benchmarks/teacher_student_grid.py --teacher runs/cpu-mini/pipeline \\
        --student runs/cpu-mini-lcm/pipeline --out docs/images/cpu-mini-teacher-vs-lcm.png
"""

from __future__ import annotations

import argparse

REPORTS = {"normal": "Normal chest radiograph.", "large left effusion": "Large left pleural effusion.",
           "marked cardiomegaly": "Marked cardiomegaly.", "large right pneumothorax": "Large right pneumothorax."}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--student", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--teacher-steps", type=int, default=50)
    ap.add_argument("--guidance", type=float, default=4.0)
    ap.add_argument("--size", type=int, default=128, help="pixels per tile")
    args = ap.parse_args()

    import numpy as np
    import torch
    from PIL import Image, ImageDraw

    from diffcxr.pipelines import DiffCXRPipeline

    teacher, student = DiffCXRPipeline.from_pretrained(args.teacher), DiffCXRPipeline.from_pretrained(args.student)
    rows = [(f"teacher, {args.teacher_steps} DPM-Solver++ steps, w={args.guidance:g} "
             f"({2 * args.teacher_steps} forwards)", teacher, args.teacher_steps),
            (f"consistency student, {student.default_inference_steps} LCM steps "
             f"({student.default_inference_steps} forwards)", student, None)]
    size, pad, n = args.size, 18, len(REPORTS)
    canvas = Image.new("L", (n * size, len(rows) * (size + pad) + pad), 255)
    draw = ImageDraw.Draw(canvas)
    for j, label in enumerate(REPORTS):
        draw.text((j * size + 2, 2), label, fill=0)
    for i, (name, pipe, steps) in enumerate(rows):
        images = pipe(list(REPORTS.values()), num_inference_steps=steps, guidance_scale=args.guidance,
                      output_type="np", generator=[torch.Generator().manual_seed(j) for j in range(n)],
                      progress=False).images
        top = pad + i * (size + pad)
        for j in range(n):
            tile = Image.fromarray((images[j, :, :, 0] * 255).round().astype(np.uint8)).resize((size, size))
            canvas.paste(tile, (j * size, top))
        draw.text((2, top + size + 2), name, fill=0)
    canvas.save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
