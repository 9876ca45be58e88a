"""The synthetic slide with known tumour and stroma regions: it opens as a slide, its truth
agrees with its pixels, its annotation squares lie inside their class, and the tissue
detector finds its tissue."""

from pathlib import Path

import numpy as np
import pytest
import tiffslide
from PIL import Image

from iain.synthetic import Region, RegionTruth, truth_of, write_tissue_regions_slide
from inference.tissue import tissue_mask

WIDTH, HEIGHT, SEED = 4096, 3072, 7
SIDE_UM = 64.0  # squares that fit this small slide's regions
THUMBNAIL_DOWNSAMPLE = 4


@pytest.fixture(scope="module")
def slide(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RegionTruth]:
    path = tmp_path_factory.mktemp("regions") / "regions.tiff"
    truth = write_tissue_regions_slide(path, WIDTH, HEIGHT, seed=SEED)
    return path, truth


@pytest.fixture(scope="module")
def thumbnail(slide: tuple[Path, RegionTruth]) -> np.ndarray:
    """The slide at 1/4, one pixel per 8 x 8 block of each label pixel."""
    with tiffslide.TiffSlide(slide[0]) as opened:
        level = opened.get_best_level_for_downsample(THUMBNAIL_DOWNSAMPLE)
        assert opened.level_downsamples[level] == THUMBNAIL_DOWNSAMPLE
        size = opened.level_dimensions[level]
        return np.asarray(opened.read_region((0, 0), level, size).convert("RGB"))


def labels_at(truth: RegionTruth, shape: tuple[int, ...]) -> np.ndarray:
    """The truth's labels, one per pixel of an image of `shape` covering the slide."""
    resized = Image.fromarray(truth.labels).resize((shape[1], shape[0]), Image.Resampling.NEAREST)
    return np.asarray(resized)


def interior(labels: np.ndarray, label: int) -> np.ndarray:
    """Label pixels whose 8 neighbours have the same label: away from region edges."""
    inside = labels == label
    core = inside.copy()
    core[1:-1, 1:-1] &= inside[:-2, 1:-1] & inside[2:, 1:-1] & inside[1:-1, :-2] & inside[1:-1, 2:]
    core[1:-1, 1:-1] &= inside[:-2, :-2] & inside[2:, 2:] & inside[:-2, 2:] & inside[2:, :-2]
    core[[0, -1], :] = core[:, [0, -1]] = False
    return np.asarray(core, dtype=bool)


def test_the_slide_opens_with_its_size_mpp_and_pyramid(slide):
    path, truth = slide
    with tiffslide.TiffSlide(path) as opened:
        assert opened.dimensions == (WIDTH, HEIGHT)
        assert float(opened.properties["tiffslide.mpp-x"]) == pytest.approx(0.25)
        assert float(opened.properties["tiffslide.mpp-y"]) == pytest.approx(0.25)
        assert opened.level_count >= 4
        assert opened.level_dimensions[1] == (WIDTH // 2, HEIGHT // 2)
        assert opened.properties["tiffslide.level[0].tile-width"] == 256
    assert (truth.width, truth.height, truth.mpp, truth.scale) == (WIDTH, HEIGHT, 0.25, 32)
    assert truth.labels.shape == (HEIGHT // 32, WIDTH // 32)
    assert truth.labels.dtype == np.uint8


def test_the_truth_is_recomputed_without_the_slide_and_depends_on_the_seed(slide):
    _, truth = slide
    again = truth_of(WIDTH, HEIGHT, seed=SEED)
    assert (again.labels == truth.labels).all()
    assert (truth_of(WIDTH, HEIGHT, seed=SEED + 1).labels != truth.labels).mean() > 0.05
    with pytest.raises(ValueError):
        truth.labels[0, 0] = 1  # read-only


def test_every_class_is_there_in_sensible_amounts(slide):
    _, truth = slide
    fractions = np.bincount(truth.labels.ravel(), minlength=4) / truth.labels.size
    tissue = fractions[Region.STROMA] + fractions[Region.TUMOUR]
    assert 0.35 <= tissue <= 0.65
    assert fractions[Region.TUMOUR] > 0.1
    assert fractions[Region.STROMA] > 0.1
    assert 0.005 < fractions[Region.PEN] < 0.1


def test_the_labels_agree_with_the_pixels(slide, thumbnail):
    _, truth = slide
    # Mean colour of each label pixel's 8 x 8 block of the thumbnail.
    rows, cols = truth.labels.shape
    blocks = thumbnail.astype(np.float64).reshape(rows, 8, cols, 8, 3).mean(axis=(1, 3))
    brightness = blocks.mean(axis=2)
    purple = blocks[..., 2] - blocks[..., 0]  # blue over red

    glass = blocks[interior(truth.labels, Region.GLASS)]
    assert (glass.min(axis=1) > 225).all()
    assert (np.ptp(glass, axis=1) < 10).all()  # unsaturated
    tumour = interior(truth.labels, Region.TUMOUR)
    stroma = interior(truth.labels, Region.STROMA)
    assert brightness[tumour].mean() < brightness[stroma].mean() - 40
    assert purple[tumour].mean() > purple[stroma].mean() + 30
    # Block by block (8 µm blocks: a nucleus or a gap between them shifts a few), not only
    # on average.
    middle = (np.median(brightness[tumour]) + np.median(brightness[stroma])) / 2
    assert (brightness[tumour] < middle).mean() > 0.85
    assert (brightness[stroma] > middle).mean() > 0.95
    pen = blocks[interior(truth.labels, Region.PEN)]
    assert len(pen) and (pen[:, 0] < 110).all()  # blue or green ink: little red


def test_annotation_squares_lie_inside_their_class_and_never_overlap(slide, thumbnail):
    _, truth = slide
    for label in (Region.STROMA, Region.TUMOUR, Region.GLASS):
        train = truth.region_polygons(label, 20, part="train", side_um=SIDE_UM)
        test = truth.region_polygons(label, 20, part="test", side_um=SIDE_UM)
        assert len(train) >= 3
        assert len(test) >= 3
        boxes = []
        for polygon in train + test:
            assert len(polygon) == 4
            (x0, y0), (x1, _), (_, y1) = polygon[0], polygon[1], polygon[2]
            assert x1 - x0 == y1 - y0 >= SIDE_UM / truth.mpp
            assert 0 <= x0 < x1 <= WIDTH and 0 <= y0 < y1 <= HEIGHT
            s = truth.scale
            assert (
                truth.labels[int(y0) // s : int(y1) // s, int(x0) // s : int(x1) // s] == label
            ).all()
            assert truth.label_at((x0 + x1) / 2, (y0 + y1) / 2) == label
            boxes.append((x0, y0, x1, y1))
        for i, a in enumerate(boxes):
            for b in boxes[i + 1 :]:
                assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)
        assert truth.region_polygons(label, 2, part="train", side_um=SIDE_UM) == train[:2]

    # The pixels inside tumour squares are those of tumour.
    d = THUMBNAIL_DOWNSAMPLE
    for part in ("train", "test"):
        for polygon in truth.region_polygons(Region.TUMOUR, 5, part=part, side_um=SIDE_UM):
            (x0, y0), (x1, y1) = polygon[0], polygon[2]
            pixels = thumbnail[int(y0) // d : int(y1) // d, int(x0) // d : int(x1) // d]
            assert pixels.mean() < 160


def test_label_at_and_bad_arguments(slide):
    _, truth = slide
    assert truth.label_at(0, 0) == Region.GLASS
    with pytest.raises(ValueError, match="outside"):
        truth.label_at(WIDTH, 0)
    with pytest.raises(ValueError, match="part"):
        truth.region_polygons(Region.TUMOUR, 3, part="validation")
    with pytest.raises(ValueError, match="label"):
        truth.region_polygons(7, 3)
    assert truth.region_polygons(Region.TUMOUR, 0) == []


def test_the_tissue_detector_finds_the_tissue_and_not_the_pen(slide, thumbnail):
    _, truth = slide
    mask = tissue_mask(thumbnail, mpp=truth.mpp * THUMBNAIL_DOWNSAMPLE)
    labels = labels_at(truth, mask.shape)
    tissue = (labels == Region.STROMA) | (labels == Region.TUMOUR)
    assert (mask & tissue).sum() / (mask | tissue).sum() >= 0.85
    pen = labels_at(truth, mask.shape) == Region.PEN
    inked = np.asarray(
        Image.fromarray(interior(truth.labels, Region.PEN)).resize(
            (mask.shape[1], mask.shape[0]), Image.Resampling.NEAREST
        )
    )
    assert inked.any()
    assert not mask[inked].any()
    assert mask[pen].mean() < 0.15  # only along its edges, where the label blocks are cut


@pytest.mark.parametrize(("width", "height"), [(1, 1), (100, 70), (700, 300)])
def test_tiny_slides_are_written_too(tmp_path, width, height):
    path = tmp_path / "tiny.tiff"
    truth = write_tissue_regions_slide(path, width, height, seed=1, mpp=0.5)
    with tiffslide.TiffSlide(path) as opened:
        assert opened.dimensions == (width, height)
        assert float(opened.properties["tiffslide.mpp-x"]) == pytest.approx(0.5)
    assert truth.labels.shape == (-(-height // 32), -(-width // 32))
