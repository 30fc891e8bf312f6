import warnings

import numba
import numpy as np
import pytest

from emseg import ConvergenceWarning, EmsegError, GaussianMixture
from emseg.image import _mrf_kernels as kern
from emseg.image.features import distinct_values
from emseg.image.mrf import _HMRF, _check_args, _PottsField, hmrf_em, neighbours, potts_sample


def noisy(truth, means, sigma, seed):
    rng = np.random.default_rng(seed)
    return np.asarray(means, dtype=np.float64)[truth] + rng.normal(0.0, sigma, truth.shape)


def two_regions(shape=(64, 64)):
    """A disc in a square (2-D) or a ball in a cube (3-D)."""
    grid = np.indices(shape) - (np.array(shape) / 2 - 0.5).reshape((-1,) + (1,) * len(shape))
    return ((grid**2).sum(0) < (0.3 * min(shape)) ** 2).astype(np.int64)


def fit(X, k, weights=None, **options):
    """A plain mixture fitted (nearly) to convergence: the starting point."""
    options.setdefault("tol", 1e-8)
    options.setdefault("max_iter", 500)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return GaussianMixture(k, random_state=0, **options).fit(X, sample_weight=weights)


def run(values, k, mask=None, **options):
    """Plain mixture then HMRF-EM on one image of scalars, per-voxel rows."""
    X = values[mask] if mask is not None else values.ravel()
    gm = fit(X[:, None], k)
    plain = gm.predict(X[:, None])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        result = hmrf_em(gm, X[:, None], None, values.shape, mask, **options)
    return result, plain, gm


# --- the model --------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["meanfield", "icm"])
def test_beta_zero_gives_the_plain_mixture_labels(method):
    truth = potts_sample((60, 70), 3, 1.0, n_sweeps=30, random_state=1)
    image = np.clip(np.rint(noisy(truth, [60, 120, 180], 30, 2)), 0, 255).astype(np.uint8)
    unique, counts, index = distinct_values(image.reshape(-1, 1))
    X = unique.astype(np.float64)
    gm = fit(X, 3, counts, max_iter=5000)
    expected = gm.predict(X)[index].reshape(image.shape)
    result = hmrf_em(gm, X, index, image.shape, beta=0, method=method, tol=0)
    np.testing.assert_array_equal(result.labels, expected)
    # beta = 0 is plain EM: the posteriors are the (updated) mixture's
    proba = gm.predict_proba(X)[index].reshape(image.shape + (3,))
    np.testing.assert_allclose(result.posteriors, proba, atol=1e-6)
    assert result.beta == 0.0 and result.converged


@pytest.mark.parametrize("per_pixel", [False, True])
def test_the_field_starts_from_the_plain_mixture(per_pixel):
    truth = potts_sample((30, 40), 3, 1.0, n_sweeps=20, random_state=2)
    image = np.clip(np.rint(noisy(truth, [60, 120, 180], 30, 3)), 0, 255).astype(np.uint8)
    unique, counts, index = distinct_values(image.reshape(-1, 1))
    X = unique.astype(np.float64)
    gm = fit(X, 3, counts)
    rows, index = (image.reshape(-1, 1).astype(np.float64), None) if per_pixel else (X, index)
    args = _check_args(gm, rows, index, image.shape, None, 1.0, "icm", None, None, 5, 1e-3, None)
    model = _HMRF(gm, args)
    assert model.table is not per_pixel
    expected = gm.predict_proba(image.reshape(-1, 1))
    np.testing.assert_allclose(model.field.q.reshape(-1, 3), expected, atol=1e-6)
    np.testing.assert_array_equal(model.field.lab.ravel(), gm.predict(image.reshape(-1, 1)))


@pytest.mark.parametrize("method", ["meanfield", "icm"])
def test_noisy_two_region_image_is_cleaned(method):
    truth = two_regions((64, 64))
    values = noisy(truth, [0.0, 1.0], 0.5, 3)
    result, plain, _ = run(values, 2, beta=1.0, method=method)
    plain_error = np.mean(plain.reshape(truth.shape) != truth)
    error = np.mean(result.labels != truth)
    assert plain_error > 0.1
    assert error < plain_error / 5
    assert result.labels.dtype == np.int32 and result.posteriors.dtype == np.float32
    np.testing.assert_allclose(result.posteriors.sum(-1), 1.0, atol=1e-5)


def test_three_dimensional_volume_is_cleaned():
    truth = two_regions((24, 28, 32))
    values = noisy(truth, [0.0, 1.0], 0.6, 4)
    result, plain, _ = run(values, 2, beta=0.7)
    assert result.labels.shape == truth.shape
    assert np.mean(result.labels != truth) < np.mean(plain.reshape(truth.shape) != truth) / 5


@pytest.mark.parametrize("neighbourhood", [4, 8])
def test_a_single_slice_volume_equals_the_image(neighbourhood):
    truth = potts_sample((40, 50), 3, 1.0, n_sweeps=30, random_state=5)
    values = noisy(truth, [0.0, 1.0, 2.0], 0.6, 6)
    as_3d = {4: 6, 8: 18}[neighbourhood]
    flat, _, _ = run(values, 3, beta=0.8, neighbourhood=neighbourhood)
    slab, _, _ = run(values[None], 3, beta=0.8, neighbourhood=as_3d)
    np.testing.assert_array_equal(slab.labels[0], flat.labels)
    np.testing.assert_array_equal(slab.posteriors[0], flat.posteriors)


def test_histogram_rows_give_the_same_fit_as_one_row_per_pixel():
    truth = potts_sample((50, 60), 3, 1.0, n_sweeps=30, random_state=7)
    image = np.clip(np.rint(noisy(truth, [60, 120, 180], 35, 8)), 0, 255).astype(np.uint8)
    unique, counts, index = distinct_values(image.reshape(-1, 1))
    X = unique.astype(np.float64)
    per_pixel = image.reshape(-1, 1).astype(np.float64)
    gm_a, gm_b = fit(X, 3, counts), fit(X, 3, counts)
    a = hmrf_em(gm_a, X, index, image.shape, beta=0.8)  # unary terms from a table
    b = hmrf_em(gm_b, per_pixel, None, image.shape, beta=0.8)  # computed per pixel
    # the same model and arithmetic; only the order of the statistics' sums differs
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_allclose(a.posteriors, b.posteriors, atol=1e-6)
    np.testing.assert_allclose(gm_a.means_, gm_b.means_, rtol=1e-9)


def test_result_does_not_depend_on_the_number_of_threads():
    truth = two_regions((20, 40, 40))
    values = noisy(truth, [0.0, 1.0], 0.7, 9)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one, _, gm_one = run(values, 2, beta=0.6, max_iter=8)
        numba.set_num_threads(before)
        many, _, gm_many = run(values, 2, beta=0.6, max_iter=8)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(one.posteriors, many.posteriors)
    np.testing.assert_array_equal(gm_one.means_, gm_many.means_)


# --- the mask ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["meanfield", "icm"])
def test_masked_voxels_are_unlabelled_and_no_ones_neighbours(method):
    truth = potts_sample((48, 60), 2, 1.0, n_sweeps=30, random_state=10)
    values = noisy(truth, [0.0, 1.0], 0.6, 11)
    mask = np.zeros(values.shape, bool)
    mask[:, :30] = True
    masked, _, _ = run(values, 2, mask=mask, beta=0.9, method=method, neighbourhood=8)
    cropped, _, _ = run(values[:, :30], 2, beta=0.9, method=method, neighbourhood=8)
    assert (masked.labels[:, 30:] == -1).all()
    assert (masked.posteriors[:, 30:] == 0).all()
    # the mask's edge acts like the image's edge: nothing leaks in from outside
    np.testing.assert_array_equal(masked.labels[:, :30], cropped.labels)
    np.testing.assert_allclose(masked.posteriors[:, :30], cropped.posteriors, atol=1e-6)


# --- ICM ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape, neighbourhood, spacing",
    [
        ((30, 40), 4, (1.0, 1.0)),
        ((30, 40), 8, (1.0, 2.5)),
        ((8, 12, 14), 6, (1.0, 1.0, 1.0)),
        ((8, 12, 14), 26, (3.0, 1.0, 1.0)),
    ],
)
def test_icm_energy_never_increases(shape, neighbourhood, spacing):
    rng = np.random.default_rng(12)
    K, n_rows = 3, 50
    logp = rng.normal(0.0, 1.5, (n_rows, K))
    valid = rng.random(shape) > 0.2
    index = rng.integers(0, n_rows, int(valid.sum()))
    field = _PottsField(shape, valid, index, n_rows, K, neighbourhood, np.array(spacing), icm=True)
    dens = logp.copy()
    top = kern.to_unary_table(dens, True)
    X, means = np.zeros((n_rows, 1)), np.zeros((K, 1))
    unary = (dens, top, np.zeros(K), np.zeros((K, 1, 1)))
    random_start = (rng.dirichlet(np.ones(K), n_rows), None, np.zeros(K), np.zeros((K, 1, 1)))
    field.start(X, means, random_start, np.zeros(K))
    alpha = np.zeros(K)
    for beta in (0.3, 1.5):
        energies = [field.energy(logp, alpha, beta)]
        for _ in range(100):
            changes = kern.sweep(
                (field.site, field.q, field.lab), (X, means), unary,
                (field.offsets, field.weights, field.axis_parity), (alpha, beta), (True, False),
                field.classes,
            )[-1]
            energies.append(field.energy(logp, alpha, beta))
            if changes == 0:
                break
        steps = np.diff(energies)
        assert (steps <= 1e-9 * abs(energies[0])).all(), steps
        assert changes == 0 and steps[-1] == 0  # it stops: no oscillation
    assert (field.lab[~valid.reshape(field.lab.shape)] == -1).all()


# --- geometry -------------------------------------------------------------------------------


def test_neighbour_weights_follow_the_spacing():
    offsets, weights = neighbours(2, 4, spacing=(1.0, 2.0))
    by_offset = {tuple(o): w for o, w in zip(offsets, weights)}
    assert by_offset[(1, 0)] == by_offset[(-1, 0)] == 1.0
    assert by_offset[(0, 1)] == by_offset[(0, -1)] == 0.5
    offsets, weights = neighbours(3, 26, spacing=(2.0, 0.5, 0.5))
    by_offset = {tuple(o): w for o, w in zip(offsets, weights)}
    assert len(by_offset) == 26
    assert by_offset[(0, 1, 0)] == 1.0  # the nearest neighbours weigh 1
    assert by_offset[(1, 0, 0)] == pytest.approx(0.25)
    assert by_offset[(0, 1, 1)] == pytest.approx(1 / np.sqrt(2))
    assert by_offset[(1, 1, 1)] == pytest.approx(0.5 / np.sqrt(4 + 0.25 + 0.25))
    # unit and isotropic spacings are the same field
    np.testing.assert_allclose(neighbours(3, 18, (0.7, 0.7, 0.7))[1], neighbours(3, 18)[1])
    assert len(neighbours(3, 6)[0]) == 6 and len(neighbours(2, 8)[0]) == 8


def test_anisotropic_spacing_smooths_less_across_the_long_axis():
    # one-pixel-high stripes: rows alternate between the classes
    truth = np.repeat((np.arange(40) % 2)[:, None], 40, axis=1)
    values = noisy(truth, [0.0, 1.0], 0.5, 13)
    along, plain, _ = run(values, 2, beta=1.0, spacing=(4.0, 1.0))  # rows far apart
    across, _, _ = run(values, 2, beta=1.0, spacing=(1.0, 4.0))  # columns far apart
    plain_error = np.mean(plain.reshape(truth.shape) != truth)
    assert np.mean(along.labels != truth) < 0.7 * plain_error
    assert np.mean(across.labels != truth) > plain_error


# --- beta="auto" and Potts samples --------------------------------------------------------------


def test_auto_beta_recovers_the_beta_of_a_potts_sample():
    beta = 0.9
    truth = potts_sample((128, 128), 3, beta, n_sweeps=100, random_state=14)
    values = noisy(truth, [0.0, 1.0, 2.0], 0.45, 15)
    result, plain, _ = run(values, 3, beta="auto", max_iter=60)
    assert abs(result.beta - beta) < 0.15
    assert np.mean(result.labels != truth) < 0.7 * np.mean(plain.reshape(truth.shape) != truth)


def smooth_classes(shape, shares, seed):
    """Smoothed noise cut into classes with the given shares (an imbalanced phantom)."""
    from scipy import ndimage

    field = ndimage.gaussian_filter(np.random.default_rng(seed).standard_normal(shape), 4.0)
    return np.digitize(field, np.quantile(field, np.cumsum(shares)[:-1]))


def error_of(labels, truth):
    return np.mean(labels.reshape(truth.shape) != truth)


@pytest.mark.parametrize("sigma", [20.0, 66.0])
def test_auto_beta_converges_and_helps_on_a_potts_phantom(sigma):
    # class spacing 95, as in benchmarks/bench_mrf.py: noise 20 is clean, 66 heavy
    truth = potts_sample((96, 96), 3, 1.1, n_sweeps=100, random_state=20)
    values = noisy(truth, [30.0, 125.0, 220.0], sigma, 21)
    result, plain, _ = run(values, 3, beta="auto")
    assert result.converged and result.n_iter < 50
    assert 0.0 < result.beta <= np.log1p(np.sqrt(3)) + 1e-12  # the cap, 4 neighbours
    error, plain_error = error_of(result.labels, truth), error_of(plain, truth)
    assert error <= plain_error + 0.01  # never more than 1 point worse
    if sigma > 50:
        assert error < plain_error / 2


def test_auto_beta_stays_bounded_on_a_clean_partition():
    # the labels of a clean image are a perfect partition: the pseudo-likelihood keeps
    # rewarding a larger beta, so without a bound beta="auto" never settles
    truth = two_regions((64, 64))
    values = noisy(truth, [0.0, 1.0], 0.05, 22)
    result, plain, _ = run(values, 2, beta="auto")
    assert result.converged
    assert result.beta == pytest.approx(np.log1p(np.sqrt(2)))
    np.testing.assert_array_equal(result.labels, plain.reshape(truth.shape))


@pytest.mark.parametrize("sigma", [30.0, 66.0])
def test_auto_beta_keeps_the_share_of_a_small_class(sigma):
    truth = smooth_classes((128, 128), [0.1, 0.45, 0.45], 23)
    values = noisy(truth, [30.0, 125.0, 220.0], sigma, 24)
    result, plain, _ = run(values, 3, beta="auto")
    assert result.converged
    shares = np.bincount(result.labels.ravel(), minlength=3) / truth.size
    true_shares = np.bincount(truth.ravel(), minlength=3) / truth.size
    assert np.abs(shares - true_shares).max() < 0.025, shares
    assert error_of(result.labels, truth) < error_of(plain, truth)
    # the prior's offsets are estimated: the small class gets the lowest
    assert result.alpha.argmin() == 0 and result.alpha.max() == 0.0


def test_potts_samples_are_seeded_and_smoother_with_beta():
    a = potts_sample((40, 40), 3, 0.8, n_sweeps=20, random_state=3)
    np.testing.assert_array_equal(a, potts_sample((40, 40), 3, 0.8, n_sweeps=20, random_state=3))
    assert a.dtype == np.int32 and set(np.unique(a)) == {0, 1, 2}

    def agreement(lab):
        pairs = [(lab[1:] == lab[:-1]).ravel(), (lab[:, 1:] == lab[:, :-1]).ravel()]
        return np.mean(np.concatenate(pairs))

    free = agreement(potts_sample((60, 60), 3, 0.0, n_sweeps=5, random_state=4))
    cold = agreement(potts_sample((60, 60), 3, 1.5, n_sweeps=60, random_state=4))
    assert abs(free - 1 / 3) < 0.03
    assert cold > 0.85
    volume = potts_sample((10, 12, 14), 2, 0.5, neighbourhood=26, n_sweeps=5)
    assert volume.shape == (10, 12, 14)


# --- arguments and side effects -----------------------------------------------------------------


def test_caller_arrays_are_left_alone_and_the_mixture_is_updated():
    truth = two_regions((32, 32))
    values = noisy(truth, [0.0, 1.0], 0.5, 16)
    X = values.reshape(-1, 1).copy()
    valid = np.ones(values.shape, bool)
    valid[0] = False
    rows = X[valid.ravel()]
    kept = rows.copy(), valid.copy()
    gm = fit(rows, 2)
    before = gm.means_.copy()
    hmrf_em(gm, rows, None, values.shape, valid, beta=1.0)
    np.testing.assert_array_equal(rows, kept[0])
    np.testing.assert_array_equal(valid, kept[1])
    assert not np.array_equal(gm.means_, before)
    assert np.all(np.diff(gm.means_[:, 0]) > 0)


def test_running_out_of_iterations_warns():
    truth = two_regions((32, 32))
    values = noisy(truth, [0.0, 1.0], 0.8, 17)
    gm = fit(values.reshape(-1, 1), 2)
    with pytest.warns(ConvergenceWarning, match="raise max_iter"):
        result = hmrf_em(gm, values.reshape(-1, 1), None, values.shape, beta=1.0, max_iter=3)
    assert not result.converged and result.n_iter == 3 and result.history.shape == (3,)


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(beta=-0.1), "beta must be >= 0"),
        (dict(beta="strong"), "beta must be a number"),
        (dict(method="gibbs"), "method must be 'meanfield' or 'icm'"),
        (dict(neighbourhood=6), "neighbourhood must be 4 or 8 for a 2-D image, got 6"),
        (dict(neighbourhood=8, spacing=(1.0, 2.0, 3.0)), "spacing must be 2 positive numbers"),
        (dict(spacing=(1.0, 0.0)), "spacing must be 2 positive numbers"),
        (dict(max_iter=-1), "max_iter must be >= 0"),
        (dict(valid=np.ones((5, 5), bool)), "valid has shape"),
    ],
)
def test_bad_arguments_are_refused(options, message):
    X = np.linspace(0.0, 1.0, 64)[:, None]
    gm = fit(X, 2)
    with pytest.raises(EmsegError, match=message):
        hmrf_em(gm, X, None, (8, 8), **options)


def test_bad_rows_and_index_are_refused():
    X = np.linspace(0.0, 1.0, 64)[:, None]
    gm = fit(X, 2)
    with pytest.raises(EmsegError, match="one row per valid voxel"):
        hmrf_em(gm, X[:10], None, (8, 8))
    with pytest.raises(EmsegError, match="index must lie in 0..9"):
        hmrf_em(gm, X[:10], np.arange(64), (8, 8))
    with pytest.raises(EmsegError, match="neighbourhood must be 6, 18 or 26"):
        hmrf_em(gm, X, None, (4, 4, 4), neighbourhood=4)
    with pytest.raises(EmsegError, match="not fitted"):
        hmrf_em(GaussianMixture(2), X, None, (8, 8))


@pytest.mark.parametrize(
    "change, match",
    [({"shape": ("a", 4)}, "shape"), ({"X": np.array([["x"]] * 16)}, "X must hold numbers")],
)
def test_hmrf_em_refuses_non_numbers(change, match):
    from emseg import GaussianMixture
    from emseg.image.mrf import hmrf_em

    X = np.linspace(0, 1, 16)[:, None]
    gm = GaussianMixture(2, random_state=0).fit(X)
    args = dict(X=X, index=None, shape=(4, 4)) | change
    with pytest.raises(EmsegError, match=match):
        hmrf_em(gm, args["X"], args["index"], args["shape"])
