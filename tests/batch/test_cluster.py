"""``batch.cluster.fan_out`` on a real dask LocalCluster: every call runs once on a worker
process, and a file's error and warnings come back as data, to be raised where reported."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

from llic_imaging import formats
from llic_imaging.batch.cluster import Outcome, fan_out
from llic_imaging.errors import FormatError, MetadataWarning


def test_every_call_runs_once_on_a_worker_process(tmp_path: Path) -> None:
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"not an array")
    calls = [(), (), ()]
    got = dict(fan_out(os.getpid, calls, workers=2))
    assert sorted(got) == [0, 1, 2]
    pids = {o.unwrap() for o in got.values()}
    assert os.getpid() not in pids
    assert 1 <= len(pids) <= 2

    ((_, failed),) = fan_out(formats.load, [(bad,)], workers=1)
    with pytest.raises(FormatError, match="magic"):
        failed.unwrap()
    ((_, missing),) = fan_out(os.stat, [(tmp_path / "missing.npy",)], workers=1)
    with pytest.raises(FileNotFoundError):
        missing.unwrap()

    ((_, warned),) = fan_out(warnings.warn, [("kept the rest", MetadataWarning)], workers=1)
    assert warned.warned == [(MetadataWarning, "kept the rest")]
    with pytest.warns(MetadataWarning, match="kept the rest"):
        assert warned.unwrap() is None


def test_an_outcome_raises_its_error_after_its_warnings() -> None:
    outcome = Outcome(error=FormatError("bad"), warned=[(MetadataWarning, "first")])
    with pytest.warns(MetadataWarning, match="first"), pytest.raises(FormatError, match="bad"):
        outcome.unwrap()


def test_a_running_cluster_is_used_by_its_address() -> None:
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster:
        ((i, outcome),) = fan_out(os.getpid, [()], scheduler=cluster.scheduler_address)
        assert i == 0
        assert outcome.unwrap() != os.getpid()
        assert cluster.workers  # fan_out leaves a cluster it did not start running
