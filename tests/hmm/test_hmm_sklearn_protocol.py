"""emseg's HMMs as scikit-learn estimators: check_estimator, clone, get/set_params,
Pipeline, GridSearchCV and the not-fitted error. hmmlearn's API comes first where the
two disagree (see the README's table of differences and ``EXPECTED_FAILED_CHECKS``).
Named apart from tests/mixture/test_sklearn_protocol.py: test modules share one
namespace."""

import warnings

import numpy as np
import pytest

from emseg import ConvergenceWarning, EmsegError
from emseg.hmm import CategoricalHMM, GaussianHMM

sklearn = pytest.importorskip("sklearn")
from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import NotFittedError as SkNotFittedError  # noqa: E402
from sklearn.model_selection import GridSearchCV, PredefinedSplit  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

# The two checks the HMMs fail, and why: score_samples is hmmlearn's (see the README,
# "Hidden Markov models, as hmmlearn's"). Everything else passes, including
# check_fit_score_takes_y (fit(X, y=None, lengths=None) takes hmmlearn's positional
# lengths too) and check_fit1d (a 1-D X is refused, as in hmmlearn).
EXPECTED_FAILED_CHECKS = {
    "check_methods_subset_invariance": "score_samples returns hmmlearn's (total "
    "log-likelihood of X, posteriors) tuple, not one score per row: the total of 20 rows "
    "is one number, not the 20 numbers of 20 one-row batches",
    "check_methods_sample_order_invariance": "the same tuple, which the check indexes "
    "as an array of per-row scores",
}

CHECKED = [
    GaussianHMM(),
    GaussianHMM(2, "full", n_iter=5, tol=0),
    GaussianHMM(2, "tied", algorithm="map", params="mc"),
    GaussianHMM(2, "spherical", covars_prior=0, n_init=2),
    CategoricalHMM(),
    CategoricalHMM(2, n_iter=5, tol=0),
    CategoricalHMM(2, algorithm="map", emissionprob_prior=2.0, n_init=2),
]


@parametrize_with_checks(CHECKED, expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS)
@pytest.mark.filterwarnings("ignore::emseg.ConvergenceWarning")
@pytest.mark.filterwarnings("ignore::emseg.EmptyComponentWarning")
@pytest.mark.filterwarnings("ignore:y has one value per row")
def test_check_estimator(estimator, check):
    check(estimator)


def sequences(seed=0, lengths=(120, 80, 100)):
    model = GaussianHMM(3, "diag")
    model.startprob_ = np.array([0.6, 0.3, 0.1])
    model.transmat_ = np.array([[0.9, 0.05, 0.05], [0.05, 0.9, 0.05], [0.1, 0.1, 0.8]])
    model.means_ = np.array([[0.0, 100.0], [5.0, 120.0], [10.0, 90.0]])
    model.covars_ = np.array([[1.0, 25.0], [1.0, 25.0], [1.0, 25.0]])
    parts = [model.sample(n, random_state=seed + i)[0] for i, n in enumerate(lengths)]
    return np.concatenate(parts), list(lengths)


def test_clone_get_params_set_params():
    init = np.array([0.2, 0.8])
    model = GaussianHMM(2, "full", n_iter=7, startprob_init=init, verbose=False)
    params = model.get_params()
    assert params["covariance_type"] == "full" and params["n_iter"] == 7
    assert params["startprob_init"] is init
    copy = clone(model)
    assert copy.get_params()["n_iter"] == 7 and copy.startprob_init is not None
    X, lengths = sequences()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, lengths)
    assert not hasattr(clone(model), "startprob_")  # a clone is unfitted
    assert model.set_params(n_iter=3, algorithm="map") is model
    assert model.n_iter == 3 and model.algorithm == "map"
    with pytest.raises(ValueError, match="Invalid parameter 'n_mix'"):
        model.set_params(n_mix=2)
    assert "covariance_type='full'" in repr(model)
    cat = clone(CategoricalHMM(3, n_features=4, params="st"))
    assert cat.get_params()["n_features"] == 4 and cat.params == "st"


def test_not_fitted_is_emseg_and_sklearn_error():
    X, _ = sequences()
    for model in (GaussianHMM(2), CategoricalHMM(2)):
        for call in (model.score, model.predict, model.predict_proba):
            with pytest.raises(SkNotFittedError) as info:
                call(X[:, :1].astype(int) if isinstance(model, CategoricalHMM) else X)
            assert isinstance(info.value, EmsegError)
        assert not hasattr(model, "n_features_in_")


def test_pipeline_passes_lengths_and_scores():
    X, lengths = sequences()
    pipe = Pipeline([("scale", StandardScaler()),
                     ("hmm", GaussianHMM(3, "diag", n_iter=50, random_state=0))])
    pipe.fit(X, lengths)  # Pipeline passes the second argument on: hmmlearn's lengths
    alone = GaussianHMM(3, "diag", n_iter=50, random_state=0)
    Z = StandardScaler().fit_transform(X)
    alone.fit(Z, lengths)
    np.testing.assert_array_equal(pipe.predict(X), alone.predict(Z))
    assert pipe.score(X) == pytest.approx(alone.score(Z), rel=1e-12)
    assert pipe.named_steps["hmm"].n_features_in_ == 2
    # lengths by keyword, routed to the step (scikit-learn's step__param), and a target y
    # next to them, ignored
    y = np.arange(len(X)) % 2
    routed = clone(pipe).fit(X, y, hmm__lengths=lengths)
    np.testing.assert_array_equal(routed.predict(X), alone.predict(Z))
    with pytest.warns(UserWarning, match="taken as scikit-learn's target and ignored"):
        assert routed.score(X, y) == pytest.approx(alone.score(Z), rel=1e-12)


def test_grid_search_over_n_components():
    """Folds of whole sequences; the scores are the models' log-likelihoods on the
    held-out sequence, as a loop by hand computes them."""
    X, lengths = sequences(lengths=(150, 150, 150))
    fold = np.repeat([0, 1, 2], 150)
    grid = GridSearchCV(GaussianHMM(1, "diag", n_iter=30, random_state=0),
                        {"n_components": [1, 2, 3]}, cv=PredefinedSplit(fold))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        grid.fit(X)
        for i, k in enumerate([1, 2, 3]):
            scores = []
            for f in range(3):
                model = GaussianHMM(k, "diag", n_iter=30, random_state=0)
                model.fit(X[fold != f])
                scores.append(model.score(X[fold == f]))
            assert grid.cv_results_["mean_test_score"][i] == pytest.approx(np.mean(scores))
    assert grid.best_params_["n_components"] == 3  # the model the data were drawn from
