"""Layout detection, SIDD naming, pairing and the scene split: pure, no Ray."""

from __future__ import annotations

import fixtures as fx
import pytest

from denoise_core import layouts, sidd
from denoise_core.layouts import Item, Listing


def listing_of(*keys: str) -> Listing:
    return Listing("mem", {k: (f"/mem/{k}", 100) for k in keys})


# ---------------------------------------------------------------- SIDD naming


def test_parse_scene_folder():
    assert sidd.parse_scene_folder("0001_001_S6_00100_00060_3200_L") == {
        "scene_instance": "0001",
        "scene": "001",
        "phone": "S6",
        "iso": 100,
        "shutter": 60,
        "illuminant": 3200,
        "brightness": "L",
    }
    meta = sidd.parse_scene_folder("0199_010_GP_10000_08460_4400_H")
    assert (meta["phone"], meta["iso"], meta["shutter"], meta["illuminant"]) == (
        "GP",
        10000,
        8460,
        4400,
    )


@pytest.mark.parametrize(
    "name",
    [
        "0001_001_S6_00100_00060_3200",  # no brightness
        "0001_001_S6_00100_00060_3200_X",  # unknown brightness
        "1_001_S6_00100_00060_3200_L",
        "0001_001_S6_00100_00060_3200_L_extra",
        "Data",
    ],
)
def test_parse_scene_folder_rejects_other_names(name):
    assert sidd.parse_scene_folder(name) is None


# ---------------------------------------------------------------- detection


def test_detect_layouts_on_real_listings(tmp_path):
    fx.make_sidd_small(tmp_path / "small")
    fx.make_sidd_medium(tmp_path / "medium")
    fx.make_sidd_zip(tmp_path / "kaggle.zip", tmp_path / "zipwork")
    fx.make_sidd_mat(tmp_path / "mat")
    fx.make_suffix_pairs(tmp_path / "suffix")
    fx.make_folder_pairs(tmp_path / "folders")
    fx.make_clean_only(tmp_path / "clean")
    expect = {
        "small": "sidd",
        "medium": "sidd",
        "kaggle.zip": "sidd",
        "mat": "sidd-mat",
        "suffix": "pairs",
        "folders": "pairs",
        "clean": "clean",
    }
    got = {
        name: layouts.detect_layout(layouts.list_source(str(tmp_path / name))) for name in expect
    }
    assert got == expect


def test_list_source_zip_keys_and_uris(tmp_path):
    expected = fx.make_sidd_zip(tmp_path / "kaggle.zip", tmp_path / "zipwork")
    listing = layouts.list_source(str(tmp_path / "kaggle.zip"))
    assert set(expected) <= set(listing.files)
    key = next(iter(expected))
    uri, size = listing.files[key]
    assert uri == f"zip://{key}::{tmp_path / 'kaggle.zip'}"
    assert size == (tmp_path / "zipwork" / key).stat().st_size


def test_list_source_missing_and_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        layouts.list_source(str(tmp_path / "nope"))
    (tmp_path / "a.png").write_bytes(b"x")
    with pytest.raises(NotADirectoryError):
        layouts.list_source(str(tmp_path / "a.png"))


def test_hidden_files_do_not_decide_the_layout():
    listing = listing_of("__MACOSX/x_noisy.png", "__MACOSX/x_clean.png", ".cache/a.png", "a.png")
    assert layouts.detect_layout(listing) == "clean"
    _, items, _ = layouts.collect_items(listing)
    assert [it.key for it in items] == ["a.png"]


def test_unknown_layout_is_refused():
    with pytest.raises(ValueError, match="unknown layout"):
        layouts.collect_items(listing_of("a.png"), "tiff-stack")


# ---------------------------------------------------------------- SIDD pairs


def test_sidd_small_items_carry_metadata(tmp_path):
    expected = fx.make_sidd_small(tmp_path)
    layout, items, rejected = layouts.collect_items(layouts.list_source(str(tmp_path)))
    assert layout == "sidd" and rejected == []
    assert sorted(it.key for it in items) == sorted(expected)
    by_key = {it.key: it for it in items}
    first = by_key[f"{fx.SMALL_ROOT}/0001_001_S6_00100_00060_3200_L/NOISY_SRGB_010.PNG"]
    assert first.clean.endswith("0001_001_S6_00100_00060_3200_L/GT_SRGB_010.PNG")
    assert first.noisy.endswith("0001_001_S6_00100_00060_3200_L/NOISY_SRGB_010.PNG")
    assert first.scene == "001"
    assert first.meta == {
        "scene_instance": "0001",
        "scene": "001",
        "phone": "S6",
        "iso": 100,
        "shutter": 60,
        "illuminant": 3200,
        "brightness": "L",
    }
    assert {it.meta["phone"] for it in items} == {"S6", "GP", "IP", "N6", "G4"}
    assert {it.scene for it in items} == {"001", "002", "003", "004"}
    assert all(it.size_bytes > 0 for it in items)


def test_sidd_medium_items_pair_each_frame(tmp_path):
    expected = fx.make_sidd_medium(tmp_path)
    layout, items, rejected = layouts.collect_items(layouts.list_source(str(tmp_path)))
    assert layout == "sidd" and rejected == []
    assert sorted(it.key for it in items) == sorted(expected)
    for it in items:
        assert it.clean == it.noisy.replace("0001_NOISY_SRGB_", "0001_GT_SRGB_")


def test_sidd_rejects_noisy_without_gt_and_gt_without_noisy():
    scene = "0001_001_S6_00100_00060_3200_L"
    listing = listing_of(
        f"Data/{scene}/NOISY_SRGB_010.PNG",
        f"Data/{scene}/GT_SRGB_010.PNG",
        f"Data/{scene}/NOISY_SRGB_011.PNG",  # no GT twin
        f"Data/{scene}/GT_SRGB_012.PNG",  # no NOISY twin
    )
    layout, items, rejected = layouts.collect_items(listing)
    assert layout == "sidd"
    assert [it.key for it in items] == [f"Data/{scene}/NOISY_SRGB_010.PNG"]
    reasons = {r.key: r.reason for r in rejected}
    assert set(reasons) == {f"Data/{scene}/NOISY_SRGB_011.PNG", f"Data/{scene}/GT_SRGB_012.PNG"}
    assert "without ground truth" in reasons[f"Data/{scene}/NOISY_SRGB_011.PNG"]
    assert "without noisy" in reasons[f"Data/{scene}/GT_SRGB_012.PNG"]


def test_sidd_twin_must_be_in_the_same_folder():
    listing = listing_of(
        "Data/0001_001_S6_00100_00060_3200_L/NOISY_SRGB_010.PNG",
        "Data/0002_001_S6_00100_00060_3200_L/GT_SRGB_010.PNG",
    )
    _, items, rejected = layouts.collect_items(listing, "sidd")
    assert items == [] and len(rejected) == 2


def test_sidd_mat_items_and_missing_gt(tmp_path):
    fx.make_sidd_mat(tmp_path / "both")
    layout, items, rejected = layouts.collect_items(layouts.list_source(str(tmp_path / "both")))
    assert layout == "sidd-mat" and rejected == []
    (item,) = items
    assert item.split == layouts.VAL_BLOCKS_SPLIT
    assert item.noisy.endswith(sidd.MAT_NOISY) and item.clean.endswith(sidd.MAT_GT)

    fx.make_sidd_mat(tmp_path / "noisy_only", with_gt=False)
    _, items, rejected = layouts.collect_items(layouts.list_source(str(tmp_path / "noisy_only")))
    assert items == []
    assert [r.key for r in rejected] == [sidd.MAT_NOISY]
    assert "without ground truth" in rejected[0].reason


# ---------------------------------------------------------------- generic pairs


def test_suffix_pairs_match_and_group_scenes(tmp_path):
    expected = fx.make_suffix_pairs(tmp_path)
    layout, items, rejected = layouts.collect_items(layouts.list_source(str(tmp_path)))
    assert layout == "pairs" and rejected == []
    assert sorted(it.key for it in items) == sorted(expected)
    by_key = {it.key: it for it in items}
    chair11 = by_key["Canon5D2_5_160_3200_chair_11_real.JPG"]
    assert chair11.clean.endswith("Canon5D2_5_160_3200_chair_11_mean.JPG")
    # crops of one shot (_11, _14) are one scene; folders stay part of the scene
    assert chair11.scene == "Canon5D2_5_160_3200_chair"
    assert by_key["Canon5D2_5_160_3200_chair_14_real.JPG"].scene == chair11.scene
    assert by_key["png/room_a_noisy.png"].scene == "png/room_a"
    assert by_key["deep/raw16_noisy.png"].clean.endswith("deep/raw16_clean.png")


def test_folder_pairs_match_by_name(tmp_path):
    expected = fx.make_folder_pairs(tmp_path)
    layout, items, rejected = layouts.collect_items(layouts.list_source(str(tmp_path)))
    assert layout == "pairs" and rejected == []
    assert sorted(it.key for it in items) == sorted(expected)
    for it in items:
        assert it.clean == it.noisy.replace("/noisy/", "/clean/")
        assert it.scene == it.key.split("/")[-1].removesuffix(".png")


def test_pairs_reject_missing_partner():
    listing = listing_of(
        "a_noisy.png", "a_clean.png", "b_noisy.png", "c_gt.png", "noisy/d.png", "clean/e.png"
    )
    layout, items, rejected = layouts.collect_items(listing)
    assert layout == "pairs"
    assert [it.key for it in items] == ["a_noisy.png"]
    reasons = {r.key: r.reason for r in rejected}
    assert set(reasons) == {"b_noisy.png", "c_gt.png", "noisy/d.png", "clean/e.png"}
    assert "without ground truth" in reasons["b_noisy.png"]
    assert "without ground truth" in reasons["noisy/d.png"]
    assert "without noisy" in reasons["c_gt.png"]


def test_clean_only_items(tmp_path):
    expected = fx.make_clean_only(tmp_path)
    layout, items, rejected = layouts.collect_items(layouts.list_source(str(tmp_path)))
    assert layout == "clean" and rejected == []
    assert sorted(it.key for it in items) == sorted(expected)
    assert all(it.noisy is None for it in items)


# ---------------------------------------------------------------- scene split


def _items(scenes_per_item: list[str]) -> list[Item]:
    return [Item(key=f"k{i}", scene=s, layout="pairs") for i, s in enumerate(scenes_per_item)]


SCENES = [f"s{i:02d}" for i in range(20) for _ in range(i % 3 + 1)]  # 20 scenes, 1-3 items each


def _val_scenes(items: list[Item]) -> set[str]:
    return {it.scene for it in items if it.split == "val"}


def test_split_never_puts_a_scene_on_both_sides():
    for seed in range(10):
        items = _items(SCENES)
        layouts.assign_splits(items, 0.25, seed)
        train = {it.scene for it in items if it.split == "train"}
        val = _val_scenes(items)
        assert train and val
        assert not train & val
        assert train | val == set(SCENES)
        assert len(val) == 5  # round(20 * 0.25) scenes, not items


def test_split_is_deterministic_under_the_seed():
    first, again = _items(SCENES), _items(SCENES[::-1])
    layouts.assign_splits(first, 0.3, seed=42)
    layouts.assign_splits(again, 0.3, seed=42)  # input order must not matter either
    assert _val_scenes(first) == _val_scenes(again)
    others = set()
    for seed in range(8):
        items = _items(SCENES)
        layouts.assign_splits(items, 0.3, seed=seed)
        others.add(frozenset(_val_scenes(items)))
    assert len(others) > 1  # the seed does choose


def test_split_edge_cases():
    items = _items(SCENES)
    layouts.assign_splits(items, 0.0, 0)
    assert {it.split for it in items} == {"train"}

    two = _items(["a", "b"])
    layouts.assign_splits(two, 0.01, 0)  # tiny fraction still holds out one scene
    assert sorted(it.split for it in two) == ["train", "val"]

    one = _items(["a", "a"])
    layouts.assign_splits(one, 0.9, 0)  # a single scene always trains
    assert {it.split for it in one} == {"train"}

    blocks = _items(["a", "b", "c"])
    blocks[0].split = layouts.VAL_BLOCKS_SPLIT
    layouts.assign_splits(blocks, 0.5, 0)
    assert blocks[0].split == layouts.VAL_BLOCKS_SPLIT

    with pytest.raises(ValueError):
        layouts.assign_splits(_items(["a"]), 1.0, 0)
