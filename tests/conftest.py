"""Shared test setup: small seeded data sets and a quick hypothesis profile."""

import os

# The machine is shared: numba's OpenMP workers spin after each parallel region and
# starve OpenBLAS and the other processes, which makes the many tiny LAPACK calls of an
# EM loop 20-50x slower. Results do not depend on thread counts, only the run time does.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

try:  # numpy may have been imported before this file (by a plugin): limit it anyway
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")
except ImportError:  # pragma: no cover
    pass

# Property tests stay small: the suite must run in well under a minute.
settings.register_profile(
    "emseg",
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("emseg")


from _helpers import gaussian_blobs  # noqa: E402


@pytest.fixture
def rng():
    return np.random.default_rng(20240601)


@pytest.fixture
def blobs_2d():
    """Three far-apart unit-variance blobs in 2-D (means sorted by the first feature)."""
    means = np.array([[-6.0, 0.0], [0.0, 5.0], [6.0, -2.0]])
    X, labels = gaussian_blobs(np.random.default_rng(7), means, [120, 180, 150])
    return X, labels, means


@pytest.fixture
def overlapping_2d():
    """Three overlapping blobs: EM needs many iterations, so the history is long."""
    means = np.array([[-1.5, 0.0], [0.0, 1.0], [1.5, -0.5]])
    cov = [[[1.0, 0.4], [0.4, 0.8]], [[0.6, -0.2], [-0.2, 1.2]], [[0.9, 0.0], [0.0, 0.5]]]
    X, labels = gaussian_blobs(np.random.default_rng(11), means, [100, 140, 120], cov)
    return X, labels, means


@pytest.fixture(scope="module")
def cluster():
    """Two single-threaded workers on 127.0.0.1, talking over TCP (so every task and
    result is serialised). In-process threads: they share this process's compiled
    kernels, so the tests do not wait for numba in new processes."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=False,
        protocol="tcp",
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
    ) as c:
        yield c
