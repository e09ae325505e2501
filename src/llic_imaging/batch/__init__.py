"""Library twin of ``llic-dicom``: archive DICOM study folders as verified ``.llic`` files plus a
JSON manifest, restore them byte for byte, verify and summarise them. No click, no tqdm here.
"""

from __future__ import annotations

from llic_imaging.batch.compress import compress_tree
from llic_imaging.batch.dicom import EXPORT_SYNTAXES
from llic_imaging.batch.manifest import MANIFEST, STATUSES, Entry
from llic_imaging.batch.report import ArchiveReport, ArchiveWarning, FileReport, Progress
from llic_imaging.batch.restore import archive_info, restore_tree, verify_tree

__all__ = [
    "EXPORT_SYNTAXES",
    "MANIFEST",
    "STATUSES",
    "ArchiveReport",
    "ArchiveWarning",
    "Entry",
    "FileReport",
    "Progress",
    "archive_info",
    "compress_tree",
    "restore_tree",
    "verify_tree",
]
