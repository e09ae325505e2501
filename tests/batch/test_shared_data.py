"""Every DICOM file of ``../shared/data`` through ``compress_tree`` -> ``restore_tree``, byte for byte.

Slow (seconds to minutes per file on CI's two cores), one test per file so a run can pick files
with ``-k`` and each gets its own timeout.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _archive_data import sha256

from llic_imaging import batch

DATA = Path(
    os.environ.get("LLIC_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data")
)
FILES = sorted((DATA / "medical").glob("*.dcm")) if (DATA / "MANIFEST.tsv").is_file() else []


@pytest.mark.slow
@pytest.mark.data
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("source", FILES or [None], ids=[p.name for p in FILES] or ["absent"])
def test_shared_dicom_restores_byte_for_byte(source: Path | None, tmp_path: Path) -> None:
    if source is None:
        pytest.skip(f"no shared data under {DATA}")
    study = tmp_path / "study"
    study.mkdir()
    (study / source.name).symlink_to(source)  # the archive stores the target's bytes
    report = batch.compress_tree(study, tmp_path / "archive", numthreads=1)
    assert report.exit_code == 0, report.failures
    [entry] = report.files
    assert entry.status in ("ok", "kept-compressed")
    restored = batch.restore_tree(tmp_path / "archive", tmp_path / "out", numthreads=1)
    assert restored.exit_code == 0, restored.failures
    assert sha256(tmp_path / "out" / source.name) == sha256(source)
