"""Spatial smoothing: EM for a hidden Potts (Markov random field) model, 2-D and 3-D.

The labels carry a Potts prior, ``p(z) ∝ exp(beta sum_{i~j} w_ij [z_i = z_j])``, and
each voxel's value is drawn from its class's Gaussian. Fitting starts from a plain
mixture fit and alternates

- an E-step over the grid, either **mean field** (Celeux, Forbes & Peyrard 2003: each
  voxel's posterior is computed with its neighbours' labels replaced by their current
  posteriors) or **ICM** (Besag 1986; Zhang, Brady & Smith 2001: each voxel takes its
  most probable label given its neighbours', and the M-step uses the soft posterior of
  that same conditional). Updates go colour by colour (a checkerboard, or eight colours
  with diagonal neighbours), so a voxel never changes together with a neighbour: ICM
  never raises the energy, neither method oscillates, and the result does not depend
  on the number of threads;
- an M-step: the Gaussians from the posterior-weighted statistics through
  :func:`update_parameters` (covariance floor and re-seeding shared with the plain
  fit), and with ``beta="auto"`` one Newton step on the mean-field pseudo-likelihood
  (Celeux, Forbes & Peyrard) in ``beta`` and the class offsets ``alpha`` (below).

The prior of voxel i is ``softmax(alpha + beta s_i)``, ``s_ik`` the weighted count (ICM)
or mean-field share of its neighbours in class k.

Class weights with a given beta > 0: ``alpha = 0``, the neighbourhood's prior alone, as
in FSL FAST, ANTs Atropos and DIPY. Global weights re-estimated from the class shares
feed on themselves (a class that loses voxels loses prior, then more voxels). On the
Potts images of ``benchmarks/bench_mrf.py`` at noise 95, the variants we tried that keep
global weights (re-estimated shares, a pseudo-likelihood field, weights frozen at the
mixture's) left 0.7 to 1.4 times the plain mixture's error, the neighbourhood-only
prior about a quarter of it. With ``beta = 0`` there is no field and the model is the
plain mixture, weights included, so its fit is plain EM (and ``beta`` just above 0 is
the mixture with equal weights: the one discontinuity of this choice). The price, which
``"auto"`` does not pay: equal offsets favour the smaller classes, which grow
(``benchmarks/beta_auto.py``, beta 0.5: a 10 % class becomes 12.1 % at noise 30 and
27 % at noise 66; on ``skimage.data.moon`` the classes of 2.6 / 7.6 / 89.8 % become
15 / 45 / 40 %).

``beta="auto"``. Three measured choices (``python benchmarks/beta_auto.py``; its cases:
Potts phantoms at noise 20 to 95 on class spacing 95, a 10 / 45 / 45 % phantom, a 3-D
brain-like phantom with partial volume, the geometry of ``camera`` re-rendered, and the
real ``camera``, ``coins``, ``moon`` and DIPY's T1 slice):

- beta is bounded by ``log(1 + sqrt(K))`` per unit of a 4-neighbourhood's total weight
  (1.005 for K = 3 with 4 neighbours, 0.67 with 6 in 3-D): the critical coupling of the
  K-state Potts model on the square lattice, above which the prior says that one class
  fills the image. Unbounded, the pseudo-likelihood estimate runs away wherever the
  labels are nearly a clean partition (every voxel agrees with most of its neighbours,
  so a larger beta always fits them better, and the smoother labels it gives fit a
  still larger one). Before this bound (and without alpha): beta 22.7 after 50
  iterations on the 10 % phantom at noise 30, 23.6 on ``coins``, 14.5 on the T1 slice,
  none converged. Bounded, every case converges (4 to 38 iterations); the estimate
  reaches the bound on all of them but stops below it where the data say so (a Potts
  sample of beta 0.9 gives 0.9). On the Potts phantoms the unbounded estimate was
  right (1.08 to 1.11, the truth 1.1) and its errors were those of the bound within
  1.2 points (noise 95: 12.2 then, 13.4 now; of that, 0.7 points come from alpha).
- the offsets ``alpha`` are estimated with beta (the same pseudo-likelihood, started
  from the mixture's log weights, so beta -> 0 is the plain mixture): without them the
  prior favours small classes as above (``moon`` 7.1 / 58.6 / 34.4 %, not converged; the
  10 % class 11.3 % at noise 66), with them 2.2 / 15.7 / 82.1 % and 10.3 %, and the
  brain-like phantom's CSF 9.5 % (truth 8.5, neighbourhood-only 10.3).
- alpha's step is taken given beta's (bounded) step, not from the joint Newton step:
  the joint step's alpha assumes beta moved as far as it wanted, and once beta sits at
  the bound that pushed ``moon`` to 7.8 / 52.1 / 40.1 % and the 10 % class to 12.4 %.
  Starting alpha at 0 instead of the mixture's weights: the same on the phantoms, worse
  on ``moon`` (5.3 / 36.6 / 58.1 %).

Measured (256 x 256 unless said; misclassification in %, plain -> auto): Potts noise 20
1.14 -> 0.35, 47 24.8 -> 5.6, 66 37.9 -> 8.6, 95 47.3 -> 13.4; 10 % phantom noise 30
7.1 -> 1.0, 66 43.5 -> 4.5; brain-like 96^3 5.8 -> 3.9; ``camera`` geometry noise 20
1.17 -> 0.20, 66 38.6 -> 4.9. Not measured: a real volume with reference tissue maps
(none is bundled; the brain-like phantom stands in for one).

Continuation. A given ``beta`` is raised linearly from 0 over the first ``_RAMP``
iterations, and ``"auto"`` starts from a small value: full smoothing applied to a poor
initial fit locks a class out before its parameters can move (at noise 95 and beta 1,
0.9 to 1.2 times the plain mixture's error without the ramp, about a quarter with it).

Stopping. The mean-field log-likelihood is not monotone and is nearly flat while the
parameters still drift (heavily overlapping classes), so the fit stops on the labels
instead: when at most a fraction ``tol`` of the voxels changed label in an iteration
(and beta has reached its value; with ``"auto"``, beta moved less than 0.01 and each
alpha_k less than 0.01 in the iteration). The E-step keeps its state (the posteriors) from one
iteration to the next, so there are no restarts; the loop is written here rather than
in :mod:`emseg.mixture.em`, whose stopping rule is on the log-likelihood.

The unary terms use the histogram trick: the log-density of each distinct feature row
is computed once per iteration and looked up per voxel. Where rows rarely repeat (float
volumes: nearly every voxel its own value; fewer than four voxels per row) there is no
table: the rows are gathered into voxel order once (8 bytes per voxel and feature) and
each sweep computes the log-density from them as it goes. Reading the value-sorted
distinct rows through the index instead cost a cache miss per voxel: on a 96^3 float
volume one thread took 280 ns per voxel and iteration that way, 100 ns in voxel order,
against 70 to 90 for its uint8 copy through the table (``benchmarks/bench_mrf.py --part
4``). A table of per-voxel terms computed once per iteration would save nothing for
mean field, which sweeps once per iteration (ICM sweeps up to ``_ICM_SWEEPS`` times;
its float sweeps measured 1.2 to 1.4 times its uint8 ones, so it was not tried).
"""

import warnings
from dataclasses import dataclass

import numpy as np

from ..image import _mrf_kernels as kern
from .._shared.errors import ConvergenceWarning, EmsegError
from .._shared.validation import as_generator, check_beta, check_float, check_int
from ..mixture.gaussian import GaussianStats, check_allocation, kernel_params, weighted_log_prob
from ..mixture.gaussian_mixture import reorder_components, update_parameters
from ..mixture.training_data import TrainingData

METHODS = ("meanfield", "icm")
NEIGHBOURHOODS = {2: (4, 8), 3: (6, 18, 26)}
_EMPTY = np.empty(0)
_UNARY_CHUNK = 1 << 20
_MAX_BETA_STEP = 0.5  # largest change of beta in one M-step (a trust region)
_RAMP = 5  # iterations over which a given beta is raised from 0 to its value
_BETA_START = 0.1  # where beta="auto" starts
_BETA_TOL = 0.01  # with beta="auto", converged also needs beta to move less than this
_MIN_LOG_WEIGHT = -30.0
_MAX_ALPHA_STEP = 1.0  # largest change of an alpha_k in one M-step (a trust region)
_ALPHA_TOL = 0.01  # with beta="auto", converged also needs alpha to move less than this
_ICM_SWEEPS = 10  # per E-step at most; usually stable after 2-4


def _beta_cap(n_classes, weights):
    """The largest beta "auto" may reach: the critical coupling of the K-state Potts
    model on the square lattice, ``log(1 + sqrt(K))``, per unit of a 4-neighbourhood's
    total weight (see the module docstring)."""
    return float(np.log1p(np.sqrt(n_classes)) * 4.0 / weights.sum())


@dataclass
class MRFResult:
    """What :func:`hmrf_em` returns.

    ``labels``: int32 of the image's shape, -1 outside ``valid``. ``posteriors``:
    float32, shape + (K,), 0 outside ``valid``. ``beta``: the value used (estimated when
    ``"auto"``). ``alpha``: the class offsets of the prior ``softmax(alpha + beta s)``,
    largest 0 (the log mixture weights when ``beta`` is 0; zeros for a given ``beta`` >
    0; estimated with ``"auto"``). ``history``: the mean-field log-likelihood per voxel of the parameters
    each iteration started from; ``changed``: the fraction of the voxels that changed
    label in each iteration. ``n_iter``, ``converged``, ``method``, ``neighbourhood``:
    as they sound.
    """

    labels: np.ndarray
    posteriors: np.ndarray
    beta: float
    alpha: np.ndarray
    n_iter: int
    converged: bool
    history: np.ndarray
    changed: np.ndarray
    method: str
    neighbourhood: int


def hmrf_em(
    gm,
    X,
    index,
    shape,
    valid=None,
    *,
    beta=0.5,
    method="meanfield",
    neighbourhood=None,
    spacing=None,
    max_iter=50,
    tol=1e-3,
    callback=None,
):
    """Refit the fitted mixture ``gm`` with a Potts prior on the labels of an image.

    ``X``: feature rows, (n_rows, D), of the image's distinct values. ``index``: for
    every voxel inside ``valid`` (C order), the row of ``X`` holding its features; None
    when ``X`` has one row per valid voxel in that order. ``shape``: the image's spatial
    shape, 2-D or 3-D. ``valid``: bool array of ``shape`` (None: every voxel); voxels
    outside take no part, are no one's neighbours and get label -1.

    ``beta``: strength of the Potts prior (>= 0), or ``"auto"`` to estimate it with the
    rest. ``method``: ``"meanfield"`` or ``"icm"``. ``neighbourhood``: 4 (default) or 8
    in 2-D; 6 (default), 18 or 26 in 3-D. ``spacing``: physical voxel size per axis;
    neighbour weights are ``min(spacing) / distance``, so the nearest neighbours weigh 1
    and ``beta`` keeps its meaning whatever the unit (None: isotropic).

    Stops when fewer than a fraction ``tol`` of the voxels changed label in an
    iteration, or after ``max_iter`` iterations (with a :class:`ConvergenceWarning`).
    ``callback(iteration, bound)`` is called after every iteration, ``bound`` being the
    mean-field log-likelihood per voxel.

    ``gm`` is updated in place (means, covariances; ``weights_`` become the class
    shares). Its components keep their order unless the means cross, when they are
    sorted again by the first feature as :meth:`GaussianMixture.fit` does.
    """
    args = _check_args(
        gm, X, index, shape, valid, beta, method, neighbourhood, spacing, max_iter, tol, callback
    )
    model = _HMRF(gm, args)
    history, changed, converged = [], [], False
    for n_iter in range(1, args.max_iter + 1):
        bound, fraction = model.iterate()
        history.append(bound)
        changed.append(fraction)
        if callback is not None:
            callback(n_iter, bound)
        if fraction <= args.tol and model.settled():
            converged = True
            break
    else:
        n_iter = args.max_iter
    model.e_step()  # labels and posteriors under the final parameters
    if not converged and args.max_iter > 0:
        warnings.warn(
            f"HMRF-EM did not converge in {args.max_iter} iterations ({changed[-1]:.2%} of "
            f"the voxels changed label in the last one, tol={args.tol:g}); raise max_iter "
            "or tol",
            ConvergenceWarning,
            stacklevel=2,
        )
    return model.result(n_iter, converged, history, changed)


# --- geometry ------------------------------------------------------------------------


def neighbours(ndim, neighbourhood=None, spacing=None):
    """Offsets (M, ndim) of a voxel's neighbours and their weights ``min(spacing) /
    distance``; ``neighbourhood`` and ``spacing`` as in :func:`hmrf_em`."""
    return _neighbour_table(ndim, *_check_geometry(ndim, neighbourhood, spacing))


def potts_sample(
    shape, n_classes, beta, *, neighbourhood=None, spacing=None, n_sweeps=100, random_state=0
):
    """A label image drawn from the Potts model ``p(z) ∝ exp(beta sum_{i~j} w_ij [z_i =
    z_j])`` by Gibbs sampling (``n_sweeps`` raster sweeps from uniform random labels).

    For test images and benchmarks: int32 labels of ``shape`` (2-D or 3-D). The sweeps
    run on one core, so a given ``random_state`` always gives the same image.
    """
    shape = _check_shape(shape)
    n_classes = check_int(n_classes, "n_classes", 2)
    beta = check_beta(beta, allow_auto=False)
    n_sweeps = check_int(n_sweeps, "n_sweeps", 0)
    geometry = _check_geometry(len(shape), neighbourhood, spacing)
    offsets, weights = _offsets_3d(len(shape), *geometry)
    seed = int(as_generator(random_state).integers(2**31 - 1))
    lab = np.random.default_rng(seed).integers(0, n_classes, size=_grid(shape)).astype(np.int32)
    kern.gibbs_potts(lab, n_classes, float(beta), offsets, weights, n_sweeps, seed)
    return lab.reshape(shape)


def _neighbour_table(ndim, neighbourhood, spacing):
    steps = np.array(np.meshgrid(*[[-1, 0, 1]] * ndim, indexing="ij")).reshape(ndim, -1).T
    order = np.abs(steps).sum(1)
    reach = {4: 1, 6: 1, 8: 2, 18: 2, 26: 3}[neighbourhood]
    offsets = steps[(order > 0) & (order <= reach)]
    distance = np.sqrt(((offsets * spacing) ** 2).sum(1))
    return offsets.astype(np.int64), spacing.min() / distance


def _offsets_3d(ndim, neighbourhood, spacing):
    """The neighbour table with offsets padded to 3 axes (a 2-D image is one slice)."""
    offsets, weights = _neighbour_table(ndim, neighbourhood, spacing)
    if ndim == 2:
        offsets = np.hstack([np.zeros((offsets.shape[0], 1), np.int64), offsets])
    return np.ascontiguousarray(offsets), np.ascontiguousarray(weights)


def _grid(shape):
    return (1,) * (3 - len(shape)) + tuple(shape)


# --- the model -------------------------------------------------------------------------


@dataclass
class _Args:
    X: np.ndarray
    index: np.ndarray  # per valid voxel, or None
    shape: tuple
    valid: np.ndarray  # or None
    beta: float  # None for "auto"
    method: str
    neighbourhood: int
    spacing: np.ndarray
    max_iter: int
    tol: float


class _PottsField:
    """The grid, its neighbourhood and the current posteriors (and ICM labels)."""

    def __init__(self, shape, valid, index, n_rows, n_classes, neighbourhood, spacing, icm):
        self.shape = shape
        grid = _grid(shape)
        if valid is None:
            rows = np.arange(n_rows, dtype=np.int32) if index is None else index
            self.site = np.ascontiguousarray(rows, dtype=np.int32).reshape(grid)
        else:
            self.site = np.full(grid, -1, dtype=np.int32)
            self.site.reshape(shape)[valid] = np.arange(n_rows) if index is None else index
        self.n_sites = n_rows if index is None else index.shape[0]
        self.offsets, self.weights = _offsets_3d(len(shape), neighbourhood, spacing)
        self.axis_parity = neighbourhood not in (4, 6)
        self.icm = icm
        self.classes = (0,) * n_classes  # the sweeps are compiled for each K
        self.q = np.empty(grid + (n_classes,), dtype=np.float32)
        self.lab = np.empty(grid if icm else (1, 1, 1), dtype=np.int32)

    def start(self, X, means, unary, log_weights):
        """The plain mixture's posteriors (and, for ICM, labels)."""
        dens, _, log_norm, prec_chol = unary
        kern.start_field(
            self.site, self.q, self.lab, X, means, dens, log_norm, prec_chol, log_weights,
            self.icm,
        )

    def sweep(self, unary, X, means, alpha, beta, want_beta):
        """One E-step: a mean-field sweep, or ICM sweeps until no label changes.

        Returns the kernel's sums (see :func:`emseg.image._mrf_kernels.sweep`) with the label
        changes of every sweep added up.
        """
        changes = 0
        for _ in range(_ICM_SWEEPS if self.icm else 1):
            out = kern.sweep(
                (self.site, self.q, self.lab), (X, means), unary,
                (self.offsets, self.weights, self.axis_parity), (alpha, float(beta)),
                (self.icm, want_beta), self.classes,
            )
            changes += out[-1]
            if out[-1] == 0:
                break
        return out[:-1] + (changes,)

    def labels(self):
        if self.icm:
            return self.lab.reshape(self.shape)
        lab = np.empty(self.site.shape, dtype=np.int32)
        kern.argmax_labels(self.site, self.q, lab)
        return lab.reshape(self.shape)

    def energy(self, logp, alpha, beta):
        """Potts energy of the current ICM labels (used by the tests)."""
        return kern.potts_energy(
            self.site, self.lab, logp, alpha, float(beta), self.offsets, self.weights
        )


class _HMRF:
    """The state of one HMRF-EM fit: the mixture, the field and its parameters."""

    def __init__(self, gm, args):
        self.gm = gm
        self.args = args
        n_sites = args.X.shape[0] if args.index is None else args.index.shape[0]
        # a table of unary terms pays when rows repeat (the histogram trick); without
        # one, the rows are gathered into voxel order, so the sweep reads them in turn
        self.table = args.X.shape[0] * 4 <= n_sites
        index = args.index
        self.X = args.X
        if not self.table and index is not None:
            self.X, index = args.X[index], None
        self.field = _PottsField(
            args.shape, args.valid, index, self.X.shape[0], gm.n_components_,
            args.neighbourhood, args.spacing, args.method == "icm",
        )
        self.auto = args.beta is None
        self.iteration = 0
        self.beta = _BETA_START if self.auto else 0.0
        self.beta_step = 0.0
        self.alpha_step = 0.0
        with np.errstate(divide="ignore"):
            log_weights = np.maximum(np.log(gm.weights_), _MIN_LOG_WEIGHT)
        if args.beta == 0 or self.auto:  # a given beta > 0: the neighbourhood-only prior
            self.alpha = log_weights - log_weights.max()
        else:
            self.alpha = np.zeros(gm.n_components_)
        self.beta_cap = _beta_cap(gm.n_components_, self.field.weights)
        self.unary = _unary_terms(gm, self.X, self.table, self.field.icm)
        self.field.start(self.X, _means(gm), self.unary, log_weights)
        self.data = self.training_data()  # where update_parameters re-seeds an emptied class

    def training_data(self):
        """The rows and weights an emptied class is re-seeded on (:func:`update_parameters`)."""
        X, index = self.args.X, self.args.index  # the distinct rows, not those in voxel order
        if index is None:
            return TrainingData(X, _EMPTY, [], float(X.shape[0]))
        counts = np.bincount(index, minlength=X.shape[0]).astype(np.float64)
        return TrainingData(X, counts, [], float(counts.sum()))

    def e_step(self):
        means = _means(self.gm)
        return means, self.field.sweep(self.unary, self.X, means, self.alpha, self.beta, self.auto)

    def iterate(self):
        """One E-step and one M-step; returns the mean-field log-likelihood per voxel of
        the parameters the iteration started from and the fraction of voxels that
        changed label."""
        self.iteration += 1
        if not self.auto:
            self.beta = self.args.beta * min(1.0, self.iteration / _RAMP)
        means, (nk, sx, sxx, grad, curv, bound, changes) = self.e_step()
        n = nk.sum()
        stats = GaussianStats(nk, sx, sxx, means, float(bound), float(n))
        update_parameters(self.gm, stats, self.data)
        if self.args.beta == 0:  # the plain mixture: its weights are the class prior
            with np.errstate(divide="ignore"):
                self.alpha = np.maximum(np.log(nk / n), _MIN_LOG_WEIGHT)
        elif self.auto:
            self._field_step(grad, curv)
        self.unary = _unary_terms(self.gm, self.X, self.table, self.field.icm)
        return float(bound) / n, changes / self.field.n_sites

    def _field_step(self, grad, curv):
        """With beta="auto": one Newton step on the pseudo-likelihood in ``(alpha,
        beta)``; beta's within a trust region and below the cap, then alpha's given
        beta's step (the joint step's alpha assumes beta moved as far as it wanted)."""
        K = self.alpha.shape[0]
        step = np.linalg.lstsq(curv, grad, rcond=1e-10)[0][K]
        old = self.beta
        self.beta = float(np.clip(old + np.clip(step, -_MAX_BETA_STEP, _MAX_BETA_STEP),
                                  0.0, self.beta_cap))
        self.beta_step = self.beta - old
        rhs = grad[:K] - curv[:K, K] * self.beta_step
        delta = np.linalg.lstsq(curv[:K, :K], rhs, rcond=1e-10)[0]  # the sum is free
        alpha = self.alpha + np.clip(delta, -_MAX_ALPHA_STEP, _MAX_ALPHA_STEP)
        alpha = np.maximum(alpha - alpha.max(), _MIN_LOG_WEIGHT)
        self.alpha_step = float(np.abs(alpha - self.alpha).max())
        self.alpha = alpha

    def settled(self):
        """Whether beta has reached its value (or, estimated, stopped moving, and alpha
        with it)."""
        if self.auto:
            return abs(self.beta_step) <= _BETA_TOL and self.alpha_step <= _ALPHA_TOL
        return self.iteration >= _RAMP

    def result(self, n_iter, converged, history, changed):
        gm = self.gm
        order = np.argsort(gm.means_[:, 0], kind="stable")
        labels = self.field.labels()
        posteriors = self.field.q.reshape(self.args.shape + (gm.n_components_,))
        if (order != np.arange(order.size)).any():
            reorder_components(gm, order)
            rank = np.empty_like(order)
            rank[order] = np.arange(order.size)
            inside = labels >= 0
            labels[inside] = rank[labels[inside]].astype(np.int32)
            posteriors = np.ascontiguousarray(posteriors[..., order])
        return MRFResult(
            labels=labels,
            posteriors=posteriors,
            beta=float(self.beta),
            alpha=self.alpha[order] - self.alpha.max(),
            n_iter=n_iter,
            converged=converged,
            history=np.asarray(history, dtype=np.float64),
            changed=np.asarray(changed, dtype=np.float64),
            method=self.args.method,
            neighbourhood=self.args.neighbourhood,
        )


def _means(gm):
    return np.ascontiguousarray(gm.means_, dtype=np.float64)


def _unary_terms(gm, X, table, double):
    """``(dens, top, log_norm, prec_chol)`` as :func:`emseg.image._mrf_kernels.sweep` takes them:
    a table of ``dens = exp(logp - top)`` (``logp`` the log-density of each row of ``X``
    under each component, ``top`` its row maximum), or, without a table, each
    Gaussian's log normalising constant and precision factor (always (K, D, D))."""
    params = (None, gm.means_, gm.precisions_cholesky_, gm.covariance_type)  # no weights
    K, D = gm.means_.shape
    if not table:
        kind, log_norm, _, prec = kernel_params(*params)
        if kind == "diag":
            check_allocation((K, D, D), "the MRF's per-voxel Gaussians")
            prec = np.einsum("kd,de->kde", prec, np.eye(D))
        return np.empty((0, K)), np.empty(0), log_norm, np.ascontiguousarray(prec)
    dens = np.empty((X.shape[0], K))
    for start in range(0, X.shape[0], _UNARY_CHUNK):
        rows = slice(start, start + _UNARY_CHUNK)
        dens[rows] = weighted_log_prob(X[rows], *params)
    top = kern.to_unary_table(dens, double)
    return dens, top, np.zeros(K), np.zeros((K, 0, 0))  # unused with a table


# --- argument checks -------------------------------------------------------------------


def _check_args(
    gm, X, index, shape, valid, beta, method, neighbourhood, spacing, max_iter, tol, callback
):
    """Every argument of :func:`hmrf_em` checked once, as clean values (an ``_Args``)."""
    if not hasattr(gm, "precisions_cholesky_"):
        raise EmsegError("gm is not fitted; fit the GaussianMixture before hmrf_em")
    shape = _check_shape(shape)
    if method not in METHODS:
        raise EmsegError(f"method must be 'meanfield' or 'icm', got {method!r}; use one of those")
    beta = check_beta(beta, allow_auto=True)
    neighbourhood, spacing = _check_geometry(len(shape), neighbourhood, spacing)
    max_iter = check_int(max_iter, "max_iter", 0)
    tol = check_float(tol, "tol")
    if callback is not None and not callable(callback):
        raise EmsegError(f"callback must be callable, got {callback!r}")
    X = np.asarray(X)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2 or X.shape[1] != gm.means_.shape[1]:
        raise EmsegError(
            f"X must have shape (n_rows, {gm.means_.shape[1]}) like the mixture's features, "
            f"got {X.shape}"
        )
    try:
        X = np.ascontiguousarray(X, dtype=np.float64)
    except (TypeError, ValueError):
        raise EmsegError(f"X must hold numbers, got dtype {X.dtype}") from None
    if not np.isfinite(X).all():
        raise EmsegError("X contains NaN or infinity; leave those voxels out with valid=False")
    if valid is not None:
        valid = np.asarray(valid)
        if valid.shape != shape:
            raise EmsegError(
                f"valid has shape {valid.shape} but shape is {shape}; pass a mask of the "
                "image's shape"
            )
        valid = valid.astype(bool, copy=False)
        n_valid = int(np.count_nonzero(valid))
    else:
        n_valid = int(np.prod(shape))
    if n_valid == 0:
        raise EmsegError("valid is False everywhere; there is no voxel to segment")
    if index is None:
        if X.shape[0] != n_valid:
            raise EmsegError(
                f"index is None, so X needs one row per valid voxel ({n_valid}), got "
                f"{X.shape[0]}; pass index"
            )
    else:
        index = np.asarray(index)
        integers = np.issubdtype(index.dtype, np.integer)
        if index.ndim != 1 or index.shape[0] != n_valid or not integers:
            raise EmsegError(
                f"index must be 1-D integers, one per valid voxel ({n_valid}), got "
                f"{index.dtype} of shape {index.shape}"
            )
        if index.min() < 0 or index.max() >= X.shape[0]:
            raise EmsegError(
                f"index must lie in 0..{X.shape[0] - 1} (rows of X), got "
                f"{index.min()}..{index.max()}"
            )
    return _Args(X, index, shape, valid, beta, method, neighbourhood, spacing, max_iter, tol)


def _check_shape(shape):
    try:
        shape = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise EmsegError(f"shape must be a tuple of 2 or 3 sizes, got {shape!r}") from None
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise EmsegError(f"shape must be 2-D or 3-D with positive sizes, got {shape}")
    return shape


def _check_geometry(ndim, neighbourhood, spacing):
    allowed = NEIGHBOURHOODS[ndim]
    if neighbourhood is None:
        neighbourhood = allowed[0]
    if isinstance(neighbourhood, bool) or neighbourhood not in allowed:
        options = ", ".join(str(a) for a in allowed[:-1]) + f" or {allowed[-1]}"
        raise EmsegError(
            f"neighbourhood must be {options} for a {ndim}-D image, got {neighbourhood!r}; "
            f"use {options}"
        )
    if spacing is None:
        return int(neighbourhood), np.ones(ndim)
    try:
        values = np.asarray(spacing, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise EmsegError(f"spacing must be {ndim} positive numbers, got {spacing!r}") from None
    if values.shape[0] != ndim or not np.isfinite(values).all() or (values <= 0).any():
        raise EmsegError(
            f"spacing must be {ndim} positive numbers (one per axis of a {ndim}-D image), "
            f"got {spacing!r}"
        )
    return int(neighbourhood), values
