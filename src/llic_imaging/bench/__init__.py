"""``llic bench``'s library twin: llic against classical codecs on the corpus, in one run.

Uses only public names of ``llic_imaging`` (``encode``/``decode``/``version``) and ``corpus``.
"""

from __future__ import annotations

from llic_imaging.bench.codecs import CODECS, DEFAULT_CODECS
from llic_imaging.bench.memory import measure_memory, peak_memory
from llic_imaging.bench.report import BenchReport, PlaneResult
from llic_imaging.bench.runner import run

__all__ = [
    "CODECS",
    "DEFAULT_CODECS",
    "BenchReport",
    "PlaneResult",
    "measure_memory",
    "peak_memory",
    "run",
]
