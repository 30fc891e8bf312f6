"""Tests for emseg.mixture.dask_fit: mixtures fitted on dask arrays.

A dask fit must equal the in-memory fit from the same starting parameters; the cluster
tests start a real LocalCluster on the loopback interface (no mocks).
"""

import subprocess
import sys
import warnings

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import emseg.mixture.dask_fit as edist  # noqa: E402
from emseg import EmsegError, GaussianMixture  # noqa: E402

from _helpers import gaussian_blobs  # noqa: E402

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]
FITTED = ["weights_", "means_", "covariances_", "precisions_cholesky_", "history_"]


@pytest.fixture(scope="module")
def data():
    """4,500 rows around three far-apart means, shuffled so every chunk holds all three."""
    means = np.array([[-5.0, 0.0], [0.0, 4.0], [5.0, -1.0]])
    cov = [[[1.0, 0.3], [0.3, 0.7]], [[0.5, 0.0], [0.0, 1.5]], [[1.2, -0.4], [-0.4, 0.9]]]
    X, _ = gaussian_blobs(np.random.default_rng(3), means, [1200, 1500, 1800], cov)
    return X[np.random.default_rng(4).permutation(X.shape[0])]


def start(covariance_type):
    """An explicit starting point, away from the answer, for every covariance type."""
    means = np.array([[-3.0, 1.0], [1.0, 2.0], [3.0, 0.0]])
    precisions = {
        "full": np.array([np.eye(2) * 0.8, np.eye(2), np.eye(2) * 1.3]),
        "tied": np.eye(2) * 0.9,
        "diag": np.array([[0.8, 1.0], [1.0, 0.7], [1.2, 1.1]]),
        "spherical": np.array([0.8, 1.0, 1.3]),
    }[covariance_type]
    return dict(weights_init=[0.2, 0.3, 0.5], means_init=means, precisions_init=precisions)


def fit_pair(X, Xd, w=None, wd=None, **kwargs):
    """The same model fitted in memory and on the dask array; returns both."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=emseg_warning())
        a = GaussianMixture(3, **kwargs).fit(X, sample_weight=w)
        b = GaussianMixture(3, **kwargs).fit(Xd, sample_weight=wd if wd is not None else w)
    return a, b


def emseg_warning():
    from emseg import ConvergenceWarning

    return ConvergenceWarning


def assert_same_fit(a, b, rtol=1e-6):
    for name in FITTED:
        np.testing.assert_allclose(getattr(b, name), getattr(a, name), rtol=rtol, err_msg=name)
    assert (b.n_iter_, b.converged_) == (a.n_iter_, a.converged_)
    assert b.lower_bound_ == pytest.approx(a.lower_bound_, rel=rtol)


# --- fitting on dask arrays -------------------------------------------------------------


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_dask_fit_equals_in_memory_fit(data, covariance_type):
    Xd = da.from_array(data, chunks=(700, 1))  # uneven row chunks, split features
    a, b = fit_pair(
        data, Xd, covariance_type=covariance_type, tol=0, max_iter=12, **start(covariance_type)
    )
    assert b.n_iter_ == 12
    assert_same_fit(a, b)


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_dask_fit_on_distributed_client_equals_in_memory_fit(cluster, data, covariance_type):
    with distributed.Client(cluster):
        Xd = da.from_array(data, chunks=1000).persist()
        a, b = fit_pair(
            data, Xd, covariance_type=covariance_type, tol=1e-8, max_iter=200,
            **start(covariance_type),
        )
    assert b.converged_
    assert_same_fit(a, b)


def test_weighted_dask_fit_equals_weighted_in_memory_fit(data):
    w = np.random.default_rng(5).uniform(0, 3, data.shape[0])
    w[::10] = 0  # zero-weight rows are dropped in both
    Xd = da.from_array(data, chunks=800)
    a, b = fit_pair(data, Xd, w, da.from_array(w, chunks=500), tol=0, max_iter=8, **start("full"))
    assert_same_fit(a, b)
    _, c = fit_pair(data, Xd, w, tol=0, max_iter=8, **start("full"))  # numpy weights
    assert_same_fit(a, c)


def test_missing_values_fitted_as_in_memory(data):
    X = data.copy()
    X[::7, 0] = np.nan
    X[3::11, 1] = np.nan
    X[5::97] = np.nan  # rows with nothing observed carry no information
    Xd = da.from_array(X, chunks=600)
    a, b = fit_pair(X, Xd, tol=0, max_iter=8, **start("full"))
    assert_same_fit(a, b)


def test_default_start_on_small_data_is_the_in_memory_start(data):
    # With at most INIT_ROWS rows the subsample is the whole array, so kmeans++ with the
    # same random_state starts both fits at the same point.
    a, b = fit_pair(data, da.from_array(data, chunks=1000), random_state=11, tol=1e-6)
    assert_same_fit(a, b)


def test_subsample_start_is_seeded_and_reaches_the_same_optimum(data, monkeypatch):
    monkeypatch.setattr(edist, "INIT_ROWS", 400)  # about 400 of the 4,500 rows
    Xd = da.from_array(data, chunks=1000)
    a, b = fit_pair(data, Xd, random_state=2, tol=1e-12, max_iter=500)
    c = GaussianMixture(3, random_state=2, tol=1e-12, max_iter=500).fit(Xd)
    for name in FITTED:
        np.testing.assert_array_equal(getattr(b, name), getattr(c, name))
    np.testing.assert_allclose(b.means_, a.means_, rtol=1e-6)
    np.testing.assert_allclose(b.covariances_, a.covariances_, rtol=1e-6)


def test_warm_start_continues_as_in_memory(data):
    Xd = da.from_array(data, chunks=1000)
    a, b = fit_pair(data, Xd, tol=0, max_iter=3, warm_start=True, **start("full"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=emseg_warning())
        a.fit(data)
        b.fit(Xd)
    assert_same_fit(a, b)


def test_callback_and_one_dimensional_input(data):
    seen = []
    gm = GaussianMixture(2, callback=lambda i, bound: seen.append(i), random_state=0, n_init=1)
    gm.fit(da.from_array(data[:, 0], chunks=1000))
    assert gm.means_.shape == (2, 1)
    assert seen == list(range(1, gm.n_iter_ + 1))


def test_predictions_on_a_dask_array_are_lazy_and_equal_in_memory(data, cluster):
    gm = GaussianMixture(3, random_state=0).fit(data)
    X = data.copy()
    X[5, 1] = np.nan  # a missing value takes the marginal, as in memory
    Xd = da.from_array(X, chunks=(700, 1))
    for method in ("predict", "predict_proba", "score_samples"):
        lazy = getattr(gm, method)(Xd)
        assert isinstance(lazy, da.Array), method  # nothing computed yet
        np.testing.assert_allclose(lazy.compute(), getattr(gm, method)(X), rtol=1e-12,
                                   err_msg=method)
    w = np.linspace(0.5, 2, X.shape[0])
    assert gm.score(Xd) == pytest.approx(gm.score(X), rel=1e-12)
    assert gm.score(Xd, sample_weight=w) == pytest.approx(gm.score(X, sample_weight=w), rel=1e-12)
    assert gm.bic(Xd) == pytest.approx(gm.bic(X), rel=1e-12)
    with distributed.Client(cluster):  # and on a cluster's workers
        np.testing.assert_array_equal(gm.predict(Xd).compute(), gm.predict(X))
    with pytest.raises(EmsegError, match="features"):
        gm.predict(da.from_array(data[:, :1]))


def test_dask_input_refused_as_in_memory(data):
    X = data.copy()
    X[10, 1] = np.inf
    with pytest.raises(EmsegError, match="infinity"):
        GaussianMixture(3).fit(da.from_array(X, chunks=1000))
    with pytest.raises(EmsegError, match="1-D or 2-D"):
        GaussianMixture(3).fit(da.zeros((4, 3, 2)))
    few = np.repeat([[0.0, 1.0], [2.0, 3.0]], 50, axis=0)
    with pytest.raises(EmsegError) as in_memory:
        GaussianMixture(3).fit(few)
    with pytest.raises(EmsegError, match="only 2 distinct rows") as chunked:
        GaussianMixture(3).fit(da.from_array(few, chunks=30))
    assert str(chunked.value) == str(in_memory.value)
    X = data.copy()
    X[:, 1] = np.nan
    with pytest.raises(EmsegError, match="column 1 has no observed value"):
        GaussianMixture(3).fit(da.from_array(X, chunks=1000))
    with pytest.raises(EmsegError, match="one value per row"):
        GaussianMixture(3).fit(da.from_array(data, chunks=1000), sample_weight=np.ones(3))
    with pytest.raises(EmsegError, match="zero for every row"):
        GaussianMixture(3).fit(da.from_array(data, chunks=1000),
                               sample_weight=np.zeros(data.shape[0]))


def test_importing_emseg_mixture_does_not_import_dask():
    code = "import sys, emseg.mixture.gaussian_mixture; sys.exit('dask' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_dask_fit_does_not_import_the_estimator():
    code = ("import sys, emseg.mixture.dask_fit; "
            "sys.exit('emseg.mixture.gaussian_mixture' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
