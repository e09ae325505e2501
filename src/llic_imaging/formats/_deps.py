"""Lazy import of the third-party library behind each adapter, so ``import llic_imaging`` stays light."""

from __future__ import annotations

import importlib
from types import ModuleType

from llic_imaging.errors import MissingDependencyError

__all__ = ["import_optional"]


def import_optional(module: str, extra: str | None) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the pip extra.

    Adapters call this inside their functions (never at module level), so a user who only
    handles PNG never needs pydicom, and the error tells them exactly what to install.
    ``extra=None`` is for core dependencies (tifffile, imagecodecs) that have no extra.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        fix = f'pip install "llic-imaging[{extra}]"' if extra else f"pip install {module}"
        msg = f"{module} is required for this file format but is not installed; run: {fix}"
        raise MissingDependencyError(msg) from exc
