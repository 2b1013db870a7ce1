"""``CXRDataset``: a torch ``Dataset`` of chest X-rays with their reports and labels.

Every item is a dict::

    pixel_values  float32 tensor 1×S×S in [-1, 1] (MONOCHROME2 polarity)
    report        str
    labels        float32 tensor (14,) over CHEXPERT_FINDINGS: 1 pos, 0 neg, -1 uncertain, NaN not mentioned
    id, patient_id, view, split   str
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

from diffcxr.data.image_io import load_image
from diffcxr.data.records import Record
from diffcxr.errors import DatasetError, ImageReadError

logger = logging.getLogger(__name__)


class CXRDataset(Dataset):
    """Images + reports + labels from a list of :class:`Record` (see :func:`diffcxr.data.read_records`).

    Args:
        records: the samples; records without an image path are rejected.
        image_size: output side ``S`` (shorter side resized, centre crop).
        skip_unreadable: instead of raising on a corrupt/missing image mid-epoch, log it, remember it in
            :attr:`skipped` and return the next readable item. :meth:`skipped_report` lists them.
        mimic_recipe: apply the MIMIC-CXR-JPG conversion (8-bit + histogram equalisation) to every image.
    """

    def __init__(
        self,
        records: Sequence[Record],
        image_size: int = 256,
        *,
        skip_unreadable: bool = False,
        mimic_recipe: bool = False,
    ) -> None:
        if not records:
            raise DatasetError("the dataset is empty (no records after filtering)")
        without_image = [r.id for r in records if r.image_path is None]
        if without_image:
            raise DatasetError(
                f"{len(without_image)} records have no image (e.g. {without_image[0]}); give the image folder "
                "(e.g. iu:REPORTS?images=PNG_DIR) or read records with require_images=True"
            )
        self.records = list(records)
        self.image_size = int(image_size)
        self.skip_unreadable = skip_unreadable
        self.mimic_recipe = mimic_recipe
        self.skipped: dict[str, str] = {}  # id -> reason (in this process)

    @classmethod
    def from_spec(cls, spec: str, image_size: int = 256, *, split: str | None = None, frontal_only: bool = False, **kwargs) -> "CXRDataset":
        """Build from a ``SOURCE:PATH`` spec, keeping only records that have an image."""
        from diffcxr.data.sources import read_records

        records = read_records(spec, split=split, frontal_only=frontal_only, require_images=True,
                               derive_labels=True)
        return cls(records, image_size, **kwargs)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        for offset in range(len(self.records)):
            record = self.records[(index + offset) % len(self.records)]
            if record.id in self.skipped:
                continue
            try:
                pixels = load_image(record.image_path, self.image_size, mimic_recipe=self.mimic_recipe)
            except ImageReadError as exc:
                if not self.skip_unreadable:
                    raise
                self.skipped[record.id] = str(exc)
                logger.warning("skipping unreadable image: %s", exc)
                continue
            return {
                "pixel_values": pixels,
                "report": record.report,
                "labels": torch.from_numpy(record.labels.copy()),
                "id": record.id,
                "patient_id": record.patient_id,
                "view": record.view,
                "split": record.split,
            }
        raise DatasetError(f"no readable image in the dataset ({len(self.skipped)} unreadable)")

    def skipped_report(self) -> str:
        """A human-readable list of the images skipped so far (empty string if none)."""
        if not self.skipped:
            return ""
        lines = [f"{len(self.skipped)} unreadable image(s) skipped:"]
        lines += [f"  {image_id}: {reason}" for image_id, reason in sorted(self.skipped.items())]
        return "\n".join(lines)
