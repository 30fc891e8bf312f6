import warnings

import numpy as np
import pytest

import emseg
from emseg import EmsegError, KChoiceWarning, segment
from emseg import GaussianMixture
from emseg.mixture.selection import choose_k, min_separation, n_parameters, select_table

K_MAX = 8


def phantom(k, seed, frac=1 / 3, shape=(128, 128), block=16):
    """k grey classes on random blocks, means at the centres of k equal bins of 0..255,
    noise sigma = frac x the spacing; uint8, clipped at 0 and 255 (as a camera would)."""
    rng = np.random.default_rng(seed)
    spacing = 255.0 / k
    coarse = rng.integers(0, k, (shape[0] // block, shape[1] // block))
    truth = np.kron(coarse, np.ones((block, block), dtype=int))
    values = (truth + 0.5) * spacing + rng.normal(0, frac * spacing, shape)
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def stored(image, storage):
    """The same values in another storage type."""
    if storage == "uint8":
        return image
    if storage == "uint16 narrow":
        return image.astype(np.uint16) * 3 + 20  # 20..785 of 0..65535
    return (image * 1e-4).astype(np.float32)


def histogram_rows(image):
    """Distinct values min-max scaled to [0, 1] and their counts (the histogram fit)."""
    values, counts = np.unique(np.asarray(image, dtype=np.float64), return_counts=True)
    return ((values - values[0]) / (values[-1] - values[0]))[:, None], counts.astype(float)


def options(X, w):
    var = np.average((X - np.average(X, 0, w)) ** 2, 0, w).mean()
    return dict(init_params="kmeans", n_init=5, random_state=0, reg_covar=1e-6 * var)


def choose(image, **kwargs):
    X, w = histogram_rows(image)
    return choose_k(X, w, w.sum(), K_MAX, options(X, w), **kwargs)


@pytest.mark.parametrize("storage", ["uint8", "uint16 narrow", "float32 x 1e-4"])
@pytest.mark.parametrize("k", [2, 3, 4, 5, 6])
def test_exact_k_on_phantoms(k, storage):
    # segment's defaults: histogram rows scaled by their range, saturation spikes
    # flattened for the choice, relative covariance floor, restarts
    for seed in range(2):
        seg = segment(stored(phantom(k, seed), storage), "auto")
        assert seg.k == k, (seed, seg.bic_table)


@pytest.mark.parametrize("k", [3, 6])
def test_exact_k_on_unquantised_float_phantom(k):
    rng = np.random.default_rng(k)
    spacing = 1e-4 * 255 / k
    truth = np.kron(rng.integers(0, k, (6, 6)), np.ones((10, 10), dtype=int))
    image = ((truth + 0.5) * spacing + rng.normal(0, spacing / 3, truth.shape)).astype(np.float32)
    assert choose(image).k == k


@pytest.mark.parametrize("name", ["camera", "moon", "coins"])
def test_natural_image_chooses_fewer_than_k_max(name):
    import skimage.data

    with warnings.catch_warnings():
        warnings.simplefilter("error", KChoiceWarning)
        seg = segment(getattr(skimage.data, name)(), "auto")
    assert seg.k < K_MAX


def test_bic_alone_chooses_k_max_on_camera_and_the_flag_says_so():
    import skimage.data

    choice = choose(skimage.data.camera(), criterion="bic")
    assert choice.k == K_MAX and choice.at_k_max


def test_table_keeps_the_whole_curve():
    image = phantom(3, 0)
    choice = choose(image)
    X, w = histogram_rows(image)
    assert [row["k"] for row in choice.table] == list(range(2, K_MAX + 1))
    for row in choice.table:
        assert {"bic", "log_likelihood", "icl", "entropy", "min_separation",
                "min_weight", "n_parameters"} <= set(row)
        assert row["bic"] == pytest.approx(
            -2 * row["log_likelihood"] + n_parameters("full", row["k"], 1) * np.log(w.sum())
        )
        assert row["icl"] >= row["bic"]
    chosen = next(row for row in choice.table if row["k"] == choice.k)
    assert chosen["log_likelihood"] == pytest.approx(w @ choice.model.score_samples(X))


def test_criteria_pick_their_minimum():
    choice = choose(phantom(4, 1), criterion="icl")
    assert choice.k == min(choice.table, key=lambda row: row["icl"])["k"]
    assert choice.criterion == "icl"


def test_separation_is_ashmans_d():
    gm = emseg.GaussianMixture(2)
    gm.means_ = np.array([[0.0], [3.0]])
    gm.covariances_ = np.array([[[1.0]], [[3.0]]])
    assert min_separation(gm) == pytest.approx(3 / np.sqrt(2.0))
    gm.covariance_type = "diag"
    gm.means_ = np.array([[0.0, 0.0], [3.0, 4.0]])
    gm.covariances_ = np.array([[1.0, 4.0], [1.0, 4.0]])
    assert min_separation(gm) == pytest.approx(np.hypot(3, 2))


def test_at_k_max_flag():
    X, w = histogram_rows(phantom(4, 0))
    choice = choose_k(X, w, w.sum(), 4, options(X, w))
    assert choice.k == 4 and choice.at_k_max


def test_choose_k_errors():
    X, w = histogram_rows(phantom(2, 0))
    with pytest.raises(EmsegError, match="criterion"):
        choose_k(X, w, w.sum(), 4, {}, criterion="aic")
    with pytest.raises(EmsegError, match="k_max"):
        choose_k(X, w, w.sum(), 1, {})
    with pytest.raises(EmsegError, match="only 1 distinct"):
        choose_k(X[:1], w[:1], w[0], 4, {})


# --- through segment --------------------------------------------------------------


def test_segment_auto_keeps_the_whole_curve():
    seg = segment(phantom(4, 0), "auto")
    assert [row["k"] for row in seg.bic_table] == list(range(2, 9))


def test_segment_warns_when_choosing_k_max():
    with pytest.warns(KChoiceWarning, match="k_max=3"):
        seg = segment(phantom(3, 0), "auto", k_max=3, init_params="kmeans", n_init=5)
    assert seg.k == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error", KChoiceWarning)
        segment(phantom(2, 0), "auto", k_max=4, init_params="kmeans", n_init=5)


# --------------------------------------------------------------------------- select_table (emseg gmm select)


def test_select_table_finds_true_k(blobs_2d):
    X, _, _ = blobs_2d
    seen = []
    rows, best = select_table(X, 5, ("full", "diag"), random_state=0, callback=seen.append)
    assert [(r["covariance_type"], r["k"]) for r in rows] == [
        (c, k) for c in ("full", "diag") for k in range(1, 6)
    ]
    assert seen == rows
    assert set(rows[0]) >= {"k", "covariance_type", "bic", "aic", "log_likelihood"}
    assert best["k"] == 3 and best is min(rows, key=lambda r: r["bic"])
    gm = GaussianMixture(3, covariance_type=best["covariance_type"], random_state=0).fit(X)
    assert best["bic"] == pytest.approx(gm.bic(X))
    assert best["aic"] == pytest.approx(gm.aic(X))


def test_select_table_bad_arguments(blobs_2d):
    X = blobs_2d[0][:4]
    with pytest.raises(EmsegError, match="k_max=5 is more than the 4 rows"):
        select_table(X, 5, ["full"])
    with pytest.raises(EmsegError, match="covariance type 'round'"):
        select_table(X, 2, ["round"])
