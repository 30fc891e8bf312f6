"""Tests for emseg.workflows.cluster: per-item work on a dask.distributed cluster.

The cluster tests start a real LocalCluster on the loopback interface (no mocks).
"""

import math
import sys

import pytest

pytest.importorskip("distributed")

from emseg import EmsegError  # noqa: E402
from emseg.workflows import cluster as edist  # noqa: E402

def test_map_unordered_yields_every_item_and_isolates_a_failure(cluster):
    items = [4.0, -1.0, 9.0, 16.0]  # math.sqrt(-1) raises ValueError on its worker
    out = dict(edist.map_unordered(math.sqrt, items, cluster.scheduler_address))
    assert sorted(out) == [0, 1, 2, 3]
    assert [out[i] for i in (0, 2, 3)] == [2.0, 3.0, 4.0]
    assert isinstance(out[1], ValueError) and "math domain error" in str(out[1])
    assert list(edist.map_unordered(abs, [], cluster.scheduler_address)) == []


def test_map_unordered_local_cluster():
    out = dict(edist.map_unordered(abs, [-1, 2, -3], "local", n_workers=2))
    assert out == {0: 1, 1: 2, 2: 3}


def test_unreachable_scheduler_is_a_one_line_error():
    with pytest.raises(EmsegError, match=r"tcp://127\.0\.0\.1:1\b") as err:
        list(edist.map_unordered(abs, [1], "tcp://127.0.0.1:1", timeout=1))
    assert "\n" not in str(err.value)
    with pytest.raises(EmsegError, match="scheduler must be"):
        list(edist.map_unordered(abs, [1], ""))


def test_missing_dask_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed
    with pytest.raises(EmsegError, match=r"pip install 'emseg\[dask\]'"):
        list(edist.map_unordered(abs, [1], "local"))
