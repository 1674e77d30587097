"""The model shipped inside the package (``default.keras``) and its model card."""

from __future__ import annotations

from importlib import resources

DEFAULT_MODEL_FILE = "default.keras"
DEFAULT_CARD_FILE = "default_model_card.json"


def default_model_path() -> str | None:
    """Path of the packaged default model, or None when this build ships none."""
    path = resources.files(__name__) / DEFAULT_MODEL_FILE
    return str(path) if path.is_file() else None
