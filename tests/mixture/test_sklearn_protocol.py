"""emseg.GaussianMixture as a scikit-learn estimator: check_estimator, clone, Pipeline,
GridSearchCV, the not-fitted error, float32, and the conventions scikit-learn's users
expect (``fit(X, y)``, ``n_features_in_``, ``init_params`` spellings, ``reg_covar=0``,
``random_state=None`` after ``np.random.seed``). The base class is
:mod:`emseg._shared.estimator`."""

import json
import os
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

from emseg import EmsegError, GaussianMixture, NotFittedError

from _helpers import gaussian_blobs

sklearn = pytest.importorskip("sklearn")
from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import NotFittedError as SkNotFittedError  # noqa: E402
from sklearn.mixture import GaussianMixture as SkGaussianMixture  # noqa: E402
from sklearn.model_selection import GridSearchCV, KFold  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

# The one check skipped, and why (see the README, "GaussianMixture and scikit-learn").
EXPECTED_FAILED_CHECKS = {
    "check_fit1d": "emseg reads a 1-D X as one feature (an image's grey levels, one "
    "table column) where scikit-learn refuses it; kept on purpose",
}

# scikit-learn's own test settings for its GaussianMixture (short fits), emseg's
# defaults, and each covariance type and initialisation once.
CHECKED = [
    GaussianMixture(n_init=2, max_iter=5),
    GaussianMixture(),
    GaussianMixture(covariance_type="diag", init_params="k-means++"),
    GaussianMixture(covariance_type="spherical", init_params="random"),
    GaussianMixture(covariance_type="tied", init_params="random_from_data", reg_covar=0),
    GaussianMixture(accelerate=False, tol=1e-3, reg_covar=1e-6),
]


@pytest.fixture(scope="module")
def blobs():
    rng = np.random.default_rng(3)
    means = [[0.0, 0.0], [6.0, 1.0], [2.0, 7.0]]
    X, labels = gaussian_blobs(rng, means, [120, 90, 150])
    return X * [50.0, 0.02] + [1000.0, -3.0], labels  # features on unlike scales


def agreement(labels, pred):
    """The fraction of rows whose predicted class is their true class's usual one."""
    return sum(np.bincount(pred[labels == k]).max() for k in np.unique(labels)) / labels.size


# --- scikit-learn's own checks ----------------------------------------------------------


@pytest.mark.filterwarnings("ignore:Estimator GaussianMixture does not inherit")
@pytest.mark.filterwarnings("ignore::emseg.ConvergenceWarning")
@parametrize_with_checks(CHECKED, expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS)
def test_sklearn_check_estimator(estimator, check):
    if _check_name(check) == "check_array_api_input" and not os.environ.get("SCIPY_ARRAY_API"):
        error = _array_api_results(check)[repr(estimator)]
        assert error is None, error
    else:
        check(estimator)


def _check_name(check):
    while hasattr(check, "func"):
        check = check.func
    return check.__name__


_ARRAY_API_RESULTS = {}


def _array_api_results(check):
    """``{repr(estimator): None or the error}`` for scikit-learn's array API check on
    every estimator of CHECKED, run once in a new process with SCIPY_ARRAY_API=1: it
    must be set before scipy is first imported, and scikit-learn skips the check
    without it."""
    if not _ARRAY_API_RESULTS:
        code = (
            "import json, pickle, sys, traceback\n"
            "check, estimators = pickle.loads(sys.stdin.buffer.read())\n"
            "out = {}\n"
            "for est in estimators:\n"
            "    try:\n        check(est); out[repr(est)] = None\n"
            "    except Exception:\n        out[repr(est)] = traceback.format_exc()[-2000:]\n"
            "print(json.dumps(out))\n"
        )
        env = dict(os.environ, SCIPY_ARRAY_API="1")
        run = subprocess.run([sys.executable, "-c", code], input=pickle.dumps((check, CHECKED)),
                             capture_output=True, env=env)
        assert run.returncode == 0, run.stderr.decode()[-2000:]
        _ARRAY_API_RESULTS.update(json.loads(run.stdout.decode().splitlines()[-1]))
    return _ARRAY_API_RESULTS


def test_the_skipped_check_is_what_it_says(blobs):
    """check_fit1d is skipped because a 1-D X is one feature: the same fit as a column."""
    x = blobs[0][:, 0]
    a = GaussianMixture(3, random_state=0).fit(x)
    b = GaussianMixture(3, random_state=0).fit(x[:, None])
    np.testing.assert_array_equal(a.means_, b.means_)
    assert a.n_features_in_ == 1


# --- parameters, clone, repr ------------------------------------------------------------


def test_get_params_set_params_and_clone():
    gm = GaussianMixture(4, covariance_type="diag", tol=1e-4, random_state=7)
    params = gm.get_params()
    assert params["n_components"] == 4 and params["covariance_type"] == "diag"
    assert set(params) == set(GaussianMixture._get_param_names())
    assert "accelerate" in params and "callback" in params
    twin = clone(gm)
    assert twin is not gm and twin.get_params() == params
    assert gm.set_params(n_components=2, reg_covar=0.5) is gm
    assert (gm.n_components, gm.reg_covar) == (2, 0.5)
    with pytest.raises(ValueError, match="Invalid parameter 'n_clusters'"):
        gm.set_params(n_clusters=3)


def test_parameters_stored_unmodified_and_checked_in_fit():
    means = np.array([[0.0], [1.0]])
    gm = GaussianMixture(2, means_init=means, tol="loose")
    assert gm.means_init is means and gm.tol == "loose"  # nothing checked yet
    with pytest.raises(EmsegError, match="tol must be a finite number, got 'loose'"):
        gm.fit(np.arange(10.0))


def test_clone_of_a_fitted_model_is_unfitted(blobs):
    gm = GaussianMixture(3, random_state=0).fit(blobs[0])
    fresh = clone(gm)
    assert not hasattr(fresh, "means_")
    with pytest.raises(NotFittedError):
        fresh.predict(blobs[0])


def test_repr_shows_the_parameters_that_differ_from_the_defaults():
    assert repr(GaussianMixture()) == "GaussianMixture()"
    assert repr(GaussianMixture(3, covariance_type="diag")) == (
        "GaussianMixture(covariance_type='diag', n_components=3)"
    )
    text = repr(GaussianMixture(2, means_init=np.zeros((2, 50))))
    assert text.startswith("GaussianMixture(means_init=array(") and "..." in text
    assert "\n" not in text


def test_tags_describe_a_density_estimator_that_takes_nan():
    from sklearn.utils import get_tags

    tags = get_tags(GaussianMixture())
    assert tags.estimator_type == "density_estimator"
    assert tags.estimator_type == get_tags(SkGaussianMixture()).estimator_type
    assert tags.input_tags.allow_nan and not tags.target_tags.required


# --- fit(X, y=None, sample_weight=None) -------------------------------------------------


def test_y_is_ignored_and_sample_weight_is_a_keyword(blobs):
    X, labels = blobs
    plain = GaussianMixture(3, random_state=0).fit(X)
    with_y = GaussianMixture(3, random_state=0).fit(X, labels)
    np.testing.assert_array_equal(plain.means_, with_y.means_)
    np.testing.assert_array_equal(plain.covariances_, with_y.covariances_)
    gm = GaussianMixture(3, random_state=0)
    np.testing.assert_array_equal(gm.fit_predict(X, labels), gm.predict(X))
    assert gm.score(X, labels) == gm.score(X)
    w = np.linspace(0.5, 2.0, X.shape[0])
    weighted = GaussianMixture(3, random_state=0).fit(X, sample_weight=w)
    assert not np.allclose(weighted.means_, plain.means_)
    assert gm.score(X, None, w) == gm.score(X, sample_weight=w) != gm.score(X)


# --- Pipeline and GridSearchCV ----------------------------------------------------------


def test_pipeline_fits_predicts_and_scores(blobs):
    X, labels = blobs
    pipe = Pipeline([("scale", StandardScaler()), ("gm", GaussianMixture(3, random_state=0))])
    pipe.fit(X)
    Z = pipe.named_steps["scale"].transform(X)
    gm = pipe.named_steps["gm"]
    np.testing.assert_array_equal(pipe.predict(X), gm.predict(Z))
    np.testing.assert_allclose(pipe.predict_proba(X), gm.predict_proba(Z))
    np.testing.assert_allclose(pipe.score_samples(X), gm.score_samples(Z))
    assert pipe.score(X) == gm.score(Z)
    assert agreement(labels, pipe.predict(X)) > 0.99  # the three blobs are found


def test_grid_search_over_n_components_scores_by_held_out_likelihood(blobs):
    X, _ = blobs
    pipe = Pipeline([("scale", StandardScaler()), ("gm", GaussianMixture(random_state=0))])
    cv = KFold(3, shuffle=True, random_state=0)
    search = GridSearchCV(pipe, {"gm__n_components": [2, 3, 4]}, cv=cv).fit(X)
    # the scores are the mixture's mean held-out log-likelihood, fold by fold
    for i, k in enumerate([2, 3, 4]):
        by_hand = []
        for train, test in cv.split(X):
            model = clone(pipe).set_params(gm__n_components=k).fit(X[train])
            by_hand.append(model.score(X[test]))
        np.testing.assert_allclose(search.cv_results_["mean_test_score"][i],
                                   np.mean(by_hand), rtol=1e-12)
    scores = search.cv_results_["mean_test_score"]
    assert scores[1] > scores[0] + 0.1  # three blobs: K=3 clearly better than 2 (+0.2)
    assert search.best_params_["gm__n_components"] in (3, 4)
    assert search.best_estimator_.named_steps["gm"].n_components_ == search.best_params_[
        "gm__n_components"]
    assert search.score(X) == search.best_estimator_.score(X)


# --- not fitted -------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["predict", "predict_proba", "score", "score_samples",
                                    "bic", "aic", "impute"])
def test_unfitted_raises_both_emseg_and_sklearn_errors(method):
    gm = GaussianMixture(2)
    with pytest.raises(NotFittedError, match=r"^this GaussianMixture is not fitted yet; "
                       r"call fit\(X\) first$") as info:
        getattr(gm, method)(np.zeros((3, 2)))
    assert isinstance(info.value, EmsegError) and isinstance(info.value, SkNotFittedError)
    assert isinstance(info.value, ValueError) and isinstance(info.value, AttributeError)
    with pytest.raises(SkNotFittedError):
        gm.sample(3)
    from sklearn.utils.validation import check_is_fitted

    with pytest.raises(SkNotFittedError):
        check_is_fitted(gm)


def test_check_is_fitted_names_the_missing_attributes():
    from emseg._shared.estimator import check_is_fitted

    gm = GaussianMixture(2)
    gm.means_ = np.zeros((2, 1))
    with pytest.raises(NotFittedError, match=r"\(no weights_, covariances_\); call fit"):
        check_is_fitted(gm, ["weights_", "means_", "covariances_"])
    check_is_fitted(gm, "means_")  # present: nothing raised


def test_without_sklearn_the_error_is_still_an_emseg_value_and_attribute_error():
    code = (
        "import sys; sys.modules['sklearn'] = None\n"
        "from emseg import NotFittedError, EmsegError\n"
        "assert issubclass(NotFittedError, EmsegError)\n"
        "assert issubclass(NotFittedError, ValueError)\n"
        "assert issubclass(NotFittedError, AttributeError)\n"
        "from emseg import GaussianMixture\n"
        "gm = GaussianMixture(2)\n"
        "assert gm.get_params()['n_components'] == 2\n"
        "try:\n    gm.predict([[0.0]])\nexcept NotFittedError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "this GaussianMixture is not fitted yet; call fit(X) first"


def test_importing_emseg_or_fitting_does_not_import_sklearn():
    code = (
        "import sys, numpy as np, emseg\n"
        "gm = emseg.GaussianMixture(2, random_state=0).fit(np.arange(40.0))\n"
        "gm.predict(np.arange(5.0)); repr(gm); gm.get_params()\n"
        "sys.exit('sklearn' in sys.modules)\n"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# --- float32, n_features_in_, feature names ---------------------------------------------


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_float32_data_give_float32_parameters_and_outputs(blobs, covariance_type):
    X64 = blobs[0]
    X32 = X64.astype(np.float32)
    a = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X32)
    b = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(
        X32.astype(np.float64))
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert getattr(a, name).dtype == np.float32, name
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-5, atol=1e-6,
                                   err_msg=name)
    assert a.predict_proba(X32).dtype == np.float32
    assert a.score_samples(X32).dtype == np.float32
    assert a.predict_proba(X64).dtype == np.float64  # float64 data, float64 out
    assert isinstance(a.score(X32), float)
    np.testing.assert_array_equal(a.predict(X32), b.predict(X32))
    assert a.sample(5)[0].dtype == np.float64  # as scikit-learn's
    # scikit-learn keeps float32 the same way
    ref = SkGaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X32)
    assert ref.means_.dtype == a.means_.dtype
    # a warm start from float32 parameters
    a.set_params(warm_start=True, max_iter=3).fit(X32)
    assert a.means_.dtype == np.float32


def test_n_features_in_and_feature_names(blobs):
    pd = pytest.importorskip("pandas")
    X = blobs[0]
    gm = GaussianMixture(3, random_state=0)
    assert not hasattr(gm, "n_features_in_")
    gm.fit(X)
    assert gm.n_features_in_ == 2 and not hasattr(gm, "feature_names_in_")
    df = pd.DataFrame(X, columns=["size", "shade"])
    gm.fit(df)
    assert gm.feature_names_in_.dtype == object
    assert list(gm.feature_names_in_) == ["size", "shade"]
    np.testing.assert_array_equal(gm.predict(df), gm.predict(X))
    with pytest.raises(EmsegError, match=r"columns \['shade', 'size'\] do not match .* "
                       r"\['size', 'shade'\]; pass the same columns in the same order"):
        gm.predict(df[["shade", "size"]])
    with pytest.raises(EmsegError, match="X has 1 features, but GaussianMixture is "
                       "expecting 2 features as input"):
        gm.score(X[:, :1])
    gm.fit(X)  # refitted without names: the old names are forgotten
    assert not hasattr(gm, "feature_names_in_")


# --- init_params, reg_covar=0, random_state=None ----------------------------------------


def test_init_params_accepts_sklearns_spellings(blobs):
    X, labels = blobs
    fits = {}
    for init in ("kmeans", "k-means++", "kmeans++", "random", "random_from_data"):
        gm = GaussianMixture(3, init_params=init, n_init=3, random_state=0).fit(X)
        assert agreement(labels, gm.predict(X)) > 0.99, init
        fits[init] = gm
    np.testing.assert_array_equal(fits["k-means++"].means_, fits["kmeans++"].means_)
    with pytest.raises(EmsegError, match="init_params must be one of 'kmeans', "):
        GaussianMixture(3, init_params="kmeans+").fit(X)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_reg_covar_zero_fits_a_component_on_one_row_where_sklearn_does(covariance_type):
    rng = np.random.RandomState(0)
    X = np.vstack([rng.normal(size=(50, 2)), [[40.0, 40.0]]])  # one far outlier
    ours = GaussianMixture(2, covariance_type=covariance_type, reg_covar=0,
                           random_state=0).fit(X)
    np.testing.assert_allclose(sorted(ours.weights_), [1 / 51, 50 / 51], rtol=1e-9)
    assert np.isfinite(ours.score(X))
    try:
        ref = SkGaussianMixture(2, covariance_type=covariance_type, reg_covar=0,
                                random_state=0).fit(X)
    except ValueError:  # "full": scikit-learn gives up on the singular covariance
        assert covariance_type == "full"
        return
    np.testing.assert_allclose(np.sort(ours.weights_), np.sort(ref.weights_), rtol=1e-9)
    big = np.argmax(ours.weights_), np.argmax(ref.weights_)
    np.testing.assert_allclose(ours.means_[big[0]], ref.means_[big[1]], rtol=1e-9)


def test_reg_covar_zero_elsewhere_matches_sklearn_from_the_same_start(blobs):
    X = blobs[0]
    start = dict(weights_init=[0.3, 0.3, 0.4],
                 means_init=[[1000.0, -3.0], [1300.0, -2.98], [1100.0, -2.86]],
                 precisions_init=np.array([np.diag([1 / 2500.0, 1 / 4e-4])] * 3))
    ours = GaussianMixture(3, reg_covar=0, accelerate=False, tol=1e-3, **start).fit(X)
    ref = SkGaussianMixture(3, reg_covar=0, tol=1e-3, **start).fit(X)
    np.testing.assert_allclose(ours.means_, ref.means_[np.argsort(ref.means_[:, 0])],
                               rtol=1e-7)
    assert ours.n_iter_ == ref.n_iter_


def test_random_state_none_is_reproducible_after_np_random_seed(blobs):
    X = blobs[0]
    fits = []
    for _ in range(2):
        np.random.seed(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gm = GaussianMixture(3, init_params="random", n_init=1, max_iter=3).fit(X)
        fits.append((gm.means_, gm.sample(4)[0]))
    np.testing.assert_array_equal(fits[0][0], fits[1][0])
    np.random.seed(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        other = GaussianMixture(3, init_params="random", n_init=1, max_iter=3).fit(X)
    assert not np.array_equal(other.means_, fits[0][0])


# --- bad input stays a one-line EmsegError ----------------------------------------------


@pytest.mark.parametrize(
    "X, error, match",
    [
        (np.array([[1.0, {"a": 1}]] * 3, dtype=object), TypeError, "not a number"),
        (np.array([[1.0, "x"]] * 3, dtype=object), ValueError, "could not be read"),
        (np.ones((3, 2)) * 1j, ValueError, "Complex data not supported"),
        (np.ones((3, 0)), ValueError, r"0 feature\(s\) \(shape=\(3, 0\)\)"),
    ],
    ids=["dict-cell", "string-cell", "complex", "no-features"],
)
def test_bad_input_is_a_one_line_emseg_error(X, error, match):
    with pytest.raises(EmsegError, match=match) as info:
        GaussianMixture(2).fit(X)
    assert isinstance(info.value, error) and "\n" not in str(info.value)


def test_sparse_input_is_refused_with_a_fix():
    sparse = pytest.importorskip("scipy.sparse")
    with pytest.raises(EmsegError, match=r"sparse matrix, which is not supported; "
                       r"pass X.toarray\(\)"):
        GaussianMixture(2).fit(sparse.csr_matrix(np.eye(4)))


def test_numbers_held_as_objects_are_fitted(blobs):
    X = blobs[0]
    a = GaussianMixture(3, random_state=0).fit(X.astype(object))
    b = GaussianMixture(3, random_state=0).fit(X)
    np.testing.assert_array_equal(a.means_, b.means_)
