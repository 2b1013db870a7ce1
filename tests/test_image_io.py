"""Image reading/writing: formats, modes, polarity, preprocessing and bad files."""

from __future__ import annotations

import warnings

import numpy as np
import pydicom
import pytest
import torch
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from diffcxr.data.image_io import (
    load_image,
    mimic_cxr_jpg_recipe,
    read_image_array,
    resize_and_center_crop,
    save_dicom,
    save_png,
)
from diffcxr.errors import ImageReadError


def gradient(height: int = 40, width: int = 60) -> np.ndarray:
    """Left dark → right bright, values 0..1."""
    return np.tile(np.linspace(0.0, 1.0, width, dtype=np.float32), (height, 1))


def write_dicom(path, pixels: np.ndarray, photometric: str = "MONOCHROME2", bits_stored: int = 12, **tags) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, bits_stored, bits_stored - 1, 0
    for key, value in tags.items():
        setattr(ds, key, value)
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    pydicom.dcmwrite(path, ds, enforce_file_format=True)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "I;16", "LA"])
def test_png_modes_load_as_grayscale_in_range(tmp_path, mode):
    base = (gradient() * 255).astype(np.uint8)
    if mode == "I;16":
        image = Image.fromarray((gradient() * 65535).astype(np.uint16))
    else:
        image = Image.fromarray(base, mode="L").convert(mode)
    path = tmp_path / f"x_{mode.replace(';', '')}.png"
    image.save(path)
    tensor = load_image(path)
    assert tensor.shape == (1, 40, 60) and tensor.dtype == torch.float32
    assert -1.0 <= tensor.min() < -0.95 and 0.95 < tensor.max() <= 1.0
    assert tensor[0, :, 0].mean() < tensor[0, :, -1].mean()  # polarity kept


def test_jpeg_loads(tmp_path):
    path = tmp_path / "x.jpg"
    Image.fromarray((gradient() * 255).astype(np.uint8)).save(path, quality=95)
    assert abs(float(load_image(path).mean())) < 0.05


def test_colour_image_is_rejected_unless_allowed(tmp_path):
    rgb = np.zeros((20, 20, 3), np.uint8)
    rgb[..., 0] = 255  # pure red: a photo, not a radiograph
    path = tmp_path / "red.png"
    Image.fromarray(rgb).save(path)
    with pytest.raises(ImageReadError, match="colour image"):
        load_image(path)
    assert load_image(path, allow_colour=True).shape == (1, 20, 20)


def test_gray_stored_as_rgb_with_small_coloured_arrow_is_accepted(tmp_path):
    gray = (gradient(64, 64) * 255).astype(np.uint8)
    rgb = np.stack([gray] * 3, axis=-1)
    rgb[5:8, 5:15] = (255, 0, 0)
    path = tmp_path / "arrow.png"
    Image.fromarray(rgb).save(path)
    assert load_image(path).shape == (1, 64, 64)


def test_missing_corrupt_truncated_files(tmp_path):
    with pytest.raises(ImageReadError, match="not found"):
        load_image(tmp_path / "nope.png")
    (tmp_path / "junk.png").write_bytes(b"this is not a png")
    with pytest.raises(ImageReadError, match="junk.png"):
        load_image(tmp_path / "junk.png")
    good = tmp_path / "good.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200), dtype=np.uint8)).save(good)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ImageReadError, match="truncated"):
        load_image(truncated)


def test_resize_shorter_side_then_center_crop():
    image = torch.linspace(-1, 1, 100)[None, None, :].repeat(1, 50, 1)  # 1×50×100, bright on the right
    out = resize_and_center_crop(image, 32)
    assert out.shape == (1, 32, 32)
    # centre crop of a horizontal ramp: the middle column stays near 0, edges are cut symmetrically
    assert abs(float(out[0, :, 16].mean())) < 0.1
    assert float(out[0, :, 0].mean()) > -0.6  # the far-left (darkest) part was cropped away
    assert resize_and_center_crop(torch.zeros(2, 1, 64, 80), 16).shape == (2, 1, 16, 16)
    upscaled = resize_and_center_crop(torch.zeros(1, 10, 20), 64)
    assert upscaled.shape == (1, 64, 64)


@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
def test_dicom_polarity_and_12_bit_scaling(tmp_path, photometric):
    pixels = np.round(gradient() * 4095)
    path = tmp_path / "x.dcm"
    write_dicom(path, pixels, photometric=photometric)
    tensor = load_image(path)
    assert tensor.min() == -1.0 and tensor.max() == 1.0
    left, right = float(tensor[0, :, 0].mean()), float(tensor[0, :, -1].mean())
    if photometric == "MONOCHROME1":  # high stored value = air = black in display polarity
        assert left > right
    else:
        assert left < right


def test_dicom_modality_lut_and_window(tmp_path):
    pixels = np.round(gradient() * 1000)
    path = tmp_path / "win.dcm"
    # rescale to 0..2000, window [500, 1500]: left third black, right third white
    write_dicom(path, pixels, RescaleSlope=2, RescaleIntercept=0, WindowCenter=1000, WindowWidth=1000)
    array = read_image_array(path)
    assert array[:, :15].max() == 0.0 and array[:, -15:].min() == 1.0
    assert 0.4 < array[:, 30].mean() < 0.6


def test_dicom_without_file_suffix_is_detected(tmp_path):
    path = tmp_path / "IM0001"
    write_dicom(path, np.round(gradient() * 4095))
    assert load_image(path).shape == (1, 40, 60)


def test_mimic_recipe_equalises_histogram():
    low_contrast = 0.4 + 0.2 * gradient(64, 64)
    out = mimic_cxr_jpg_recipe(low_contrast)
    assert out.min() == 0.0 and out.max() == 1.0
    assert abs(float(np.median(out)) - 0.5) < 0.05


def test_png_round_trip_8_and_16_bit(tmp_path):
    image = torch.linspace(-1, 1, 64 * 64).reshape(1, 64, 64)
    for bits, tolerance in ((8, 1 / 127), (16, 1e-4)):
        path = save_png(image, tmp_path / f"x{bits}.png", bits=bits)
        with Image.open(path) as png:
            assert png.mode == ("L" if bits == 8 else "I;16")
        assert torch.allclose(load_image(path), image, atol=tolerance)
    with pytest.raises(ValueError, match="NaN"):
        save_png(torch.full((1, 8, 8), float("nan")), tmp_path / "nan.png")


def test_synthetic_dicom_is_marked_and_round_trips(tmp_path):
    image = torch.rand(1, 32, 48) * 2 - 1
    path = save_dicom(image, tmp_path / "gen.dcm", report="Small right pleural effusion.", seed=7)
    ds = pydicom.dcmread(path)
    assert ds.BurnedInAnnotation == "NO"
    assert list(ds.ImageType)[0] == "DERIVED"
    assert ds.ConversionType == "SYN"
    assert "SYNTHETIC" in ds.SeriesDescription
    assert ds.ImageComments == "Small right pleural effusion."
    assert "seed 7" in ds.DerivationDescription
    assert torch.allclose(load_image(path), image, atol=1 / 2000)


def test_real_dicoms_load_with_right_polarity(shared_data):
    folder = shared_data / "dicom"
    loaded = {}
    for name in ("RG1_UNCR.dcm", "fake_monochrome1.dcm", "siim_pneumothorax_sample.dcm"):
        tensor = load_image(folder / name, 256)
        assert tensor.shape == (1, 256, 256) and -1 <= tensor.min() and tensor.max() <= 1
        loaded[name] = tensor[0]
    for name in ("RG1_UNCR.dcm", "siim_pneumothorax_sample.dcm"):  # real radiographs: mediastinum brighter than lungs
        x = loaded[name]
        mediastinum = x[90:170, 118:138].mean()
        lungs = torch.cat([x[90:170, 50:85], x[90:170, 171:206]], dim=1).mean()
        assert mediastinum > lungs + 0.2, name
    # the fake MONOCHROME1 file carries the SIIM pixels with the opposite photometric tag
    assert torch.allclose(loaded["fake_monochrome1.dcm"], -loaded["siim_pneumothorax_sample.dcm"], atol=1e-5)


def test_undecodable_dicom_compression_names_the_fix(tmp_path):
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEG2000Lossless

    path = tmp_path / "j2k.dcm"
    write_dicom(path, np.zeros((8, 8)))
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + b"\x00" * 64])  # a J2K codestream header, then junk
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(ImageReadError, match=r"JPEG 2000.*dicom-codecs"):
        load_image(path)


def _write_dicom_with_raw_value(path, keyword_value: str, raw: bytes, **tags) -> None:
    """A DICOM whose numeric tag holds ``raw`` bytes (pydicom refuses to write invalid DS values itself).

    ``keyword_value`` is a placeholder that occurs nowhere else in the file: "7E+3" cannot occur in the
    random UIDs (digits and dots, where "7777" sometimes does) nor in pixel data below 1024 (high bytes 0-3).
    """
    write_dicom(path, np.round(gradient() * 1000), **tags)
    data = path.read_bytes()
    assert data.count(keyword_value.encode()) == 1 and len(raw) == len(keyword_value)
    path.write_bytes(data.replace(keyword_value.encode(), raw))


@pytest.mark.parametrize("raw", [b"NaN ", b"abc ", b"inf "])
def test_dicom_with_unusable_window_falls_back_to_full_range_with_one_warning(tmp_path, caplog, raw):
    path = tmp_path / "win.dcm"
    _write_dicom_with_raw_value(path, "7E+3", raw, WindowCenter="500", WindowWidth="7E+3")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pydicom's own "invalid value" warnings are kept inside the reader
        array = read_image_array(path)
    assert np.isfinite(array).all() and array.min() == 0.0 and array.max() == 1.0  # min-max, not black
    assert [r.levelname for r in caplog.records] == ["WARNING"] and "window" in caplog.records[0].getMessage()


@pytest.mark.parametrize("raw", [b"NaN ", b"abc "])
def test_dicom_with_unusable_rescale_slope_is_an_error(tmp_path, raw):
    path = tmp_path / "slope.dcm"
    _write_dicom_with_raw_value(path, "7E+3", raw, RescaleSlope="7E+3", RescaleIntercept="0")
    with pytest.raises(ImageReadError, match="RescaleSlope .* not a finite number"):
        read_image_array(path)


def test_corrupt_compressed_dicom_is_one_error_and_nothing_logged(tmp_path, caplog, capfd):
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEG2000Lossless

    path = tmp_path / "j2k.dcm"
    write_dicom(path, np.zeros((8, 8)))
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(range(256)) * 4])  # SIZ marker, then noise
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(ImageReadError) as info:
        load_image(path)
    assert len(str(info.value).splitlines()) == 1 and "corrupt" in str(info.value)
    assert not caplog.records and capfd.readouterr().err == ""


def test_dicom_without_pixels_is_rejected(tmp_path):
    path = tmp_path / "sr.dcm"
    write_dicom(path, np.zeros((4, 4)))
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(ImageReadError, match="no pixel data"):
        load_image(path)


def test_a_fifo_listed_as_an_image_is_an_error_not_a_hang(tmp_path):
    import os

    from diffcxr.data.image_io import read_image_array
    from diffcxr.errors import ImageReadError

    fifo = tmp_path / "image.png"
    os.mkfifo(fifo)
    with pytest.raises(ImageReadError, match="regular image file"):
        read_image_array(fifo)
