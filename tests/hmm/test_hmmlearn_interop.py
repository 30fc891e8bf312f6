"""emseg's HMMs used as hmmlearn's users use hmmlearn's: the same constructor, models
built by assigning attributes, parameter edits after ``fit``, ``params`` /
``init_params``, ``sample(currstate=)``, ``get_stationary_distribution()``; each
compared with hmmlearn itself on the same parameters."""

import inspect
import warnings

import numpy as np
import pytest

from emseg import ConvergenceWarning, EmsegError
from emseg.hmm import CategoricalHMM, GaussianHMM

hmmlearn = pytest.importorskip("hmmlearn.hmm")

COVARIANCE_TYPES = ["full", "diag", "spherical", "tied"]
RTOL = 1e-8
LENGTHS = [250, 150, 200]

START = np.array([0.5, 0.3, 0.2])
TRANS = np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.05, 0.15, 0.8]])
MEANS = np.array([[-2.0, 3.0], [0.0, 0.0], [2.0, 2.5]])
# hmmlearn's shapes for each covariance type
COVARS = {
    "full": np.array([[[1.2, -0.2], [-0.2, 0.7]], [[1.0, 0.3], [0.3, 1.0]], np.eye(2) * 0.6]),
    "diag": np.array([[1.2, 0.7], [1.0, 1.3], [0.8, 0.5]]),
    "spherical": np.array([1.1, 0.9, 0.6]),
    "tied": np.array([[1.0, 0.25], [0.25, 0.8]]),
}
# a poor starting point for fits, the same for both libraries
START0 = np.array([0.25, 0.4, 0.35])
TRANS0 = np.array([[0.6, 0.2, 0.2], [0.25, 0.5, 0.25], [0.2, 0.2, 0.6]])
MEANS0 = np.array([[-1.0, 2.0], [0.5, 0.5], [1.5, 2.0]])
EMISSION = np.array([[0.6, 0.2, 0.1, 0.1], [0.1, 0.5, 0.3, 0.1], [0.1, 0.1, 0.2, 0.6]])
EMISSION0 = np.array([[0.4, 0.3, 0.2, 0.1], [0.25, 0.25, 0.25, 0.25], [0.1, 0.2, 0.3, 0.4]])


def build(cls, *args, kwargs=None, **params):
    """The same model in emseg (``cls``) and in hmmlearn, made with ``args`` and
    ``kwargs``, then built by assigning the attributes ``params``."""
    ours = getattr(__import__("emseg.hmm", fromlist=[cls]), cls)(*args, **(kwargs or {}))
    ref = getattr(hmmlearn, cls)(*args, **(kwargs or {}))
    for model in (ours, ref):
        for name, value in params.items():
            setattr(model, name, value)
    return ours, ref


def gaussian_pair(covariance_type, kwargs=None, **params):
    values = dict(startprob_=START, transmat_=TRANS, means_=MEANS,
                  covars_=COVARS[covariance_type])
    values.update(params)
    return build("GaussianHMM", 3, covariance_type, kwargs=kwargs, **values)


def gaussian(covariance_type, **params):
    """An emseg model alone, for attributes hmmlearn refuses."""
    model = GaussianHMM(3, covariance_type)
    values = dict(startprob_=START, transmat_=TRANS, means_=MEANS,
                  covars_=COVARS[covariance_type])
    values.update(params)
    for name, value in values.items():
        setattr(model, name, value)
    return model


def sample_data(covariance_type="full", seed=0):
    ours, _ = gaussian_pair(covariance_type)
    parts = [ours.sample(n, random_state=seed + i)[0] for i, n in enumerate(LENGTHS)]
    return np.concatenate(parts)


def symbols(seed=0):
    ours, _ = build("CategoricalHMM", 3, startprob_=START, transmat_=TRANS,
                    emissionprob_=EMISSION)
    return np.concatenate(
        [ours.sample(n, random_state=seed + i)[0] for i, n in enumerate(LENGTHS)]
    )


def assert_same_use(ours, ref, X, lengths):
    """Score, posteriors, Viterbi and MAP decoding agree."""
    np.testing.assert_allclose(ours.score(X, lengths), ref.score(X, lengths), rtol=RTOL)
    log_prob, post = ours.score_samples(X, lengths)
    ref_log_prob, ref_post = ref.score_samples(X, lengths)
    np.testing.assert_allclose(log_prob, ref_log_prob, rtol=RTOL)
    np.testing.assert_allclose(post, ref_post, rtol=RTOL, atol=1e-12)
    log_prob, path = ours.decode(X, lengths)
    ref_log_prob, ref_path = ref.decode(X, lengths)
    np.testing.assert_array_equal(path, ref_path)
    np.testing.assert_allclose(log_prob, ref_log_prob, rtol=RTOL)
    np.testing.assert_array_equal(ours.decode(X, lengths, algorithm="map")[1],
                                  ref.decode(X, lengths, algorithm="map")[1])
    np.testing.assert_array_equal(ours.predict(X, lengths), ref.predict(X, lengths))


# --- the constructor ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["GaussianHMM", "CategoricalHMM"])
def test_constructor_takes_hmmlearns_parameters_in_its_order(name):
    ours = inspect.signature(getattr(__import__("emseg.hmm", fromlist=[name]), name))
    ref = inspect.signature(getattr(hmmlearn, name))
    ref_params = list(ref.parameters.values())
    our_params = list(ours.parameters.values())[: len(ref_params)]
    assert [p.name for p in our_params] == [p.name for p in ref_params]
    assert [p.kind for p in our_params] == [p.kind for p in ref_params]
    for p, q in zip(our_params, ref_params):
        if p.name == "tol":  # per sample here, total in hmmlearn: see the README
            assert (p.default, q.default) == (1e-4, 1e-2)
        else:
            assert p.default == q.default, p.name
    # emseg's own parameters come after, keyword-only
    extra = list(ours.parameters.values())[len(ref_params):]
    assert extra and all(p.kind == p.KEYWORD_ONLY for p in extra)


def test_positional_arguments_as_in_hmmlearn():
    model = GaussianHMM(3, "full", 1e-2, 1.0, 1.0, 0, 0, 1e-2, 1, "map")
    assert model.covariance_type == "full" and model.min_covar == 1e-2
    assert model.algorithm == "map"
    assert GaussianHMM().covariance_type == "diag" and GaussianHMM().n_iter == 10


# --- models built by attribute assignment ---------------------------------------------


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_model_built_by_attributes_matches_hmmlearn(covariance_type):
    X = sample_data()
    ours, ref = gaussian_pair(covariance_type)
    assert_same_use(ours, ref, X, LENGTHS)
    assert_same_use(ours, ref, X[:40], None)
    assert ours.covars_.shape == (3, 2, 2)  # read back as full matrices, as hmmlearn's
    np.testing.assert_array_equal(ours.covars_, ref.covars_)


def test_lists_and_integer_means_are_accepted():
    X = sample_data()
    ours, ref = build("GaussianHMM", 3, "diag", startprob_=START.tolist(),
                      transmat_=TRANS.tolist(), means_=MEANS.astype(int).tolist(),
                      covars_=COVARS["diag"].tolist())
    assert_same_use(ours, ref, X, LENGTHS)


def test_categorical_model_built_by_attributes_matches_hmmlearn():
    S = symbols()
    ours, ref = build("CategoricalHMM", 3, startprob_=START, transmat_=TRANS,
                      emissionprob_=EMISSION)
    assert_same_use(ours, ref, S, LENGTHS)
    assert_same_use(ours, ref, S[:, 0][:, None], [len(S)])


def test_edits_after_fit_are_honoured():
    X = sample_data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = GaussianHMM(3, "full", random_state=0).fit(X, LENGTHS)
    ref = hmmlearn.GaussianHMM(3, "full")
    ref.startprob_, ref.transmat_ = model.startprob_, model.transmat_
    ref.means_, ref.covars_ = model.means_, model.covars_
    assert_same_use(model, ref, X, LENGTHS)
    # a new covars_, then an edit in place of means_ and of the full covariances
    model.covars_ = ref.covars_ = 2 * model.covars_
    assert_same_use(model, ref, X, LENGTHS)
    model.means_[0] += 0.5
    ref.means_ = model.means_.copy()
    model.covars_[1] *= 1.5
    ref.covars_ = model.covars_.copy()
    assert_same_use(model, ref, X, LENGTHS)
    np.testing.assert_allclose(
        model.precisions_cholesky_[1] @ model.precisions_cholesky_[1].T,
        np.linalg.inv(model.covars_[1]), rtol=1e-12,
    )


def test_diag_covars_given_as_matrices_and_spherical_as_columns():
    ours = gaussian("diag", covars_=np.stack([np.diag(c) for c in COVARS["diag"]]))
    np.testing.assert_array_equal(ours.to_dict()["covars_"], COVARS["diag"])
    ours = gaussian("spherical", covars_=np.tile(COVARS["spherical"][:, None], 2))
    np.testing.assert_array_equal(ours.to_dict()["covars_"], COVARS["spherical"])
    ours = gaussian("diag", covars_=COVARS["full"])
    with pytest.raises(EmsegError, match=r"covars_ must have shape \(3, 2\) for "
                                         r"covariance_type='diag'"):
        ours.score(MEANS)


def test_bad_attributes_give_clear_errors():
    ours = gaussian("diag", startprob_=[0.5, 0.5])
    with pytest.raises(EmsegError, match=r"startprob_ must have shape \(3,\) "
                                         r"\(n_components=3\), got \(2,\)"):
        ours.score(MEANS)
    ours = gaussian("diag", transmat_=TRANS * 1.1)
    with pytest.raises(EmsegError, match=r"transmat_ must sum to 1 \(row 0\)"):
        ours.predict(MEANS)
    ours = gaussian("full", covars_=-COVARS["full"])
    with pytest.raises(EmsegError, match="covars_ must be positive definite"):
        ours.sample(3)
    with pytest.raises(EmsegError, match="not fitted yet .no means_, covars_"):
        model = GaussianHMM(3)
        model.startprob_, model.transmat_ = START, TRANS
        model.score(MEANS)


# --- fitting from the same start ------------------------------------------------------


def fit_pair(covariance_type, X, kwargs=None):
    """emseg's and hmmlearn's fits from the same start, for 10 iterations."""
    kwargs = dict(kwargs or {}, init_params="", n_iter=10)
    ours = GaussianHMM(3, covariance_type, **kwargs, tol=0)
    ref = hmmlearn.GaussianHMM(3, covariance_type, **kwargs, tol=-np.inf)
    for model in (ours, ref):
        model.startprob_, model.transmat_ = START0, TRANS0
        model.means_, model.covars_ = MEANS0, COVARS[covariance_type]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours.fit(X, LENGTHS)
    ref.fit(X, LENGTHS)
    return ours, ref


def assert_same_fit(ours, ref, X):
    assert ours.n_iter_ == len(ref.monitor_.history)
    np.testing.assert_allclose(ours.history_ * X.shape[0], ref.monitor_.history, rtol=RTOL)
    for name in ("startprob_", "transmat_", "means_"):
        np.testing.assert_allclose(getattr(ours, name), getattr(ref, name), rtol=RTOL,
                                   err_msg=name)
    raw = ref._covars_
    if ours.covariance_type == "spherical":
        raw = raw[:, 0] if raw.ndim == 2 else raw  # hmmlearn tiles it after a fit
    np.testing.assert_allclose(ours.to_dict()["covars_"], raw, rtol=RTOL)
    assert_same_use(ours, ref, X, LENGTHS)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_fit_from_the_same_start_matches_hmmlearn(covariance_type):
    """hmmlearn's defaults on both sides, its covariance prior included."""
    X = sample_data(covariance_type)
    ours, ref = fit_pair(covariance_type, X)
    assert_same_fit(ours, ref, X)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_priors_match_hmmlearn(covariance_type):
    X = sample_data(covariance_type)
    D = X.shape[1]
    covars_prior = {"full": COVARS["full"], "tied": COVARS["tied"], "diag": COVARS["diag"],
                    "spherical": 0.5}[covariance_type]
    priors = dict(
        startprob_prior=2.0, transmat_prior=1.5, means_prior=MEANS, means_weight=3.0,
        covars_prior=covars_prior, covars_weight=2.0 + (D if covariance_type in
                                                         ("full", "tied") else 0),
    )
    ours, ref = fit_pair(covariance_type, X, priors)
    assert_same_fit(ours, ref, X)


@pytest.mark.parametrize("params", ["st", "mc", "m", "stm"])
def test_params_choose_what_is_updated(params):
    X = sample_data("diag")
    ours, ref = fit_pair("diag", X, {"params": params})
    assert_same_fit(ours, ref, X)
    for letter, name, start in (("s", "startprob_", START0), ("t", "transmat_", TRANS0),
                                ("m", "means_", MEANS0), ("c", "covars_", COVARS["diag"])):
        value = ours.to_dict()["covars_"] if letter == "c" else getattr(ours, name)
        assert np.array_equal(value, start) == (letter not in params), name


def test_covariances_without_the_means_are_about_the_fixed_means():
    """params="c": the covariances are re-estimated about the current means. (hmmlearn
    0.3.3 gets this case wrong: without "m" it accumulates no first moments, and its
    covariances come out of sums of squares alone.)"""
    X = sample_data("diag")
    model = GaussianHMM(3, "diag", params="c", init_params="", n_iter=1, covars_prior=0.1)
    model.startprob_, model.transmat_ = START0, TRANS0
    model.means_, model.covars_ = MEANS0, COVARS["diag"]
    post = model.predict_proba(X, LENGTHS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, LENGTHS)
    scatter = np.einsum("nk,nkd->kd", post, (X[:, None, :] - MEANS0) ** 2)
    expected = (0.1 + scatter) / post.sum(0)[:, None]
    np.testing.assert_allclose(model.to_dict()["covars_"], expected, rtol=1e-10)
    np.testing.assert_array_equal(model.means_, MEANS0)


def test_init_params_choose_what_is_initialised():
    X = sample_data("diag")
    model = GaussianHMM(3, "diag", init_params="mc", n_iter=0)
    model.startprob_, model.transmat_ = START0, TRANS0
    model.means_ = np.zeros((3, 2))
    model.fit(X)
    np.testing.assert_array_equal(model.startprob_, START0)  # kept: 's' not in init_params
    np.testing.assert_array_equal(model.transmat_, TRANS0)
    assert not np.array_equal(model.means_, np.zeros((3, 2)))  # initialised
    # the *_init keywords come first
    model = GaussianHMM(3, "diag", init_params="", n_iter=0, startprob_init=START)
    model.startprob_, model.transmat_ = START0, TRANS0
    model.fit(X)
    np.testing.assert_array_equal(model.startprob_, START)
    np.testing.assert_array_equal(model.transmat_, TRANS0)
    with pytest.raises(EmsegError, match=r"params may contain only the letters 'stmc', got 'e'"):
        GaussianHMM(3, params="ste").fit(X)
    with pytest.raises(EmsegError, match="init_params must be a string"):
        GaussianHMM(3, init_params=None).fit(X)


def test_a_left_right_model_keeps_its_state_order():
    """Starting values given: states are not re-sorted (hmmlearn's own test)."""
    X = sample_data("diag")
    start = np.array([1.0, 0.0, 0.0])
    trans = np.array([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [0.0, 0.0, 1.0]])
    model = GaussianHMM(3, "diag", params="mct", init_params="cm", random_state=0)
    model.startprob_, model.transmat_ = start, trans
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, LENGTHS)
    np.testing.assert_array_equal(model.startprob_, start)
    assert np.all(model.transmat_[trans == 0] == 0)


def test_categorical_fit_from_the_same_start_matches_hmmlearn():
    S = symbols()
    kwargs = dict(init_params="", n_iter=10, emissionprob_prior=1.5)
    ours = CategoricalHMM(3, **kwargs, tol=0)
    ref = hmmlearn.CategoricalHMM(3, **kwargs, tol=-np.inf)
    for model in (ours, ref):
        model.startprob_, model.transmat_, model.emissionprob_ = START0, TRANS0, EMISSION0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours.fit(S, LENGTHS)
    ref.fit(S, LENGTHS)
    np.testing.assert_allclose(ours.history_ * len(S), ref.monitor_.history, rtol=RTOL)
    for name in ("startprob_", "transmat_", "emissionprob_"):
        np.testing.assert_allclose(getattr(ours, name), getattr(ref, name), rtol=RTOL)
    assert_same_use(ours, ref, S, LENGTHS)


# --- algorithm, implementation, verbose ------------------------------------------------


def test_algorithm_drives_predict_and_decode():
    X = sample_data()
    viterbi, _ = gaussian_pair("full")
    mapped, ref = gaussian_pair("full", kwargs={"algorithm": "map"})
    np.testing.assert_array_equal(mapped.predict(X, LENGTHS), ref.predict(X, LENGTHS))
    np.testing.assert_array_equal(mapped.predict(X, LENGTHS),
                                  viterbi.predict_proba(X, LENGTHS).argmax(1))
    np.testing.assert_array_equal(mapped.decode(X, LENGTHS, algorithm="viterbi")[1],
                                  viterbi.predict(X, LENGTHS))
    mapped.algorithm = "beam"
    with pytest.raises(EmsegError, match="algorithm must be one of 'viterbi', 'map'"):
        mapped.predict(X)


def test_both_implementations_give_the_same_fit():
    X = sample_data("diag")
    fits = [
        fit_pair("diag", X, {"implementation": impl})[0] for impl in ("log", "scaling")
    ]
    np.testing.assert_array_equal(fits[0].history_, fits[1].history_)
    with pytest.raises(EmsegError, match="implementation must be one of 'log', 'scaling'"):
        GaussianHMM(2, implementation="fast").fit(X)


def test_verbose_prints_hmmlearns_report(capsys):
    X = sample_data("diag")
    model = GaussianHMM(3, "diag", n_iter=4, tol=0, verbose=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, LENGTHS)
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 4
    columns = [line.split() for line in lines]
    assert [int(c[0]) for c in columns] == [1, 2, 3, 4]
    np.testing.assert_allclose([float(c[1]) for c in columns], model.history_ * len(X),
                               rtol=1e-8)
    assert columns[0][2] == "+nan"  # as hmmlearn's format prints it
    np.testing.assert_allclose(float(columns[2][2]), float(columns[2][1]) - float(columns[1][1]),
                               atol=1e-7)


# --- sampling, stationary distribution -------------------------------------------------


def test_sample_from_a_given_state_goes_on_from_a_previous_draw():
    ours, _ = gaussian_pair("full")
    _, states = ours.sample(50, random_state=1)
    X2, states2 = ours.sample(200, random_state=2, currstate=states[-1])
    assert states2[0] == states[-1] and X2.shape == (200, 2)
    for state in range(3):
        assert (ours.sample(20, random_state=state, currstate=state)[1][0]) == state
    np.testing.assert_array_equal(ours.sample(30, random_state=5, currstate=1)[1],
                                  ours.sample(30, random_state=5, currstate=1)[1])
    with pytest.raises(EmsegError, match="currstate must be a state 0..2, got 3"):
        ours.sample(5, currstate=3)
    cat, _ = build("CategoricalHMM", 3, startprob_=START, transmat_=TRANS,
                   emissionprob_=EMISSION)
    assert cat.sample(10, random_state=0, currstate=np.int64(2))[1][0] == 2


def test_stationary_distribution_matches_hmmlearn():
    ours, ref = gaussian_pair("full")
    pi = ours.get_stationary_distribution()
    np.testing.assert_allclose(pi, ref.get_stationary_distribution(), rtol=1e-12)
    np.testing.assert_allclose(pi @ TRANS, pi, rtol=1e-12)
    assert pi.dtype == np.float64


# --- fit(X, lengths), fit(X, lengths=...) and scikit-learn's y ---------------------------


def quiet_fit(model, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(*args, **kwargs)


def test_lengths_by_position_and_by_keyword_match_hmmlearn():
    """hmmlearn's two spellings give hmmlearn's fit and scores; so do fit_predict and score."""
    X = sample_data("diag")
    by_position, ref = fit_pair("diag", X)  # ours.fit(X, LENGTHS), ref.fit(X, LENGTHS)
    by_keyword = GaussianHMM(3, "diag", init_params="", n_iter=10, tol=0)
    by_keyword.startprob_, by_keyword.transmat_ = START0, TRANS0
    by_keyword.means_, by_keyword.covars_ = MEANS0, COVARS["diag"]
    quiet_fit(by_keyword, X, lengths=LENGTHS)
    for name in ("startprob_", "transmat_", "means_", "covars_"):
        np.testing.assert_array_equal(getattr(by_keyword, name), getattr(by_position, name))
        np.testing.assert_allclose(getattr(by_keyword, name), getattr(ref, name), rtol=RTOL)
    for ours in (by_position, by_keyword):
        np.testing.assert_allclose(ours.score(X, LENGTHS), ref.score(X, LENGTHS), rtol=RTOL)
        np.testing.assert_allclose(ours.score(X, lengths=LENGTHS),
                                   ref.score(X, lengths=LENGTHS), rtol=RTOL)
    ours, ref = fit_pair("diag", X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        # hmmlearn has no fit_predict: its fit, then predict (each fit goes on from the
        # last, init_params="")
        np.testing.assert_array_equal(ours.fit_predict(X, LENGTHS),
                                      ref.fit(X, LENGTHS).predict(X, LENGTHS))
        np.testing.assert_array_equal(ours.fit_predict(X, lengths=LENGTHS),
                                      ref.fit(X, lengths=LENGTHS).predict(X, lengths=LENGTHS))
    # one row per sequence, by keyword: what hmmlearn does with it
    ours, ref = build("CategoricalHMM", 3, kwargs=dict(init_params="", n_iter=3),
                      startprob_=START0, transmat_=TRANS0, emissionprob_=EMISSION0)
    S = symbols()[:50]
    quiet_fit(ours, S, lengths=np.ones(50, dtype=int))
    ref.fit(S, lengths=np.ones(50, dtype=int))
    np.testing.assert_allclose(ours.emissionprob_, ref.emissionprob_, rtol=RTOL)


def test_a_target_y_is_ignored_and_ambiguous_second_arguments_are_refused():
    X = sample_data("diag")
    y = np.arange(len(X)) % 3  # a target: one value per row, not all ones
    one = quiet_fit(GaussianHMM(3, "diag", n_iter=3, tol=0, random_state=0), X)
    model = GaussianHMM(3, "diag", n_iter=3, tol=0, random_state=0)
    with pytest.warns(UserWarning, match="taken as scikit-learn's target and ignored"):
        quiet_fit(model, X, y)
    np.testing.assert_array_equal(model.means_, one.means_)
    with pytest.warns(UserWarning, match="taken as scikit-learn's target"):
        assert model.score(X, y) == model.score(X)
    # next to lengths, a target is plainly one: ignored without a warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        both = GaussianHMM(3, "diag", n_iter=3, tol=0, random_state=0).fit(X, y, LENGTHS)
        alone = GaussianHMM(3, "diag", n_iter=3, tol=0, random_state=0).fit(X, lengths=LENGTHS)
        assert both.score(X, y, lengths=LENGTHS) == alone.score(X, lengths=LENGTHS)
    np.testing.assert_array_equal(both.means_, alone.means_)
    # n ones: n one-row sequences (hmmlearn) or a constant target (scikit-learn)
    with pytest.raises(EmsegError, match="600 ones, one per row of X: as hmmlearn's lengths"):
        model.fit(X, np.ones(len(X)))
    with pytest.raises(EmsegError, match="pass lengths=... by keyword"):
        model.score(X, np.ones(len(X), dtype=int))
    with pytest.raises(EmsegError, match="take the sequence lengths once"):
        model.fit(X, LENGTHS, lengths=LENGTHS)
    with pytest.raises(EmsegError, match="lengths sum to 500 but X has 600 rows"):
        model.fit(X, [300, 200])
    # one row: a target and lengths=[1] both mean one sequence
    assert model.score(X[:1], [5]) == model.score(X[:1], [1]) == model.score(X[:1])


def test_one_d_X_is_refused_as_in_hmmlearn():
    X = sample_data("diag")[:, 0]
    for model in (GaussianHMM(2), CategoricalHMM(2)):
        for data in (X, symbols()[:, 0]):
            with pytest.raises(EmsegError, match=r"needs a 2-D X .*X.reshape\(-1, 1\)"):
                model.fit(data)
        with pytest.raises(ValueError):  # hmmlearn's check_array
            getattr(hmmlearn, type(model).__name__)(2).fit(X)
    fitted, _ = gaussian_pair("diag", means_=MEANS[:, :1], covars_=COVARS["diag"][:, :1])
    with pytest.raises(EmsegError, match="Reshape your data"):
        fitted.predict(X)
    fitted.predict(X[:, None])  # the same values as one column


# --- several columns of symbols --------------------------------------------------------

EMISSION_B = np.array([[0.7, 0.3], [0.5, 0.5], [0.1, 0.9]])


def test_several_symbol_columns_are_independent_given_the_state():
    """Two columns (4 and 2 symbols): the same log-likelihoods, posteriors and Viterbi
    paths as hmmlearn's one-column model of the joint symbol 2 * a + b, whose emission
    probabilities are the product of the two columns'."""
    ours = CategoricalHMM(3)
    by_column = np.zeros((3, 2, 4))
    by_column[:, 0] = EMISSION
    by_column[:, 1, :2] = EMISSION_B
    ours.startprob_, ours.transmat_, ours.emissionprob_ = START, TRANS, by_column
    S = ours.sample(600, random_state=3)[0]
    assert S.shape == (600, 2) and S[:, 1].max() <= 1 and ours.n_features_in_ == 2
    ref = hmmlearn.CategoricalHMM(3, n_features=8)
    ref.startprob_, ref.transmat_ = START, TRANS
    ref.emissionprob_ = (EMISSION[:, :, None] * EMISSION_B[:, None, :]).reshape(3, 8)
    joint = (2 * S[:, 0] + S[:, 1])[:, None]
    for lengths in (LENGTHS, None):
        np.testing.assert_allclose(ours.score(S, lengths), ref.score(joint, lengths), rtol=RTOL)
        np.testing.assert_allclose(ours.predict_proba(S, lengths),
                                   ref.predict_proba(joint, lengths), rtol=RTOL, atol=1e-12)
        np.testing.assert_array_equal(ours.predict(S, lengths), ref.predict(joint, lengths))
    # one EM step: each column's counts, weighted by the posteriors, normalised
    post = ours.predict_proba(S, LENGTHS)
    model = CategoricalHMM(3, init_params="", n_iter=1, emissionprob_prior=1.0)
    model.startprob_, model.transmat_, model.emissionprob_ = START, TRANS, by_column
    quiet_fit(model, S, LENGTHS)
    for j in range(2):
        counts = np.stack([post[S[:, j] == v].sum(0) for v in range(4)], axis=1)
        np.testing.assert_allclose(model.emissionprob_[:, j],
                                   counts / counts.sum(1, keepdims=True), rtol=1e-10)
    assert model.emissionprob_.shape == (3, 2, 4)
    # the symbols 2 and 3 never occur in the second column and keep probability 0
    assert np.all(model.emissionprob_[:, 1, 2:] == 0)


def test_several_symbol_columns_fit_save_and_refuse_a_wrong_width():
    S = np.hstack([symbols(0), symbols(1)[::-1]])
    model = quiet_fit(CategoricalHMM(3, n_iter=20, random_state=0), S, LENGTHS)
    assert model.emissionprob_.shape == (3, 2, 4) and model.n_features_ == 4
    again = CategoricalHMM.from_dict(model.to_dict())
    assert again.score(S, LENGTHS) == model.score(S, LENGTHS)
    assert model.to_dict()["n_columns"] == 2 and "n_columns" not in quiet_fit(
        CategoricalHMM(2, n_iter=2), S[:, :1]).to_dict()
    with pytest.raises(EmsegError, match="X has 1 features, but CategoricalHMM is expecting 2"):
        model.predict(S[:, :1])
    with pytest.raises(EmsegError, match=r"emissionprob_init must have shape \(3, 2, 4\)"):
        CategoricalHMM(3, n_features=4, emissionprob_init=EMISSION).fit(S)
