"""The shared development corpus: its files, benchmark groups, committed train/validation split, 2D planes.

Reads pixels only through ``llic_imaging.formats.planes``; used by ``bench`` and ``train``.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from llic_imaging.errors import LlicError

__all__ = [
    "EXTRA_GROUPS",
    "GROUPS",
    "SPLITS",
    "CorpusFile",
    "Plane",
    "default_root",
    "files",
    "group_of",
    "iter_planes",
    "read_planes",
    "series_key",
    "split_paths",
]

#: Benchmark groups of ``BASELINES.md``, in its table order. "8-bit sources" are files stored as
#: 8-bit integers; the others hold 9-16 bit data in 16-bit containers (raw cost 16 bps).
GROUPS: tuple[str, ...] = (
    "CT",
    "MR",
    "other medical",
    "CT (8-bit sources)",
    "MR (8-bit sources)",
    "other medical (8-bit sources)",
    "satellite 16-bit",
    "satellite 8-bit",
)
#: Groups for files that are neither medical nor satellite by folder or suffix (e.g. ``.npy``,
#: ``.png`` samples), so that ``llic bench`` works on any directory.
EXTRA_GROUPS: tuple[str, ...] = ("other 16-bit", "other 8-bit")
SPLITS: tuple[str, ...] = ("train", "validation")

_MEDICAL_SUFFIXES = (".dcm", ".dicom", ".nii", ".nii.gz", ".mha", ".mhd", ".nrrd", ".nhdr")
_SATELLITE_SUFFIXES = (".tif", ".tiff")
_IMAGE_SUFFIXES = (*_MEDICAL_SUFFIXES, *_SATELLITE_SUFFIXES, ".npy", ".png")
_SPLITS_DIR = Path(__file__).resolve().parents[2] / "splits"
# Files of one subject whose names share no numbered stem (chris_t1, chris_PD, chris_MRA).
_SUBJECT_PREFIXES = ("medical/MR_niivue_chris_",)


@dataclass(frozen=True)
class CorpusFile:
    """One image file of a corpus.

    ``relpath`` is POSIX and relative to the data root (the folder of ``MANIFEST.tsv`` when there
    is one), which is how ``splits/*.txt`` name files. ``split`` is ``None`` for a file that is
    in neither committed split list (any file outside the shared corpus).
    """

    path: Path
    relpath: str
    group: str
    split: str | None


@dataclass(frozen=True, eq=False)
class Plane:
    """One 2D plane of a file, with the stored integers exactly as the format adapter read them."""

    file: CorpusFile
    name: str
    array: np.ndarray

    @property
    def group(self) -> str:
        return self.file.group

    @property
    def samples(self) -> int:
        return int(self.array.size)

    @property
    def constant(self) -> bool:
        """True for a plane with one value; group means exclude these, as ``BASELINES.md`` does."""
        return bool(self.array.min() == self.array.max())


def default_root() -> Path:
    """Return the shared data folder: ``$LLIC_DATA``, else the nearest ``shared/data`` upwards.

    The search starts from the working directory and then from this source file, so it finds
    ``../shared/data`` both from the repository root and from a CI clone next to ``shared/``.

    Raises
    ------
    FileNotFoundError
        If ``$LLIC_DATA`` is set but is not a folder, or no ``shared/data`` folder exists.
    """
    env = os.environ.get("LLIC_DATA")
    if env:
        root = Path(env).expanduser()
        if not root.is_dir():
            msg = f"$LLIC_DATA={env!r} is not a folder"
            raise FileNotFoundError(msg)
        return root.resolve()
    starts = (Path.cwd().resolve(), Path(__file__).resolve().parent)
    for start in starts:
        for base in (start, *start.parents):
            candidate = base / "shared" / "data"
            if (candidate / "MANIFEST.tsv").is_file():
                return candidate
    msg = "no shared/data folder with a MANIFEST.tsv above the working directory; set $LLIC_DATA"
    raise FileNotFoundError(msg)


def series_key(relpath: str) -> str:
    """Return the key shared by files of one patient, scene, series or overlapping mosaic.

    The rule drops a Landsat band suffix (``_B2``) and a trailing slice or part number written
    after ``_`` or a lower-case letter (``ct3slice_01``, ``dti_ortho_0010``, ``mosaic_cog1``,
    ``scene_band2``), and maps the files of one named subject to one key. Numbers after
    capitals name distinct images (``CT_WG04_CT1`` and ``CT_WG04_CT2`` are two patients).
    """
    stem = _strip_suffix(relpath)
    for prefix in _SUBJECT_PREFIXES:
        if stem.startswith(prefix):
            return prefix.rstrip("_")
    stem = re.sub(r"_B\d+$", "", stem)
    return re.sub(r"(_|(?<=[a-z]))\d+$", "", stem)


def group_of(relpath: str, modality: str, dtype: str) -> str:
    """Return the benchmark group of a file from its path, modality and stored dtype.

    ``modality`` is the ``MANIFEST.tsv`` column or the file-name prefix (``CT_...``); only "CT"
    and "MR" have groups of their own, everything else medical is "other medical". The 8-bit
    groups hold files *stored* as 8-bit integers, so an 8-bit plane of a 16-bit file stays in a
    16-bit group (its raw cost is 16 bps).
    """
    eight = np.dtype(dtype).itemsize == 1
    top = relpath.split("/", 1)[0]
    name = relpath.lower()
    if top == "satellite" or (top != "medical" and name.endswith(_SATELLITE_SUFFIXES)):
        return "satellite 8-bit" if eight else "satellite 16-bit"
    if top == "medical" or name.endswith(_MEDICAL_SUFFIXES):
        base = modality if modality in ("CT", "MR") else "other medical"
        return f"{base} (8-bit sources)" if eight else base
    return EXTRA_GROUPS[1] if eight else EXTRA_GROUPS[0]


def split_paths(split: str) -> list[str]:
    """Return the relative paths listed in ``splits/<split>.txt`` (comments and blanks skipped).

    Raises
    ------
    ValueError
        If ``split`` is not one of :data:`SPLITS`.
    FileNotFoundError
        If the split file is missing (the package runs outside a source checkout).
    """
    if split not in SPLITS:
        msg = f"split must be one of {SPLITS}, got {split!r}"
        raise ValueError(msg)
    return list(_read_split(split))


def files(root: str | os.PathLike[str] | None = None) -> list[CorpusFile]:
    """List the image files under ``root`` (a folder or one file) with their group and split.

    Groups come from ``MANIFEST.tsv`` (modality and stored dtype) when the file has a row there,
    otherwise from the file-name prefix and the dtype of its first plane, which means reading it
    (a file that cannot be read is filed as 16-bit; reading its planes then raises).

    Parameters
    ----------
    root
        Folder searched recursively for files with the suffixes of ``llic_imaging.formats``
        (``.dcm``, ``.nii[.gz]``, ``.tif[f]``, ``.npy``, ``.png``, ``.mha``, ``.nrrd``, ...; DICOM
        files without a suffix are not found), or a single file. ``None`` means
        :func:`default_root`.

    Raises
    ------
    FileNotFoundError
        If ``root`` does not exist.
    """
    base = Path(root).expanduser().resolve() if root is not None else default_root()
    if not base.exists():
        msg = f"{base}: no such file or folder"
        raise FileNotFoundError(msg)
    data_root, manifest = _find_manifest(base)
    if base.is_file():
        paths = [base]
    else:
        paths = sorted(p for p in base.rglob("*") if p.is_file() and _is_image(p))
    memberships = _memberships()
    out = []
    for path in paths:
        relpath = path.relative_to(data_root).as_posix()
        row = manifest.get(relpath)
        if row is not None:
            group = group_of(relpath, row[0], _manifest_dtype(row[1]))
        else:
            group = group_of(relpath, path.name.split("_", 1)[0], _first_dtype(path))
        out.append(CorpusFile(path, relpath, group, memberships.get(relpath)))
    return out


def read_planes(file: CorpusFile, *, max_planes: int | None = 16) -> list[Plane]:
    """Read the planes of ``file``: at most ``max_planes``, evenly spaced, as ``BASELINES.md``.

    The selection ``round(linspace(0, n - 1, max_planes))`` is the one that produced the
    ``baselines.tsv`` slices (e.g. z0, z10, ..., z153 of a 154-slice volume), so per-plane
    numbers can be compared with it. Constant planes are kept; means skip them.
    """
    planes = _read(file.path)
    if max_planes is not None and len(planes) > max_planes:
        keep = np.unique(np.linspace(0, len(planes) - 1, max_planes).round().astype(int))
        planes = [planes[i] for i in keep]
    return [Plane(file, name, array) for name, array in planes]


def iter_planes(
    root: str | os.PathLike[str] | None = None,
    *,
    split: str = "validation",
    groups: Iterable[str] | None = None,
    max_planes_per_file: int | None = 16,
) -> Iterator[Plane]:
    """Yield the 2D planes of a corpus one file at a time, so memory holds one file's planes.

    Parameters
    ----------
    root
        Data folder or file; ``None`` means :func:`default_root`.
    split
        ``"validation"``, ``"train"`` or ``"all"``; ``"all"`` also yields files outside both
        committed lists.
    groups
        Only files of these groups (names from :data:`GROUPS` / :data:`EXTRA_GROUPS`).
    max_planes_per_file
        See :func:`read_planes`; ``None`` yields every plane.

    Raises
    ------
    ValueError
        If ``split`` or a group name is unknown.
    FileNotFoundError
        If ``split`` is not "all" and ``splits/<split>.txt`` is missing.
    """
    if split != "all" and split not in SPLITS:
        msg = f"split must be 'all' or one of {SPLITS}, got {split!r}"
        raise ValueError(msg)
    if split != "all":
        _read_split(split)  # a missing split file must fail loudly, not yield nothing
    wanted = set(groups) if groups is not None else None
    if wanted is not None and not wanted <= set(GROUPS + EXTRA_GROUPS):
        msg = f"unknown groups {sorted(wanted - set(GROUPS + EXTRA_GROUPS))}; expected {GROUPS}"
        raise ValueError(msg)
    for file in files(root):
        if split != "all" and file.split != split:
            continue
        if wanted is not None and file.group not in wanted:
            continue
        yield from read_planes(file, max_planes=max_planes_per_file)


def _read(path: Path) -> list[tuple[str, np.ndarray]]:
    from llic_imaging import formats

    return formats.planes(path)


def _first_dtype(path: Path) -> str:
    # An unreadable file is filed as 16-bit here; reading its planes raises the real error, so
    # a benchmark reports it per file instead of failing the whole listing.
    try:
        return str(_read(path)[0][1].dtype)
    except LlicError:
        return "uint16"


def _is_image(path: Path) -> bool:
    return path.name.lower().endswith(_IMAGE_SUFFIXES)


def _strip_suffix(relpath: str) -> str:
    for suffix in sorted(_IMAGE_SUFFIXES, key=len, reverse=True):
        if relpath.lower().endswith(suffix):
            return relpath[: -len(suffix)]
    return relpath


def _manifest_dtype(dtype: str) -> str:
    # Integer-valued float volumes (niivue pcasl) are cast to 16-bit integers for coding.
    return "int16" if np.dtype(dtype).kind == "f" else dtype


def _find_manifest(base: Path) -> tuple[Path, dict[str, tuple[str, str]]]:
    """Return (data root, {relpath: (modality, dtype)}) from the nearest MANIFEST.tsv upwards."""
    start = base if base.is_dir() else base.parent
    for folder in (start, *start.parents):
        manifest = folder / "MANIFEST.tsv"
        if manifest.is_file():
            with manifest.open(newline="", encoding="utf-8") as fh:
                rows = csv.DictReader(fh, delimiter="\t")
                table = {r["file"]: (r["modality"], r["dtype"]) for r in rows}
            return folder, table
    return start, {}


@cache
def _read_split(split: str) -> tuple[str, ...]:
    path = _SPLITS_DIR / f"{split}.txt"
    lines = path.read_text(encoding="utf-8").splitlines()
    return tuple(s for line in lines if (s := line.split("#", 1)[0].strip()))


def _memberships() -> dict[str, str]:
    try:
        return {rel: split for split in SPLITS for rel in _read_split(split)}
    except FileNotFoundError:
        return {}
