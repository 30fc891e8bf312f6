"""Tests for emseg.GaussianMixture.

Known answers (far-apart blobs, scipy densities), a reference implementation
(scikit-learn, from the same starting parameters) and properties of EM (the
log-likelihood never falls; weighting a row by m equals repeating it m times).
"""

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

import emseg
from emseg import ConvergenceWarning, EmptyComponentWarning, EmsegError, GaussianMixture

from _helpers import gaussian_blobs

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]
INIT_PARAMS = ["kmeans++", "kmeans", "random", "random_from_data"]

# For tests that compare two fits run for a fixed budget: whether either converged is
# beside the point there.
budget_may_run_out = pytest.mark.filterwarnings("ignore::emseg.ConvergenceWarning")


# --- helpers ---------------------------------------------------------------------------


def initial_precisions(covariance_type, K, D):
    """Distinct, valid precisions_init of the right shape for each covariance type."""
    if covariance_type == "full":
        out = []
        for k in range(K):
            C = np.eye(D) * (0.8 + 0.3 * k)
            C[0, -1] = C[-1, 0] = 0.2 if D > 1 else C[0, 0]
            out.append(np.linalg.inv(C))
        return np.array(out)
    if covariance_type == "tied":
        C = np.eye(D) * 1.3
        if D > 1:
            C[0, 1] = C[1, 0] = -0.3
        return np.linalg.inv(C)
    if covariance_type == "diag":
        return 1.0 / (0.7 + 0.25 * np.arange(K * D).reshape(K, D) % 1.2)
    return 1.0 / (0.6 + 0.4 * np.arange(K))


def initial_params(covariance_type, means):
    """weights_init, means_init and precisions_init: a full, explicit starting point."""
    means = np.asarray(means, dtype=np.float64)
    K, D = means.shape
    weights = np.arange(1, K + 1, dtype=np.float64)
    return {
        "weights_init": weights / weights.sum(),
        "means_init": means,
        "precisions_init": initial_precisions(covariance_type, K, D),
    }


def full_covariances(gm):
    """(K, D, D) covariances of a fitted model, whatever its covariance type."""
    K, D = gm.means_.shape
    cov = np.asarray(gm.covariances_)
    if gm.covariance_type == "full":
        return cov
    if gm.covariance_type == "tied":
        return np.broadcast_to(cov, (K, D, D))
    if gm.covariance_type == "diag":
        return np.stack([np.diag(c) for c in cov])
    return cov[:, None, None] * np.eye(D)


def assert_same_fit(a, b, rtol=1e-8, atol=1e-10):
    np.testing.assert_allclose(a.weights_, b.weights_, rtol=rtol, atol=atol)
    np.testing.assert_allclose(a.means_, b.means_, rtol=rtol, atol=atol)
    np.testing.assert_allclose(a.covariances_, b.covariances_, rtol=rtol, atol=atol)
    np.testing.assert_allclose(a.lower_bound_, b.lower_bound_, rtol=rtol)
    assert a.n_iter_ == b.n_iter_


def assert_never_decreases(history):
    history = np.asarray(history)
    drops = history[:-1] - history[1:]
    allowed = 1e-9 * np.abs(history[1:])
    worst = int(np.argmax(drops - allowed)) if history.size > 1 else 0
    assert (drops <= allowed).all(), (
        f"log-likelihood fell at iteration {worst + 2}: "
        f"{history[worst]!r} -> {history[worst + 1]!r}"
    )


def with_missing(X, fraction, seed):
    """A copy of ``X`` with ``fraction`` of the entries set to NaN completely at random."""
    rng = np.random.default_rng(seed)
    mask = rng.random(X.shape) < fraction
    out = X.copy()
    out[mask] = np.nan
    return out, mask


@pytest.fixture(scope="module")
def three_feature_mixture():
    """A known, well-separated 3-component mixture in 3-D with correlated features."""
    means = np.array([[-6.0, 0.0, 2.0], [0.0, 6.0, -3.0], [6.0, -3.0, 4.0]])
    cov = np.array([[1.0, 0.6, 0.3], [0.6, 1.0, 0.5], [0.3, 0.5, 1.0]])
    X, labels = gaussian_blobs(np.random.default_rng(3), means, [900, 1200, 900], cov)
    return X, labels, means


# --- the estimator API ------------------------------------------------------------------


def test_emseg_error_is_a_value_error():
    assert issubclass(EmsegError, ValueError)
    assert emseg.GaussianMixture is GaussianMixture


def test_init_only_stores_parameters():
    cb = lambda i, lb: None  # noqa: E731
    gm = GaussianMixture(3, covariance_type="diag", tol=1e-4, random_state=5, callback=cb)
    assert gm.n_components == 3
    assert gm.covariance_type == "diag"
    assert gm.tol == 1e-4
    assert gm.random_state == 5
    assert gm.callback is cb
    assert not hasattr(gm, "means_")


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_fit_returns_self_and_sets_fitted_attributes(blobs_2d, covariance_type):
    X, _, _ = blobs_2d
    gm = GaussianMixture(3, covariance_type=covariance_type, random_state=0)
    assert gm.fit(X) is gm
    K, D = 3, 2
    cov_shape = {"full": (K, D, D), "tied": (D, D), "diag": (K, D), "spherical": (K,)}
    assert gm.weights_.shape == (K,)
    assert gm.means_.shape == (K, D)
    assert gm.covariances_.shape == cov_shape[covariance_type]
    assert gm.precisions_cholesky_.shape == cov_shape[covariance_type]
    np.testing.assert_allclose(gm.weights_.sum(), 1.0)
    assert gm.converged_ is True
    assert isinstance(gm.n_iter_, int) and 1 <= gm.n_iter_ <= gm.max_iter_
    assert isinstance(gm.lower_bound_, float)
    assert gm.history_.shape == (gm.n_iter_,)
    assert gm.history_[-1] == gm.lower_bound_
    # The bound is that of the parameters the last M-step started from; EM only improves.
    assert gm.score(X) >= gm.lower_bound_ - 1e-9 * abs(gm.lower_bound_)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_precisions_cholesky_matches_covariances(blobs_2d, covariance_type):
    X, _, _ = blobs_2d
    gm = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X)
    pc = gm.precisions_cholesky_
    if covariance_type == "full":
        precisions = pc @ pc.transpose(0, 2, 1)
        identity = np.broadcast_to(np.eye(2), (3, 2, 2))
        np.testing.assert_allclose(precisions @ gm.covariances_, identity, atol=1e-10)
        assert np.allclose(np.tril(pc[0], -1), 0)  # upper-triangular, as in scikit-learn
    elif covariance_type == "tied":
        np.testing.assert_allclose((pc @ pc.T) @ gm.covariances_, np.eye(2), atol=1e-10)
    else:
        np.testing.assert_allclose(pc**2 * gm.covariances_, 1.0, rtol=1e-12)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_recovers_far_apart_blobs(blobs_2d, covariance_type):
    X, labels, means = blobs_2d
    gm = GaussianMixture(3, covariance_type=covariance_type, random_state=1).fit(X)
    np.testing.assert_allclose(gm.means_, means, atol=0.25)
    np.testing.assert_allclose(gm.weights_, np.bincount(labels) / labels.size, atol=0.01)
    identity = np.broadcast_to(np.eye(2), (3, 2, 2))
    np.testing.assert_allclose(full_covariances(gm), identity, atol=0.3)
    # Means are sorted like the true ones, so the labels are the true labels.
    assert (gm.predict(X) == labels).mean() > 0.99


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_fit_predict_equals_fit_then_predict(overlapping_2d, covariance_type):
    X, _, _ = overlapping_2d
    kwargs = dict(covariance_type=covariance_type, random_state=4)
    labels = GaussianMixture(3, **kwargs).fit_predict(X)
    expected = GaussianMixture(3, **kwargs).fit(X).predict(X)
    np.testing.assert_array_equal(labels, expected)


def test_fit_predict_with_sample_weight(overlapping_2d):
    X, _, _ = overlapping_2d
    w = np.random.default_rng(0).uniform(0.5, 2.0, X.shape[0])
    labels = GaussianMixture(3, random_state=2).fit_predict(X, sample_weight=w)
    expected = GaussianMixture(3, random_state=2).fit(X, sample_weight=w).predict(X)
    np.testing.assert_array_equal(labels, expected)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_predict_proba_sums_to_one_and_predict_is_its_argmax(overlapping_2d, covariance_type):
    X, _, _ = overlapping_2d
    gm = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X)
    proba = gm.predict_proba(X)
    assert proba.shape == (X.shape[0], 3)
    assert (proba >= 0).all()
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(gm.predict(X), proba.argmax(1))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_score_samples_is_the_mixture_density(overlapping_2d, covariance_type):
    X, _, _ = overlapping_2d
    gm = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X)
    density = sum(
        w * stats.multivariate_normal(m, c).pdf(X)
        for w, m, c in zip(gm.weights_, gm.means_, full_covariances(gm))
    )
    np.testing.assert_allclose(gm.score_samples(X), np.log(density), rtol=1e-10)


def test_score_is_weighted_mean_of_score_samples(overlapping_2d):
    X, _, _ = overlapping_2d
    gm = GaussianMixture(3, random_state=0).fit(X)
    np.testing.assert_allclose(gm.score(X), gm.score_samples(X).mean(), rtol=1e-12)
    w = np.random.default_rng(1).uniform(0, 3, X.shape[0])
    np.testing.assert_allclose(
        gm.score(X, sample_weight=w), np.average(gm.score_samples(X), weights=w), rtol=1e-12
    )


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_bic_and_aic_formulas(blobs_2d, covariance_type):
    X, _, _ = blobs_2d
    gm = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X)
    n_cov = {"full": 3 * 3, "tied": 3, "diag": 3 * 2, "spherical": 3}[covariance_type]
    n_params = n_cov + 3 * 2 + 2
    loglik = gm.score_samples(X).sum()
    np.testing.assert_allclose(gm.bic(X), -2 * loglik + n_params * np.log(X.shape[0]))
    np.testing.assert_allclose(gm.aic(X), -2 * loglik + 2 * n_params)


def test_bic_prefers_the_true_number_of_components(blobs_2d):
    X, _, _ = blobs_2d
    bics = [GaussianMixture(k, random_state=0).fit(X).bic(X) for k in (1, 2, 3, 4, 5)]
    assert int(np.argmin(bics)) + 1 == 3


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_sample_follows_the_fitted_model(blobs_2d, covariance_type):
    X, _, _ = blobs_2d
    gm = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X)
    Xs, labels = gm.sample(6000)
    assert Xs.shape == (6000, 2)
    assert labels.shape == (6000,)
    assert set(np.unique(labels)) <= {0, 1, 2}
    np.testing.assert_allclose(np.bincount(labels, minlength=3) / 6000, gm.weights_, atol=0.03)
    covs = full_covariances(gm)
    for k in range(3):
        rows = Xs[labels == k]
        np.testing.assert_allclose(rows.mean(0), gm.means_[k], atol=0.15)
        np.testing.assert_allclose(np.cov(rows.T), covs[k], atol=0.2)
    # A fixed random_state gives the same draw.
    Xs2, labels2 = gm.sample(6000)
    np.testing.assert_array_equal(Xs, Xs2)
    np.testing.assert_array_equal(labels, labels2)


def test_sample_rejects_bad_count(blobs_2d):
    gm = GaussianMixture(3, random_state=0).fit(blobs_2d[0])
    with pytest.raises(EmsegError, match="n_samples"):
        gm.sample(0)


def test_callback_called_with_each_iteration_and_bound(overlapping_2d):
    X, _, _ = overlapping_2d
    calls = []
    gm = GaussianMixture(
        3, random_state=0, n_init=1, callback=lambda i, lb: calls.append((i, lb))
    ).fit(X)
    assert [i for i, _ in calls] == list(range(1, gm.n_iter_ + 1))
    np.testing.assert_array_equal([lb for _, lb in calls], gm.history_)


def test_n_init_keeps_the_best_restart(overlapping_2d):
    X, _, _ = overlapping_2d
    # The restarts draw from one generator, so the first restart of n_init=4 is the
    # n_init=1 fit: the best of four can only be as good or better.
    single = GaussianMixture(3, init_params="random", random_state=3).fit(X)
    best = GaussianMixture(3, init_params="random", n_init=4, random_state=3).fit(X)
    assert best.lower_bound_ >= single.lower_bound_
    np.testing.assert_allclose(best.history_[-1], best.lower_bound_)


def test_one_dimensional_X_is_one_feature(rng):
    x = np.concatenate([rng.normal(-3, 1, 200), rng.normal(4, 0.5, 100)])
    gm1 = GaussianMixture(2, random_state=0).fit(x)
    gm2 = GaussianMixture(2, random_state=0).fit(x[:, None])
    assert gm1.means_.shape == (2, 1)
    np.testing.assert_array_equal(gm1.means_, gm2.means_)
    np.testing.assert_allclose(gm1.means_[:, 0], [-3, 4], atol=0.2)
    np.testing.assert_array_equal(gm1.predict(x), gm2.predict(x[:, None]))
    np.testing.assert_allclose(gm1.score_samples(x), gm2.score_samples(x[:, None]))


def test_integer_and_bool_input_is_accepted(rng):
    X = np.concatenate([rng.integers(0, 5, (100, 2)), rng.integers(50, 55, (100, 2))])
    gm = GaussianMixture(2, random_state=0).fit(X)
    np.testing.assert_allclose(gm.means_, X.reshape(2, 100, 2).mean(1), atol=1e-6)
    gm.predict(X.astype(bool))


def test_inputs_are_never_written_to(overlapping_2d):
    X, _, means = overlapping_2d
    X = X.copy()
    X[::7, 1] = np.nan
    params = initial_params("full", means)
    originals = {k: v.copy() for k, v in params.items()}
    X_before = X.copy()
    w = np.ones(X.shape[0])
    gm = GaussianMixture(3, **params).fit(X, sample_weight=w)
    gm.predict(X)
    gm.impute(X)
    np.testing.assert_array_equal(X, X_before)
    np.testing.assert_array_equal(w, 1.0)
    for key, value in params.items():
        np.testing.assert_array_equal(value, originals[key])
        assert getattr(gm, key) is value  # __init__ stores, fit does not replace
    # Fitted arrays are not views of the caller's starting parameters.
    gm.means_[:] = 0
    gm.weights_[:] = 0
    np.testing.assert_array_equal(params["means_init"], originals["means_init"])
    np.testing.assert_array_equal(params["weights_init"], originals["weights_init"])


# --- same model as scikit-learn ---------------------------------------------------------


@pytest.fixture(scope="module")
def sklearn_data():
    rng = np.random.default_rng(1)
    means = np.array([[-4.0, 0.0, 1.0], [0.0, 3.0, -1.0], [4.0, -2.0, 0.0]])
    A = rng.normal(size=(3, 3, 3)) * 0.4 + np.eye(3)
    X = np.concatenate(
        [rng.normal(size=(n, 3)) @ A[k] + means[k] for k, n in enumerate([150, 250, 200])]
    )
    start = means + rng.normal(0, 0.8, (3, 3))
    return X, start[np.argsort(start[:, 0])]


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize(
    "tol, reg_covar, max_iter",
    [(1e-3, 1e-6, 100), (1e-8, 1e-2, 500), (0.0, 1e-6, 4)],
    ids=["defaults", "tight-tol-big-reg", "max-iter-runs-out"],
)
def test_matches_sklearn_from_same_start(
    sklearn_data, covariance_type, tol, reg_covar, max_iter
):
    from sklearn.mixture import GaussianMixture as SkGaussianMixture

    X, start = sklearn_data
    kwargs = dict(
        covariance_type=covariance_type,
        tol=tol,
        reg_covar=reg_covar,
        max_iter=max_iter,
        **initial_params(covariance_type, start),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # both warn when max_iter runs out
        ours = GaussianMixture(3, accelerate=False, **kwargs).fit(X)
        ref = SkGaussianMixture(3, random_state=0, **kwargs).fit(X)

    order = np.argsort(ref.means_[:, 0], kind="stable")
    rtol = 1e-6
    np.testing.assert_allclose(ours.weights_, ref.weights_[order], rtol=rtol)
    np.testing.assert_allclose(ours.means_, ref.means_[order], rtol=rtol, atol=1e-9)
    if covariance_type == "tied":
        ref_cov, ref_pc = ref.covariances_, ref.precisions_cholesky_
    else:
        ref_cov, ref_pc = ref.covariances_[order], ref.precisions_cholesky_[order]
    np.testing.assert_allclose(ours.covariances_, ref_cov, rtol=rtol, atol=1e-9)
    np.testing.assert_allclose(ours.precisions_cholesky_, ref_pc, rtol=rtol, atol=1e-9)
    np.testing.assert_allclose(ours.lower_bound_, ref.lower_bound_, rtol=rtol)
    assert ours.n_iter_ == ref.n_iter_
    assert ours.converged_ == ref.converged_
    if hasattr(ref, "lower_bounds_"):
        np.testing.assert_allclose(ours.history_, ref.lower_bounds_, rtol=rtol)

    np.testing.assert_allclose(
        ours.predict_proba(X), ref.predict_proba(X)[:, order], rtol=rtol, atol=1e-9
    )
    np.testing.assert_allclose(ours.score_samples(X), ref.score_samples(X), rtol=rtol)
    np.testing.assert_allclose(ours.score(X), ref.score(X), rtol=rtol)
    np.testing.assert_allclose(ours.bic(X), ref.bic(X), rtol=rtol)
    np.testing.assert_allclose(ours.aic(X), ref.aic(X), rtol=rtol)
    np.testing.assert_array_equal(ours.predict(X), np.argsort(order)[ref.predict(X)])


# --- sample weights ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def weighted_rows():
    """60 distinct rows and integer multiplicities 0..9 (zero drops the row)."""
    rng = np.random.default_rng(5)
    X, _ = gaussian_blobs(rng, [[-2.0, 0.0], [0.5, 1.5], [2.5, -1.0]], [20, 20, 20])
    counts = rng.integers(0, 10, X.shape[0])
    counts[:3] = [0, 1, 9]
    return X, counts


@budget_may_run_out
@pytest.mark.parametrize("merge", [True, False], ids=["merged", "per-row"])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_integer_weights_equal_repeated_rows(weighted_rows, covariance_type, merge, monkeypatch):
    X, counts = weighted_rows
    repeated = np.repeat(X, counts, axis=0)
    kwargs = dict(covariance_type=covariance_type, tol=1e-8, max_iter=300)
    kwargs.update(initial_params(covariance_type, [[-2.0, 0.0], [0.0, 1.0], [2.0, -1.0]]))
    weighted = GaussianMixture(3, **kwargs)
    plain = GaussianMixture(3, **kwargs)
    if not merge:
        monkeypatch.setattr(weighted, "_merge_repeated_rows", False)
        monkeypatch.setattr(plain, "_merge_repeated_rows", False)
    weighted.fit(X, sample_weight=counts)
    plain.fit(repeated)
    assert_same_fit(weighted, plain)
    np.testing.assert_allclose(weighted.history_, plain.history_, rtol=1e-9)
    np.testing.assert_allclose(
        weighted.score(X, sample_weight=counts), plain.score(repeated), rtol=1e-10
    )


@budget_may_run_out
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_merged_and_per_row_paths_agree(rng, covariance_type, monkeypatch):
    # Quantised data: 1500 rows but only a few hundred distinct values, so merging applies.
    X, _ = gaussian_blobs(rng, [[-2.0, 0.0], [0.0, 1.5], [2.0, -1.0]], [400, 600, 500])
    X = np.round(X * 2) / 2
    kwargs = dict(covariance_type=covariance_type, tol=1e-8, max_iter=300)
    kwargs.update(initial_params(covariance_type, [[-2.0, 0.0], [0.0, 1.0], [2.0, -1.0]]))
    merged = GaussianMixture(3, **kwargs)
    per_row = GaussianMixture(3, **kwargs)
    monkeypatch.setattr(per_row, "_merge_repeated_rows", False)
    w = np.random.default_rng(2).uniform(0.2, 3.0, X.shape[0])
    for sample_weight in (None, w):
        merged.fit(X, sample_weight=sample_weight)
        per_row.fit(X, sample_weight=sample_weight)
        assert_same_fit(merged, per_row)
        np.testing.assert_allclose(merged.history_, per_row.history_, rtol=1e-9)


@budget_may_run_out
@pytest.mark.parametrize("merge", [True, False], ids=["merged", "per-row"])
def test_merged_and_per_row_agree_from_random_start(rng, merge, monkeypatch):
    # With the seeding chosen by the estimator, both paths still find the same optimum.
    X, _ = gaussian_blobs(rng, [[-5.0, 0.0], [0.0, 5.0], [5.0, -2.0]], [300, 400, 300])
    X = np.round(X)
    gm = GaussianMixture(3, random_state=0, tol=1e-9, max_iter=500)
    if not merge:
        monkeypatch.setattr(gm, "_merge_repeated_rows", False)
    ref = GaussianMixture(3, random_state=0, tol=1e-9, max_iter=500)
    monkeypatch.setattr(ref, "_merge_repeated_rows", True)
    gm.fit(X)
    ref.fit(X)
    np.testing.assert_allclose(gm.means_, ref.means_, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(gm.covariances_, ref.covariances_, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(gm.lower_bound_, ref.lower_bound_, rtol=1e-8)


@budget_may_run_out
def test_weights_only_matter_up_to_scale(overlapping_2d):
    X, _, means = overlapping_2d
    w = np.random.default_rng(8).uniform(0.1, 2.0, X.shape[0])
    kwargs = dict(tol=1e-8, max_iter=300, **initial_params("full", means))
    a = GaussianMixture(3, **kwargs).fit(X, sample_weight=w)
    b = GaussianMixture(3, **kwargs).fit(X, sample_weight=3.7 * w)
    assert_same_fit(a, b)


def test_unit_weights_equal_no_weights(overlapping_2d):
    X, _, _ = overlapping_2d
    a = GaussianMixture(3, random_state=0).fit(X)
    b = GaussianMixture(3, random_state=0).fit(X, sample_weight=np.ones(X.shape[0]))
    assert_same_fit(a, b, rtol=1e-10)


@budget_may_run_out
@given(
    counts=st.lists(st.integers(0, 4), min_size=24, max_size=24).filter(
        lambda c: sum(x > 0 for x in c) >= 6
    ),
    merge=st.booleans(),
)
def test_property_weighting_equals_repeating(counts, merge):
    X, _ = gaussian_blobs(np.random.default_rng(9), [[-1.0], [1.5]], [12, 12])
    counts = np.array(counts)
    # plain EM: SQUAREM's jumps amplify the rounding differences of the two sums, which
    # shows on fits that have not converged in max_iter (the likelihood here is flat)
    kwargs = dict(covariance_type="diag", tol=1e-9, max_iter=200, accelerate=False)
    kwargs.update(initial_params("diag", [[-1.0], [1.0]]))
    weighted = GaussianMixture(2, **kwargs)
    plain = GaussianMixture(2, **kwargs)
    weighted._merge_repeated_rows = plain._merge_repeated_rows = merge
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptyComponentWarning)
        weighted.fit(X, sample_weight=counts)
        plain.fit(np.repeat(X, counts, axis=0))
    assert_same_fit(weighted, plain)


@budget_may_run_out
@given(seed=st.integers(0, 2**32 - 1))
def test_property_row_order_does_not_change_the_fit(seed):
    X, _ = gaussian_blobs(np.random.default_rng(12), [[-1.0, 0.0], [1.5, 0.5]], [40, 40])
    perm = np.random.default_rng(seed).permutation(X.shape[0])
    kwargs = dict(tol=1e-9, max_iter=300, accelerate=False,  # as in the test above
                  **initial_params("full", [[-1.0, 0.0], [1.0, 0.0]]))
    a = GaussianMixture(2, **kwargs).fit(X)
    b = GaussianMixture(2, **kwargs).fit(X[perm])
    assert_same_fit(a, b)


# --- missing values ---------------------------------------------------------------------


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_missing_values_fit_close_to_complete_fit(three_feature_mixture, covariance_type):
    X, _, means = three_feature_mixture
    X_missing, _ = with_missing(X, 0.2, seed=0)
    complete = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X)
    partial = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X_missing)
    np.testing.assert_allclose(complete.means_, means, atol=0.15)
    np.testing.assert_allclose(partial.means_, complete.means_, atol=0.15)
    np.testing.assert_allclose(partial.weights_, complete.weights_, atol=0.02)
    np.testing.assert_allclose(
        full_covariances(partial), full_covariances(complete), atol=0.2
    )
    assert np.isfinite(partial.lower_bound_)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_impute_beats_column_means(three_feature_mixture, covariance_type):
    X, _, _ = three_feature_mixture
    X_missing, mask = with_missing(X, 0.2, seed=1)
    gm = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X_missing)
    filled = gm.impute(X_missing)
    col_means = np.where(mask, np.nanmean(X_missing, axis=0), X_missing)
    rmse_model = np.sqrt(np.mean((filled[mask] - X[mask]) ** 2))
    rmse_means = np.sqrt(np.mean((col_means[mask] - X[mask]) ** 2))
    # Column means are off by the distance between components (RMSE ~4 here); the model
    # is off by the within-component spread, more where the observed values leave the
    # component in doubt (about 1.5 here).
    assert rmse_model < 0.5 * rmse_means, (rmse_model, rmse_means)
    if covariance_type == "full":
        # The full model also uses the within-component correlation (0.3 to 0.6).
        diag = GaussianMixture(3, covariance_type="diag", random_state=0).fit(X_missing)
        rmse_diag = np.sqrt(np.mean((diag.impute(X_missing)[mask] - X[mask]) ** 2))
        assert rmse_model < rmse_diag


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_impute_leaves_observed_values_and_returns_a_copy(
    three_feature_mixture, covariance_type
):
    X, _, _ = three_feature_mixture
    X_missing, mask = with_missing(X[:600], 0.2, seed=2)
    X_missing[5] = np.nan  # a row with nothing observed
    mask[5] = True
    before = X_missing.copy()
    gm = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X_missing)
    filled = gm.impute(X_missing)
    assert filled is not X_missing
    assert not np.shares_memory(filled, X_missing)
    np.testing.assert_array_equal(X_missing, before)  # input unchanged (NaNs included)
    assert filled.shape == X_missing.shape
    assert np.isfinite(filled).all()
    np.testing.assert_array_equal(filled[~mask], X_missing[~mask])
    # A row with nothing observed gets the mixture mean.
    np.testing.assert_allclose(filled[5], gm.weights_ @ gm.means_, rtol=1e-10)


def test_impute_on_complete_data_returns_an_equal_copy(blobs_2d):
    X, _, _ = blobs_2d
    gm = GaussianMixture(3, random_state=0).fit(X)
    filled = gm.impute(X)
    assert filled is not X
    np.testing.assert_array_equal(filled, X)


def test_impute_single_gaussian_is_conditional_mean(rng):
    # One full Gaussian: the imputed value is mu_m + S_mo S_oo^-1 (x_o - mu_o).
    cov = np.array([[1.0, 0.8], [0.8, 2.0]])
    X, _ = gaussian_blobs(rng, [[1.0, -2.0]], [500], cov)
    gm = GaussianMixture(1, random_state=0).fit(X)
    query = np.array([[2.0, np.nan], [np.nan, 0.5]])
    filled = gm.impute(query)
    mu, S = gm.means_[0], gm.covariances_[0]
    np.testing.assert_allclose(filled[0, 1], mu[1] + S[1, 0] / S[0, 0] * (2.0 - mu[0]))
    np.testing.assert_allclose(filled[1, 0], mu[0] + S[0, 1] / S[1, 1] * (0.5 - mu[1]))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_score_samples_with_nan_is_the_marginal_density(overlapping_2d, covariance_type):
    X, _, _ = overlapping_2d
    X3 = np.column_stack([X, X[:, 0] - X[:, 1] + np.random.default_rng(0).normal(size=len(X))])
    gm = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X3)
    query = X3[:6].copy()
    query[0, 1] = query[1, 0] = query[2, 2] = np.nan
    query[3, :2] = np.nan
    query[4] = np.nan
    covs = full_covariances(gm)
    expected = []
    for row in query:
        o = ~np.isnan(row)
        if not o.any():
            expected.append(0.0)  # the density of nothing observed is 1
            continue
        density = sum(
            w * stats.multivariate_normal(m[o], c[np.ix_(o, o)]).pdf(row[o])
            for w, m, c in zip(gm.weights_, gm.means_, covs)
        )
        expected.append(np.log(density))
    np.testing.assert_allclose(gm.score_samples(query), expected, rtol=1e-10, atol=1e-12)
    proba = gm.predict_proba(query)
    np.testing.assert_allclose(proba.sum(1), 1.0)
    np.testing.assert_allclose(proba[4], gm.weights_)  # nothing observed: the prior
    np.testing.assert_array_equal(gm.predict(query), proba.argmax(1))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("seed", [0, 1])
def test_missing_values_history_never_decreases(overlapping_2d, covariance_type, seed):
    X, _, _ = overlapping_2d
    X3 = np.column_stack([X, X.sum(1) + np.random.default_rng(seed).normal(size=len(X))])
    X_missing, _ = with_missing(X3, 0.2, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm = GaussianMixture(
            3, covariance_type=covariance_type, tol=1e-10, max_iter=60, random_state=seed
        ).fit(X_missing)
    assert gm.history_.size > 5
    assert_never_decreases(gm.history_)


@budget_may_run_out
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_rows_with_nothing_observed_change_nothing(overlapping_2d, covariance_type):
    X, _, means = overlapping_2d
    X_missing, _ = with_missing(X, 0.15, seed=4)
    padded = np.concatenate([X_missing, np.full((25, 2), np.nan)])
    kwargs = dict(covariance_type=covariance_type, tol=1e-8, max_iter=200)
    kwargs.update(initial_params(covariance_type, means))
    a = GaussianMixture(3, **kwargs).fit(X_missing)
    b = GaussianMixture(3, **kwargs).fit(padded)
    assert_same_fit(a, b)


@budget_may_run_out
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_missing_values_with_weights_equal_repeated_rows(overlapping_2d, covariance_type):
    X, _, means = overlapping_2d
    X_missing, _ = with_missing(X, 0.2, seed=6)
    counts = np.random.default_rng(6).integers(0, 4, X.shape[0])
    kwargs = dict(covariance_type=covariance_type, tol=1e-8, max_iter=200)
    kwargs.update(initial_params(covariance_type, means))
    a = GaussianMixture(3, **kwargs).fit(X_missing, sample_weight=counts)
    b = GaussianMixture(3, **kwargs).fit(np.repeat(X_missing, counts, axis=0))
    assert_same_fit(a, b)


@budget_may_run_out
def test_zero_weight_rows_change_nothing(overlapping_2d):
    # An incomplete row and a far outlier with zero weight leave the fit as it was.
    X, _, means = overlapping_2d
    kwargs = dict(tol=1e-8, max_iter=200, **initial_params("full", means))
    a = GaussianMixture(3, **kwargs).fit(X)
    extra = np.concatenate([X, [[0.3, np.nan], [1e4, -1e4]]])
    w = np.concatenate([np.ones(X.shape[0]), [0.0, 0.0]])
    b = GaussianMixture(3, **kwargs).fit(extra, sample_weight=w)
    assert_same_fit(a, b)


# --- deterministic order ----------------------------------------------------------------


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("init_params", INIT_PARAMS)
def test_components_sorted_and_fixed_seed_reproducible(
    overlapping_2d, covariance_type, init_params
):
    X, _, _ = overlapping_2d
    kwargs = dict(covariance_type=covariance_type, init_params=init_params, random_state=7)
    a = GaussianMixture(3, **kwargs).fit(X)
    b = GaussianMixture(3, **kwargs).fit(X)
    assert (np.diff(a.means_[:, 0]) >= 0).all()
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_", "history_"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.lower_bound_ == b.lower_bound_
    assert a.n_iter_ == b.n_iter_
    np.testing.assert_array_equal(a.predict(X), b.predict(X))


def test_refit_same_instance_is_reproducible(overlapping_2d):
    X, _, _ = overlapping_2d
    gm = GaussianMixture(3, random_state=7)
    first = gm.fit(X).means_.copy()
    np.testing.assert_array_equal(gm.fit(X).means_, first)


def test_sorting_permutes_every_per_component_array_together(blobs_2d):
    X, _, means = blobs_2d
    # Start in reverse order: the fit must come out sorted, with each component's
    # weight and covariance still attached to its mean.
    start = initial_params("diag", means[::-1])
    gm = GaussianMixture(3, covariance_type="diag", **start).fit(X)
    assert (np.diff(gm.means_[:, 0]) > 0).all()
    counts = np.array([120, 180, 150]) / 450
    np.testing.assert_allclose(gm.weights_, counts, atol=0.01)
    np.testing.assert_allclose(gm.precisions_cholesky_**2 * gm.covariances_, 1.0)


# --- numerics ---------------------------------------------------------------------------


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_float32_close_to_float64(overlapping_2d, covariance_type):
    X, _, _ = overlapping_2d
    X32 = X.astype(np.float32)
    X64 = X32.astype(np.float64)
    a = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X32)
    b = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X64)
    np.testing.assert_allclose(a.means_, b.means_, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(a.covariances_, b.covariances_, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(a.weights_, b.weights_, rtol=1e-5)
    np.testing.assert_allclose(a.lower_bound_, b.lower_bound_, rtol=1e-6)
    np.testing.assert_allclose(a.predict_proba(X32), b.predict_proba(X64), atol=1e-5)
    assert X32.dtype == np.float32  # not converted in place


def test_float32_with_missing_values(three_feature_mixture):
    X, _, _ = three_feature_mixture
    X_missing, mask = with_missing(X[:900], 0.2, seed=3)
    a = GaussianMixture(3, random_state=0).fit(X_missing.astype(np.float32))
    b = GaussianMixture(3, random_state=0).fit(X_missing.astype(np.float32).astype(np.float64))
    np.testing.assert_allclose(a.means_, b.means_, rtol=1e-5, atol=1e-5)
    filled = a.impute(X_missing.astype(np.float32))
    assert np.isfinite(filled).all()


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("init_params", INIT_PARAMS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_history_never_decreases(overlapping_2d, covariance_type, init_params, seed):
    X, _, _ = overlapping_2d
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm = GaussianMixture(
            3,
            covariance_type=covariance_type,
            init_params=init_params,
            tol=1e-10,
            max_iter=200,
            random_state=seed,
        ).fit(X)
    assert gm.history_.size > 3
    assert_never_decreases(gm.history_)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("seed", [0, 1])
def test_weighted_history_never_decreases(overlapping_2d, covariance_type, seed):
    X, _, _ = overlapping_2d
    w = np.random.default_rng(seed).exponential(size=X.shape[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm = GaussianMixture(
            3, covariance_type=covariance_type, tol=1e-10, max_iter=200, random_state=seed
        ).fit(X, sample_weight=w)
    assert gm.history_.size > 3
    assert_never_decreases(gm.history_)


@budget_may_run_out
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("offset", [1e6, 1e8])
def test_data_far_from_the_origin(covariance_type, offset):
    means = np.array([[0.0, 0.0], [8.0, 3.0]])
    X, _ = gaussian_blobs(np.random.default_rng(13), means, [300, 300])
    kwargs = dict(covariance_type=covariance_type, tol=1e-10, max_iter=500)
    kwargs.update(initial_params(covariance_type, means + [[0.5, 0.5], [-0.5, 0.5]]))
    centred = GaussianMixture(2, **kwargs).fit(X)
    far_kwargs = dict(kwargs, means_init=kwargs["means_init"] + offset)
    far = GaussianMixture(2, **far_kwargs).fit(X + offset)
    np.testing.assert_allclose(far.means_ - offset, centred.means_, atol=1e-5)
    np.testing.assert_allclose(far.covariances_, centred.covariances_, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(far.weights_, centred.weights_, atol=1e-6)
    identity = np.broadcast_to(np.eye(2), (2, 2, 2))
    np.testing.assert_allclose(full_covariances(far), identity, atol=0.2)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("init_params", INIT_PARAMS)
def test_data_far_from_the_origin_with_estimated_start(covariance_type, init_params):
    # Whatever the seeding, the fit far from the origin is the fit near it, shifted.
    offset = 1e6
    means = np.array([[0.0, 0.0], [8.0, 3.0]])
    X, _ = gaussian_blobs(np.random.default_rng(14), means, [300, 300])
    kwargs = dict(covariance_type=covariance_type, init_params=init_params, random_state=0)
    near = GaussianMixture(2, **kwargs).fit(X)
    far = GaussianMixture(2, **kwargs).fit(X + offset)
    np.testing.assert_allclose(far.means_ - offset, near.means_, atol=1e-5)
    np.testing.assert_allclose(far.covariances_, near.covariances_, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(far.lower_bound_, near.lower_bound_, rtol=1e-6)
    if init_params != "random":  # random responsibilities start both means at the centre
        np.testing.assert_allclose(far.means_ - offset, means, atol=0.2)
        np.testing.assert_allclose(
            full_covariances(far), np.broadcast_to(np.eye(2), (2, 2, 2)), atol=0.25
        )


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_empty_component_is_reseeded_with_warning(blobs_2d, covariance_type):
    X, _, means = blobs_2d
    start = np.array([[-6.0, 0.0], [3.0, 1.5], [1e3, 1e3]])  # the last mean is far from all data
    with pytest.warns(EmptyComponentWarning):
        gm = GaussianMixture(3, covariance_type=covariance_type, means_init=start).fit(X)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert np.isfinite(getattr(gm, name)).all(), name
    assert np.isfinite(gm.lower_bound_)
    assert (gm.weights_ > 0).all()
    np.testing.assert_allclose(gm.weights_.sum(), 1.0)
    assert (np.linalg.eigvalsh(full_covariances(gm)) > 0).all()
    # The re-seeded component went back to the data.
    assert np.abs(gm.means_).max() < 20
    assert np.isfinite(gm.score_samples(X)).all()


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_empty_component_with_full_start_is_reseeded(blobs_2d, covariance_type):
    X, _, _ = blobs_2d
    start = initial_params(covariance_type, [[-6.0, 0.0], [3.0, 1.5], [1e3, 1e3]])
    with pytest.warns(EmptyComponentWarning):
        gm = GaussianMixture(3, covariance_type=covariance_type, **start).fit(X)
    assert np.isfinite(gm.means_).all() and np.isfinite(gm.covariances_).all()
    assert np.abs(gm.means_).max() < 20


def test_reseed_when_refitting_on_different_features(blobs_2d):
    # A model fitted before on 2 features, refitted (not warm) on 3 features with a
    # component that empties: re-seeding must use the new data, not crash.
    X, _, _ = blobs_2d
    gm = GaussianMixture(3, random_state=0).fit(X)
    X3 = np.column_stack([X, X[:, 0]])
    gm.means_init = np.array([[-6.0, 0.0, -6.0], [3.0, 1.5, 3.0], [1e3, 1e3, 1e3]])
    with pytest.warns(EmptyComponentWarning):
        gm.fit(X3)
    assert gm.means_.shape == (3, 3)
    assert np.isfinite(gm.means_).all()


def test_refit_with_reseeding_does_not_depend_on_the_previous_fit():
    # 60 distinct rows each repeated 3 times (too few repeats to merge):
    # random_from_data often picks two copies of one row, leaving a component empty at
    # the start. Refitting an estimator (warm_start=False) must give what a fresh one
    # with the same random_state gives, re-seeding included.
    base, _ = gaussian_blobs(np.random.default_rng(2), [[-3.0, 0.0], [3.0, 0.0]], [30, 30])
    X = np.repeat(base, 3, axis=0)
    reseeded = 0
    for seed in range(8):
        kwargs = dict(init_params="random_from_data", random_state=seed, max_iter=5)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fresh = GaussianMixture(8, **kwargs).fit(X)
            reused = GaussianMixture(8, **kwargs)
            reused.fit(3 * X + 5)
            reused.fit(X)
        reseeded += any(issubclass(w.category, EmptyComponentWarning) for w in caught)
        np.testing.assert_array_equal(reused.means_, fresh.means_, err_msg=f"seed {seed}")
        np.testing.assert_array_equal(reused.covariances_, fresh.covariances_)
    assert reseeded  # the re-seeding path was exercised


def test_covariance_floor_keeps_a_point_mass_finite(rng):
    # One component is 50 copies of one point: its covariance is the reg_covar floor.
    X = np.concatenate([np.tile([[10.0, 10.0]], (50, 1)), rng.normal(size=(200, 2))])
    gm = GaussianMixture(2, covariance_type="full", reg_covar=1e-4, random_state=0).fit(X)
    np.testing.assert_allclose(gm.means_[1], [10.0, 10.0])
    np.testing.assert_allclose(gm.covariances_[1], 1e-4 * np.eye(2), rtol=1e-6, atol=1e-12)
    assert np.isfinite(gm.lower_bound_)


def test_results_do_not_depend_on_the_number_of_threads():
    import numba

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs at least 2 numba threads")
    # More rows than one kernel chunk (4096), so the work is split across threads.
    X, _ = gaussian_blobs(np.random.default_rng(15), [[-2.0, 0.0], [2.0, 1.0]], [6000, 5000])
    fits = []
    for n_threads in (1, 2):
        previous = numba.get_num_threads()
        numba.set_num_threads(n_threads)
        try:
            fits.append(GaussianMixture(2, random_state=0).fit(X))
        finally:
            numba.set_num_threads(previous)
    assert_same_fit(*fits, rtol=0, atol=0)
    np.testing.assert_array_equal(fits[0].history_, fits[1].history_)


# --- convergence ------------------------------------------------------------------------


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_max_iter_exhausted_warns_and_not_converged(overlapping_2d, covariance_type):
    X, _, _ = overlapping_2d
    gm = GaussianMixture(
        3, covariance_type=covariance_type, tol=1e-12, max_iter=3, random_state=0
    )
    with pytest.warns(ConvergenceWarning, match="max_iter"):
        gm.fit(X)
    assert gm.converged_ is False
    assert gm.n_iter_ == 3
    assert gm.history_.size == 3


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_converged_without_warning(overlapping_2d, covariance_type):
    X, _, _ = overlapping_2d
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        gm = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X)
    assert gm.converged_ is True
    assert gm.n_iter_ < gm.max_iter_
    assert abs(gm.history_[-1] - gm.history_[-2]) < gm.tol_
    assert (np.abs(np.diff(gm.history_))[:-1] >= gm.tol_).all()


def test_n_init_converged_reports_the_kept_restart(overlapping_2d):
    X, _, _ = overlapping_2d
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        gm = GaussianMixture(3, n_init=3, random_state=0).fit(X)
    assert gm.converged_ is True
    assert gm.history_.size == gm.n_iter_


# --- warm start -------------------------------------------------------------------------


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_warm_start_continues_from_previous_parameters(overlapping_2d, covariance_type):
    X, _, means = overlapping_2d
    kwargs = dict(covariance_type=covariance_type, tol=0.0, accelerate=False)
    kwargs.update(initial_params(covariance_type, means))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        straight = GaussianMixture(3, max_iter=10, **kwargs).fit(X)
        warm = GaussianMixture(3, max_iter=4, warm_start=True, **kwargs).fit(X)
        first_history = warm.history_.copy()
        warm.max_iter = 6
        warm.fit(X)
    np.testing.assert_allclose(first_history, straight.history_[:4], rtol=1e-10)
    np.testing.assert_allclose(warm.history_, straight.history_[4:], rtol=1e-10)
    np.testing.assert_allclose(warm.means_, straight.means_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(warm.covariances_, straight.covariances_, rtol=1e-9)
    np.testing.assert_allclose(warm.weights_, straight.weights_, rtol=1e-9)
    assert warm.n_iter_ == 6
    np.testing.assert_allclose(warm.lower_bound_, straight.lower_bound_, rtol=1e-10)


def test_warm_start_from_estimated_start_continues(overlapping_2d):
    X, _, _ = overlapping_2d
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm = GaussianMixture(3, warm_start=True, max_iter=3, tol=1e-12, random_state=0).fit(X)
        bound = gm.lower_bound_
        score_of_returned = gm.score(X)
        gm.fit(X)
    # The second fit starts where the first stopped: its first bound is the likelihood
    # of the parameters the first fit returned.
    np.testing.assert_allclose(gm.history_[0], score_of_returned, rtol=1e-10)
    assert_never_decreases(np.concatenate([[bound], gm.history_]))


def test_warm_start_false_restarts(overlapping_2d):
    X, _, _ = overlapping_2d
    a = GaussianMixture(3, random_state=0).fit(X)
    b = GaussianMixture(3, random_state=0)
    b.fit(X[:100])
    b.fit(X)
    assert_same_fit(a, b, rtol=0, atol=0)


def test_warm_start_with_different_feature_count_raises(overlapping_2d):
    X, _, _ = overlapping_2d
    gm = GaussianMixture(3, warm_start=True, random_state=0).fit(X)
    with pytest.raises(EmsegError, match="warm_start"):
        gm.fit(np.column_stack([X, X[:, 0]]))


# --- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "X, match",
    [
        (np.array([[0.0, 1.0], [np.inf, 2.0], [1.0, 1.0]]), "X contains infinity"),
        (np.array([[0.0, -np.inf], [1.0, 2.0], [1.0, 1.0]]), "X contains infinity"),
        (np.empty((0, 2)), "X is empty"),
        (np.empty((4, 0)), "X is empty"),
        ([], "X is empty"),
        (np.zeros((2, 2, 2)), "X must be 1-D or 2-D"),
        (np.array([["a", "b"], ["c", "d"]]), "X must be numeric"),
        (np.ones((3, 2)) * (1 + 1j), "X must be real"),
        (np.array([[0.0, np.nan], [1.0, np.nan], [2.0, np.nan]]), "X column 1"),
    ],
    ids=[
        "inf", "-inf", "no-rows", "no-columns", "empty-list", "3d", "strings", "complex",
        "nan-column",
    ],
)
def test_bad_X_raises(X, match):
    with pytest.raises(EmsegError, match=match):
        GaussianMixture(1).fit(X)


@pytest.mark.parametrize("n_components", [0, -1, 2.5, "3", True])
def test_bad_n_components_raises(blobs_2d, n_components):
    with pytest.raises(EmsegError, match="n_components"):
        GaussianMixture(n_components).fit(blobs_2d[0])


@pytest.mark.parametrize("merge", [True, False], ids=["merged", "per-row"])
@pytest.mark.parametrize(
    "X, K",
    [
        (np.arange(10.0).reshape(5, 2), 6),
        (np.repeat([[0.0, 1.0], [2.0, 3.0]], 100, axis=0), 3),
        (np.repeat([[0.0], [1.0], [2.0]], [5, 40, 7], axis=0), 4),
    ],
    ids=["fewer-rows", "two-distinct-of-200", "three-distinct-of-52"],
)
def test_more_components_than_distinct_rows_raises(X, K, merge, monkeypatch):
    gm = GaussianMixture(K, random_state=0)
    monkeypatch.setattr(gm, "_merge_repeated_rows", merge)
    with pytest.raises(EmsegError, match="n_components"):
        gm.fit(X)


def test_more_components_than_distinct_rows_with_missing_values_raises():
    # Two distinct rows: one complete row repeated, and one incomplete row twice.
    X = np.concatenate([np.tile([[0.0, 1.0]], (50, 1)), [[5.0, np.nan], [5.0, np.nan]]])
    with pytest.raises(EmsegError, match="n_components"):
        GaussianMixture(3, random_state=0).fit(X)


@pytest.mark.parametrize("init_params", INIT_PARAMS)
def test_a_fit_always_has_n_components(init_params):
    # Three distinct rows, but the incomplete one, filled with its column mean to start
    # from, lands on a complete one. Either refuse or fit three components: never
    # return fewer components than asked for.
    X = np.concatenate(
        [np.tile([[0.0, 1.0]], (50, 1)), np.tile([[2.0, 1.0]], (50, 1)), [[0.0, np.nan]]]
    )
    gm = GaussianMixture(3, init_params=init_params, random_state=0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", EmptyComponentWarning)
            gm.fit(X)
    except EmsegError as exc:
        assert "n_components" in str(exc)
        return
    assert gm.weights_.shape == (3,)
    assert gm.means_.shape == (3, 2)
    assert gm.predict_proba(X).shape == (X.shape[0], 3)


def test_exactly_as_many_distinct_rows_as_components_fits(rng):
    X = np.repeat([[0.0, 0.0], [5.0, 1.0], [9.0, -3.0]], 30, axis=0)
    gm = GaussianMixture(3, random_state=0).fit(X)
    np.testing.assert_allclose(gm.means_, [[0.0, 0.0], [5.0, 1.0], [9.0, -3.0]], atol=1e-6)


@pytest.mark.parametrize(
    "sample_weight",
    [
        -np.ones(450),
        np.r_[np.ones(449), -0.5],
        np.zeros(450),
        np.ones(449),
        np.ones(451),
        np.ones((450, 1)),
        np.r_[np.ones(449), np.nan],
        np.r_[np.ones(449), np.inf],
    ],
    ids=[
        "all-negative", "one-negative", "all-zero", "too-short", "too-long", "2d", "nan",
        "inf",
    ],
)
def test_bad_sample_weight_raises(blobs_2d, sample_weight):
    with pytest.raises(EmsegError, match="sample_weight"):
        GaussianMixture(3, random_state=0).fit(blobs_2d[0], sample_weight=sample_weight)


def test_bad_sample_weight_in_score_raises(blobs_2d):
    X = blobs_2d[0]
    gm = GaussianMixture(3, random_state=0).fit(X)
    with pytest.raises(EmsegError, match="sample_weight"):
        gm.score(X, sample_weight=np.ones(3))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("which", ["weights_init", "means_init", "precisions_init"])
def test_initial_parameters_of_wrong_shape_raise(blobs_2d, covariance_type, which):
    X, _, means = blobs_2d
    good = initial_params(covariance_type, means)
    bad = {
        "weights_init": np.full(4, 0.25),
        "means_init": np.zeros((3, 3)),
        # 3 features where X has 2 (spherical has no feature axis: 4 components)
        "precisions_init": initial_precisions(
            covariance_type, 4 if covariance_type == "spherical" else 3, 3
        ),
    }[which]
    gm = GaussianMixture(3, covariance_type=covariance_type, **{**good, which: bad})
    with pytest.raises(EmsegError, match=which):
        gm.fit(X)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_precisions_init_of_another_covariance_type_raises(blobs_2d, covariance_type):
    X, _, _ = blobs_2d
    other = {"full": "diag", "tied": "full", "diag": "spherical", "spherical": "tied"}
    prec = initial_precisions(other[covariance_type], 3, 2)
    with pytest.raises(EmsegError, match="precisions_init"):
        GaussianMixture(3, covariance_type=covariance_type, precisions_init=prec).fit(X)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"weights_init": [0.5, 0.3, 0.3]}, "weights_init"),
        ({"weights_init": [1.2, -0.1, -0.1]}, "weights_init"),
        ({"means_init": [[0.0, 0.0], [1.0, np.nan], [2.0, 2.0]]}, "means_init"),
        ({"precisions_init": [[[1, 2], [2, 1]]] * 3}, "precisions_init"),
        ({"covariance_type": "diag", "precisions_init": -np.ones((3, 2))}, "precisions_init"),
    ],
    ids=["weights-sum", "weights-negative", "means-nan", "prec-not-pd", "prec-negative"],
)
def test_invalid_initial_parameter_values_raise(blobs_2d, kwargs, match):
    with pytest.raises(EmsegError, match=match):
        GaussianMixture(3, **kwargs).fit(blobs_2d[0])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"covariance_type": "fulll"}, "covariance_type"),
        ({"covariance_type": None}, "covariance_type"),
        ({"init_params": "k-means"}, "init_params"),
        ({"init_params": "random_from_sky"}, "init_params"),
        ({"tol": -1.0}, "tol"),
        ({"tol": np.nan}, "tol"),
        ({"reg_covar": -1e-6}, "reg_covar"),
        ({"max_iter": -1}, "max_iter"),
        ({"max_iter": 10.5}, "max_iter"),
        ({"n_init": 0}, "n_init"),
        ({"random_state": "seed"}, "random_state"),
        ({"random_state": -1}, "random_state"),
        ({"callback": 3}, "callback"),
        ({"covariance_type": np.array(["full", "diag"])}, "covariance_type"),
        ({"tol": np.array([1e-3, 1e-4])}, "tol"),
        ({"n_init": np.arange(40)}, "n_init"),
    ],
)
def test_bad_arguments_raise(blobs_2d, kwargs, match):
    with pytest.raises(EmsegError, match=match) as caught:
        GaussianMixture(3, **kwargs).fit(blobs_2d[0])
    assert "\n" not in str(caught.value)  # one line, arrays named by their type


FITTED_METHODS = {
    "predict": lambda gm, X: gm.predict(X),
    "predict_proba": lambda gm, X: gm.predict_proba(X),
    "score_samples": lambda gm, X: gm.score_samples(X),
    "score": lambda gm, X: gm.score(X),
    "bic": lambda gm, X: gm.bic(X),
    "aic": lambda gm, X: gm.aic(X),
    "impute": lambda gm, X: gm.impute(X),
}


@pytest.mark.parametrize("method", [*FITTED_METHODS, "sample"])
def test_use_before_fit_raises(blobs_2d, method):
    gm = GaussianMixture(3)
    call = FITTED_METHODS.get(method, lambda gm, X: gm.sample(5))
    with pytest.raises(EmsegError, match="not fitted"):
        call(gm, blobs_2d[0])


@pytest.mark.parametrize("method", list(FITTED_METHODS))
def test_wrong_number_of_features_raises(blobs_2d, method):
    X = blobs_2d[0]
    gm = GaussianMixture(3, random_state=0).fit(X)
    with pytest.raises(EmsegError, match="3 features"):
        FITTED_METHODS[method](gm, np.column_stack([X, X[:, 0]]))


@pytest.mark.parametrize("method", list(FITTED_METHODS))
def test_infinity_after_fit_raises(blobs_2d, method):
    X = blobs_2d[0]
    gm = GaussianMixture(3, random_state=0).fit(X)
    bad = X[:5].copy()
    bad[2, 1] = np.inf
    with pytest.raises(EmsegError, match="infinity"):
        FITTED_METHODS[method](gm, bad)


def test_large_fits_start_from_a_subsample_and_reach_the_same_maximum(monkeypatch):
    # Over GaussianMixture._presubsample_rows rows, EM first runs on a subsample; the
    # full-data fit that follows must reach the same optimum as starting cold.
    rng = np.random.default_rng(5)
    X, _ = gaussian_blobs(rng, [[-4.0, 0.0], [0.0, 3.0], [4.0, -1.0]], [60_000, 50_000, 40_000])
    options = dict(random_state=0, tol=1e-6, init_params="kmeans++", n_init=1)
    quick = GaussianMixture(3, **options).fit(X)
    assert np.all(np.diff(quick.history_) >= -1e-12)
    monkeypatch.setattr(GaussianMixture, "_presubsample_rows", 10**9)
    cold = GaussianMixture(3, **options).fit(X)
    assert quick.n_iter_ < cold.n_iter_
    np.testing.assert_allclose(quick.lower_bound_, cold.lower_bound_, rtol=1e-6)
    np.testing.assert_allclose(quick.means_, cold.means_, atol=1e-3)


def test_logsumexp_rows_matches_scipy():
    from scipy.special import logsumexp

    from emseg.mixture.gaussian_mixture import logsumexp_rows

    rng = np.random.default_rng(0)
    a = rng.normal(size=(50, 4)) * 300
    a[3] = -np.inf
    a[4, :2] = -np.inf
    with np.errstate(divide="ignore"):
        np.testing.assert_allclose(logsumexp_rows(a), logsumexp(a, axis=1), rtol=1e-14)


# --- wide data (issue 17): diagonal models never made dense ------------------------------


@pytest.mark.parametrize("ctype", ["diag", "spherical"])
def test_wide_diagonal_model_never_allocates_k_d_d(ctype):
    # Dense (K, D, D) covariances here would be 2 x 3000 x 3000 x 8 bytes = 144 MB; with
    # 100,000 columns, 149 GiB. Fitting, scoring, imputing and sampling need none of it.
    import tracemalloc

    rng = np.random.default_rng(0)
    X = rng.normal(size=(16, 3000))
    X[:8] += 4.0
    X[1, 5] = np.nan
    gm = GaussianMixture(2, covariance_type=ctype, random_state=0, max_iter=5)
    tracemalloc.start()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            gm.fit(X)
        filled = gm.impute(X)
        gm.score(X)
        sample, _ = gm.sample(4)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 40e6
    assert np.isfinite(filled).all() and sample.shape == (4, 3000)
    k = gm.predict(X[1:2])[0]
    assert filled[1, 5] == pytest.approx(gm.means_[k, 5])  # independent: the mean


def test_diag_sample_has_the_model_variances():
    gm = GaussianMixture(1, covariance_type="diag", random_state=0)
    gm.fit(np.random.default_rng(1).normal(size=(500, 2)) * [1.0, 3.0])
    X, _ = gm.sample(20000)
    assert np.allclose(X.var(0), gm.covariances_[0], rtol=0.05)


def test_dense_covariances_beyond_free_memory_refused():
    X = np.random.default_rng(0).normal(size=(6, 100_000))  # (2, 1e5, 1e5): 149 GiB
    with pytest.raises(EmsegError, match=r"full or tied covariances needs a \(2, 100000, 100000\).*covariance_type='diag'"):
        GaussianMixture(2, covariance_type="full", random_state=0).fit(X)
    gm = GaussianMixture(2, covariance_type="diag", random_state=0, max_iter=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm.fit(X)
    from emseg.mixture.gaussian_mixture import full_covariances

    with pytest.raises(EmsegError, match=r"diag covariances as \(K, D, D\) matrices needs"):
        full_covariances(gm)
