"""Tests for emseg.GaussianHMM and emseg.CategoricalHMM.

A reference implementation (hmmlearn, from the same starting parameters), known
answers (every state path of a short sequence enumerated by brute force), properties
of EM (the log-likelihood never falls; the order of the sequences does not matter),
and the model-file and input checks.
"""

import itertools
import json
import warnings

import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

from emseg import ConvergenceWarning, EmptyComponentWarning, EmsegError
from emseg.hmm import _kernels as hk
from emseg.hmm import CategoricalHMM, GaussianHMM, hmm_from_dict

COVARIANCE_TYPES = ["full", "diag", "spherical", "tied"]

# For tests that run a fixed number of iterations: whether EM converged is beside the point.
budget_may_run_out = pytest.mark.filterwarnings("ignore::emseg.ConvergenceWarning")


# --- models and data -------------------------------------------------------------------

TRUE_START = np.array([0.5, 0.3, 0.2])
TRUE_TRANS = np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.05, 0.15, 0.8]])
TRUE_MEANS = np.array([[-2.0, 3.0], [0.0, 0.0], [2.0, 2.5]])
TRUE_COVS = np.array(
    [[[1.2, -0.2], [-0.2, 0.7]], [[1.0, 0.3], [0.3, 1.0]], [[0.8, 0.0], [0.0, 0.5]]]
)
LENGTHS = [300, 200, 250]

# a deliberately poor starting point, the same for emseg and hmmlearn
INIT_START = np.array([0.25, 0.4, 0.35])
INIT_TRANS = np.array([[0.6, 0.2, 0.2], [0.25, 0.5, 0.25], [0.2, 0.2, 0.6]])
INIT_MEANS = np.array([[-1.0, 2.0], [0.5, 0.5], [1.5, 2.0]])
INIT_COVARS = {
    "full": np.array([np.eye(2) * 1.5, [[1.2, 0.2], [0.2, 1.0]], np.eye(2)]),
    "diag": np.array([[1.5, 1.4], [1.6, 1.1], [1.0, 1.3]]),
    "spherical": np.array([1.5, 1.2, 1.0]),
    "tied": np.array([[1.5, 0.1], [0.1, 1.2]]),
}


def gaussian_truth():
    model = GaussianHMM(3, "full")
    model.startprob_ = TRUE_START
    model.transmat_ = TRUE_TRANS
    model.means_ = TRUE_MEANS
    model.covars_ = TRUE_COVS
    return model


def gaussian_data(lengths=LENGTHS, seed=0):
    truth = gaussian_truth()
    parts = [truth.sample(n, random_state=seed + i) for i, n in enumerate(lengths)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def categorical_truth():
    model = CategoricalHMM(3)
    model.startprob_ = np.array([0.6, 0.3, 0.1])
    model.transmat_ = np.array([[0.85, 0.1, 0.05], [0.1, 0.8, 0.1], [0.05, 0.15, 0.8]])
    model.emissionprob_ = np.array(
        [[0.6, 0.2, 0.1, 0.1], [0.1, 0.5, 0.3, 0.1], [0.1, 0.1, 0.2, 0.6]]
    )
    return model


def categorical_data(lengths=LENGTHS, seed=0):
    truth = categorical_truth()
    parts = [truth.sample(n, random_state=seed + i)[0] for i, n in enumerate(lengths)]
    return np.concatenate(parts)


def gaussian_from_init(covariance_type, **kwargs):
    return GaussianHMM(
        3,
        covariance_type=covariance_type,
        startprob_init=INIT_START,
        transmat_init=INIT_TRANS,
        means_init=INIT_MEANS,
        covars_init=INIT_COVARS[covariance_type],
        **kwargs,
    )


INIT_EMISSION = np.array([[0.4, 0.3, 0.2, 0.1], [0.25, 0.25, 0.25, 0.25], [0.1, 0.2, 0.3, 0.4]])


def categorical_from_init(**kwargs):
    return CategoricalHMM(
        3,
        startprob_init=INIT_START,
        transmat_init=INIT_TRANS,
        emissionprob_init=INIT_EMISSION,
        **kwargs,
    )


def full_covars(model):
    return model.covars_  # (K, D, D) whatever the covariance type, as hmmlearn's


def compact_covars(model):
    """The covariances in the shape of the model's covariance type."""
    cov = model.covars_
    return {
        "full": lambda: cov,
        "tied": lambda: cov[0],
        "diag": lambda: np.einsum("kii->ki", cov),
        "spherical": lambda: cov[:, 0, 0],
    }[model.covariance_type]()


def assert_rel(actual, expected, rtol=1e-6):
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=0)


# --- the same model as hmmlearn --------------------------------------------------------


@budget_may_run_out
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_gaussian_matches_hmmlearn_after_10_iterations(covariance_type):
    hmmlearn = pytest.importorskip("hmmlearn.hmm")
    X, _ = gaussian_data()
    ours = gaussian_from_init(covariance_type, n_iter=10, tol=0).fit(X, LENGTHS)

    # hmmlearn: no re-initialisation, every parameter updated, its default priors (as
    # emseg's; the covariance floor is never reached), and a tolerance that never
    # stops it early
    ref = hmmlearn.GaussianHMM(
        3,
        covariance_type=covariance_type,
        n_iter=10,
        tol=-np.inf,
        init_params="",
        params="stmc",
    )
    ref.startprob_ = INIT_START
    ref.transmat_ = INIT_TRANS
    ref.means_ = INIT_MEANS
    ref.covars_ = INIT_COVARS[covariance_type]
    ref.fit(X, LENGTHS)
    assert ours.n_iter_ == len(ref.monitor_.history) == 10

    order = np.arange(3)  # starting means given: the states keep their order
    assert_rel(ours.startprob_, ref.startprob_[order])
    assert_rel(ours.transmat_, ref.transmat_[np.ix_(order, order)])
    assert_rel(ours.means_, ref.means_[order])
    raw = ref._covars_  # hmmlearn's covars_ getter expands to full matrices
    expected = {
        "full": lambda: raw[order],
        "tied": lambda: raw,
        "diag": lambda: raw[order],
        "spherical": lambda: raw[order, 0],  # stored tiled over the features
    }[covariance_type]()
    assert_rel(compact_covars(ours), expected)
    # log-likelihood of every iteration (emseg's per sample, hmmlearn's total)
    assert_rel(ours.history_ * X.shape[0], ref.monitor_.history)
    assert_rel(ours.score(X, LENGTHS), ref.score(X, LENGTHS))
    _, posteriors = ref.score_samples(X, LENGTHS)
    np.testing.assert_allclose(ours.predict_proba(X, LENGTHS), posteriors[:, order], atol=1e-9)

    log_prob, path = ours.decode(X, LENGTHS)
    ref_log_prob, ref_path = ref.decode(X, LENGTHS)
    np.testing.assert_array_equal(order[path], ref_path)
    assert_rel(log_prob, ref_log_prob)


@budget_may_run_out
def test_categorical_matches_hmmlearn_after_10_iterations():
    hmmlearn = pytest.importorskip("hmmlearn.hmm")
    X = categorical_data()
    ours = categorical_from_init(n_iter=10, tol=0).fit(X, LENGTHS)

    ref = hmmlearn.CategoricalHMM(
        3, n_features=4, n_iter=10, tol=-np.inf, init_params="", params="ste"
    )
    ref.startprob_ = INIT_START
    ref.transmat_ = INIT_TRANS
    ref.emissionprob_ = INIT_EMISSION
    ref.fit(X, LENGTHS)

    order = np.arange(3)  # starting emissions given: the states keep their order
    assert_rel(ours.startprob_, ref.startprob_[order])
    assert_rel(ours.transmat_, ref.transmat_[np.ix_(order, order)])
    assert_rel(ours.emissionprob_, ref.emissionprob_[order])
    assert_rel(ours.history_ * X.shape[0], ref.monitor_.history)
    assert_rel(ours.score(X, LENGTHS), ref.score(X, LENGTHS))

    log_prob, path = ours.decode(X, LENGTHS)
    ref_log_prob, ref_path = ref.decode(X, LENGTHS)
    np.testing.assert_array_equal(order[path], ref_path)
    assert_rel(log_prob, ref_log_prob)


def test_viterbi_matches_hmmlearn_with_forbidden_transitions_and_ties():
    """A left-right model (zeros in transmat) and a model whose states tie exactly."""
    hmmlearn = pytest.importorskip("hmmlearn.hmm")
    X = categorical_data(lengths=[120, 80])
    left_right = np.array([[0.7, 0.3, 0], [0, 0.8, 0.2], [0, 0, 1.0]])
    twins = np.array([INIT_EMISSION[0], INIT_EMISSION[0], INIT_EMISSION[2]])
    cases = [
        (np.array([1.0, 0, 0]), left_right, INIT_EMISSION),
        # states 0 and 1 identical: hmmlearn breaks ties in a fixed way, emseg must too
        (np.full(3, 1 / 3), np.full((3, 3), 1 / 3), twins),
    ]
    for start, trans, emission in cases:
        ours = CategoricalHMM(3)
        ours.startprob_, ours.transmat_, ours.emissionprob_ = start, trans, emission
        ref = hmmlearn.CategoricalHMM(3, n_features=4)
        ref.startprob_, ref.transmat_, ref.emissionprob_ = start, trans, emission
        log_prob, path = ours.decode(X, [120, 80])
        ref_log_prob, ref_path = ref.decode(X, [120, 80])
        np.testing.assert_array_equal(path, ref_path)
        assert_rel(log_prob, ref_log_prob, rtol=1e-12)


# --- known answers: every state path enumerated ----------------------------------------


def brute_force(start, trans, logb):
    """log p(X) and the best path's (log p(X, path), path), over all K**T paths."""
    T, K = logb.shape
    with np.errstate(divide="ignore"):
        ls, lt = np.log(start), np.log(trans)
    joint = {}
    for path in itertools.product(range(K), repeat=T):
        lp = ls[path[0]] + logb[0, path[0]]
        for t in range(1, T):
            lp += lt[path[t - 1], path[t]] + logb[t, path[t]]
        joint[path] = lp
    best = max(joint, key=joint.get)
    return logsumexp(list(joint.values())), joint[best], np.array(best), joint


def gaussian_logb(model, X):
    cov = full_covars(model)
    densities = [stats.multivariate_normal(m, c) for m, c in zip(model.means_, cov)]
    return np.stack(
        [np.atleast_1d(d.logpdf(X)) for d in densities],
        axis=1,
    ).reshape(len(X), -1)


@pytest.mark.parametrize(
    "case", ["typical", "outlier", "forbidden"]
)
def test_score_viterbi_and_posteriors_match_brute_force(case):
    """Including an outlier far from every state, and a frame whose best state cannot
    be reached (the log-space fallback): the probability-space hmmlearn 'scaling'
    recursion underflows on both."""
    model = gaussian_truth()
    X = gaussian_data(lengths=[7])[0]
    if case == "outlier":
        X[3] = [400.0, -300.0]
    if case == "forbidden":
        model.startprob_ = np.array([1.0, 0.0, 0.0])
        model.transmat_ = np.array([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [0.0, 0.0, 1.0]])
        model.means_ = np.array([[0.0, 0.0], [10.0, 0.0], [20.0, 0.0]])
        model.covars_ = np.array([np.eye(2)] * 3)
        # frame 1 is best explained by state 2, which cannot be reached before frame 2:
        # relative to that state, the reachable ones have probability exp(-850) or less
        X = np.array([[0.0, 0.0], [100.0, 0.0], [10.0, 0.0], [20.0, 0.0], [19.0, 1.0], [21.0, 0.0]])
        e = model._emission_log_prob(X)
        top = hk.shift_rows(e)
        scratch = np.empty((len(X), 3)), np.empty(len(X)), np.zeros((3, 3))
        _, scaled_ok = hk._fb_scaled(
            np.exp(e), top, 0, len(X), model.startprob_, model.transmat_, *scratch
        )
        assert not scaled_ok  # so this case exercises the log-space fallback
    logb = gaussian_logb(model, X)
    total, best_lp, best_path, joint = brute_force(model.startprob_, model.transmat_, logb)

    assert np.isfinite(total)
    assert model.score(X) == pytest.approx(total, rel=1e-10)
    log_prob, path = model.decode(X)
    np.testing.assert_array_equal(path, best_path)
    assert log_prob == pytest.approx(best_lp, rel=1e-10)
    expected = np.zeros((len(X), 3))
    for p, lp in joint.items():
        expected[np.arange(len(X)), list(p)] += np.exp(lp - total)
    np.testing.assert_allclose(model.predict_proba(X), expected, atol=1e-10)


def test_short_sequences_match_brute_force():
    """Sequences of one and two rows (no transitions, one transition) among longer ones."""
    model = gaussian_truth()
    lengths = [1, 2, 4, 1]
    X = gaussian_data(lengths=[8])[0]
    pieces = np.split(X, np.cumsum(lengths)[:-1])
    expected = [
        brute_force(model.startprob_, model.transmat_, gaussian_logb(model, p)) for p in pieces
    ]
    assert model.score(X, lengths) == pytest.approx(sum(e[0] for e in expected), rel=1e-12)
    log_prob, path = model.decode(X, lengths)
    np.testing.assert_array_equal(path, np.concatenate([e[2] for e in expected]))
    assert log_prob == pytest.approx(sum(e[1] for e in expected), rel=1e-12)
    posteriors = model.predict_proba(X, lengths)
    np.testing.assert_allclose(posteriors.sum(1), 1.0, rtol=1e-12)


def test_map_decode_returns_a_real_log_probability():
    X, _ = gaussian_data()
    model = gaussian_truth()
    log_prob, states = model.decode(X, LENGTHS, algorithm="map")
    posteriors = model.predict_proba(X, LENGTHS)
    np.testing.assert_array_equal(states, posteriors.argmax(axis=1))
    assert log_prob == pytest.approx(np.log(posteriors.max(axis=1)).sum(), rel=1e-12)
    assert -np.inf < log_prob < 0
    # at most the log-probability of getting any single frame right, at least that of
    # getting every frame right by chance
    assert log_prob > len(X) * np.log(1 / 3)


# --- properties of EM -------------------------------------------------------------------


@budget_may_run_out
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_log_likelihood_never_decreases(covariance_type):
    X, _ = gaussian_data()
    for seed in range(3):
        model = GaussianHMM(3, covariance_type=covariance_type, n_iter=30, tol=0,
                            random_state=seed)
        history = model.fit(X, LENGTHS).history_
        assert len(history) == 30
        steps = np.diff(history)
        assert np.all(steps >= -1e-12 * np.abs(history[1:])), (seed, steps.min())
        assert model.score(X, LENGTHS) / X.shape[0] >= history[-1] - 1e-12


@budget_may_run_out
def test_categorical_log_likelihood_never_decreases():
    X = categorical_data()
    for seed in range(3):
        history = CategoricalHMM(3, n_iter=30, tol=0, random_state=seed).fit(X, LENGTHS).history_
        assert np.all(np.diff(history) >= -1e-12 * np.abs(history[1:]))


@budget_may_run_out
@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_sequence_order_does_not_change_the_fit(covariance_type):
    X, _ = gaussian_data(lengths=[150, 300, 90, 210])
    lengths = np.array([150, 300, 90, 210])
    pieces = np.split(X, np.cumsum(lengths)[:-1])
    order = [2, 0, 3, 1]
    X2 = np.concatenate([pieces[i] for i in order])
    a = gaussian_from_init(covariance_type, n_iter=15, tol=0).fit(X, lengths)
    b = gaussian_from_init(covariance_type, n_iter=15, tol=0).fit(X2, lengths[order])
    for name in ("startprob_", "transmat_", "means_", "covars_", "history_"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-10, err_msg=name)


@budget_may_run_out
def test_categorical_sequence_order_does_not_change_the_fit():
    X = categorical_data()
    pieces = np.split(X, np.cumsum(LENGTHS)[:-1])
    X2 = np.concatenate(pieces[::-1])
    a = categorical_from_init(n_iter=15, tol=0).fit(X, LENGTHS)
    b = categorical_from_init(n_iter=15, tol=0).fit(X2, LENGTHS[::-1])
    for name in ("startprob_", "transmat_", "emissionprob_", "history_"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-10, err_msg=name)


def test_converged_is_false_when_the_iterations_run_out():
    X, _ = gaussian_data()
    with pytest.warns(ConvergenceWarning):
        model = gaussian_from_init("full", n_iter=3, tol=0).fit(X, LENGTHS)
    assert model.converged_ is False
    assert model.n_iter_ == 3 and len(model.history_) == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model = gaussian_from_init("full", n_iter=500, tol=1e-6).fit(X, LENGTHS)
    assert model.converged_ is True
    assert model.n_iter_ < 500
    assert abs(model.history_[-1] - model.history_[-2]) < 1e-6


def test_fit_recovers_a_known_model():
    X, z = gaussian_data(lengths=[1500, 1500])
    model = GaussianHMM(3, "full", n_iter=100, random_state=0).fit(X, [1500, 1500])
    assert model.converged_
    np.testing.assert_allclose(model.means_, TRUE_MEANS, atol=0.15)
    np.testing.assert_allclose(model.transmat_, TRUE_TRANS, atol=0.05)
    assert (model.predict(X, [1500, 1500]) == z).mean() > 0.95  # truth is already sorted


@budget_may_run_out
def test_n_init_keeps_the_best_restart():
    X, _ = gaussian_data()
    bounds = []
    for n_init in (1, 4):
        model = GaussianHMM(3, n_iter=5, tol=0, n_init=n_init, random_state=3).fit(X, LENGTHS)
        bounds.append(model.lower_bound_)
        assert model.lower_bound_ == model.history_[-1]
    # the first restart of n_init=4 is the n_init=1 fit (same generator)
    assert bounds[1] >= bounds[0]


def test_states_come_out_in_a_fixed_order():
    X, _ = gaussian_data()
    model = GaussianHMM(3, random_state=1).fit(X, LENGTHS)
    assert np.all(np.diff(model.means_[:, 0]) > 0)
    cat = CategoricalHMM(3, random_state=1).fit(categorical_data(), LENGTHS)
    assert np.all(np.diff(cat.emissionprob_ @ np.arange(4)) >= 0)


@budget_may_run_out
def test_forbidden_transitions_stay_forbidden():
    X = categorical_data()
    start = np.array([1.0, 0.0, 0.0])
    trans = np.array([[0.7, 0.3, 0.0], [0.0, 0.8, 0.2], [0.0, 0.0, 1.0]])
    model = CategoricalHMM(
        3, n_iter=10, tol=0, startprob_init=start, transmat_init=trans,
        emissionprob_init=INIT_EMISSION, transmat_prior=2.0,
    ).fit(X, LENGTHS)
    # the starting emissions were given: the states keep their order
    assert np.all(model.transmat_[trans == 0] == 0)
    assert np.all(model.transmat_[trans > 0] > 0)


def test_covariance_floor_keeps_a_constant_feature_fittable():
    rng = np.random.default_rng(0)
    X = np.column_stack([np.repeat([0.0, 5.0], 200) + rng.normal(size=400), np.full(400, 3.0)])
    for covariance_type in COVARIANCE_TYPES:
        model = GaussianHMM(2, covariance_type=covariance_type, min_covar=1e-3, random_state=0)
        model.fit(X)
        eig = np.linalg.eigvalsh(full_covars(model))
        assert eig.min() >= 1e-3 * (1 - 1e-9)
        assert np.isfinite(model.score(X))


def test_a_state_without_posterior_weight_keeps_its_parameters():
    X, _ = gaussian_data()
    means = INIT_MEANS.copy()
    means[1] = [1e4, 1e4]  # no row comes anywhere near: its posterior weight is 0
    model = GaussianHMM(
        3, covariance_type="diag", n_iter=5, tol=0, means_init=means,
        covars_init=INIT_COVARS["diag"], random_state=0,
    )
    with pytest.warns(EmptyComponentWarning, match="received no posterior weight"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X, LENGTHS)
    far = np.argmax(model.means_[:, 0])
    np.testing.assert_array_equal(model.means_[far], [1e4, 1e4])
    np.testing.assert_array_equal(compact_covars(model)[far], INIT_COVARS["diag"][1])
    assert np.isfinite(model.score(X, LENGTHS))


@budget_may_run_out
def test_float32_and_int_inputs():
    X, _ = gaussian_data()
    a = gaussian_from_init("diag", n_iter=5, tol=0).fit(X, LENGTHS)
    X32 = X.astype(np.float32)
    b = gaussian_from_init("diag", n_iter=5, tol=0).fit(X32.astype(np.float64), LENGTHS)
    c = gaussian_from_init("diag", n_iter=5, tol=0).fit(X32, LENGTHS)
    np.testing.assert_array_equal(b.means_, c.means_)
    np.testing.assert_allclose(a.means_, c.means_, rtol=1e-5)
    S = categorical_data()
    d = categorical_from_init(n_iter=5, tol=0).fit(S, LENGTHS)
    e = categorical_from_init(n_iter=5, tol=0).fit(S.astype(np.int32), LENGTHS)
    f = categorical_from_init(n_iter=5, tol=0).fit(S.astype(float), LENGTHS)
    np.testing.assert_array_equal(d.emissionprob_, e.emissionprob_)
    np.testing.assert_array_equal(d.emissionprob_, f.emissionprob_)


def test_inputs_and_initial_parameters_are_not_modified():
    X, _ = gaussian_data()
    X_copy = X.copy()
    inits = {k: v.copy() for k, v in [("s", INIT_START), ("t", INIT_TRANS), ("m", INIT_MEANS)]}
    model = gaussian_from_init("full", n_iter=3, tol=1e9).fit(X, LENGTHS)
    np.testing.assert_array_equal(X, X_copy)
    np.testing.assert_array_equal(INIT_START, inits["s"])
    np.testing.assert_array_equal(INIT_TRANS, inits["t"])
    np.testing.assert_array_equal(INIT_MEANS, inits["m"])
    assert model.startprob_init is INIT_START


def test_callback_sees_every_iteration():
    X, _ = gaussian_data()
    seen = []
    model = gaussian_from_init("full", n_iter=50, callback=lambda i, ll: seen.append((i, ll)))
    model.fit(X, LENGTHS)
    assert [i for i, _ in seen] == list(range(1, model.n_iter_ + 1))
    np.testing.assert_array_equal([ll for _, ll in seen], model.history_)


@budget_may_run_out
def test_fit_leaves_no_temporary_attribute():
    """The fit's checked parameters travel in the data passed to the EM loop: during the
    fit and after it, the model holds its parameters and fitted attributes only."""
    X, _ = gaussian_data()
    S = categorical_data()
    cases = [
        (gaussian_from_init("full", n_iter=3), X, {"means_", "_covars_"}),
        (GaussianHMM(3, covariance_type="tied", n_iter=3, random_state=0), X,
         {"means_", "_covars_"}),
        (categorical_from_init(n_iter=3), S, {"emissionprob_"}),
        (CategoricalHMM(3, n_iter=3, emissionprob_prior=2.0, random_state=0), S,
         {"emissionprob_"}),
    ]
    for model, data, emission in cases:
        params = set(vars(model))
        during = []
        model.callback = lambda i, ll, m=model: during.append(set(vars(m)) - params)
        model.fit(data, LENGTHS)
        fitted = {"startprob_", "transmat_", "converged_", "n_iter_", "lower_bound_",
                  "history_"} | emission
        assert set(vars(model)) - params == fitted
        assert during and all(d == {"startprob_", "transmat_"} | emission for d in during)


def test_covariance_type_messages_keep_hmmlearns_order():
    """The covariance types are the mixture's; messages list them tied last, as hmmlearn
    does and as GaussianHMM always has."""
    X, _ = gaussian_data()
    with pytest.raises(EmsegError, match=r"^covariance_type must be one of 'full', 'diag', "
                                         r"'spherical', 'tied'; got 'banded'$"):
        GaussianHMM(2, covariance_type="banded").fit(X)
    d = _gaussian_dict()
    d["covariance_type"] = "banded"
    with pytest.raises(EmsegError, match=r"^model.covariance_type must be one of full, diag, "
                                         r"spherical, tied, got 'banded'$"):
        GaussianHMM.from_dict(d)


def test_fit_predict_bic_aic():
    X, _ = gaussian_data()
    model = GaussianHMM(3, covariance_type="diag", random_state=0)
    labels = model.fit_predict(X, LENGTHS)
    np.testing.assert_array_equal(labels, model.predict(X, LENGTHS))
    n_params = 2 + 6 + 6 + 6  # startprob, transmat, means, diagonal variances
    score = model.score(X, LENGTHS)
    assert model.bic(X, LENGTHS) == pytest.approx(-2 * score + n_params * np.log(len(X)))
    assert model.aic(X, LENGTHS) == pytest.approx(-2 * score + 2 * n_params)


# --- sampling ---------------------------------------------------------------------------


def test_sample_shapes_and_determinism():
    model = gaussian_truth()
    X, z = model.sample(500, random_state=7)
    assert X.shape == (500, 2) and z.shape == (500,)
    assert set(np.unique(z)) <= {0, 1, 2}
    X2, z2 = model.sample(500, random_state=7)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(z, z2)
    X3, _ = model.sample(500, random_state=8)
    assert not np.array_equal(X, X3)
    # roughly the right statistics
    big, states = model.sample(20000, random_state=1)
    for k in range(3):
        np.testing.assert_allclose(big[states == k].mean(0), TRUE_MEANS[k], atol=0.1)

    cat = categorical_truth()
    S, zs = cat.sample(300, random_state=2)
    assert S.shape == (300, 1) and S.dtype.kind == "i"
    assert S.min() >= 0 and S.max() <= 3
    np.testing.assert_array_equal(S, cat.sample(300, random_state=2)[0])
    with pytest.raises(EmsegError, match="not fitted"):
        GaussianHMM(2).sample(3)


# --- model files ------------------------------------------------------------------------


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_to_dict_from_dict_round_trip(covariance_type):
    X, _ = gaussian_data()
    model = GaussianHMM(3, covariance_type=covariance_type, random_state=0).fit(X, LENGTHS)
    d = json.loads(json.dumps(model.to_dict()))
    loaded = GaussianHMM.from_dict(d)
    for name in ("startprob_", "transmat_", "means_", "covars_", "precisions_cholesky_"):
        np.testing.assert_allclose(getattr(loaded, name), getattr(model, name), rtol=1e-15)
    assert loaded.covariance_type == covariance_type
    assert loaded.converged_ == model.converged_ and loaded.n_iter_ == model.n_iter_
    assert loaded.score(X, LENGTHS) == pytest.approx(model.score(X, LENGTHS), rel=1e-13)
    np.testing.assert_array_equal(loaded.predict(X, LENGTHS), model.predict(X, LENGTHS))
    assert isinstance(hmm_from_dict(d), GaussianHMM)


def test_categorical_round_trip():
    S = categorical_data()
    model = CategoricalHMM(3, random_state=0).fit(S, LENGTHS)
    d = json.loads(json.dumps(model.to_dict()))
    loaded = hmm_from_dict(d)
    assert isinstance(loaded, CategoricalHMM)
    np.testing.assert_array_equal(loaded.emissionprob_, model.emissionprob_)
    assert loaded.score(S, LENGTHS) == pytest.approx(model.score(S, LENGTHS), rel=1e-13)


def _gaussian_dict():
    model = GaussianHMM(2, covariance_type="full")
    model.startprob_ = np.array([0.5, 0.5])
    model.transmat_ = np.array([[0.9, 0.1], [0.2, 0.8]])
    model.means_ = np.zeros((2, 2))
    model.covars_ = np.array([np.eye(2), np.eye(2)])
    return model.to_dict()


BAD_GAUSSIAN = [
    (lambda d: d.update(format="emseg.GaussianMixture"), "not an emseg GaussianHMM"),
    (lambda d: d.update(format_version=99), "newer than this emseg reads"),
    (lambda d: d.update(extra=1), "unknown field 'extra'"),
    (lambda d: d.pop("means_"), "model.means_ is missing"),
    (lambda d: d.update(n_components=True), "n_components must be an integer"),
    (lambda d: d.update(covariance_type="banded"), "covariance_type must be one of"),
    (lambda d: d.update(startprob_=[0.5, 0.6]), r"startprob_ must sum to 1, got 1\.1"),
    (lambda d: d.update(startprob_=[1.5, -0.5]), "startprob_ must be >= 0"),
    (lambda d: d.update(transmat_=[[0.9, 0.1], [0.3, 0.8]]), r"transmat_ must sum to 1 \(row 1\)"),
    (
        lambda d: d.update(transmat_=[[0.9, 0.1]]),
        r"transmat_ must have shape \(2, 2\), but it has length 1",
    ),
    (lambda d: d.update(means_=[[0, "1"], [0, 0]]), r"means_\[0\]\[1\] must be a number"),
    (lambda d: d.update(means_=[[0, True], [0, 0]]), r"means_\[0\]\[1\] must be a number"),
    (lambda d: d.update(means_=[[0, float("nan")], [0, 0]]), "means_ contains NaN"),
    (lambda d: d.update(means_=[0, 0]), r"means_\[0\] must be a list"),
    (lambda d: d["covars_"].__setitem__(1, [[1, 2], [2, 1]]), "positive definite"),
    (lambda d: d["covars_"].__setitem__(0, [[1, 0.5], [0, 1]]), r"covars_\[0\] is not symmetric"),
    (lambda d: d.update(converged_="yes"), "converged_ must be true or false"),
]


@pytest.mark.parametrize("mutate, message", BAD_GAUSSIAN)
def test_from_dict_refuses_bad_models(mutate, message):
    d = _gaussian_dict()
    mutate(d)
    with pytest.raises(EmsegError, match=message):
        GaussianHMM.from_dict(d)


def test_from_dict_refuses_other_things():
    with pytest.raises(EmsegError, match="must be a JSON object, got a list"):
        GaussianHMM.from_dict([1, 2])
    with pytest.raises(EmsegError, match="not an emseg CategoricalHMM"):
        CategoricalHMM.from_dict(_gaussian_dict())
    with pytest.raises(EmsegError, match="not an emseg HMM"):
        hmm_from_dict({"format": "pickle"})
    cat = categorical_truth().to_dict()
    cat["emissionprob_"][0] = [0.5, 0.5, 0.5, -0.5]
    with pytest.raises(EmsegError, match="emissionprob_ must be >= 0"):
        CategoricalHMM.from_dict(cat)
    diag = _gaussian_dict()
    diag.update(covariance_type="diag", covars_=[[1.0, 0.0], [1.0, 1.0]])
    with pytest.raises(EmsegError, match="covars_ must be positive"):
        GaussianHMM.from_dict(diag)
    with pytest.raises(EmsegError, match="not fitted"):
        GaussianHMM(2).to_dict()


# --- input checks -----------------------------------------------------------------------


def test_bad_inputs_give_clear_errors():
    X, _ = gaussian_data()
    model = GaussianHMM(3, n_iter=2)
    with pytest.raises(EmsegError, match="lengths sum to 700 but X has 750 rows"):
        model.fit(X, [300, 200, 200])
    with pytest.raises(EmsegError, match=r"lengths must be >= 1, got 0 for sequence 1"):
        model.fit(X, [750, 0])
    with pytest.raises(EmsegError, match="lengths must be integers"):
        model.fit(X, ["a"])
    with pytest.raises(EmsegError, match=r"n_components=5 is larger than the number of samples"):
        GaussianHMM(5).fit(X[:4])
    bad = X.copy()
    bad[10, 1] = np.nan
    with pytest.raises(EmsegError, match="X contains NaN .*row 10"):
        model.fit(bad, LENGTHS)
    with pytest.raises(EmsegError, match="covariance_type must be one of"):
        GaussianHMM(2, covariance_type="banded").fit(X)
    with pytest.raises(EmsegError, match=r"covars_init must have shape \(3, 2\)"):
        GaussianHMM(3, covariance_type="diag", covars_init=np.ones(3)).fit(X)
    with pytest.raises(EmsegError, match=r"covars_init\[1\] is not symmetric"):
        GaussianHMM(2, "full", covars_init=[np.eye(2), [[1, 0.5], [0, 1]]]).fit(X)
    with pytest.raises(EmsegError, match="covars_init must be positive definite"):
        GaussianHMM(2, "full", covars_init=[np.eye(2), [[1, 2], [2, 1]]]).fit(X)
    with pytest.raises(EmsegError, match=r"transmat_init must sum to 1 \(row 0\)"):
        GaussianHMM(2, transmat_init=[[0.5, 0.6], [0.5, 0.5]]).fit(X)
    with pytest.raises(EmsegError, match="not fitted yet"):
        GaussianHMM(2).score(X)
    fitted = gaussian_truth()
    with pytest.raises(EmsegError, match="X has 3 features, but GaussianHMM is expecting 2"):
        fitted.predict(np.zeros((5, 3)))
    with pytest.raises(EmsegError, match="algorithm must be one of"):
        fitted.decode(X, algorithm="beam")

    S = categorical_data()
    with pytest.raises(EmsegError, match=r"Negative values in data .*symbol -1 in row 0"):
        CategoricalHMM(2).fit(np.r_[-1, S[1:, 0]][:, None])
    with pytest.raises(EmsegError, match="X must hold integer symbols, got 1.5 in row 2"):
        CategoricalHMM(2).fit([[0], [1], [1.5], [2]])
    with pytest.raises(EmsegError, match=r"symbol 3, outside the 0..2 allowed by n_features=3"):
        CategoricalHMM(2, n_features=3).fit(S)
    with pytest.raises(EmsegError, match=r"0..2 allowed by emissionprob_init's 3 symbols"):
        CategoricalHMM(2, emissionprob_init=np.full((2, 3), 1 / 3)).fit(S)
    with pytest.raises(EmsegError, match=r"symbol 7 in row 1 is outside the model's 4 symbols"):
        categorical_truth().predict([[0], [7], [1]])
    with pytest.raises(EmsegError, match="probability zero under the current parameters"):
        CategoricalHMM(2, emissionprob_init=[[1.0, 0, 0, 0], [1.0, 0, 0, 0]]).fit(S)
