"""Session-wide pytest setup: a report header with the versions that decide bit-exactness, the CI
hypothesis profile, and the one fixture through which tests reach the real images in ../shared/data.
"""

from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from hypothesis import settings

REPO = Path(__file__).resolve().parents[1]

# CI shares 2 cores with nothing to spare: a slow example is not a bug (no deadline), and a
# failure must reproduce from the log (derandomize). Locally hypothesis keeps exploring.
settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Print numpy/torch/constriction versions and torch threads, so a CI log says what ran."""
    import numpy

    lines = [f"llic_imaging: numpy {numpy.__version__}"]
    try:
        import torch

        lines.append(
            f"llic_imaging: torch {torch.__version__}, threads {torch.get_num_threads()}, "
            f"cuda {torch.cuda.is_available()}"
        )
    except ImportError:
        lines.append("llic_imaging: torch not installed")
    try:
        lines.append(f"llic_imaging: constriction {version('constriction')}")
    except PackageNotFoundError:
        lines.append("llic_imaging: constriction not installed")
    return lines


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Return ``../shared/data`` beside the repository, or skip when this checkout has none.

    The real images are not committed (licences, size); CI and developer machines have them
    beside the clone, a bare checkout does not, and tests must still run there.
    """
    path = REPO.parent / "shared" / "data"
    if not (path / "MANIFEST.tsv").is_file():
        pytest.skip(f"{path} is absent")
    return path
