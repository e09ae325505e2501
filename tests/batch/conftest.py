"""Fixtures of the archive tests (helpers are in ``_archive_data``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from _archive_data import copy_bundled, write_dicom


@pytest.fixture
def light_study(tmp_path: Path) -> Path:
    """A study that needs no codec: two kept-compressed instances, a text file, a sub-folder."""
    study = tmp_path / "study"
    (study / "series").mkdir(parents=True)
    copy_bundled("MR_small_RLE.dcm", study / "series" / "IM0001")
    write_dicom(study / "series" / "IM0002.dcm", rle=True, seed=2)
    (study / "README.txt").write_text("acquired on the test scanner\n")
    return study
