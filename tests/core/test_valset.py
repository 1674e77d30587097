"""Naming and checking several validation sets (``denoise train --val`` repeated)."""

from __future__ import annotations

import pytest

from denoise_core.train_config import ConfigError, SamplerConfig, TrainConfig
from denoise_core.valset import val_set_names


def test_val_sets_are_named_by_folder_and_split_unless_two_folders_share_a_name():
    assert val_set_names([("runs/data/kodak24", "val"), ("s3://b/polyu/", "val")]) == [
        "kodak24#val",
        "polyu#val",
    ]
    same = [("a/photos", "val"), ("b/photos", "val")]
    assert val_set_names(same) == ["a/photos#val", "b/photos#val"]
    assert val_set_names([("a/photos", "val"), ("a/photos", "train")]) == [
        "photos#val",
        "photos#train",
    ]


def test_the_same_val_set_twice_is_refused_and_none_means_the_first_data_set():
    sampler = SamplerConfig(patch=32)
    config = TrainConfig(data=(("d", 1.0),), storage="r", sampler=sampler, val_split="test")
    assert config.val_sets == (("d", "test"),)
    with pytest.raises(ConfigError, match="val"):
        TrainConfig(data=(("d", 1.0),), storage="r", sampler=sampler, val_sets=(("v", "val"),) * 2)
