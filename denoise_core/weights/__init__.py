"""The models shipped inside the package, one per tier, each with its model card.

Tiers: ``default`` (``default.keras``, the quality model) and ``fast`` (``fast.keras``,
a cheaper architecture for CPUs without native bf16, at most a quarter of the
default's FLOPs per megapixel). Each has its own card (``<tier>_model_card.json``)
whose lineage ``denoise promote RUN --tier TIER`` appends to.

:func:`resolve_model` is the one place a tier name given where a model path is
accepted (``denoise run --model``, ``denoise benchmark --model``, ``denoise export``,
``denoise train --init-from``) becomes the packaged file.
"""

from __future__ import annotations

from importlib import resources

TIERS = ("default", "fast")
MODEL_FILES = {tier: f"{tier}.keras" for tier in TIERS}
CARD_FILES = {tier: f"{tier}_model_card.json" for tier in TIERS}
DEFAULT_MODEL_FILE = MODEL_FILES["default"]
DEFAULT_CARD_FILE = CARD_FILES["default"]
FAST_MODEL_FILE = MODEL_FILES["fast"]
FAST_CARD_FILE = CARD_FILES["fast"]


class NoPackagedModel(ValueError):
    """A tier name was given but this build ships no model for it."""


def _check_tier(tier: str) -> str:
    if tier not in TIERS:
        raise ValueError(f"unknown model tier {tier!r}; choose one of {', '.join(TIERS)}")
    return tier


def packaged_model_path(tier: str = "default") -> str | None:
    """Path of the packaged model of ``tier``, or None when this build ships none."""
    path = resources.files(__name__) / MODEL_FILES[_check_tier(tier)]
    return str(path) if path.is_file() else None


def packaged_card_path(tier: str = "default") -> str:
    """Path of ``tier``'s model card (it may not exist in a build without that model)."""
    return str(resources.files(__name__) / CARD_FILES[_check_tier(tier)])


def default_model_path() -> str | None:
    """Path of the packaged default model, or None when this build ships none."""
    return packaged_model_path("default")


def fast_model_path() -> str | None:
    """Path of the packaged fast model, or None when this build ships none."""
    return packaged_model_path("fast")


def is_tier_name(spec: str | None) -> bool:
    """Whether a model argument is a tier name (``default``, ``fast``), not a path.
    A file in the current folder named like a tier is reached as ``./fast``."""
    return spec in TIERS


def resolve_model(spec: str | None) -> str | None:
    """A model argument as given: a tier name becomes its packaged file's path; anything
    else (a path, a URI, None, ``identity``) is returned unchanged.

    Raises :class:`NoPackagedModel` (a ``ValueError``) for a tier this build ships no
    model for, with what to do instead.
    """
    if not is_tier_name(spec):
        return spec
    path = packaged_model_path(spec)
    if path is None:
        raise NoPackagedModel(
            f"model {spec!r}: this build ships no {spec} model "
            f"(denoise_core/weights/{MODEL_FILES[spec]} is missing); promote one with "
            f"`denoise promote RUN --tier {spec}`, or pass a .keras path instead"
        )
    return path
