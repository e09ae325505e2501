"""DICOMDIRs in a study: the files they reference, checked against the files that are there."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from llic_imaging.batch import dicom
from llic_imaging.batch.manifest import Entry
from llic_imaging.batch.report import ArchiveWarning, one_line
from llic_imaging.errors import LlicError

__all__ = ["FileSets"]


@dataclass
class FileSets:
    """The readable DICOMDIRs of a study and the study files their records reference.

    References are relative to the DICOMDIR's folder and matched without regard to case (ISO
    9660 names are upper case, and Linux mounts often show them lower case). Mismatches are
    warnings, not failures: the archive keeps every file either way, and exports often carry
    stale DICOMDIRs.
    """

    dicomdirs: list[str] = field(default_factory=list)
    referenced: set[str] = field(default_factory=set)
    warnings: list[ArchiveWarning] = field(default_factory=list)

    @classmethod
    def read(cls, files: list[tuple[str, Path, str | None]]) -> FileSets:
        """Read every file named DICOMDIR in a :func:`~llic_imaging.batch.tree.walk` listing."""
        present = {rel.casefold(): rel for rel, _, _ in files}
        found = cls()
        for rel, path, problem in files:
            if problem is not None or path.name.upper() != "DICOMDIR":
                continue
            try:
                references = dicom.referenced_files(path)
            except LlicError as exc:
                found.warnings.append(ArchiveWarning(rel, one_line(exc)))
                continue
            found.dicomdirs.append(rel)
            for ref in references:
                target = (PurePosixPath(rel).parent / ref).as_posix()
                if target.casefold() in present:
                    found.referenced.add(present[target.casefold()])
                else:
                    message = f"referenced by {rel} but not in the study"
                    found.warnings.append(ArchiveWarning(target, message))
        return found

    def unreferenced(self, entries: Iterable[Entry]) -> list[ArchiveWarning]:
        """Warnings for the DICOM instances below a DICOMDIR's folder that no DICOMDIR references.

        Only instances (entries with a SOPInstanceUID): reports or viewer programs beside a
        DICOMDIR are not part of the file-set.
        """
        folders = {PurePosixPath(d).parent for d in self.dicomdirs}
        return [
            ArchiveWarning(e.path, "DICOM instance not referenced by any DICOMDIR")
            for e in entries
            if e.sop_instance_uid
            and e.path not in self.referenced
            and e.path not in self.dicomdirs
            and not folders.isdisjoint(PurePosixPath(e.path).parents)
        ]
