"""DeepZoom and level-choice geometry, with exact edge tiles."""

import pytest

from tiles.errors import TileNotFound
from tiles.geometry import DeepZoom, Region, Size, choose_level, plan_read

CMU1 = Size(2220, 2967)  # the Aperio sample's level 0


def test_level_count_and_sizes_halve_rounding_up():
    dz = DeepZoom(CMU1)
    # 2967 needs 12 halvings to reach 1 pixel: levels 0..12.
    assert dz.level_count == 13
    assert dz.z_size(12) == CMU1
    assert dz.z_size(11) == Size(1110, 1484)
    assert dz.z_size(10) == Size(555, 742)
    assert dz.z_size(9) == Size(278, 371)
    assert dz.z_size(0) == Size(1, 1)


def test_one_pixel_and_power_of_two_slides():
    assert DeepZoom(Size(1, 1)).level_count == 1
    dz = DeepZoom(Size(512, 256))
    assert dz.level_count == 10
    assert dz.t_count(9) == Size(2, 1)
    assert dz.z_tile(9, 1, 0) == Region(256, 0, 256, 256)


def test_tile_counts_and_exact_edge_tiles():
    dz = DeepZoom(CMU1)
    assert dz.t_count(12) == Size(9, 12)  # ceil(2220/256), ceil(2967/256)
    # Last column is 2220 - 8*256 = 172 wide; last row 2967 - 11*256 = 151 high.
    assert dz.z_tile(12, 8, 11) == Region(2048, 2816, 172, 151)
    assert dz.z_tile(12, 0, 0) == Region(0, 0, 256, 256)
    assert dz.z_tile(9, 1, 1) == Region(256, 256, 22, 115)


def test_level0_region_of_tiles_at_lower_levels():
    dz = DeepZoom(CMU1)
    # Level 11 is 2x down: tile (4, 5) covers level-0 pixels 2048.. (clipped at 2220).
    assert dz.l0_tile(11, 4, 5) == Region(2048, 2560, 172, 407)
    assert dz.l0_tile(0, 0, 0) == Region(0, 0, 2220, 2967)


def test_overlap_extends_inner_edges_only():
    dz = DeepZoom(Size(1000, 600), tile_size=254, overlap=1)
    assert dz.z_tile(dz.z_max, 0, 0) == Region(0, 0, 255, 255)
    assert dz.z_tile(dz.z_max, 1, 1) == Region(253, 253, 256, 256)
    assert dz.z_tile(dz.z_max, 3, 2) == Region(761, 507, 239, 93)


@pytest.mark.parametrize(
    ("z", "col", "row"), [(13, 0, 0), (-1, 0, 0), (12, 9, 0), (12, 0, 12), (12, -1, 0)]
)
def test_out_of_range_tiles_are_refused(z, col, row):
    with pytest.raises(TileNotFound):
        DeepZoom(CMU1).z_tile(z, col, row)


def test_choose_level_takes_the_coarsest_level_with_enough_resolution():
    sizes = (Size(1000, 800), Size(500, 400), Size(250, 200), Size(124, 99))
    assert choose_level(sizes, 1.0) == 0
    assert choose_level(sizes, 1.9) == 0
    assert choose_level(sizes, 2.0) == 1
    assert choose_level(sizes, 3.9) == 1
    assert choose_level(sizes, 8.0) == 3  # 1000/124 = 8.06: within tolerance of 8
    assert choose_level(sizes, 100.0) == 3
    assert choose_level(sizes, 0.5) == 0


def test_plan_read_maps_region_onto_level_and_clips():
    sizes = (Size(1000, 800), Size(500, 400), Size(250, 200))
    plan = plan_read(sizes, Region(512, 256, 512, 512), Size(128, 128))
    assert plan.level == 2
    assert plan.l_region == Region(128, 64, 122, 128)  # clipped at level width 250
    assert plan.out_size == Size(128, 128)
