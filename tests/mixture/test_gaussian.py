"""The Gaussian algebra as functions of arrays (emseg.mixture.gaussian), against
scikit-learn's private functions from the same inputs, and the rows EM runs on
(emseg.mixture.training_data, emseg.mixture.missing)."""

import numpy as np
import pytest

from emseg import EmptyComponentWarning, EmsegError, GaussianMixture
from emseg.mixture.gaussian import (
    COVARIANCE_TYPES,
    GaussianParams,
    GaussianStats,
    check_symmetric,
    cholesky_of_covariances,
    cholesky_of_precisions,
    complete_stats,
    covariance_shape,
    covariances_from_cholesky,
    dense_covariances,
    estimate_gaussian_parameters,
    kernel_params,
    m_step,
    precisions_from_cholesky,
    reseed_empty,
    stats_from_labels,
    weighted_log_prob,
)
from emseg.mixture.missing import Pattern, pattern_stats
from emseg.mixture.training_data import TrainingData

skgm = pytest.importorskip("sklearn.mixture._gaussian_mixture")

K, D = 3, 4


@pytest.fixture(params=COVARIANCE_TYPES)
def covariance_type(request):
    return request.param


@pytest.fixture
def rows():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(c, 1.0 + c / 4, size=(200, D)) for c in (-4.0, 0.0, 4.0)])
    resp = rng.dirichlet(np.ones(K), size=X.shape[0])
    return X, resp


def _stats_from_resp(X, resp, shift, full):
    """GaussianStats of soft responsibilities, centred on ``shift`` (one row per component)."""
    nk = resp.sum(0)
    sx = np.stack([resp[:, k] @ (X - shift[k]) for k in range(K)])
    if full:
        sxx = np.stack([(X - shift[k]).T @ ((X - shift[k]) * resp[:, k, None]) for k in range(K)])
    else:
        sxx = np.stack([resp[:, k] @ (X - shift[k]) ** 2 for k in range(K)])
    return GaussianStats(nk, sx, sxx, shift, 0.0, float(X.shape[0]))


def _params(X, resp, covariance_type, reg=1e-6):
    nk, means, cov = skgm._estimate_gaussian_parameters(X, resp, reg, covariance_type)
    pc = skgm._compute_precision_cholesky(cov, covariance_type)
    return GaussianParams(nk / nk.sum(), means, cov, pc)


@pytest.mark.parametrize("reg", [1e-6, 0.5])
@pytest.mark.parametrize("centred_on", ["zero", "data"])
def test_m_step_matches_sklearn_estimate_gaussian_parameters(rows, covariance_type, reg,
                                                             centred_on):
    X, resp = rows
    shift = np.zeros((K, D)) if centred_on == "zero" else X[:K] + 0.3
    stats = _stats_from_resp(X, resp, shift, covariance_type in ("full", "tied"))
    weights, means, cov, empty = estimate_gaussian_parameters(stats, covariance_type, reg)
    nk, ref_means, ref_cov = skgm._estimate_gaussian_parameters(X, resp, reg, covariance_type)
    assert not empty.any()
    np.testing.assert_allclose(weights, nk / nk.sum(), rtol=1e-12)
    np.testing.assert_allclose(means, ref_means, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(cov, ref_cov, rtol=1e-9)
    # and the whole M-step: the same covariances and scikit-learn's precision factors
    params = m_step(stats, covariance_type, reg)
    np.testing.assert_allclose(params.covariances, ref_cov, rtol=1e-9)
    np.testing.assert_allclose(
        params.precisions_cholesky, skgm._compute_precision_cholesky(ref_cov, covariance_type),
        rtol=1e-8, atol=1e-12,
    )


def test_floor_may_differ_per_feature(rows, covariance_type):
    X, resp = rows
    stats = _stats_from_resp(X, resp, np.zeros((K, D)), covariance_type in ("full", "tied"))
    reg = np.array([0.0, 1.0, 2.0, 3.0])
    base = estimate_gaussian_parameters(stats, covariance_type, 0.0)[2]
    floored = estimate_gaussian_parameters(stats, covariance_type, reg)[2]
    if covariance_type == "full":
        np.testing.assert_allclose(floored - base, np.broadcast_to(np.diag(reg), (K, D, D)))
    elif covariance_type == "tied":
        np.testing.assert_allclose(floored - base, np.diag(reg))
    elif covariance_type == "diag":
        np.testing.assert_allclose(floored - base, np.broadcast_to(reg, (K, D)))
    else:
        np.testing.assert_allclose(floored - base, np.full(K, reg.mean()))


def test_log_prob_and_cholesky_match_sklearn(rows, covariance_type):
    X, resp = rows
    params = _params(X, resp, covariance_type)
    ours = cholesky_of_covariances(params.covariances, covariance_type)
    np.testing.assert_allclose(ours, params.precisions_cholesky, rtol=1e-8, atol=1e-12)
    ref = skgm._estimate_log_gaussian_prob(X, params.means, params.precisions_cholesky,
                                           covariance_type)
    got = weighted_log_prob(X, params.weights, params.means, params.precisions_cholesky,
                            covariance_type)
    np.testing.assert_allclose(got, ref + np.log(params.weights), rtol=1e-10)
    densities = weighted_log_prob(X, None, params.means, params.precisions_cholesky,
                                  covariance_type)
    np.testing.assert_allclose(densities, ref, rtol=1e-10)
    kind = kernel_params(None, params.means, params.precisions_cholesky, covariance_type)[0]
    assert kind == ("full" if covariance_type in ("full", "tied") else "diag")


def test_covariances_precisions_and_factors_round_trip(rows, covariance_type):
    X, resp = rows
    params = _params(X, resp, covariance_type)
    pc = params.precisions_cholesky
    np.testing.assert_allclose(covariances_from_cholesky(pc, covariance_type), params.covariances,
                               rtol=1e-9)
    precisions = precisions_from_cholesky(pc, covariance_type)
    np.testing.assert_allclose(cholesky_of_precisions(precisions, covariance_type), pc,
                               rtol=1e-8, atol=1e-12)
    dense = dense_covariances(params.covariances, covariance_type, K, D)
    assert dense.shape == (K, D, D)
    # precisions have the covariances' layout: made dense, they are the inverses
    np.testing.assert_allclose(np.linalg.inv(dense),
                               dense_covariances(precisions, covariance_type, K, D), rtol=1e-8)


def test_singular_covariance_and_bad_precisions_are_refused():
    with pytest.raises(EmsegError, match="increase reg_covar"):
        cholesky_of_covariances(np.zeros((1, 2, 2)), "full")
    with pytest.raises(EmsegError, match="not positive"):
        cholesky_of_covariances(np.array([1.0, -1.0]), "spherical")
    with pytest.raises(EmsegError, match="precisions_init must be symmetric positive definite"):
        cholesky_of_precisions(-np.eye(2), "tied")


def test_e_step_statistics_add_up_and_feed_the_m_step(rows, covariance_type):
    """Statistics of two halves add up to those of all the rows, and one E-step + M-step
    equals scikit-learn's E-step (responsibilities) then its M-step."""
    X, resp = rows
    p = _params(X, resp, covariance_type)
    args = (p.weights, p.means, p.precisions_cholesky, covariance_type)
    whole = complete_stats(X, np.empty(0), *args)
    halves = complete_stats(X[:250], np.empty(0), *args) + complete_stats(X[250:], np.empty(0), *args)
    for a, b in zip((whole.nk, whole.sx, whole.sxx), (halves.nk, halves.sx, halves.sxx)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-9)
    lp = skgm._estimate_log_gaussian_prob(X, p.means, p.precisions_cholesky, covariance_type)
    lp += np.log(p.weights)
    norm = np.logaddexp.reduce(lp, axis=1)
    np.testing.assert_allclose(whole.loglik, norm.sum(), rtol=1e-10)
    new_resp = np.exp(lp - norm[:, None])
    _, ref_means, ref_cov = skgm._estimate_gaussian_parameters(X, new_resp, 1e-6, covariance_type)
    ours = m_step(whole, covariance_type, 1e-6)
    np.testing.assert_allclose(ours.means, ref_means, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(ours.covariances, ref_cov, rtol=1e-8)


def test_pattern_with_everything_observed_equals_complete_rows(rows, covariance_type):
    X, resp = rows
    p = _params(X, resp, covariance_type)
    w = np.linspace(0.5, 2.0, X.shape[0])
    full = complete_stats(X, w, p.weights, p.means, p.precisions_cholesky, covariance_type)
    observed = np.ones(D, dtype=bool)
    part = pattern_stats(Pattern(observed, X, w), p.weights, p.means, p.covariances,
                         covariance_type)
    for a, b in zip((full.nk, full.sx, full.sxx, full.loglik),
                    (part.nk, part.sx, part.sxx, part.loglik)):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-8)


def test_emptied_component_is_reseeded_on_the_farthest_row():
    X = np.array([[0.0], [0.1], [0.2], [9.0]])
    labels = np.array([0, 0, 0, 0])
    stats = stats_from_labels(X, np.empty(0), labels, np.array([[0.0], [5.0]]))
    with pytest.warns(EmptyComponentWarning, match="re-seeded"):
        params = m_step(stats, "full", 1e-6, TrainingData(X, np.empty(0), [], 4.0))
    assert params.means[1, 0] == 9.0  # the row farthest from the other mean
    np.testing.assert_allclose(params.weights.sum(), 1.0)
    with pytest.warns(EmptyComponentWarning):  # no data: among the remaining means
        weights, means, cov = reseed_empty(np.array([False, True]), np.array([1.0, 0.0]),
                                           np.array([[0.1], [5.0]]), np.ones((2, 1, 1)),
                                           "full", None)
    assert means[1, 0] == 0.1
    np.testing.assert_allclose(weights, [2 / 3, 1 / 3])  # 1/K, then renormalised


def test_subsample_reseeds_on_the_data_it_was_drawn_from():
    whole = TrainingData.from_rows(np.arange(20.0)[:, None], None, 2)
    part = TrainingData(whole.X[:3], np.ones(3), [], 3.0, drawn_from=whole)
    np.testing.assert_array_equal(part.reseed_rows(), whole.X)
    np.testing.assert_array_equal(whole.reseed_rows(), whole.X)


def test_training_data_merges_rows_and_groups_patterns():
    X = np.array([[1.0, 2.0], [1.0, 2.0], [3.0, np.nan], [np.nan, 4.0], [5.0, np.nan]])
    data = TrainingData.from_rows(X, None, 2)
    assert data.total_weight == 5.0 and data.n_rows == 4 and data.n_features == 2
    assert sorted(p.X.shape[0] for p in data.patterns) == [1, 2]
    filled, w = data.init_view()
    assert not np.isnan(filled).any() and w.sum() == 5.0
    with pytest.raises(EmsegError, match="only 1 distinct rows"):
        TrainingData.from_rows(np.ones((5, 2)), None, 2)


def test_fit_leaves_no_temporary_attribute_and_warns_at_the_fit():
    """Re-seeding goes through the data passed to the EM loop, nothing is left on the
    estimator, and the warning still points at GaussianMixture.fit."""
    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(-6, 1, (100, 2)), rng.normal(3, 1, (100, 2))]
    start = dict(weights_init=np.ones(3) / 3, means_init=[[-6.0, 0.0], [3.0, 1.5], [1e3, 1e3]],
                 precisions_init=np.broadcast_to(np.eye(2), (3, 2, 2)))
    gm = GaussianMixture(3, **start)
    before = set(vars(gm))
    with pytest.warns(EmptyComponentWarning) as caught:
        gm.fit(X)
    assert set(vars(gm)) - before == {
        "weights_", "means_", "covariances_", "precisions_cholesky_", "reg_covar_",
        "max_iter_", "tol_", "converged_", "n_iter_", "lower_bound_", "history_",
        "n_init_", "restart_lower_bounds_",
    }
    assert caught[0].filename.endswith("gaussian_mixture.py")


def test_symmetrize_makes_full_and_tied_covariances_exactly_symmetric(rows, covariance_type):
    """Second moments symmetric only up to rounding (a BLAS product's) give exactly
    symmetric covariances with ``symmetrize``, within rounding of the plain estimate."""
    X, resp = rows
    shift = X[:K] + 0.3
    stats = _stats_from_resp(X, resp, shift, covariance_type in ("full", "tied"))
    if covariance_type in ("full", "tied"):
        stats.sxx = stats.sxx + 1e-9 * np.triu(np.ones((D, D)), 1)  # off symmetry
    plain = estimate_gaussian_parameters(stats, covariance_type, 0.0)
    sym = estimate_gaussian_parameters(stats, covariance_type, 0.0, symmetrize=True)
    for a, b in zip(plain[:2] + plain[3:], sym[:2] + sym[3:]):
        np.testing.assert_array_equal(a, b)
    cov = sym[2]
    if covariance_type in ("full", "tied"):
        mats = cov[None] if covariance_type == "tied" else cov
        np.testing.assert_array_equal(mats, mats.transpose(0, 2, 1))
        assert not np.array_equal(plain[2], cov)
        np.testing.assert_allclose(cov, plain[2], rtol=1e-8)
    else:  # nothing to symmetrize
        np.testing.assert_array_equal(cov, plain[2])


def test_covariance_shape_is_the_layout_of_every_function(rows, covariance_type):
    X, resp = rows
    params = _params(X, resp, covariance_type)
    shape = covariance_shape(covariance_type, K, D)
    assert params.covariances.shape == shape
    assert params.precisions_cholesky.shape == shape
    assert covariance_shape(covariance_type, 1, 1) == {
        "full": (1, 1, 1), "tied": (1, 1), "diag": (1, 1), "spherical": (1,)
    }[covariance_type]


def test_check_symmetric_names_the_field_and_the_component():
    good = np.array([[2.0, 0.5], [0.5, 1.0]])
    bad = np.array([[2.0, 0.5], [0.4, 1.0]])
    check_symmetric(np.stack([good, good]), "full", "covars_init")
    check_symmetric(good, "tied", "covars_init")
    check_symmetric(np.array([[1.0, -2.0]]), "diag", "covars_init")  # nothing to check
    check_symmetric(good + 1e-12 * np.triu(np.ones((2, 2)), 1), "tied", "x")  # rounding passes
    with pytest.raises(EmsegError, match=r"^covars_init\[1\] is not symmetric$"):
        check_symmetric(np.stack([good, bad]), "full", "covars_init")
    with pytest.raises(EmsegError, match=r"^model.covars_ is not symmetric$"):
        check_symmetric(bad, "tied", "model.covars_")
    with pytest.raises(EmsegError, match="is not symmetric"):  # tiny matrices: relative
        check_symmetric(1e-200 * bad, "tied", "x")
