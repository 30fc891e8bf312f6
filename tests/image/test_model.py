import json
import warnings

import numpy as np
import pytest

from emseg import EmsegError, GaussianMixture
from emseg.io.jsonfile import load_json, save_json
from emseg.mixture.serialize import mixture_from_dict, mixture_to_dict


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
        (
            lambda d: d["means_"][0].pop(),
            r"means_ must have shape \(2, 2\), but mixture.means_\[0\] has length 1",
        ),
        (lambda d: d["means_"][0].__setitem__(0, "1.5"), r"means_\[0\]\[0\] must be a number"),
        (lambda d: d["means_"][0].__setitem__(0, True), r"means_\[0\]\[0\] must be a number"),
        (lambda d: d["means_"][0].__setitem__(0, None), r"means_\[0\]\[0\] is null"),
        (lambda d: d["means_"][0].__setitem__(0, [1.0]), "nested too deeply"),
        (lambda d: d["means_"].__setitem__(0, 1.0), r"means_\[0\] must be a list of length 2"),
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


# --------------------------------------------------------------------------- shared models

from emseg import segment  # noqa: E402
from emseg.image.model import (  # noqa: E402
    SegmentationModel,
    fit_model,
    load_model,
    summarize_image,
)


def scene(seed=0, shape=(60, 90), levels=(50, 120, 190), noise=10.0):
    """Three vertical bands of materials plus noise; returns (uint8 image, truth)."""
    rng = np.random.default_rng(seed)
    truth = np.zeros(shape, int)
    truth[:, shape[1] // 3 :] = 1
    truth[:, 2 * shape[1] // 3 :] = 2
    values = np.asarray(levels, float)[truth] + rng.normal(0, noise, shape)
    return np.clip(np.rint(values), 0, 255).astype(np.uint8), truth


def test_brightened_image_gets_the_same_labels_with_a_shared_model():
    dark, truth = scene(seed=1)
    bright = np.clip(scene(seed=2)[0].astype(int) + 6, 0, 255).astype(np.uint8)
    model = fit_model([dark, bright], 3)
    a = segment(dark, model=model).labels
    b = segment(bright, model=model).labels
    # label i + 1 is material i in both images (darkest first), up to noise at the edges
    assert (a == truth + 1).mean() > 0.97
    assert (b == truth + 1).mean() > 0.97
    assert model.k == 3 and model.channels == 1
    means = [c["mean_luminance"] for c in model.classes]
    assert means == sorted(means)


def test_merged_histograms_equal_fitting_all_pixels_at_once():
    a, _ = scene(seed=3)
    b, _ = scene(seed=4, shape=(30, 50), levels=(60, 110, 200))
    model = fit_model([a, b], 3, random_state=0)
    both = np.concatenate([a.ravel(), b.ravel()])[:, None]
    one = fit_model([both], 3, random_state=0, channel_axis=None)
    np.testing.assert_allclose(model.mixture.means_, one.mixture.means_, rtol=1e-12)
    np.testing.assert_allclose(model.mixture.weights_, one.mixture.weights_, rtol=1e-12)
    assert model.training["exact"] and model.training["n_pixels"] == both.size


def test_merge_order_does_not_change_the_summary():
    a, _ = scene(seed=5)
    b, _ = scene(seed=6, levels=(30, 100, 220))
    sa = summarize_image(a, index=0, n_images=2)
    sb = summarize_image(b, index=1, n_images=2)
    ab, ba = sa.merge(sb).training_rows(), sb.merge(sa).training_rows()
    for x, y in zip(ab, ba):
        np.testing.assert_array_equal(x, y)


def test_float_images_are_sampled_with_a_seed():
    a, truth = scene(seed=7)
    f = a.astype(np.float32) / 255 + np.float32(1e-4) * np.random.default_rng(0).random(a.shape, np.float32)
    m1 = fit_model([f, f], 3, max_samples=2000, random_state=4)
    m2 = fit_model([f, f], 3, max_samples=2000, random_state=4)
    np.testing.assert_array_equal(m1.mixture.means_, m2.mixture.means_)
    assert not m1.training["exact"] and m1.training["sampled_images"] == 2
    assert (segment(f, model=m1).labels == truth + 1).mean() > 0.97


def test_segment_with_model_does_not_refit_or_change_the_model():
    a, _ = scene(seed=8)
    model = fit_model([a], 3)
    before = model.mixture.means_.copy()
    seg = segment(a[:20], model=model)
    np.testing.assert_array_equal(model.mixture.means_, before)
    assert seg.k == 3 and seg.timings["fit"] == 0.0
    assert np.isfinite(seg.log_likelihood)
    assert abs(seg.fractions.sum() - 1) < 1e-12


def test_model_file_round_trip(tmp_path):
    a, _ = scene(seed=9)
    rgb = np.stack([a, a // 2, 255 - a], -1)
    model = fit_model([rgb], 3, spatial=0.5, max_samples=3000)
    path = tmp_path / "model.json"
    model.save(path)
    back = load_model(path)
    assert back.source == str(path)
    assert back.to_dict() == json.loads(path.read_text())
    np.testing.assert_array_equal(segment(rgb, model=back).labels, segment(rgb, model=model).labels)
    assert back.features == model.features and back.spatial_ndim == 2
    assert back.features.color_space == "lab" and back.features.spatial == 0.5
    # one range for the three colour channels, from the training pixels
    assert len(set(back.features.offset)) == 1 and len(back.features.scale) == 3


def test_model_refuses_images_of_another_kind():
    a, _ = scene(seed=10)
    grey = fit_model([a], 3)
    with pytest.raises(EmsegError, match="colour .* fitted on grey"):
        segment(np.stack([a, a, a], -1), model=grey)
    with pytest.raises(EmsegError, match="k=4 but the model has 3"):
        segment(a, 4, model=grey)
    with pytest.raises(EmsegError, match="color_space='lab' but the model uses 'gray'"):
        segment(a, model=grey, color_space="lab")
    spatial = fit_model([a], 3, spatial=1.0)
    with pytest.raises(EmsegError, match="3-D but the model's spatial features are 2-D"):
        segment(np.stack([a, a]), model=spatial, channel_axis=None)
    with pytest.raises(EmsegError, match="shared model needs images of one kind"):
        fit_model([a, np.stack([a, a, a], -1)], 3)


@pytest.fixture(scope="module")
def model_dict():
    return fit_model([scene(seed=11)[0]], 3).to_dict()


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.update(format="emseg.GaussianMixture"), "not an emseg segmentation model"),
        (lambda d: d["features"].update(color_space="lab"), "made for other features: .*names"),
        (
            lambda d: d["features"].update(color_space="lab", names=["L/100", "a/100", "b/100"]),
            "mixture has 1 features but",
        ),
        (lambda d: d["features"].update(value_scale="uint8 / 256"), "made for other features"),
        (lambda d: d["features"].update(spatial=-1), "spatial must be a number >= 0"),
        (lambda d: d.update(channels=4), "channels must be 1 .* or 3"),
        (lambda d: d.update(k=2), "k is 2 but the mixture has 3"),
        (lambda d: d.update(spatial_ndim=2), "spatial_ndim must be null"),
        (lambda d: d["classes"].pop(), "list of 3 objects"),
        (lambda d: d["mixture"]["means_"].pop(), "mixture.means_ must have shape"),
        (lambda d: d.update(emseg_version=1), "emseg_version must be a string"),
    ],
)
def test_bad_model_file_refused(tmp_path, model_dict, change, message):
    d = json.loads(json.dumps(model_dict))
    change(d)
    path = tmp_path / "model.json"
    path.write_text(json.dumps(d))
    with pytest.raises(EmsegError, match=message) as info:
        load_model(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


def test_truncated_model_file_refused(tmp_path, model_dict):
    path = tmp_path / "model.json"
    path.write_text(json.dumps(model_dict)[:200])
    with pytest.raises(EmsegError, match="not valid JSON"):
        load_model(path)


def test_model_is_a_dataclass_of_plain_parts(model_dict):
    model = SegmentationModel.from_dict(model_dict)
    assert model.to_dict() == model_dict


# --- hostile model files (issue 17): huge numbers, size, nesting, class count -----------


@pytest.mark.parametrize(
    "change, place",
    [
        (lambda d: d["mixture"]["means_"][0].__setitem__(0, 10**400), r"model\.mixture\.means_\[0\]\[0\]"),
        (lambda d: d["mixture"].update(n_iter_=10**400), r"model\.mixture\.n_iter_"),
        (lambda d: d["mixture"].update(lower_bound_=-(10**400)), r"model\.mixture\.lower_bound_"),
        (lambda d: d["features"]["offset"].__setitem__(0, 10**400), r"model\.features\.offset\[0\]"),
        (lambda d: d["features"].update(spatial=10**400), r"model\.features\.spatial"),
        (lambda d: d["classes"][1].update(fraction=10**400), r"model\.classes\[1\]\.fraction"),
        (lambda d: d["training"].update(n_pixels=10**400), r"model\.training\.n_pixels"),
        (lambda d: d.update(format_version=10**400), r"model\.format_version"),
    ],
)
def test_huge_integer_in_model_file_refused_by_name(tmp_path, model_dict, change, place):
    d = json.loads(json.dumps(model_dict))
    change(d)
    path = tmp_path / "model.json"
    path.write_text(json.dumps(d))
    with pytest.raises(EmsegError, match=place + ".* integer of 401 digits") as info:
        load_model(path)
    assert "\n" not in str(info.value) and len(str(info.value)) < 300


def test_number_overflowing_to_infinity_refused_by_name(tmp_path, model_dict):
    text = json.dumps(model_dict).replace('"fraction": ', '"fraction": 1e999, "x": ', 1)
    path = tmp_path / "model.json"
    path.write_text(text)
    with pytest.raises(EmsegError, match=r"model\.classes\[0\]\.fraction is inf"):
        load_model(path)


def test_huge_integer_in_mixture_dict_refused_by_name(model_dict):
    d = json.loads(json.dumps(model_dict["mixture"]))
    d["covariances_"][1][0][0] = 10**400
    with pytest.raises(EmsegError, match=r"covariances_\[1\]\[0\]\[0\] is an integer of 401"):
        mixture_from_dict(d)


def test_huge_integer_in_hmm_model_file_refused(tmp_path):
    from emseg.hmm import GaussianHMM
    from emseg.workflows.tables import load_hmm, save_hmm

    X = np.random.default_rng(0).normal(size=(40, 1))
    model = GaussianHMM(2, random_state=0).fit(X)
    path = tmp_path / "hmm.json"
    save_hmm(path, model, columns=["a"], sequence_col=None, categorical=None, symbols=None)
    d = json.loads(path.read_text())
    d["hmm"]["means_"][1][0] = 10**400
    path.write_text(json.dumps(d))
    with pytest.raises(EmsegError, match=r"hmm\.means_\[1\]\[0\] is an integer of 401"):
        load_hmm(path)
    d["hmm"]["means_"][1][0] = 0.5
    from emseg.hmm import hmm_from_dict

    d["hmm"]["n_iter_"] = 10**400  # the dict API, without a file
    with pytest.raises(EmsegError, match=r"n_iter_ must be an integer >= 0, got an integer of"):
        hmm_from_dict(d["hmm"])


def test_model_file_size_checked_before_reading(tmp_path, monkeypatch):
    import builtins

    path = tmp_path / "model.json"
    path.write_text("[" + "0," * 600 + "0]")
    with pytest.raises(EmsegError, match="larger than"):
        load_json(path, max_bytes=1000)
    real_open = builtins.open
    reads = []

    class Spy:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def fileno(self):
            return self.f.fileno()

        def read(self, n=-1):
            reads.append(n)
            return self.f.read(n)

    monkeypatch.setattr(builtins, "open", lambda p, *a, **k: Spy(real_open(p, *a, **k)))
    with pytest.raises(EmsegError, match="larger than"):
        load_json(path, max_bytes=1000)
    assert reads == []  # refused from the size alone


def test_deeply_nested_model_refused_at_load(tmp_path, model_dict):
    d = json.loads(json.dumps(model_dict))
    deep = 1
    for _ in range(600):  # json loads this; dumping it again (every report) would fail
        deep = [deep]
    d["training"]["options"] = {"x": deep}
    path = tmp_path / "model.json"
    path.write_text(json.dumps(d))
    with pytest.raises(EmsegError, match=r"model\.training\.options\.x.* nested more than 32"):
        load_model(path)


def test_absurd_class_count_refused(tmp_path, model_dict):
    d = json.loads(json.dumps(model_dict))
    d["k"] = 70000
    path = tmp_path / "model.json"
    path.write_text(json.dumps(d))
    with pytest.raises(EmsegError, match=r"model\.k must be an integer from 1 to 65535"):
        load_model(path)


def test_model_warns_on_another_dtype_kind_or_range():
    # issue 17: a model fitted on 8-bit images applied silently to floats in 0..1
    from emseg import ModelMismatchWarning

    image, _ = scene()
    model = fit_model([image], 3)
    assert model.training["dtype_kinds"] == ["u"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ModelMismatchWarning)
        segment(image, model=model)  # like its training images: no warning
        segment(image.astype(np.uint16), model=model)  # same values, wider dtype: fine
    with pytest.warns(ModelMismatchWarning, match="float pixels but the model was fitted on unsigned integer"):
        segment(image / 255.0, model=model)
    with pytest.warns(ModelMismatchWarning, match="100% of the pixels .* far outside .* rescale"):
        segment(image.astype(np.uint16) * 256, model=model)
    float_model = fit_model([image.astype(np.float32)], 3)
    assert float_model.training["dtype_kinds"] == ["f"]
    with pytest.warns(ModelMismatchWarning, match="unsigned integer pixels but the model was fitted on float"):
        segment(image, model=float_model)
    old = SegmentationModel.from_dict(model.to_dict())
    del old.training["dtype_kinds"]  # a model saved before this check: range only
    with warnings.catch_warnings():
        warnings.simplefilter("error", ModelMismatchWarning)
        segment(image.astype(np.float32), model=old)
