"""File-level twins of the ``llic`` commands: ``formats.load/save`` + the codec + atomic writes.

Each function handles one file and returns a frozen record with ``to_dict()`` (the ``--json``
shapes in docs/cli.md); the commands only loop, print and map errors to exit codes.
"""

from __future__ import annotations

import logging
import os
import stat
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

import llic_imaging
from llic_imaging import formats
from llic_imaging._fileio import output_mode, write_atomic
from llic_imaging.errors import FormatError, ModelError, StreamError

_log = logging.getLogger(__name__)

__all__ = [
    "Compressed",
    "Demoed",
    "Restored",
    "Verified",
    "compare_files",
    "compress_file",
    "demo_file",
    "restore_file",
    "verify_file",
]


@dataclass(frozen=True)
class Compressed:
    """What ``compress_file`` did: sizes and timing of one input."""

    input: str
    output: str
    format: str
    exact: str
    shape: tuple[int, ...]
    dtype: str
    input_bytes: int
    output_bytes: int
    seconds: float

    @property
    def ratio(self) -> float:
        """Input file size over stream size (file bytes, so headers count on both sides)."""
        return self.input_bytes / max(self.output_bytes, 1)

    @property
    def bits_per_sample(self) -> float:
        """Stream bits per pixel sample: the number the benchmarks compare across codecs."""
        return 8 * self.output_bytes / max(int(np.prod(self.shape)), 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "shape": list(self.shape),
            "ratio": self.ratio,
            "bits_per_sample": self.bits_per_sample,
        }


@dataclass(frozen=True)
class Restored:
    """What ``restore_file`` wrote."""

    input: str
    output: str
    shape: tuple[int, ...]
    dtype: str
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "shape": list(self.shape)}


@dataclass(frozen=True)
class Verified:
    """Outcome of a verification: each check by name, and a readable line per difference."""

    archive: str
    original: str | None
    checks: dict[str, bool] = field(default_factory=dict)
    differences: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(self.checks.values()) and not self.differences

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


@dataclass(frozen=True)
class Demoed:
    """One row of the ``llic demo`` table: compress, restore and verify of one sample."""

    compressed: Compressed
    restored: Restored
    verified: Verified

    def to_dict(self) -> dict[str, Any]:
        return {
            "compressed": self.compressed.to_dict(),
            "restored": self.restored.to_dict(),
            "verified": self.verified.to_dict(),
        }


def compress_file(src: Path, dst: Path, **options: Any) -> Compressed:
    """Load ``src`` with its format adapter, encode it with its metadata, write ``dst`` atomically.

    The adapter's metadata envelope goes into the stream, so ``restore_file`` can rebuild the
    original file (byte for byte where ``Loaded.exact == "bytes"``) from the ``.llic`` alone.

    Raises
    ------
    LlicError
        ``FormatError``/``MissingDependencyError`` from the adapter, or a codec error.
    OSError
        If ``dst`` cannot be written.
    """
    start = time.perf_counter()
    st = src.stat()  # before writing: ``dst`` may replace ``src``'s link
    loaded = formats.load(src)
    stream = llic_imaging.encode(loaded.array, metadata=loaded.metadata, **options)
    write_atomic(dst, stream, mode=_permissions(st))
    _log.info("compressed %s -> %s (%d bytes)", src, dst, len(stream))
    return Compressed(
        input=str(src),
        output=str(dst),
        format=loaded.format,
        exact=loaded.exact,
        shape=tuple(loaded.array.shape),
        dtype=str(loaded.array.dtype),
        input_bytes=st.st_size,
        output_bytes=len(stream),
        seconds=time.perf_counter() - start,
    )


def _permissions(st: os.stat_result) -> int:
    """The rwx bits of a source, which its output gets (as with gzip): the ``.llic`` of a
    private scan holds all of its metadata and must stay as private. setuid and the like are
    not carried over."""
    return stat.S_IMODE(st.st_mode) & 0o777


def _check_output_name(src: Path, dst: Path, data: bytes, metadata: bytes) -> None:
    """Refuse an output name that readers would take for another format (NumPy bytes in a
    ``.png``): they choose their decoder by the extension, so such a file is unreadable.

    The archive's own name without ``.llic`` is the original file's name and always allowed,
    so that a misnamed original round-trips unchanged.
    """
    if dst.name == src.name.removesuffix(".llic"):
        return
    raw = llic_imaging.info(data).raw_bytes
    fmt, extensions = formats.extensions(metadata, image_bytes=raw)
    if extensions and not dst.name.lower().endswith(extensions):
        msg = (
            f"holds a {fmt} image, so the output name must end in {' or '.join(extensions)}, "
            f"not {dst.name}"
        )
        raise FormatError(msg)


def restore_file(
    src: Path,
    dst: Path,
    *,
    geotiff: dict[str, Any] | None = None,
    any_name: bool = False,
    **options: Any,
) -> Restored:
    """Decode the ``.llic`` file ``src`` and write the original file format to ``dst``.

    ``decode`` checks every chunk checksum and the SHA-256 of the whole array, so a restored
    file is either exact or not written at all (``formats.save`` writes atomically). Every file
    written gets ``src``'s permission bits, so a private archive restores to a private file.
    ``geotiff``: GDAL creation options (and ``cog``) for a GeoTIFF output; a stream of another
    format is then refused with ``FormatError``. ``dst`` must have an extension of the stored
    format (any name for DICOM, or the archive's own name without ``.llic``) unless
    ``any_name`` (a scratch file that is compared, not kept).

    Raises
    ------
    LlicError
        ``StreamError``/``ChecksumError``/``ModelError`` for a bad stream, ``FormatError`` if
        the stored metadata cannot rebuild the file or ``dst``'s extension is not one of the
        stored format's (checked before decoding).
    """
    start = time.perf_counter()
    data = src.read_bytes()
    metadata = llic_imaging.metadata(data)
    if not any_name:
        _check_output_name(src, dst, data, metadata)
    array = llic_imaging.decode(data, **options)
    save_options = {"format": "geotiff", **geotiff} if geotiff else {}
    with output_mode(_permissions(src.stat())):
        formats.save(dst, array, metadata, **save_options)
    _log.info("restored %s -> %s", src, dst)
    return Restored(
        input=str(src),
        output=str(dst),
        shape=tuple(array.shape),
        dtype=str(array.dtype),
        seconds=time.perf_counter() - start,
    )


def _first_mismatch(a: np.ndarray, b: np.ndarray) -> str:
    """Describe how two same-shape arrays differ: count and the first differing sample."""
    diff = a != b
    where = tuple(int(i) for i in np.unravel_index(int(np.argmax(diff)), a.shape))
    return (
        f"pixels: {int(diff.sum())} of {a.size} samples differ; "
        f"first at {where}: {a[where]} != {b[where]}"
    )


def _first_byte_difference(a: bytes, b: bytes) -> str:
    """Describe two different byte strings: sizes and the first differing offset."""
    n = min(len(a), len(b))
    diff = np.flatnonzero(np.frombuffer(a, np.uint8, n) != np.frombuffer(b, np.uint8, n))
    at = int(diff[0]) if diff.size else n
    return f"bytes: {len(a)} vs {len(b)} bytes, first difference at offset {at}"


def compare_files(
    restored: Path, original: Path, *, metadata: bytes
) -> tuple[dict[str, bool], list[str]]:
    """Compare a restored file with its original as strictly as the original's adapter allows.

    Where the adapter promises a byte-exact rebuild (``exact == "bytes"``) the files must be
    identical. Otherwise the pixels (shape, dtype, values) and the format must match, and the
    stream's stored ``metadata`` must equal what the adapter reads from the original now: the
    adapter rebuilds the file from exactly that envelope, and what it reads back from the
    restored file must equal it too (a save that drops or rewrites a tag is caught here, not
    by the pixels). Returns the named checks and one readable line per difference.
    """
    want = formats.load(original)
    if want.exact == "bytes":
        a, b = restored.read_bytes(), original.read_bytes()
        return {"bytes": a == b}, [] if a == b else [_first_byte_difference(a, b)]
    got = formats.load(restored)
    pairs = {
        "format": (got.format, want.format),
        "shape": (got.array.shape, want.array.shape),
        "dtype": (got.array.dtype, want.array.dtype),
    }
    checks = {name: g == w for name, (g, w) in pairs.items()}
    differences = [f"{name}: {g} != {w}" for name, (g, w) in pairs.items() if not checks[name]]
    checks["metadata"] = metadata == want.metadata
    if not checks["metadata"]:
        differences.append("metadata: the stream's metadata differs from the original file's")
    changed = formats.metadata_differences(got.metadata, want.metadata)
    checks["restored_metadata"] = not changed
    if changed:
        fields = ", ".join(changed)
        differences.append(
            f"restored metadata: the restored file differs from the original in {fields}"
        )
    if checks["shape"]:
        checks["pixels"] = bool(np.array_equal(got.array, want.array))
        if not checks["pixels"]:
            differences.append(_first_mismatch(got.array, want.array))
    return checks, differences


def verify_file(archive: Path, original: Path | None = None, **options: Any) -> Verified:
    """Prove that ``archive`` decodes, and, given ``original``, that it restores that file.

    Without ``original`` this checks the stream alone: ``decode`` validates every chunk checksum
    and the SHA-256 of the decoded array. With it, the stream is restored into a temporary file
    and compared with :func:`compare_files`. A stream that does not decode (``StreamError``,
    ``ChecksumError``; ``ModelError`` for other weights) is a report too, its ``stream`` check
    failed with the reason, so that scripts reading ``--json`` get one report per archive.

    Raises
    ------
    LlicError
        If ``original`` cannot be read.
    """
    report = Verified(archive=str(archive), original=original and str(original))
    with tempfile.TemporaryDirectory(prefix="llic-verify-") as tmp:
        restored = Path(tmp) / original.name if original else None
        try:
            if restored is None:
                llic_imaging.decode(archive.read_bytes(), **options)
            else:
                restore_file(archive, restored, any_name=True, **options)
        except (StreamError, ModelError) as exc:
            return replace(report, checks={"stream": False}, differences=[f"stream: {exc}"])
        if restored is None:
            return replace(report, checks={"stream": True})
        metadata = llic_imaging.metadata(archive.read_bytes())
        checks, differences = compare_files(restored, original, metadata=metadata)
    return replace(report, checks={"stream": True, **checks}, differences=differences)


def demo_file(
    src: Path,
    workdir: Path,
    *,
    numthreads: int | None = None,
    device: str | None = None,
    **encode_options: Any,
) -> Demoed:
    """Compress ``src`` into ``workdir``, restore it into ``workdir/restored``, compare with ``src``.

    This is the whole product loop on one file, so ``llic demo`` shows ratios that were
    actually proven lossless, not just computed.
    """
    runtime = {"numthreads": numthreads, "device": device}
    archive = workdir / f"{src.name}.llic"
    restored_path = workdir / "restored" / src.name
    restored_path.parent.mkdir(parents=True, exist_ok=True)
    compressed = compress_file(src, archive, **runtime, **encode_options)
    restored = restore_file(archive, restored_path, **runtime)
    metadata = llic_imaging.metadata(archive.read_bytes())
    checks, differences = compare_files(restored_path, src, metadata=metadata)
    verified = Verified(
        archive=str(archive), original=str(src), checks=checks, differences=differences
    )
    return Demoed(compressed=compressed, restored=restored, verified=verified)
