"""The numpy twins in emseg._shared.compute against the compiled kernels they stand in for."""

import subprocess
import sys

import numpy as np
import pytest

from emseg._shared import compute as _compute

from emseg._shared import kernels as _kernels
from emseg.mixture.gaussian_mixture import GaussianMixture


@pytest.fixture
def numpy_exact(monkeypatch):
    """The exact kernels take the compiled path whenever numba is loaded, as it is in
    this test process; make them take the numpy one."""
    monkeypatch.setattr(_compute, "compiled_loaded", lambda: False)


def _params(rng, K, D, kind):
    means = rng.normal(size=(K, D))
    if kind == "full":
        prec = np.triu(rng.normal(scale=0.3, size=(K, D, D))) + 2 * np.eye(D)
    else:
        prec = rng.uniform(0.5, 2.0, size=(K, D))
    log_norm = rng.normal(size=K)
    return log_norm, means, prec


def _close(a, b):
    np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("kind", ["full", "diag"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("K,D", [(1, 1), (3, 1), (4, 3), (2, 5)])
def test_estep_and_log_prob_match_the_compiled_kernels(kind, weighted, K, D):
    rng = np.random.default_rng(K * 10 + D)
    X = rng.normal(size=(300, D))
    w = rng.uniform(0.1, 5, 300) if weighted else np.empty(0)
    log_norm, means, prec = _params(rng, K, D, kind)
    small = getattr(_compute, f"estep_{kind}")(X, w, log_norm, means, prec)
    big = getattr(_kernels, f"estep_{kind}")(X, w, log_norm, means, prec)
    for a, b in zip(small, big):
        _close(a, b)
    _close(
        getattr(_compute, f"log_prob_{kind}")(X, log_norm, means, prec),
        getattr(_kernels, f"log_prob_{kind}")(X, log_norm, means, prec),
    )


def test_tied_precisions_as_a_broadcast_view():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 2))
    log_norm, means, prec = _params(rng, 3, 2, "full")
    tied = np.broadcast_to(prec[0], (3, 2, 2))
    small = _compute.estep_full(X, np.empty(0), log_norm, means, tied)
    big = _kernels.estep_full(X, np.empty(0), log_norm, means, np.ascontiguousarray(tied))
    for a, b in zip(small, big):
        _close(a, b)


def test_normalise_rows_in_place_with_impossible_rows():
    rng = np.random.default_rng(2)
    lp = rng.normal(scale=50, size=(100, 4))
    lp[3] = -np.inf
    lp[7, :2] = -np.inf
    a, b = lp.copy(), lp.copy()
    lse_a = _compute.normalise_rows(a)
    lse_b = _kernels.normalise_rows(b)
    _close(a, b)
    _close(lse_a, lse_b)
    assert lse_a[3] == -np.inf and np.all(a[3] == 0.25)
    _close(a.sum(1), np.ones(100))


def test_distances_and_centres_match():
    rng = np.random.default_rng(3)
    X = rng.integers(0, 4, size=(500, 2)).astype(np.float64)  # many exact ties
    centres = np.array([[0.0, 0.0], [1.0, 1.0], [1.0, 1.0], [3.0, 2.0]])
    la, da = _compute.nearest_centre(X, centres)
    lb, db = _kernels.nearest_centre(X, centres)
    np.testing.assert_array_equal(la, lb)
    _close(da, db)
    _close(_compute.sq_dist_to(X, centres[3]), _kernels.sq_dist_to(X, centres[3]))
    w = rng.uniform(0, 2, 500)
    for weights in (w, np.empty(0)):
        for a, b in zip(_compute.weighted_centres(X, weights, la, 4),
                        _kernels.weighted_centres(X, weights, lb, 4)):
            _close(a, b)


@pytest.mark.parametrize("D", [1, 3])
def test_distinct_rows_is_identical(D, numpy_exact):
    rng = np.random.default_rng(4)
    X = rng.integers(0, 5, size=(400, D)).astype(np.float64)
    bits = X.view(np.uint64)
    w = rng.uniform(0, 1, 400)
    for weights in (w, np.empty(0)):
        for cap in (1000, 5 ** D, 5 ** D - 1, 3):
            a = _compute.distinct_rows(bits, weights, cap)
            b = _kernels.distinct_rows(bits, weights, cap)
            assert a[0].dtype == b[0].dtype == np.int64
            np.testing.assert_array_equal(a[0], b[0])
            np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.parametrize("D", [1, 2, 5, 8])
def test_inv_lower(D):
    rng = np.random.default_rng(D)
    L = np.tril(rng.normal(size=(D, D))) + 3 * np.eye(D)
    _close(_compute.inv_lower(L), _kernels.inv_lower(L))
    _close(_compute.inv_lower(L) @ L, np.eye(D))


@pytest.mark.parametrize("size", [1, 3, 256, 257, 5000])
@pytest.mark.parametrize("dtype", [np.int32, np.uint8, np.float64])
def test_gather(size, dtype, numpy_exact):
    rng = np.random.default_rng(size)
    table = rng.integers(-100 if dtype != np.uint8 else 0, 200, size).astype(dtype)
    index = rng.integers(0, size, 10_001).astype(np.int32)
    out = _compute.gather(table, index)
    assert out.dtype == table.dtype and out.shape == index.shape
    np.testing.assert_array_equal(out, table[index])
    np.testing.assert_array_equal(_kernels.gather(table, index), table[index])


def test_size_alone_chooses_the_float_path():
    assert _compute._small(256, 8, 1, 1)
    assert not _compute._small(100_000, 3, 1, 1)
    assert not _compute._small(1000, 4, 3, 3)


def test_the_switch_sends_every_call_to_the_compiled_kernel(monkeypatch):
    """``TWINS = False``: every twin calls its compiled kernel, even on tiny inputs."""
    called = []

    class Spy:
        def __getattr__(self, name):
            called.append(name)
            return getattr(_kernels, name)

    monkeypatch.setattr(_compute, "_compiled", Spy)
    monkeypatch.setattr(_compute, "compiled_loaded", lambda: False)
    rng = np.random.default_rng(6)
    X = rng.normal(size=(20, 2))
    log_norm, means, prec = _params(rng, 3, 2, "full")
    diag = _params(rng, 3, 2, "diag")[2]
    labels = np.zeros(20, dtype=np.int64)
    calls = {
        "estep_full": (X, np.empty(0), log_norm, means, prec),
        "estep_diag": (X, np.empty(0), log_norm, means, diag),
        "log_prob_full": (X, log_norm, means, prec),
        "log_prob_diag": (X, log_norm, means, diag),
        "normalise_rows": (rng.normal(size=(20, 3)),),
        "nearest_centre": (X, means),
        "sq_dist_to": (X, means[0]),
        "weighted_centres": (X, np.empty(0), labels, 3),
        "distinct_rows": (X.view(np.uint64), np.empty(0), 100),
        "gather": (np.arange(5, dtype=np.int32), np.zeros(20, dtype=np.int32)),
        "inv_lower": (np.eye(2),),
    }
    for twin, args in calls.items():
        getattr(_compute, twin)(*args)
    assert called == []  # the twins ran
    monkeypatch.setattr(_compute, "TWINS", False)
    for twin, args in calls.items():
        getattr(_compute, twin)(*args)
    assert called == list(calls)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_fit_is_the_same_on_either_path(covariance_type, monkeypatch):
    rng = np.random.default_rng(5)
    X = np.concatenate([rng.normal(m, 0.5, size=(150, 2)) for m in (-2, 0, 3)])
    a = GaussianMixture(3, covariance_type=covariance_type, random_state=0, tol=1e-8).fit(X)
    monkeypatch.setattr(_compute, "TWINS", False)
    b = GaussianMixture(3, covariance_type=covariance_type, random_state=0, tol=1e-8).fit(X)
    assert a.n_iter_ == b.n_iter_
    np.testing.assert_allclose(a.history_, b.history_, rtol=1e-10)
    np.testing.assert_allclose(a.means_, b.means_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(a.covariances_, b.covariances_, rtol=1e-8, atol=1e-10)
    np.testing.assert_array_equal(a.predict(X), b.predict(X))


def test_small_fits_do_not_load_numba():
    """Why the twins are kept (see the measurement in compute.py): a small fit of each
    covariance type, its labels and its score run without numba."""
    code = (
        "import sys, numpy as np\n"
        "from emseg import GaussianMixture\n"
        "X = np.random.default_rng(0).normal(size=(150, 2))\n"
        "for kind in ('full', 'tied', 'diag', 'spherical'):\n"
        "    gm = GaussianMixture(3, covariance_type=kind, random_state=0).fit(X)\n"
        "    gm.predict(X), gm.score(X)\n"
        "print('numba' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_grey_image_segmentation_does_not_load_numba():
    """The start-up that matters: an 8-bit grey image is segmented and drawn without
    numba (whose loading costs about 1.5-2 s per process)."""
    code = (
        "import sys, numpy as np, emseg\n"
        "from emseg.image import render\n"
        "rng = np.random.default_rng(0)\n"
        "img = np.clip(rng.normal(100, 30, (64, 80)), 0, 255).astype(np.uint8)\n"
        "seg = emseg.segment(img, 3)\n"
        "render.overlay(img, seg.labels, 3)\n"
        "render.segments(seg.labels, np.zeros((3, 3), np.uint8))\n"
        "render.label_image(seg.labels, 3)\n"
        "print('numba' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
