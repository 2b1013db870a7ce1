"""The chest X-ray data layer: image IO, report text, dataset sources and the torch dataset."""

from diffcxr.data.dataset import CXRDataset
from diffcxr.data.image_io import load_image, resize_and_center_crop, save_dicom, save_png
from diffcxr.data.records import Record, patient_split
from diffcxr.data.sources import SOURCES, parse_spec, read_records

__all__ = [
    "CXRDataset",
    "Record",
    "SOURCES",
    "load_image",
    "parse_spec",
    "patient_split",
    "read_records",
    "resize_and_center_crop",
    "save_dicom",
    "save_png",
]
