"""Glue a page's named values into its notebook (myst-nb ``glue``) in one call."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["glue_all"]


def glue_all(values: Mapping[str, Any]) -> None:
    """``glue(name, value, display=False)`` for every item, in order (prose cites them)."""
    from myst_nb import glue

    for name, value in values.items():
        glue(name, value, display=False)
