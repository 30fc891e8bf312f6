"""Intensity non-uniformity (a bias field) estimated inside EM, as FSL FAST, SPM and ANTs
Atropos do.

The model (Wells et al. 1996; Guillemaud & Brady 1997; Zhang, Brady & Smith 2001, FAST):
each channel ``c`` of voxel ``i`` is ``y_ic = B_ic x_ic + noise``, with ``x`` drawn from
its class's Gaussian and ``B`` a smooth multiplicative field, one per channel. The class
Gaussians are diagonal over the channels and the noise is additive (not scaled by the
field), as thermal noise in MRI is, so voxel i of class k is ``N(B_ic mu_kc, s2_kc)``.

:func:`estimate_field` fits that model by a generalised EM started from given posteriors
(the plain mixture's), each iteration

- an M-step for the classes given the field: ``pi_k``, and per channel ``mu_kc = sum_i
  w_ik B_ic y_ic / sum_i w_ik B_ic^2`` and ``s2_kc`` the weighted mean squared residual
  (with a floor of ``(1e-3 x the channel's range)^2``);
- a field step: the field that maximises the expected log-likelihood voxel by voxel is
  ``r_i = sum_k w_ik y_i mu_k / s2_k / a_i`` with weight ``a_i = sum_k w_ik mu_k^2 /
  s2_k`` (a weighted least-squares fit of ``y`` by the class means); the smooth field is
  its normalised convolution of order 1 (Knutsson & Westin 1993): at each point, the
  value of the plane fitted to ``r`` by least squares with weights ``a`` times a
  Gaussian of ``fwhm`` mm. Voxels outside the mask have ``a = 0`` and do not pull the
  field; the plane follows a trend up to the mask's edge, where the order-0 ratio
  ``S(a r) / S(a)`` is pulled towards the inside (by about the field's slope times
  sigma). The plane's slope is damped
  where little weight lies near (outside the mask, or a background of mean 0), so the
  field levels off there instead of extrapolating. The sums run on a grid coarser by
  about sigma / 2 voxels per axis (block sums, then the Gaussian, then linear
  interpolation back), so a step costs a few passes over the voxels whatever ``fwhm``;
  the field is kept within 0.05 .. 20;
- an E-step: posteriors and the mean log-likelihood per voxel.

A weak prior pulls the field towards its mean (1) with the weight of
:data:`PRIOR_WEIGHT` (0.2 %) of the average data weight ``a`` in each Gaussian window,
added to the normalised convolution's sums. Where the data say enough about the field,
it shrinks the field by about 0.2 %; where they say almost nothing (a class of mean
near 0 has ``a`` near 0: a dark coat, a black background without a mask), it keeps the
field from following the image's content. Without it, skimage's ``camera`` (no bias
field, no mask, FWHM 40 px) drove the field to 0.13 .. 1.36 in steps of up to 0.8 per
iteration, along a path so unstable that the float32 rounding of the same picture
stored as ``float32 x 0.1`` changed the field by 0.5 and half the labels. With the
prior the field stays within 0.86 .. 1.13 (at 40 px) and every stored copy of 14 of
skimage's pictures (uint8, uint16 x 257, float32 x 0.1, x 1e-3, x 7.3) gives the same
field to 1e-4; the phantoms of ``benchmarks/bench_bias.py`` are unchanged to 0.04 points of
misclassification (weights 0.005 and 0.05 cost 0.05 and 0.27 points on the 2-D phantom
with a 40 % field). See benchmarks/README.md, "bias=True and storage".

The model is multiplicative: values stored with an offset (uint16 + 1000, a scanner's
or camera's pedestal) are a different image to it, as they are to N4, and give a
different field. Subtract a known offset first.

The smoothed field is not the exact maximiser over smooth fields, so the step is
checked: the field moves ``relax`` times the step (over-relaxation, doubled up to 4
while the log-likelihood rises, as adaptive over-relaxed EM; the plain EM converges
slowly here), else the plain step, halved (three times at most) while the
log-likelihood falls, else not at all, which leaves the classes' M-step, an exact EM
step. The recorded log-likelihood therefore never decreases. Once accepted, the field
is scaled to mean 1 (the next M-step's means absorb the scale, which leaves the
likelihood unchanged). Stops when the field moves by less than ``tol`` anywhere,
after ``max_iter`` iterations otherwise.

The field varies over many voxels, so it is fitted on every ``stride``-th voxel per
axis (about sigma / 4: 4 for FWHM 40 mm on 1 mm voxels, 64 times fewer voxels) and
evaluated on every voxel at the end (the last field step's coarse cells, interpolated).
A 4-million-voxel volume takes about 2 s.

Colour images: the field is estimated on the values as stored, one per channel, before
any colour conversion (Lab or HSV features are computed from the restored values). For
sRGB-encoded photos a multiplicative illumination change stays multiplicative under
the encoding's power law (``(b x)^(1/2.2) = b^(1/2.2) x^(1/2.2)``), so the model holds
there too, with a smaller field.

Smoothness. ``fwhm`` is the FWHM in mm of the Gaussian (FAST's ``-l``, whose default is
20 mm). Without a voxel size (a 2-D image) a pixel counts as 1 mm. The default here,
:data:`DEFAULT_FWHM`, is 40 mm, measured on the phantoms of ``benchmarks/bench_bias.py``
with a 40 % field (field correlation with the truth / misclassification %, the image
without a field giving 6.6 and 6.4 %): 2-D 256 x 256 at 1 mm, FWHM 20: 0.89 / 9.1,
40: 0.985 / 7.5, 60: 0.975 / 7.6; 3-D 64 x 80 x 64 at 2 mm, 20: 0.93 / 7.8, 40: 0.96
/ 7.2, 60: 0.93 / 7.3. At 20 mm the field follows the tissue shapes (4 mm here) more.

Without a voxel size (a PNG, a JPEG, an uncalibrated TIFF) a pixel's size in mm is
unknown, and 40 pixels would be a smaller and smaller part of a larger picture: on a
12-megapixel photo (4000 px wide) the field followed the picture's content down to
the clip at 0.05 and took 22 s. So the default there is 40 px per 256 px of the longest
side (:data:`REFERENCE_SIDE`; the 2-D phantom's proportion, 16 % of the side), and never
less than 40 px: on that photo the field stays within 0.60 .. 1.28 and takes 1.4 s.
"""

from dataclasses import dataclass

import numpy as np

from .._shared.errors import EmsegError
from .._shared.validation import check_int
from .features import split_channels

DEFAULT_FWHM = 40.0  # mm (see the module docstring)
REFERENCE_SIDE = 256  # without a voxel size, the default FWHM is 40 px per 256 px
_SIGMA_PER_FWHM = 1.0 / np.sqrt(8.0 * np.log(2.0))
PRIOR_WEIGHT = 0.002  # the field's prior, in average data weights (module docstring)
_MAX_HALVINGS = 3
_MAX_RELAX = 4.0
_FLOOR = 1e-3  # noise floor, relative to each channel's range
_MIN_SAMPLES = 512  # fewer valid voxels in the subsample: use every voxel
_FIELD_RANGE = (0.05, 20.0)  # the field is kept within these


@dataclass
class BiasField:
    """What :func:`estimate_field` returns.

    ``field``: float32, the image's spatial shape + (C,), one field per channel, mean 1
    inside the mask and 1 outside it. ``history``: the mean log-likelihood per voxel
    after each iteration (never decreasing; with ``fixed_posteriors``, the expected
    complete-data log-likelihood); ``n_iter``, ``converged``: as they sound;
    ``fwhm``: the smoothness used, in mm.
    """

    field: np.ndarray
    history: np.ndarray
    n_iter: int
    converged: bool
    fwhm: float


def check_fwhm(fwhm, shape=None, spacing=None):
    """``fwhm`` (the bias field's smoothness in mm) as a float > 0; an
    :class:`~emseg.EmsegError` naming the value otherwise. None means
    :data:`DEFAULT_FWHM`, or, for an image of spatial ``shape`` without a voxel size
    (``spacing`` None), :data:`DEFAULT_FWHM` pixels per :data:`REFERENCE_SIDE` pixels of
    its longest side, at least :data:`DEFAULT_FWHM` (see the module docstring)."""
    if fwhm is None:
        if spacing is not None or shape is None:
            return DEFAULT_FWHM
        return DEFAULT_FWHM * max(1.0, max(shape) / REFERENCE_SIDE)
    try:
        value = float(fwhm)
    except (TypeError, ValueError):
        raise EmsegError(f"bias_fwhm must be a number of mm > 0, got {fwhm!r}") from None
    if not np.isfinite(value) or value <= 0:
        raise EmsegError(f"bias_fwhm must be a number of mm > 0, got {fwhm!r}")
    return value


def estimate_field(values, valid, posteriors, *, spacing=None, fwhm=None, max_iter=50,
                   tol=1e-3, fixed_posteriors=False, callback=None):
    """Fit the bias-field model of the module docstring.

    ``values``: the image's spatial shape (2-D or 3-D) + (C,) channels, as stored (any
    real dtype). ``valid``: bool of the spatial shape, the voxels that take part (None:
    all; they must be finite). ``posteriors``: float, spatial shape + (K,), the starting
    class posteriors (e.g. :attr:`Segmentation.posteriors` of the plain fit), or the
    same on the voxels of :func:`field_sample` only.
    ``spacing``: voxel size per axis in mm (None: 1 mm). ``fwhm``: the field's
    smoothness in mm (None: :data:`DEFAULT_FWHM`). Stops when the field moves by less
    than ``tol`` (relative) or after ``max_iter`` iterations. ``callback(iteration,
    loglik)`` is called after every iteration. Returns a :class:`BiasField`.

    ``fixed_posteriors``: keep the given posteriors (e.g. an MRF's, which this model's
    E-step would lose) and alternate only the classes' M-step and the field step; the
    history is then that of the expected complete-data log-likelihood given them, and
    the field steps are taken whole.

    The field is fitted on a subsample of the voxels and evaluated on all of them
    (see the module docstring).
    """
    values = np.asarray(values)
    shape = values.shape[:-1]
    fwhm = check_fwhm(fwhm, shape, spacing)
    max_iter = check_int(max_iter, "max_iter", 1)
    sample, stride = _sample(shape, valid, spacing, fwhm)
    sub_valid = None if valid is None else np.asarray(valid, dtype=bool)[sample]
    posteriors = np.asarray(posteriors)
    if posteriors.shape[:-1] == shape:
        posteriors = posteriors[sample]
    if posteriors.shape[:-1] != values[sample].shape[:-1]:
        raise EmsegError(
            f"posteriors have shape {posteriors.shape}; give them on the image's spatial "
            f"shape {shape} or on field_sample's voxels, plus one axis of classes"
        )
    y, floor = _scaled_rows(values[sample], sub_valid)
    w = _rows(posteriors, sub_valid)
    sigma = _sigma_voxels(fwhm, spacing, len(shape))
    smoother = _Smoother(values[sample].shape[:-1], sub_valid, sigma / stride)
    B = np.ones_like(y)
    history, converged = [], False
    loglik, relax = -np.inf, 1.0
    for n_iter in range(1, max_iter + 1):
        theta = _m_step(y, B, w, floor)
        target = _field_step(y, w, theta, smoother)
        if fixed_posteriors:
            new, w_new, loglik_new = target, w, _expected(y, target, w, theta)
        else:
            new, w_new, loglik_new, relax = _accept(y, B, target, theta, loglik, relax)
        new /= new.mean(0)  # mean 1; the next M-step's means absorb the scale
        moved = float(np.abs(new - B).max())
        B, w, loglik = new, w_new, loglik_new
        history.append(loglik)
        if callback is not None:
            callback(n_iter, loglik)
        if moved < tol:
            converged = True
            break
    # every voxel's field: the last field step's coarse cells, interpolated
    theta = _m_step(y, B, w, floor)
    field = _full_field(y, w, theta, smoother, shape, stride, valid)
    return BiasField(field, np.asarray(history), n_iter, converged, fwhm)


def field_sample(shape, valid=None, spacing=None, fwhm=None):
    """The slices (one per axis) of the voxels :func:`estimate_field` fits the field
    on, for an image of spatial ``shape`` (see the module docstring). Its
    ``posteriors`` may be given on these voxels only."""
    return _sample(tuple(shape), valid, spacing, check_fwhm(fwhm, tuple(shape), spacing))[0]


def _sample(shape, valid, spacing, fwhm):
    if len(shape) not in (2, 3):
        raise EmsegError(f"the bias field needs a 2-D image or 3-D volume, got shape {shape}")
    sigma = _sigma_voxels(fwhm, spacing, len(shape))
    stride = np.maximum(1, np.floor(sigma / 4.0)).astype(int)
    sample = tuple(slice(None, None, int(t)) for t in stride)
    if valid is None:
        n_sampled = int(np.prod([len(range(n)[s]) for n, s in zip(shape, sample)]))
    else:
        n_sampled = int(np.count_nonzero(np.asarray(valid)[sample]))
    if stride.max() > 1 and n_sampled < _MIN_SAMPLES:  # a small image or mask: all
        stride[:] = 1
        sample = tuple(slice(None) for _ in shape)
    return sample, stride


def _rows(grid, valid):
    """(N, C) rows of the valid voxels of a spatial shape + (C,) array."""
    flat = grid.reshape(-1, grid.shape[-1])
    return np.ascontiguousarray(flat if valid is None else flat[valid.ravel()],
                                dtype=np.float64)


def _scaled_rows(values, valid):
    """The valid voxels' values divided by each channel's largest magnitude (the field
    and the likelihood do not depend on the data's units), and the noise floor."""
    y = _rows(values, valid)
    low, high = y.min(0), y.max(0)
    scale = np.maximum(np.abs(low), np.abs(high))
    scale[scale == 0] = 1.0
    y /= scale
    floor = (_FLOOR * np.maximum(high - low, 1e-12 * scale) / scale) ** 2
    return y, floor


def _full_field(y, w, theta, smoother, shape, stride, valid):
    """The field on every voxel of ``shape``, float32, mean 1 inside ``valid`` per
    channel and 1 outside."""
    _, mu, s2 = theta
    C = y.shape[1]
    out = np.ones(shape + (C,), dtype=np.float32)
    taps = [_linear_taps(n, f, t) for n, f, t in zip(shape, smoother.factor, stride)]
    for c in range(C):
        gain = mu[:, c] / s2[:, c]
        ratio = smoother.coarse_field((w @ gain) * y[:, c], w @ (gain * mu[:, c]))
        field = np.clip(_interpolate(ratio, taps), *_FIELD_RANGE)
        inside = field if valid is None else field[valid]
        field /= inside.mean()
        out[..., c] = field if valid is None else np.where(valid, field, 1.0)
    return out


def restore(image, field, channel_axis="auto", multichannel=False):
    """``image`` divided by ``field`` (spatial shape + (C,), as :class:`BiasField` holds
    it), float32, in the image's own layout: the same shape, channel axis and alpha
    (which is not divided). NaN stays NaN."""
    arr = np.asarray(image)
    values, _, alpha = split_channels(arr, channel_axis, multichannel)
    out = np.divide(values, field, dtype=np.float32)
    if alpha is not None:
        out = np.concatenate([out, alpha[..., None].astype(np.float32)], axis=-1)
    if arr.ndim < values.ndim:  # a grey image without a channel axis
        return out[..., 0]
    if channel_axis not in ("auto", None, -1, arr.ndim - 1):
        out = np.moveaxis(out, -1, channel_axis)
    return out


def _sigma_voxels(fwhm, spacing, ndim):
    if spacing is None:
        spacing = np.ones(ndim)
    spacing = np.asarray(spacing, dtype=np.float64).ravel()
    if spacing.shape[0] != ndim or not np.isfinite(spacing).all() or (spacing <= 0).any():
        raise EmsegError(f"spacing must be {ndim} positive numbers, got {spacing.tolist()}")
    return fwhm * _SIGMA_PER_FWHM / spacing


def _m_step(y, B, w, floor):
    """``(log_pi, mu, s2)``: the classes' parameters given the field ``B`` and the
    posteriors ``w`` (see the module docstring)."""
    nk = w.sum(0) + 1e-300
    K, C = w.shape[1], y.shape[1]
    mu = np.empty((K, C))
    s2 = np.empty((K, C))
    for c in range(C):
        b, v = B[:, c], y[:, c]
        mu[:, c] = (w.T @ (b * v)) / np.maximum(w.T @ (b * b), 1e-300)
        r = v[:, None] - b[:, None] * mu[None, :, c]  # centred: each class's residuals
        r *= r
        r *= w
        s2[:, c] = np.maximum(r.sum(0) / nk, floor[c])
    return np.log(nk / nk.sum()), mu, s2


def _field_step(y, w, theta, smoother):
    """The smoothed weighted least-squares field given the classes and posteriors."""
    _, mu, s2 = theta
    out = np.empty_like(y)
    for c in range(y.shape[1]):
        gain = mu[:, c] / s2[:, c]
        # the pointwise field is r = (w @ gain) y / a, with weight a
        out[:, c] = smoother((w @ gain) * y[:, c], w @ (gain * mu[:, c]))
    return np.clip(out, *_FIELD_RANGE, out=out)


def _e_step(y, B, theta):
    """Posteriors and the mean log-likelihood per voxel under the field ``B``."""
    log_pi, mu, s2 = theta
    K = mu.shape[0]
    logp = np.empty((y.shape[0], K))
    for k in range(K):
        r = (y - B * mu[k]) ** 2 / s2[k]
        logp[:, k] = log_pi[k] - 0.5 * (r.sum(1) + np.log(2 * np.pi * s2[k]).sum())
    top = logp.max(1)
    np.subtract(logp, top[:, None], out=logp)
    np.exp(logp, out=logp)
    total = logp.sum(1)
    logp /= total[:, None]
    return logp, float(np.mean(top + np.log(total)))


def _expected(y, B, w, theta):
    """The expected complete-data log-likelihood per voxel given the posteriors ``w``."""
    log_pi, mu, s2 = theta
    total = 0.0
    for k in range(mu.shape[0]):
        r = ((y - B * mu[k]) ** 2 / s2[k]).sum(1)
        logp = log_pi[k] - 0.5 * (r + np.log(2 * np.pi * s2[k]).sum())
        total += float(w[:, k] @ logp)
    return total / y.shape[0]


def _accept(y, old, target, theta, loglik, relax):
    """``(field, posteriors, loglik, relax)`` after the field step from ``old`` towards
    ``target``: over-relaxed by ``relax`` (doubled, up to :data:`_MAX_RELAX`, while
    the log-likelihood rises), else the plain step, halved while it lowers the
    log-likelihood, else no step (see the module docstring)."""
    if relax > 1:
        step = old + relax * (target - old)
        if step.min() > 0:
            w, new = _e_step(y, step, theta)
            if new >= loglik:
                return step, w, new, min(2 * relax, _MAX_RELAX)
    step = target
    for _ in range(_MAX_HALVINGS + 1):
        w, new = _e_step(y, step, theta)
        if new >= loglik:
            return step, w, new, 2.0
        step = 0.5 * (old + step)
    w, new = _e_step(y, old, theta)
    return old, w, new, 1.0


class _Smoother:
    """The normalised Gaussian convolution ``S(a r) / S(a)`` of values at the valid
    voxels, on a coarser grid (see the module docstring)."""

    def __init__(self, shape, valid, sigma):
        self.shape = shape
        self.valid = None if valid is None else valid.ravel()
        self.factor = np.maximum(1, np.floor(sigma / 2.0)).astype(int)
        self.coarse = tuple(-(-n // f) for n, f in zip(shape, self.factor))
        # a block sum blurs like a box of the block's width, interpolating back like a
        # triangle: what is left of sigma goes to the Gaussian, in coarse voxels
        left = sigma**2 - self.factor.astype(float) ** 2 / 4.0
        self.sigma = np.sqrt(np.maximum(left, 0.25)) / self.factor
        self.sigma_coarse_sq = float(np.mean(self.sigma**2))
        self.taps = [_linear_taps(n, f) for n, f in zip(shape, self.factor)]

    def __call__(self, numerator, weight):
        full = _interpolate(self.coarse_field(numerator, weight), self.taps).ravel()
        return full if self.valid is None else full[self.valid]

    def coarse_field(self, numerator, weight):
        """The smoothed ratio on the coarse grid's cells."""
        sums = []
        for values in (numerator, weight):
            grid = np.zeros(int(np.prod(self.shape)))
            if self.valid is None:
                grid[:] = values
            else:
                grid[self.valid] = values
            sums.append(self._block_sums(grid.reshape(self.shape)))
        return self._local_linear(*sums)

    def _local_linear(self, num, den):
        """At each coarse cell, the value of the weighted least-squares plane through
        the cells' ratios ``num / den`` (weights ``den`` times the Gaussian): normalised
        convolution of order 1, which follows a trend up to the mask's edge where the
        order-0 ratio ``S(num) / S(den)`` is pulled towards the inside."""
        from scipy.ndimage import gaussian_filter

        def smooth(a):
            return gaussian_filter(a, self.sigma, mode="constant", truncate=3.0)

        ndim = num.ndim
        x = np.indices(num.shape, dtype=np.float64)
        s0 = smooth(den)
        t0 = smooth(num)
        s1 = [smooth(den * x[j]) - x[j] * s0 for j in range(ndim)]
        t1 = [smooth(num * x[j]) - x[j] * t0 for j in range(ndim)]
        n = ndim + 1
        M = np.empty(num.shape + (n, n))
        v = np.empty(num.shape + (n,))
        M[..., 0, 0], v[..., 0] = s0, t0
        for j in range(ndim):
            M[..., 0, j + 1] = M[..., j + 1, 0] = s1[j]
            v[..., j + 1] = t1[j]
            for l in range(j, ndim):
                sxx = smooth(den * x[j] * x[l])
                sxx = sxx - x[j] * (s1[l] + x[l] * s0) - x[l] * (s1[j] + x[j] * s0)
                sxx = sxx + x[j] * x[l] * s0
                M[..., j + 1, l + 1] = M[..., l + 1, j + 1] = sxx
        tiny = 1e-9 * s0.max()
        # the slope is damped where little weight lies near: far from the data (outside
        # the mask, or in a background of mean 0) the field levels off, not extrapolates
        typical = s0[s0 > tiny].mean() if (s0 > tiny).any() else 1.0
        ridge = (1e-3 * s0 + 0.05 * typical) * self.sigma_coarse_sq + tiny
        for j in range(ndim):
            M[..., j + 1, j + 1] += ridge
        # the prior: PRIOR_WEIGHT x the average weight of data, pulling to the mean
        prior = tiny + PRIOR_WEIGHT * typical
        M[..., 0, 0] += prior
        mean = num.sum() / den.sum()
        v[..., 0] += prior * mean
        ratio = np.linalg.solve(M, v[..., None])[..., 0, 0]
        empty = s0 <= tiny
        ratio[empty] = mean
        return ratio

    def _block_sums(self, grid):
        pad = [(0, c * f - n) for n, c, f in zip(self.shape, self.coarse, self.factor)]
        if any(p[1] for p in pad):
            grid = np.pad(grid, pad)
        split = []
        for c, f in zip(self.coarse, self.factor):
            split += [c, f]
        return grid.reshape(split).sum(axis=tuple(range(1, 2 * len(self.shape), 2)))



def _interpolate(coarse, taps):
    """Linear interpolation of coarse cells to fine voxels, one axis at a time."""
    out = coarse
    for axis, (lo, hi, frac) in enumerate(taps):
        shape = [1] * out.ndim
        shape[axis] = -1
        f = frac.reshape(shape)
        out = np.take(out, lo, axis=axis) * (1.0 - f) + np.take(out, hi, axis=axis) * f
    return out


def _linear_taps(n, factor, stride=1):
    """For each of ``n`` voxels, the two coarse cells around it and the weight of the
    second, for linear interpolation between cell centres. A cell is a block of
    ``factor`` voxels of the grid sampled every ``stride`` voxels."""
    cells = -(-(-(-n // stride)) // factor)
    position = (np.arange(n) / stride + 0.5) / factor - 0.5  # in coarse cell units
    position = np.clip(position, 0.0, cells - 1)
    lo = np.floor(position).astype(np.intp)
    hi = np.minimum(lo + 1, cells - 1)
    return lo, hi, position - lo
