"""HMRF-EM on float volumes (nearly every voxel its own value, no table of unary terms)
against their uint8 copies, and the mean-field objective of the fit."""

import warnings

import numpy as np
import pytest
from scipy import ndimage
from scipy.stats import norm

import emseg
from emseg import ConvergenceWarning, GaussianMixture
from emseg.image.features import distinct_values
from emseg.image.mrf import _HMRF, _check_args, hmrf_em


def smooth_classes(shape, seed, sigma=22.0, means=(60.0, 128.0, 196.0)):
    """Float values of three smooth regions (terciles of smoothed noise) plus Gaussian
    noise, inside 0..255 so a uint8 copy is only rounded, never clipped; and the truth."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.standard_normal(shape), 2.0)
    truth = np.digitize(field, np.quantile(field, [1 / 3, 2 / 3]))
    values = np.asarray(means)[truth] + rng.normal(0.0, sigma, shape)
    return np.clip(values, 0.5, 254.5), truth


def fit(X, k, weights=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return GaussianMixture(k, random_state=0, tol=1e-8, max_iter=500).fit(
            X, sample_weight=weights
        )


def quiet_hmrf(*args, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return hmrf_em(*args, **options)


@pytest.mark.parametrize("method", ["meanfield", "icm"])
@pytest.mark.parametrize("masked", [False, True])
def test_distinct_rows_with_an_index_give_the_per_voxel_fit(method, masked):
    # float values: nearly one distinct row per voxel, so no table; the rows are put in
    # voxel order and the fit must be the one on per-voxel rows, bit for bit
    values, _ = smooth_classes((12, 20, 24), 1)
    valid = np.ones(values.shape, bool)
    if masked:
        valid[:, :, 18:] = False
        valid[3, 4, 5] = False
    unique, counts, index = distinct_values(values[valid][:, None])
    X = unique.astype(np.float64)
    assert X.shape[0] * 4 > index.shape[0]  # the case without a table
    gm_a, gm_b = fit(X, 3, counts), fit(X, 3, counts)
    a = quiet_hmrf(gm_a, X, index, values.shape, valid, beta="auto", method=method, max_iter=8)
    b = quiet_hmrf(gm_b, X[index], None, values.shape, valid, beta="auto", method=method,
                   max_iter=8)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.posteriors, b.posteriors)
    np.testing.assert_array_equal(gm_a.means_, gm_b.means_)
    np.testing.assert_array_equal(gm_a.covariances_, gm_b.covariances_)
    assert a.beta == b.beta and a.n_iter == b.n_iter
    assert (a.labels[~valid] == -1).all()


@pytest.mark.parametrize("beta", [0.6, "auto"])
def test_float_volume_and_its_uint8_copy_get_the_same_labels(beta):
    # the float volume goes the way without a table, its rounded copy through the table
    # of 256 values; rounding moves a value by at most 0.5 (noise 22), so the labels
    # may differ only at a few voxels on a knife edge
    values, truth = smooth_classes((24, 40, 40), 2)
    rounded = np.rint(values).astype(np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        as_float = emseg.segment(values, 3, beta=beta)
        as_float32 = emseg.segment(values.astype(np.float32), 3, beta=beta)
        as_uint8 = emseg.segment(rounded, 3, beta=beta)
    agree = np.mean(as_float.labels == as_uint8.labels)
    assert agree >= 0.998, agree
    # (no mask: the darkest class has the smallest label, whatever the convention)
    error_float = np.mean(as_float.labels - as_float.labels.min() != truth)
    error_uint8 = np.mean(as_uint8.labels - as_uint8.labels.min() != truth)
    assert error_float < 0.05 and abs(error_float - error_uint8) <= 0.002
    # float32 and float64 copies of the same values: nearly the same numbers
    assert np.mean(as_float32.labels == as_float.labels) >= 0.999


def _mean_field_objective(model, values):
    """The mean-field free energy of ``model`` (an ``_HMRF`` with a given beta, one
    feature, 6 neighbours of weight 1 in 3-D), up to the prior's normaliser (a constant
    while alpha and beta are): ``sum_i sum_k q_ik (log N(x_i | k) + alpha_k) + beta
    sum_{i~j} q_i . q_j + entropy(q)``, each pair once, with scipy's normal log-density."""
    gm = model.gm
    q = model.field.q[0] if values.ndim == 2 else model.field.q
    q = q.astype(np.float64)
    sd = np.sqrt(gm.covariances_.reshape(-1))
    logp = norm.logpdf(values[..., None], gm.means_[:, 0], sd)
    total = (q * (logp + model.alpha)).sum()
    for axis in range(values.ndim):
        head = [slice(None)] * (values.ndim + 1)
        tail = [slice(None)] * (values.ndim + 1)
        head[axis], tail[axis] = slice(1, None), slice(None, -1)
        total += model.beta * (q[tuple(head)] * q[tuple(tail)]).sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        total -= np.where(q > 0, q * np.log(q), 0.0).sum()
    return total


@pytest.mark.parametrize("rows", ["float per voxel", "float distinct", "uint8 table"])
def test_mean_field_objective_never_decreases(rows):
    # with beta held (after the ramp) each colour's update is the exact coordinate
    # ascent of the free energy and the M-step maximises it in the Gaussians: the
    # objective never decreases (up to float32 posteriors and the covariance floor)
    values, _ = smooth_classes((16, 20, 24), 3, sigma=45.0)
    if rows == "uint8 table":
        values = np.rint(values)
    if rows == "float per voxel":
        X, index, weights = values.reshape(-1, 1), None, None
    else:
        unique, weights, index = distinct_values(values.reshape(-1, 1))
        X = unique.astype(np.float64)
    gm = fit(X, 3, weights)
    args = _check_args(gm, X, index, values.shape, None, 0.7, "meanfield", None, None, 50,
                       1e-3, None)
    model = _HMRF(gm, args)
    assert model.table is (rows == "uint8 table")
    objective = []
    for iteration in range(1, 21):
        model.iterate()
        if iteration >= 5:  # beta has reached 0.7
            objective.append(_mean_field_objective(model, values))
    steps = np.diff(objective)
    assert (steps >= -1e-7 * abs(objective[0])).all(), steps
    assert objective[-1] - objective[0] > 1e-4 * abs(objective[0])  # it moved
