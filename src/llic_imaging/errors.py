"""Exception and warning hierarchy; imports nothing from the package.

Every failure caused by *data* (streams, files, weights) is an :class:`LlicError`, so callers
and CLIs can catch one class. Programmer errors stay plain ``TypeError``/``ValueError``.
"""

from __future__ import annotations

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
    "UnknownFormatError",
    "UnsupportedVersionError",
    "VerificationError",
]


class LlicError(Exception):
    """Root of every data-caused failure in llic_imaging."""


class StreamError(LlicError, ValueError):
    """A .llic stream is malformed: bad magic, truncated, bad offsets, sizes over spec limits."""


class ChecksumError(StreamError):
    """A checksum stored in the stream does not match the bytes or the decoded array."""

    def __init__(self, message: str, *, segment: str = "", expected: str = "", found: str = ""):
        super().__init__(message)
        self.segment = segment
        self.expected = expected
        self.found = found


class UnsupportedVersionError(StreamError):
    """The container or model version is newer than this library understands."""


class ModelError(LlicError):
    """The model named in a stream is not installed, or its weights hash differs."""


class FormatError(LlicError, ValueError):
    """The input cannot be represented exactly (float pixels, unsupported dtype, ...)."""


class UnknownFormatError(FormatError):
    """No adapter recognises the file (no known magic bytes or extension): a folder's README or
    script, which batch commands skip, unlike a recognised file that fails to read."""


class VerificationError(LlicError):
    """A round trip did not reproduce the original exactly."""

    def __init__(self, message: str, *, path: str = "", first_mismatch: object = None):
        super().__init__(message)
        self.path = path
        self.first_mismatch = first_mismatch


class MissingDependencyError(LlicError, ImportError):
    """An optional extra is not installed; the message names the pip extra."""


class LlicWarning(UserWarning):
    """Root of llic_imaging warnings."""


class MetadataWarning(LlicWarning):
    """A metadata field could not be restored byte-exactly."""


class DeterminismWarning(LlicWarning):
    """A runtime setting that could break bit-exact decoding was detected."""
