"""The EM loop, written once for every model emseg fits.

A model supplies five methods and the loop does the rest: restarts, the stopping rule,
the log-likelihood history, progress callbacks and the convergence warning.

- ``_initialize(data, rng)``: set starting parameters.
- ``_e_step(data) -> (stats, mean_loglik)``: sufficient statistics under the current
  parameters and the weighted mean log-likelihood of the data under them.
- ``_m_step(stats, data)``: new parameters from the statistics; ``data`` is what
  ``_e_step`` saw, for a model that needs the rows themselves (a Gaussian mixture
  re-seeds a component that lost its weight on them, see
  :func:`emseg.mixture.gaussian.m_step`), so nothing about the data has to travel on
  the model.
- ``_get_params()`` / ``_set_params(params)``: a snapshot to keep the best restart.
- optionally ``_extrapolate(p0, p1, p2)``: SQUAREM's jump from three successive
  parameter snapshots, or None when it leaves the model's parameter space (see
  :func:`_iterate`); models without it are fitted by plain EM.

As in scikit-learn, the value recorded for iteration ``i`` is the log-likelihood of the
parameters that iteration's M-step started from, so the history of a correct EM never
decreases, and the loop stops when it changes by less than ``tol``.
"""

import warnings
from dataclasses import dataclass, field

import numpy as np

from .._shared.errors import ConvergenceWarning


# With several restarts, each runs until its bound changes by less than this, and only
# the best one goes on to ``tol`` (the "short runs" strategy of Biernacki, Celeux &
# Govaert 2003, "Choosing starting values for the EM algorithm"): restarts then cost a
# few iterations each, however tight ``tol`` is.
SHORT_TOL = 1e-3


@dataclass
class EMResult:
    lower_bound: float
    n_iter: int
    converged: bool
    history: list = field(default_factory=list)
    restarts: list = field(default_factory=list)  # every restart's bound (short runs: at their end)


def run_em(model, data, *, n_init, max_iter, tol, rng, start_bound=None, callback=None,
           iter_name="max_iter", accelerate=False):
    """Fit ``model`` to ``data`` by EM and leave it holding the best restart's parameters.

    ``start_bound`` is None for a fresh start (``n_init`` initialisations) or the
    previous fit's bound for a warm start from the model's current parameters.
    ``iter_name`` is the model's name for ``max_iter``, used in the warning.
    ``accelerate``: SQUAREM steps (see :func:`_iterate`) when the model has
    ``_extrapolate``.
    """
    warm = start_bound is not None
    accelerate = accelerate and hasattr(model, "_extrapolate")
    # several restarts: each a short run, then the best one goes on to ``tol``
    short = not warm and n_init > 1 and tol < SHORT_TOL
    best = None
    best_params = None
    restarts = []
    for _ in range(1 if warm else n_init):
        if not warm:
            model._initialize(data, rng)
        result = _iterate(model, data, max_iter, SHORT_TOL if short else tol,
                          start_bound if warm else -np.inf, callback, accelerate)
        restarts.append(result.lower_bound)
        if best is None or result.lower_bound > best.lower_bound:
            best = result
            best_params = model._get_params()
    model._set_params(best_params)
    if short and best.n_iter < max_iter:
        more = _iterate(model, data, max_iter, tol, best.lower_bound, callback, accelerate,
                        first=best.n_iter + 1)
        best = EMResult(more.lower_bound, more.n_iter, more.converged,
                        best.history + more.history)
    elif short:  # the short run used every iteration: converged only if it met ``tol``
        steps = np.diff(best.history)
        best.converged = bool(steps.size and abs(steps[-1]) < tol)
    best.restarts = restarts
    if not best.converged and max_iter > 0:
        warnings.warn(
            f"EM did not converge in {max_iter} iterations (last change in mean "
            f"log-likelihood above tol={tol:g}); raise {iter_name} or tol",
            ConvergenceWarning,
            stacklevel=3,
        )
    return best


def _iterate(model, data, max_iter, tol, bound, callback, accelerate, first=1):
    """EM iterations from the model's current parameters, until the bound changes by
    less than ``tol`` or the M-step numbered ``max_iter`` has run (counting from
    ``first``).

    With ``accelerate``, after every two plain steps (parameters p0 -> p1 -> p2) the
    model extrapolates (SQUAREM, Varadhan & Roland 2008, scheme S3: p' = p0 - 2 a r +
    a^2 v with r = p1 - p0, v = p2 - 2 p1 + p0, a = -max(|r|/|v|, 1); ``_extrapolate``
    returns None when p' is not a valid model). The next E-step runs at p' and is kept
    only when its log-likelihood is at least the last one recorded, so the history never
    decreases; otherwise that E-step is discarded and EM goes on from p2. The M-step
    after it starts the next pair of plain steps.
    """
    history = []
    if max_iter == 0:
        _, bound = model._e_step(data)
        return EMResult(bound, 0, False, history)
    trail = [model._get_params()] if accelerate else None  # plain iterates since the last jump
    for n_iter in range(first, max_iter + 1):
        previous = bound
        stats = None
        if accelerate and len(trail) == 3:
            guess = model._extrapolate(*trail)
            if guess is not None:
                model._set_params(guess)
                stats, bound = model._e_step(data)
                if bound < previous:  # worse than plain EM's last step: back to p2
                    model._set_params(trail[2])
                    stats = None
            trail = []
        if stats is None:
            stats, bound = model._e_step(data)
        model._m_step(stats, data)
        history.append(bound)
        if callback is not None:
            callback(n_iter, bound)
        if abs(bound - previous) < tol:
            return EMResult(bound, n_iter, True, history)
        if accelerate:
            trail.append(model._get_params())
    return EMResult(bound, max_iter, False, history)
