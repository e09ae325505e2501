"""The .llic container: header, chunk index, metadata and payloads as checksummed bytes.

Imports only ``llic_imaging.errors``: it stores bytes and never learns what a model is.
"""

from __future__ import annotations

from llic_imaging.container.reader import Container, check, read, read_file
from llic_imaging.container.spec import MAGIC, VERSION, ChunkEntry, ChunkKey
from llic_imaging.container.writer import write

__all__ = [
    "MAGIC",
    "VERSION",
    "ChunkEntry",
    "ChunkKey",
    "Container",
    "check",
    "read",
    "read_file",
    "write",
]
