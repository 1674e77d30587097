"""The colour photographs that ship inside scikit-image: images every install has.

The demo trains and evaluates on them, and int8 quantisation calibrates on them
(:mod:`denoise_core.quantize`), so neither needs a download or the user's data.
None of them is in a benchmark or validation set.
"""

from __future__ import annotations

import numpy as np

# Names in ``skimage.data`` (``motorcycle``: the left view of ``stereo_motorcycle``).
PHOTOS = (
    "chelsea",
    "hubble_deep_field",
    "immunohistochemistry",
    "motorcycle",
    "rocket",
    "astronaut",
    "coffee",
)


def photo(name: str) -> np.ndarray:
    """The bundled photograph ``name`` as HxWx3 uint8 RGB."""
    import skimage.data

    if name == "motorcycle":
        image = skimage.data.stereo_motorcycle()[0]
    else:
        image = getattr(skimage.data, name)()
    return np.ascontiguousarray(image[..., :3]).astype(np.uint8)
