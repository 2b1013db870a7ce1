"""Digital chest phantoms: determinism, value range, anatomy, and that each finding shows where it should."""

from __future__ import annotations

import numpy as np
import pytest

from diffcxr.data.phantom import (
    IMAGE_NOISE_TYPES,
    LEFT,
    RIGHT,
    Finding,
    corrupt_image,
    geometry,
    make_case,
    render_phantom,
    sample_case,
)
from diffcxr.data.phantom.anatomy import lateral_border
from diffcxr.errors import DiffCXRError

SIZE = 96


def region_mean(img: np.ndarray, patient, x: float, y: float, r: float = 0.06) -> float:
    """Mean of a square of half-width ``r`` (normalised units) around patient point (x, y)."""
    size = img.shape[0]
    xi, yi = patient.to_image(x, y)
    c, rr = int((float(xi) + 1) / 2 * size), int((float(yi) + 1) / 2 * size)
    h = max(1, int(r / 2 * size))
    return float(img[max(0, rr - h): rr + h + 1, max(0, c - h): c + h + 1].mean())


def pair(findings, seed=3):
    """(normal image, image with findings, case with findings) for the same patient and film noise."""
    base = make_case([], seed=seed)
    case = make_case(findings, seed=seed)
    return render_phantom(base, SIZE), render_phantom(case, SIZE), case


def test_deterministic_from_seed():
    a, b = sample_case(7, index=3), sample_case(7, index=3)
    assert a.report == b.report and a.labels == b.labels
    np.testing.assert_array_equal(render_phantom(a, 64), render_phantom(b, 64))
    c = sample_case(8, index=3)
    assert not np.array_equal(render_phantom(a, 64), render_phantom(c, 64))
    g = np.random.default_rng(5)
    assert sample_case(g).seed != sample_case(g).seed


@pytest.mark.parametrize("size", [32, 64, 100, 256])
def test_shape_range_and_contrast(size):
    img = render_phantom(sample_case(1, index=2), size)
    assert img.shape == (size, size) and img.dtype == np.float32
    assert 0.0 <= img.min() and img.max() <= 1.0
    assert img.std() > 0.08  # not blank


def test_too_small_size_is_a_clear_error():
    with pytest.raises(DiffCXRError):
        render_phantom(sample_case(0), 8)


def test_radiograph_anatomy_lungs_dark_mediastinum_and_abdomen_bright():
    case = make_case([], seed=11)
    img = render_phantom(case, 128)
    p = case.patient
    lungs = [region_mean(img, p, s * 0.5, -0.25) for s in (RIGHT, LEFT)]
    mediastinum = region_mean(img, p, 0.0, 0.05, r=0.05)
    abdomen = region_mean(img, p, 0.0, 0.8)
    outside = float(img[:3, :3].mean())  # air above the shoulder, outside the body
    assert max(lungs) + 0.15 < mediastinum and max(lungs) + 0.15 < abdomen
    assert outside < min(lungs)


def test_cardiomegaly_widens_the_heart():
    base, img, case = pair([Finding("cardiomegaly", None, 3)])
    normal = geometry(make_case([], seed=3))
    big = geometry(case)
    assert normal.cardiothoracic_ratio < 0.5 < 0.64 <= big.cardiothoracic_ratio
    # just outside the normal left heart border, low down: lung before, heart after
    y = normal.dome_y[LEFT] - 0.08
    x = normal.heart_left + 0.06
    assert region_mean(img, case.patient, x, y, 0.04) > region_mean(base, case.patient, x, y, 0.04) + 0.05


def test_effusion_brightens_the_lower_lateral_zone_of_its_side_only():
    base, img, case = pair([Finding("pleural_effusion", "right", 3)])
    p = case.patient
    y = p.cp_y[RIGHT] - 0.12
    x = -(float(lateral_border(p, RIGHT, np.array([y]))[0]) - 0.12)  # patient right = image left
    assert region_mean(img, p, x, y) > region_mean(base, p, x, y) + 0.08
    yl = p.cp_y[LEFT] - 0.12
    xl = float(lateral_border(p, LEFT, np.array([yl]))[0]) - 0.12
    assert abs(region_mean(img, p, xl, yl) - region_mean(base, p, xl, yl)) < 0.01


def test_pneumothorax_darkens_the_lateral_rim():
    base, img, case = pair([Finding("pneumothorax", "left", 3, detail={"apical": False})])
    p = case.patient
    x = float(lateral_border(p, LEFT, np.array([-0.1]))[0]) - 0.08
    assert region_mean(img, p, x, -0.1, 0.04) < region_mean(base, p, x, -0.1, 0.04) - 0.02


@pytest.mark.parametrize("lobe,y_of", [("lower", lambda p: p.cp_y[LEFT] - 0.2), ("upper", lambda p: p.apex_y + 0.3)])
def test_consolidation_is_in_its_lobe(lobe, y_of):
    f = Finding("consolidation", "left", 3, detail={"pattern": "lobar", "lobe": lobe, "seed": 1})
    base, img, case = pair([f])
    p = case.patient
    y = y_of(p)
    assert region_mean(img, p, 0.5, y, 0.1) > region_mean(base, p, 0.5, y, 0.1) + 0.04
    assert abs(region_mean(img, p, -0.5, y, 0.1) - region_mean(base, p, -0.5, y, 0.1)) < 0.01


def test_lesion_edema_atelectasis_devices_fracture_change_the_image():
    kinds = [
        Finding("lung_lesion", "right", 3, detail={"type": "mass", "size_cm": 6.0, "zone": "mid", "pos": 0.5}),
        Finding("edema", "bilateral", 3, detail={"kerley": True}),
        Finding("atelectasis", "bilateral", 2, detail={"seed": 2}),
        Finding("support_devices", None, 1, detail={"devices": ["ett", "pacemaker"], "cvc_side": "right"}),
        Finding("fracture", "right", 3, detail={"rib": 5, "t": 0.7, "displaced": True}),
        Finding("enlarged_cardiomediastinum", None, 3),
        Finding("lung_opacity", "right", 2, detail={"pattern": "patchy", "lobe": "lower", "seed": 4}),
    ]
    base = render_phantom(make_case([], seed=3), SIZE)
    for f in kinds:
        img = render_phantom(make_case([f], seed=3), SIZE)
        diff = np.abs(img - base)
        assert diff.max() > 0.1, f.kind
        assert (diff > 0.02).mean() < 0.5, f.kind  # local, not a global change


def test_edema_is_bilateral_and_perihilar():
    base, img, case = pair([Finding("edema", "bilateral", 3, detail={"kerley": False})])
    p = case.patient
    for s in (RIGHT, LEFT):
        x = s * (p.mediastinum_halfwidth + 0.15)
        assert region_mean(img, p, x, p.hilum_y[s] + 0.1) > region_mean(base, p, x, p.hilum_y[s] + 0.1) + 0.03


@pytest.mark.parametrize("kind", IMAGE_NOISE_TYPES)
def test_image_noise_types_change_the_image(kind):
    case = make_case([], seed=4)
    img = render_phantom(case, 64)
    out = corrupt_image(kind, img, case.patient, np.random.default_rng(0))
    assert out.shape == img.shape and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    diff = np.abs(out - img)
    if kind == "text_overlay":  # local but bright: many pixels change a lot
        assert (diff > 0.2).mean() > 0.01
    else:
        assert diff.mean() > 0.03
    if kind == "inverted":
        np.testing.assert_allclose(out, 1.0 - img, atol=1e-6)
