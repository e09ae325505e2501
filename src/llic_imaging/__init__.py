"""llic_imaging: learned lossless compression of 8-16 bit medical and satellite images.

Importing the package loads numpy only; torch and constriction are imported on first use of
``encode``/``decode``/``rate_map`` (see ``_api``).

>>> import numpy as np, llic_imaging
>>> a = np.arange(64, dtype=np.uint16).reshape(8, 8)
>>> bool(np.array_equal(llic_imaging.decode(llic_imaging.encode(a)), a))
True
"""

from __future__ import annotations

from typing import Any

from llic_imaging.errors import (
    ChecksumError,
    DeterminismWarning,
    FormatError,
    LlicError,
    LlicWarning,
    MetadataWarning,
    MissingDependencyError,
    ModelError,
    StreamError,
    UnknownFormatError,
    UnsupportedVersionError,
    VerificationError,
)

__version__ = "0.1.0"

__all__ = [
    "ChecksumError",
    "DeterminismWarning",
    "FormatError",
    "LlicError",
    "LlicWarning",
    "MetadataWarning",
    "MissingDependencyError",
    "ModelError",
    "StreamError",
    "StreamInfo",
    "UnknownFormatError",
    "UnsupportedVersionError",
    "VerificationError",
    "__version__",
    "check",
    "decode",
    "encode",
    "info",
    "metadata",
    "rate_map",
    "read_window",
    "version",
]

_LAZY = {
    "encode",
    "decode",
    "info",
    "check",
    "metadata",
    "rate_map",
    "read_window",
    "version",
    "StreamInfo",
}


def __getattr__(name: str) -> Any:
    """Import the API module on first use so that ``import llic_imaging`` stays light."""
    if name in _LAZY:
        from llic_imaging import _api

        return getattr(_api, name)
    msg = f"module 'llic_imaging' has no attribute {name!r}"
    raise AttributeError(msg)
