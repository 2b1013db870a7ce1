"""Reading and writing chest X-ray images: PNG, JPEG and DICOM.

Conventions used everywhere in diffcxr:

* **model space**: ``torch.float32`` tensor ``1×H×W`` in ``[-1, 1]``, bright = dense (bone white, air black),
  i.e. MONOCHROME2 display polarity. :func:`load_image` returns this.
* **display space**: ``numpy`` ``H×W`` float in ``[0, 1]`` (or ``uint8``/``uint16``), same polarity.

Preprocessing for a target size ``S`` (64/128/256/512...) is one rule, :func:`resize_and_center_crop`:
resize so the *shorter* side is ``S`` (bilinear with antialiasing, aspect ratio kept), then take the
central ``S×S`` crop.
"""

from __future__ import annotations

import datetime
import logging
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from diffcxr import __version__
from diffcxr.errors import ImageReadError

DICOM_SUFFIXES = {".dcm", ".dicom", ".dic"}
RASTER_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".pgm"}
IMAGE_SUFFIXES = DICOM_SUFFIXES | RASTER_SUFFIXES

# An RGB image whose channels differ by more than this (mean |R-G|+|G-B|, in [0, 1] units) is a colour
# picture, not a radiograph stored as RGB. Small coloured arrows or text stay well below it.
COLOUR_TOLERANCE = 0.04

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------------------------
def load_image(
    path: str | Path,
    size: int | None = None,
    *,
    mimic_recipe: bool = False,
    allow_colour: bool = False,
) -> torch.Tensor:
    """Read a PNG/JPEG/DICOM chest X-ray as a ``1×H×W`` float tensor in ``[-1, 1]`` (MONOCHROME2 polarity).

    Args:
        path: image file. DICOM is recognised by suffix (``.dcm``) or by its ``DICM`` preamble.
        size: if given, apply :func:`resize_and_center_crop` to ``size×size``.
        mimic_recipe: the MIMIC-CXR-JPG conversion: min-max to 8 bit, invert MONOCHROME1, histogram
            equalisation. Off by default (plain min-max / VOI LUT scaling).
        allow_colour: convert genuinely colour images by luminance instead of rejecting them.

    Raises:
        ImageReadError: missing, corrupt, truncated, colour, or undecodable (e.g. JPEG 2000 without a
            decoder) files, with the file name and the fix.
    """
    array = read_image_array(path, allow_colour=allow_colour)
    if mimic_recipe:
        array = mimic_cxr_jpg_recipe(array)
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None] * 2.0 - 1.0
    if size is not None:
        tensor = resize_and_center_crop(tensor, size)
    return tensor


def read_image_array(path: str | Path, *, allow_colour: bool = False) -> np.ndarray:
    """Read an image as an ``H×W`` float32 array in ``[0, 1]``, MONOCHROME2 polarity."""
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"image not found: {path}")
    if path.is_dir():
        raise ImageReadError(f"expected an image file, got a folder: {path}")
    if not path.is_file():  # a FIFO or device would block or never end
        raise ImageReadError(f"expected a regular image file: {path}")
    if path.suffix.lower() in DICOM_SUFFIXES or _has_dicom_preamble(path):
        return _read_dicom(path)
    return _read_raster(path, allow_colour=allow_colour)


def _has_dicom_preamble(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _read_raster(path: Path, *, allow_colour: bool) -> np.ndarray:
    try:
        with Image.open(path) as image:
            image.load()
            return _pil_to_gray(image, path, allow_colour=allow_colour)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"cannot read image {path}: {exc} (corrupt, truncated or not an image?)") from None


def _pil_to_gray(image: Image.Image, path: Path, *, allow_colour: bool) -> np.ndarray:
    mode = image.mode
    if mode == "1":
        return np.asarray(image, dtype=np.float32)
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(image, dtype=np.float32) / 65535.0
    if mode in ("I", "F"):
        array = np.asarray(image, dtype=np.float32)
        if mode == "I":
            top = 65535.0 if array.max() > 255 else 255.0
            return np.clip(array / top, 0.0, 1.0)
        return _min_max(array)
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in ("LA", "RGBA", "PA"):
        # composite over black: transparent border pixels become background, not noise
        background = Image.new("RGBA", image.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")
        mode = "RGB"
    if mode == "L":
        return np.asarray(image, dtype=np.float32) / 255.0
    if mode in ("RGB", "YCbCr", "CMYK", "LAB", "HSV"):
        rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
        spread = float(np.abs(rgb[..., 0] - rgb[..., 1]).mean() + np.abs(rgb[..., 1] - rgb[..., 2]).mean())
        if spread > COLOUR_TOLERANCE and not allow_colour:
            raise ImageReadError(
                f"{path} is a colour image (channel spread {spread:.3f}), not a grayscale radiograph; "
                "pass allow_colour=True (CLI: --allow-colour) to convert it by luminance"
            )
        return rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    raise ImageReadError(f"{path}: unsupported image mode {mode!r}")


def _min_max(array: np.ndarray) -> np.ndarray:
    array = array.astype(np.float32, copy=False)
    low, high = float(array.min()), float(array.max())
    if high <= low:
        return np.zeros_like(array, dtype=np.float32)
    return (array - low) / (high - low)


def _dicom_number(dataset, keyword: str) -> float | None:
    """The first value of a numeric DICOM attribute, or ``None`` when it is absent, not a number or not finite."""
    raw = dataset.get(keyword)
    if raw is None or raw == "":
        return None
    try:
        value = float(np.atleast_1d(raw)[0])
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) else None


def _read_dicom(path: Path) -> np.ndarray:
    # pydicom reports invalid values and failed decoders through warnings and its logger as well as by
    # raising: keep that to the one error (or one warning) below
    pydicom_logger = logging.getLogger("pydicom")
    level, pydicom_logger.level = pydicom_logger.level, logging.CRITICAL
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _decode_dicom(path)
    finally:
        pydicom_logger.level = level


def _decode_dicom(path: Path) -> np.ndarray:
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        dataset = pydicom.dcmread(path)
    except (InvalidDicomError, OSError, EOFError, ValueError) as exc:
        raise ImageReadError(f"cannot read DICOM {path}: {exc}") from None
    if "PixelData" not in dataset:
        raise ImageReadError(f"DICOM {path} holds no pixel data (a report or structured document?)")
    try:
        pixels = dataset.pixel_array
    except Exception as exc:  # pydicom raises RuntimeError/NotImplementedError/ValueError by handler
        syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(syntax, "name", str(syntax))
        reason = " ".join(str(exc).split())[:300]
        raise ImageReadError(
            f"cannot decode DICOM pixel data of {path} (transfer syntax {name}): {reason}; a corrupt file, or for "
            "JPEG/JPEG 2000/JPEG-LS compressed files install the decoders: pip install 'diffcxr[dicom-codecs]'"
        ) from None
    if int(getattr(dataset, "NumberOfFrames", 1) or 1) > 1:
        raise ImageReadError(f"DICOM {path} is multi-frame ({dataset.NumberOfFrames} frames); expected one radiograph")
    photometric = str(getattr(dataset, "PhotometricInterpretation", "MONOCHROME2")).upper()
    if int(getattr(dataset, "SamplesPerPixel", 1)) != 1 or not photometric.startswith("MONOCHROME"):
        raise ImageReadError(f"DICOM {path} is {photometric}, not a grayscale (MONOCHROME1/2) radiograph")
    for keyword in ("RescaleSlope", "RescaleIntercept"):
        if keyword in dataset and _dicom_number(dataset, keyword) is None:
            raise ImageReadError(f"DICOM {path}: {keyword} is {dataset[keyword].value!r}, not a finite number; "
                                 "its pixel values cannot be mapped to attenuation")
    values = np.asarray(apply_modality_lut(pixels, dataset), dtype=np.float32)
    if not np.isfinite(values).all():
        raise ImageReadError(f"DICOM {path}: the modality LUT gives non-finite pixel values")
    center, width = _dicom_number(dataset, "WindowCenter"), _dicom_number(dataset, "WindowWidth")
    has_window = "WindowCenter" in dataset or "WindowWidth" in dataset
    if "VOILUTSequence" in dataset:
        array = _min_max(np.asarray(apply_voi_lut(values, dataset, index=0), dtype=np.float32))
    elif center is not None and width is not None and width > 0:
        # linear VOI window (the common case): clip to the window and map it onto [0, 1]
        width = max(width, 1.0)
        array = np.clip((values - (center - width / 2.0)) / width, 0.0, 1.0)
    else:  # no usable VOI: min-max over the stored values (12/16-bit alike)
        if has_window:
            logger.warning("DICOM %s: window centre/width %r/%r is not a usable number pair; using the full value range",
                           path, dataset.get("WindowCenter"), dataset.get("WindowWidth"))
        array = _min_max(values)
    if photometric == "MONOCHROME1":  # bright = air in MONOCHROME1: flip to display polarity
        array = 1.0 - array
    return array


def mimic_cxr_jpg_recipe(array: np.ndarray) -> np.ndarray:
    """MIMIC-CXR-JPG conversion of a ``[0, 1]`` MONOCHROME2 image: 8-bit quantisation + histogram equalisation.

    (Min-max scaling and MONOCHROME1 inversion already happened when the DICOM was read.)
    """
    quantised = np.round(_min_max(array) * 255.0).astype(np.uint8)
    histogram = np.bincount(quantised.ravel(), minlength=256)
    cdf = histogram.cumsum()
    nonzero = cdf[cdf > 0]
    if nonzero.size == 0 or cdf[-1] == nonzero[0]:
        return quantised.astype(np.float32) / 255.0
    lut = np.clip(np.round((cdf - nonzero[0]) / (cdf[-1] - nonzero[0]) * 255.0), 0, 255).astype(np.uint8)
    return lut[quantised].astype(np.float32) / 255.0


# ----------------------------------------------------------------------------------------------------------
# preprocessing
# ----------------------------------------------------------------------------------------------------------
def resize_and_center_crop(image: torch.Tensor, size: int) -> torch.Tensor:
    """Resize ``C×H×W`` (or ``B×C×H×W``) so the shorter side is ``size``, then centre-crop ``size×size``.

    Bilinear interpolation with antialiasing (so downsizing a 2,000-px radiograph does not alias); its
    weights are non-negative, so values stay within the input range.
    """
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    batched = image.ndim == 4
    x = image if batched else image[None]
    height, width = x.shape[-2:]
    scale = size / min(height, width)
    new_h, new_w = max(size, round(height * scale)), max(size, round(width * scale))
    if (new_h, new_w) != (height, width):
        x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    x = x[..., top : top + size, left : left + size]
    return x if batched else x[0]


# ----------------------------------------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------------------------------------
def to_display_array(image: torch.Tensor | np.ndarray | Image.Image, value_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """Any single image (``1×H×W``/``H×W``/``H×W×1`` tensor or array, or a PIL image) → ``H×W`` float in ``[0, 1]``.

    ``value_range`` is the range of the *input* values (``(-1, 1)`` for model space, ``(0, 1)`` for display
    space); it is ignored for PIL images and integer arrays (scaled by their dtype).
    """
    if isinstance(image, Image.Image):
        return _pil_to_gray(image, Path("<image>"), allow_colour=True)
    array = image.detach().float().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    array = np.squeeze(array)
    if array.ndim != 2:
        raise ValueError(f"expected a single grayscale image, got shape {tuple(np.shape(image))}")
    if np.issubdtype(array.dtype, np.integer):
        return array.astype(np.float32) / float(np.iinfo(array.dtype).max)
    low, high = value_range
    array = (array.astype(np.float32) - low) / (high - low)
    if not np.isfinite(array).all():
        raise ValueError("image contains NaN or infinite values; refusing to save garbage")
    return np.clip(array, 0.0, 1.0)


def save_png(image, path: str | Path, bits: int = 8, value_range: tuple[float, float] = (-1.0, 1.0)) -> Path:
    """Save one grayscale image as an 8- or 16-bit PNG. See :func:`to_display_array` for accepted inputs."""
    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, got {bits}")
    array = to_display_array(image, value_range)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if bits == 8:
        Image.fromarray(np.round(array * 255.0).astype(np.uint8), mode="L").save(path, format="PNG")
    else:
        Image.fromarray(np.round(array * 65535.0).astype(np.uint16)).save(path, format="PNG")
    return path


SYNTHETIC_SERIES_DESCRIPTION = "SYNTHETIC CXR generated by diffcxr - not a patient"  # LO: <= 64 chars


def save_dicom(
    image,
    path: str | Path,
    *,
    value_range: tuple[float, float] = (-1.0, 1.0),
    report: str | None = None,
    series_description: str = SYNTHETIC_SERIES_DESCRIPTION,
    seed: int | None = None,
    model_name: str | None = None,
) -> Path:
    """Save a generated image as a 16-bit (12 bits stored) MONOCHROME2 DICOM marked as synthetic.

    The header says it plainly: Secondary Capture SOP class, ``ConversionType`` SYN (synthetic image),
    ``ImageType`` DERIVED\\SECONDARY, ``BurnedInAnnotation`` NO, a SeriesDescription saying it is generated,
    the generating report in ImageComments, and a patient name that is no person.
    """
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, generate_uid

    array = np.round(to_display_array(image, value_range) * 4095.0).astype(np.uint16)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sop_class = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture Image Storage
    sop_instance = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    now = datetime.datetime.now(datetime.timezone.utc)
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop_instance
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
    ds.Modality = "OT"
    ds.ConversionType = "SYN"
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.BurnedInAnnotation = "NO"
    ds.SeriesDescription = series_description
    ds.DerivationDescription = f"Generated by diffcxr {__version__}" + (f" model {model_name}" if model_name else "") + (f" seed {seed}" if seed is not None else "")
    ds.PatientName = "SYNTHETIC^DIFFCXR"
    ds.PatientID = "SYNTHETIC"
    ds.BodyPartExamined = "CHEST"
    ds.Manufacturer = "diffcxr"
    ds.SoftwareVersions = __version__
    if report:
        ds.ImageComments = report[:10240]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = array.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0
    ds.WindowCenter, ds.WindowWidth = 2047.5, 4095
    ds.PixelData = array.tobytes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path
