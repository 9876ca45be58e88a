"""The classical tissue detector on thumbnails drawn for each case: glass, tissue pieces,
pen marks, lumens, dust; and its refusals of what is not an RGB thumbnail."""

import numpy as np
import pytest

from inference.tissue import (
    TissueSummary,
    fill_holes,
    otsu_threshold,
    remove_small_objects,
    summarise,
    tissue_area_mm2,
    tissue_mask,
)

GLASS = (243, 242, 240)
PINK = (228, 160, 200)
PURPLE = (95, 55, 140)
BLUE_INK = (55, 95, 190)
MARKER = (35, 35, 40)


def glass(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Glass with sensor noise and a slightly uneven illumination."""
    rng = np.random.default_rng(seed)
    image = np.empty((height, width, 3), np.float64)
    image[:] = GLASS
    image += np.linspace(-6, 4, width)[None, :, None]
    image += rng.normal(0, 2.0, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def disc(height: int, width: int, cy: float, cx: float, radius: float) -> np.ndarray:
    ys, xs = np.mgrid[0:height, 0:width]
    return bool_array((ys - cy) ** 2 + (xs - cx) ** 2 <= radius**2)


def bool_array(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=bool)


def paint_tissue(image: np.ndarray, where: np.ndarray, seed: int = 1) -> None:
    """H&E-like tissue at `where`: noisy pink stroma and one pixel in six a purple nucleus."""
    rng = np.random.default_rng(seed)
    count = int(where.sum())
    pixels = np.asarray(PINK, np.float64) + rng.normal(0, 12, (count, 3))
    nuclei = rng.random(count) < 1 / 6
    pixels[nuclei] = np.asarray(PURPLE) + rng.normal(0, 10, (int(nuclei.sum()), 3))
    image[where] = np.clip(pixels, 0, 255).astype(np.uint8)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_blank_glass_is_no_tissue():
    assert not tissue_mask(glass(300, 400)).any()
    assert not tissue_mask(np.full((64, 64, 3), 255, np.uint8)).any()
    assert not tissue_mask(glass(300, 400), mpp=8.0).any()


def test_a_thumbnail_all_tissue_is_all_tissue():
    image = glass(200, 300)
    paint_tissue(image, np.ones((200, 300), bool))
    assert tissue_mask(image).all()


def test_tissue_pieces_are_found_and_pen_marks_are_not():
    height, width = 480, 640
    image = glass(height, width)
    blobs = disc(height, width, 180, 200, 110) | disc(height, width, 300, 470, 120)
    paint_tissue(image, blobs)
    # A thick blue stroke from the glass across the second piece, and a marker dot.
    ys, xs = np.mgrid[0:height, 0:width]
    stroke = (np.abs((ys - 420) - (xs - 300) * -0.9) < 9) & (xs > 300) & (xs < 560)
    image[stroke] = (np.asarray(image[stroke], np.float64) * np.asarray(BLUE_INK) / 255).astype(
        np.uint8
    )
    dot = disc(height, width, 60, 560, 14)
    image[dot] = MARKER

    mask = tissue_mask(image)
    assert iou(mask, blobs & ~stroke) >= 0.9
    assert not (mask & stroke).any()
    assert not (mask & dot).any()


def test_a_lumen_is_filled_but_glass_enclosed_by_a_ring_of_tissue_is_not():
    height, width = 512, 512
    image = glass(height, width)
    ring = disc(height, width, 256, 150, 120) & ~disc(height, width, 256, 150, 70)
    lumen = disc(height, width, 256, 410, 6)
    piece = disc(height, width, 256, 410, 60)
    paint_tissue(image, ring | (piece & ~lumen))

    mask = tissue_mask(image)
    assert mask[lumen].all()
    enclosed = disc(height, width, 256, 150, 65)
    assert not mask[enclosed].any()
    assert mask[ring].mean() > 0.98


def test_dust_and_debris_are_dropped():
    image = glass(400, 400)
    specks = np.zeros((400, 400), bool)
    for y, x in [(40, 40), (90, 300), (350, 60), (200, 380), (370, 370)]:
        specks[y : y + 3, x : x + 3] = True
    image[specks] = PURPLE  # tissue-coloured, so only their size rules them out
    piece = disc(400, 400, 200, 200, 80)
    paint_tissue(image, piece)

    mask = tissue_mask(image)
    assert not (mask & specks).any()
    assert iou(mask, piece) >= 0.95


def test_the_minimum_area_is_physical_when_mpp_is_known():
    image = glass(400, 400)
    debris = np.zeros((400, 400), bool)
    debris[20:40, 20:40] = True  # 400 px: 6,400 µm² at 4 µm/px
    piece = disc(400, 400, 220, 220, 60)  # ~11,300 px: 0.18 mm²
    paint_tissue(image, debris | piece)

    mask = tissue_mask(image, mpp=4.0)
    assert not mask[debris].any()
    assert mask[piece].mean() > 0.98
    # Without mpp, 400 px is over 0.02 % of the image: the debris is kept.
    assert tissue_mask(image)[debris].mean() > 0.95


def test_one_pixel_images():
    assert tissue_mask(np.array([[GLASS]], np.uint8)).tolist() == [[False]]
    assert tissue_mask(np.array([[PINK]], np.uint8)).tolist() == [[True]]
    assert tissue_mask(np.array([[BLUE_INK]], np.uint8)).tolist() == [[False]]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros((8, 8, 3), np.float32), "uint8"),
        (np.zeros((8, 8, 3), np.uint16), "uint8"),
        (np.zeros((8, 8), np.uint8), "H x W x 3"),
        (np.zeros((8, 8, 4), np.uint8), "H x W x 3"),
        (np.zeros((0, 8, 3), np.uint8), "non-empty"),
        ([[[1, 2, 3]]], "numpy array"),
    ],
)
def test_what_is_not_an_rgb_thumbnail_is_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        tissue_mask(bad)


def test_bad_mpp_and_area_are_refused():
    with pytest.raises(ValueError, match="mpp"):
        tissue_mask(glass(8, 8), mpp=0.0)
    with pytest.raises(ValueError, match="min_area_um2"):
        tissue_mask(glass(8, 8), min_area_um2=-1.0)


def test_otsu_threshold_splits_two_modes():
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.normal(0.05, 0.01, 5000), rng.normal(0.4, 0.05, 2000)])
    assert 0.08 < otsu_threshold(values) < 0.3
    assert otsu_threshold(np.full(10, 0.7)) == 0.7
    assert 0.0 <= otsu_threshold(np.array([0.0, np.nan, 1.0])) < 1.0  # NaN ignored
    with pytest.raises(ValueError, match="finite"):
        otsu_threshold(np.array([]))


def test_summary_and_area():
    mask = np.zeros((20, 20), bool)
    mask[:10, :10] = True
    assert summarise(mask) == TissueSummary(area_px=100, fraction=0.25)
    assert tissue_area_mm2(mask, 10.0) == pytest.approx(0.01)
    with pytest.raises(ValueError, match="bool"):
        summarise(mask.astype(np.uint8))
    with pytest.raises(ValueError, match="mpp"):
        tissue_area_mm2(mask, -1.0)


def test_components_are_eight_connected_and_holes_four_connected():
    diagonal = np.eye(12, dtype=bool)
    assert remove_small_objects(diagonal, 12).sum() == 12
    assert not remove_small_objects(diagonal, 13).any()
    assert not remove_small_objects(diagonal, 2, connectivity=4).any()
    # A diamond's outline is only 8-connected, yet its inside is a hole (4-connected).
    diamond = np.zeros((11, 11), bool)
    for i in range(6):
        for y, x in [(i, 5 + i), (i, 5 - i), (10 - i, 5 + i), (10 - i, 5 - i)]:
            diamond[y, x] = True
    filled = fill_holes(diamond, 100)
    assert filled[5, 5]
    assert filled.sum() == 61  # the 2 x 5 x 6 + 1 pixels within |y - 5| + |x - 5| <= 5
    assert not fill_holes(diamond, 41)[5, 5]  # the hole is 41 pixels: not under 41
    # Background that touches the border is never a hole.
    cup = np.zeros((6, 6), bool)
    cup[:, 0] = cup[:, 5] = cup[5, :] = True
    assert (fill_holes(cup, 100) == cup).all()
