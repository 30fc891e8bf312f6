import json

import numpy as np
import pytest

from emseg import EmsegError, GaussianMixture
from emseg.model import load_json, mixture_from_dict, mixture_to_dict, save_json


@pytest.fixture(scope="module", params=["full", "tied", "diag", "spherical"])
def fitted(request):
    rng = np.random.default_rng(3)
    X = np.concatenate(
        [rng.normal(m, 0.5, (200, 2)) for m in ([-4.0, 0.0], [0.0, 3.0], [4.0, -1.0])]
    )
    return GaussianMixture(3, covariance_type=request.param, random_state=0).fit(X), X


def test_mixture_round_trip_through_json_is_exact(fitted, tmp_path):
    gm, X = fitted
    path = tmp_path / "gm.json"
    save_json(path, mixture_to_dict(gm))
    back = mixture_from_dict(load_json(path))
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        np.testing.assert_array_equal(getattr(back, name), getattr(gm, name))
    assert back.covariance_type == gm.covariance_type
    assert back.n_components == gm.n_components
    assert (back.converged_, back.n_iter_, back.lower_bound_) == (
        gm.converged_,
        gm.n_iter_,
        gm.lower_bound_,
    )
    np.testing.assert_array_equal(back.predict_proba(X), gm.predict_proba(X))


def test_mixture_dict_is_plain_json(fitted):
    d = mixture_to_dict(fitted[0])
    assert json.loads(json.dumps(d, allow_nan=False)) == d


def test_unfitted_mixture_refused():
    with pytest.raises(EmsegError, match="not fitted"):
        mixture_to_dict(GaussianMixture(2))


def _full_dict():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(m, 1.0, (100, 2)) for m in (-5.0, 5.0)])
    return mixture_to_dict(GaussianMixture(2, random_state=0).fit(X))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.update(format="pickle"), "not an emseg mixture"),
        (lambda d: d.update(format_version=99), "newer than this emseg"),
        (lambda d: d.update(covariance_type="banana"), "covariance_type must be one of"),
        (lambda d: d.update(n_components=3), r"weights_ must have shape \(3,\)"),
        (lambda d: d.update(n_components="2"), "n_components must be an integer"),
        (lambda d: d.pop("means_"), "means_ is missing"),
        (lambda d: d["means_"][0].pop(), "ragged"),
        (lambda d: d["means_"][0].__setitem__(0, "1.5"), "must hold numbers"),
        (lambda d: d["means_"][0].__setitem__(0, True), "must hold numbers"),
        (lambda d: d["means_"][0].__setitem__(0, None), "contains null"),
        (lambda d: d["means_"][0].__setitem__(0, [1.0]), "nested too deeply"),
        (lambda d: d["means_"].__setitem__(0, 1.0), "ragged"),
        (lambda d: d["means_"].__setitem__(0, [[[[1.0]]]]), "nested too deeply|must have shape"),
        (lambda d: d.update(weights_=[0.7, 0.7]), "sum to 1"),
        (lambda d: d.update(weights_=[1.5, -0.5]), ">= 0 and sum to 1"),
        (lambda d: d["covariances_"][0].__setitem__(0, [1.0, 2.0]), "not symmetric"),
        (
            lambda d: d["covariances_"].__setitem__(0, [[1.0, 2.0], [2.0, 1.0]]),
            "not positive definite",
        ),
        (lambda d: d["precisions_cholesky_"][0][0].__setitem__(0, 9.0), "does not match"),
        (lambda d: d.update(converged_="yes"), "converged_ must be true or false"),
        (lambda d: d.update(n_iter_=-1), "n_iter_ must be an integer >= 0"),
        (lambda d: d.update(lower_bound_="high"), "lower_bound_ must be a finite number"),
    ],
)
def test_bad_mixture_dict_refused_with_one_line(change, message):
    d = _full_dict()
    change(d)
    with pytest.raises(EmsegError, match=message) as info:
        mixture_from_dict(d)
    assert "\n" not in str(info.value)


def test_non_object_refused():
    with pytest.raises(EmsegError, match="must be a JSON object, got a list"):
        mixture_from_dict([1, 2])


def test_diag_negative_variance_refused():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(m, 1.0, (100, 2)) for m in (-5.0, 5.0)])
    d = mixture_to_dict(GaussianMixture(2, covariance_type="diag", random_state=0).fit(X))
    d["covariances_"][1][0] = -1.0
    with pytest.raises(EmsegError, match="covariances_ must be positive"):
        mixture_from_dict(d)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "is empty"),
        (b'{"a": 1', "not valid JSON .* line 1"),
        (b'{"a": NaN}', "not valid JSON"),
        (b"\xff\xfe\x00garbage", "not a text"),
    ],
)
def test_load_json_refuses_corrupt_files(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(EmsegError, match=message) as info:
        load_json(path)
    assert "\n" not in str(info.value)


def test_load_json_missing_and_folder(tmp_path):
    with pytest.raises(EmsegError, match="does not exist"):
        load_json(tmp_path / "nope.json")
    with pytest.raises(EmsegError, match="is a folder"):
        load_json(tmp_path)


def test_save_json_is_atomic_and_refuses_to_overwrite(tmp_path):
    path = tmp_path / "m.json"
    save_json(path, {"a": 1})
    with pytest.raises(EmsegError, match="exists"):
        save_json(path, {"a": 2})
    save_json(path, {"a": 2}, overwrite=True)
    assert load_json(path) == {"a": 2}
    # an object that cannot be written leaves neither the target nor a temporary file
    with pytest.raises(EmsegError, match="not JSON-serialisable"):
        save_json(tmp_path / "x.json", {"a": object()})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]
