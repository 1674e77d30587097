"""SIDD naming: scene-instance folders and the sRGB file names inside them."""

from __future__ import annotations

import re
from typing import Any

# 0001_001_S6_00100_00060_3200_L: instance_scene_phone_ISO_shutter_temperature_brightness
SCENE_FOLDER_RE = re.compile(
    r"^(?P<scene_instance>\d{4})_(?P<scene>\d{3})_(?P<phone>[A-Z0-9]{2})_(?P<iso>\d{5})_"
    r"(?P<shutter>\d{5})_(?P<illuminant>\d{4})_(?P<brightness>[LNH])$"
)
# GT_SRGB_010.PNG (Small) or 0001_GT_SRGB_010.PNG (Medium), and the NOISY twins.
SRGB_FILE_RE = re.compile(
    r"^(?P<prefix>(?:\d{4}_)?)(?P<kind>GT|NOISY)_SRGB_(?P<frame>\d{3})\.png$", re.I
)

PHONES = {
    "GP": "Google Pixel",
    "IP": "iPhone 7",
    "S6": "Galaxy S6 Edge",
    "N6": "Nexus 6",
    "G4": "LG G4",
}
BRIGHTNESS = {"L": "low", "N": "normal", "H": "high"}

MAT_NOISY = "ValidationNoisyBlocksSrgb.mat"
MAT_GT = "ValidationGtBlocksSrgb.mat"

METADATA_COLUMNS = (
    "scene_instance",
    "scene",
    "phone",
    "iso",
    "shutter",
    "illuminant",
    "brightness",
)


def parse_scene_folder(name: str) -> dict[str, Any] | None:
    """Metadata columns from a SIDD scene-instance folder name, or None if it is not one."""
    m = SCENE_FOLDER_RE.match(name)
    if not m:
        return None
    return {
        "scene_instance": m["scene_instance"],
        "scene": m["scene"],
        "phone": m["phone"],
        "iso": int(m["iso"]),
        "shutter": int(m["shutter"]),
        "illuminant": int(m["illuminant"]),
        "brightness": m["brightness"],
    }


def empty_metadata() -> dict[str, Any]:
    return dict.fromkeys(METADATA_COLUMNS)
