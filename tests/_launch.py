"""Launching a command as 2 accelerate processes on this CPU (gloo), as a user with several devices would.

accelerate 1.15: ``accelerate launch --num_processes 2 --cpu`` starts ONE process unless an MPI hostfile is given;
on a machine without CUDA, ``--multi_gpu --num_processes 2`` (torchrun underneath) gives 2 MULTI_CPU/gloo
processes.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def two_processes() -> list[str]:
    """The command prefix that runs ``-m diffcxr ...`` as 2 processes."""
    accelerate = Path(sys.executable).with_name("accelerate")
    return [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no"]
