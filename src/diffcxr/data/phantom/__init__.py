"""Digital chest X-ray phantoms: procedural frontal CXRs with known findings, reports and planted noise.

>>> from diffcxr.data.phantom import sample_case, render_phantom
>>> import numpy as np
>>> case = sample_case(np.random.default_rng(0))
>>> img = render_phantom(case, 64)
>>> img.shape, img.dtype.name, 0.0 <= float(img.min()) <= float(img.max()) <= 1.0
((64, 64), 'float32', True)

See docs/phantoms.md for the anatomy, the findings, the report templates and the noise types.
"""

from diffcxr.data.phantom.anatomy import LEFT, RIGHT, Patient, sample_patient
from diffcxr.data.phantom.findings import FINDING_KINDS, PREVALENCE, Finding, sample_findings
from diffcxr.data.phantom.generator import (
    PhantomCase,
    case_row,
    geometry,
    make_case,
    make_phantom_dataset,
    noise_assignment,
    render_phantom,
    sample_case,
)
from diffcxr.data.phantom.noise import IMAGE_NOISE_TYPES, NOISE_TYPES, corrupt_image
from diffcxr.data.phantom.reports import write_report

__all__ = [
    "FINDING_KINDS",
    "IMAGE_NOISE_TYPES",
    "LEFT",
    "NOISE_TYPES",
    "PREVALENCE",
    "RIGHT",
    "Finding",
    "Patient",
    "PhantomCase",
    "case_row",
    "corrupt_image",
    "geometry",
    "make_case",
    "make_phantom_dataset",
    "noise_assignment",
    "render_phantom",
    "sample_case",
    "sample_findings",
    "sample_patient",
    "write_report",
]
