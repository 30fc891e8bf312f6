"""emseg._shared.estimator: scikit-learn's estimator protocol on a small estimator,
with and without scikit-learn."""

import subprocess
import sys

import numpy as np
import pytest

from emseg import EmsegError, NotFittedError
from emseg._shared.estimator import EstimatorMixin, check_is_fitted


class Toy(EstimatorMixin):
    def __init__(self, n_states=1, *, prior=None, inner=None, tol=1e-3):
        self.n_states = n_states
        self.prior = prior
        self.inner = inner
        self.tol = tol

    def fit(self, X, y=None):
        self.centre_ = np.mean(X)
        return self

    def _fitted_attributes(self):
        return ("centre_",)

    def _emseg_tags(self):
        return dict(super()._emseg_tags(), estimator_type="clusterer", allow_nan=True)


def test_params_from_the_signature_nested_and_checked():
    toy = Toy(3, inner=Toy(tol=0.5))
    assert Toy._get_param_names() == ["inner", "n_states", "prior", "tol"]
    params = toy.get_params()
    assert params["n_states"] == 3 and params["inner__tol"] == 0.5
    assert "inner__n_states" not in toy.get_params(deep=False)
    toy.set_params(inner__tol=0.25, n_states=5)
    assert toy.inner.tol == 0.25 and toy.n_states == 5
    with pytest.raises(ValueError, match=r"Invalid parameter 'bogus' for estimator Toy\. "
                       r"Valid parameters are: \['inner', 'n_states', 'prior', 'tol'\]\."):
        toy.set_params(bogus=1)
    assert toy.set_params() is toy


def test_varargs_are_refused():
    class Bad(EstimatorMixin):
        def __init__(self, *args):
            self.args = args

    with pytest.raises(RuntimeError, match="takes \\*args"):
        Bad().get_params()


def test_repr_shows_changed_parameters_only():
    assert repr(Toy()) == "Toy()"
    assert repr(Toy(2, tol=1e-3)) == "Toy(n_states=2)"
    text = repr(Toy(prior=np.arange(100.0)))  # numpy >= 2.2 adds ", shape=(100,)"
    assert text.startswith("Toy(prior=array([ 0., 1., ..., 98., 99.]") and text.endswith("))")
    assert repr(Toy(inner=Toy(4))) == "Toy(inner=Toy(n_states=4))"


def test_check_is_fitted():
    toy = Toy()
    assert not toy.__sklearn_is_fitted__()
    with pytest.raises(NotFittedError, match=r"^this Toy is not fitted yet; call fit\(X\) "
                       r"first$") as info:
        check_is_fitted(toy)
    assert isinstance(info.value, EmsegError)
    with pytest.raises(NotFittedError, match=r"this Toy is not fitted yet \(no centre_, "
                       r"scale_\); call fit\(X\) first or set those attributes"):
        check_is_fitted(toy, ["centre_", "scale_"])
    toy.fit([1.0, 2.0])
    check_is_fitted(toy)
    check_is_fitted(toy, "centre_")


def test_tags_for_sklearn_old_and_new():
    pytest.importorskip("sklearn")
    from sklearn.base import clone
    from sklearn.utils import get_tags

    tags = get_tags(Toy())
    assert tags.estimator_type == "clusterer" and tags.input_tags.allow_nan
    assert not tags.target_tags.required
    old = Toy()._more_tags()
    assert old["allow_nan"] and old["X_types"] == ["2darray"]
    assert Toy()._estimator_type == "clusterer"
    twin = clone(Toy(2, inner=Toy(3)))
    assert twin.n_states == 2 and twin.inner.n_states == 3


def test_no_sklearn_needed():
    code = (
        "import sys; sys.modules['sklearn'] = None\n"
        "from emseg._shared.estimator import EstimatorMixin\n"
        "class T(EstimatorMixin):\n"
        "    def __init__(self, a=1):\n        self.a = a\n"
        "t = T(2); assert t.get_params() == {'a': 2}; assert repr(t) == 'T(a=2)'\n"
        "assert t._more_tags()['allow_nan'] is False\n"
        "try:\n    t.__sklearn_tags__()\nexcept ImportError:\n    print('no tags')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "no tags"
