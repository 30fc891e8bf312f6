"""The EM loop, written once for every model emseg fits.

A model supplies five methods and the loop does the rest: restarts, the stopping rule,
the log-likelihood history, progress callbacks and the convergence warning.

- ``_initialize(data, rng)``: set starting parameters.
- ``_e_step(data) -> (stats, mean_loglik)``: sufficient statistics under the current
  parameters and the weighted mean log-likelihood of the data under them.
- ``_m_step(stats)``: new parameters from the statistics.
- ``_get_params()`` / ``_set_params(params)``: a snapshot to keep the best restart.

As in scikit-learn, the value recorded for iteration ``i`` is the log-likelihood of the
parameters that iteration's M-step started from, so the history of a correct EM never
decreases, and the loop stops when it changes by less than ``tol``.
"""

import warnings
from dataclasses import dataclass, field

import numpy as np

from ._errors import ConvergenceWarning


@dataclass
class EMResult:
    lower_bound: float
    n_iter: int
    converged: bool
    history: list = field(default_factory=list)


def run_em(model, data, *, n_init, max_iter, tol, rng, start_bound=None, callback=None,
           iter_name="max_iter"):
    """Fit ``model`` to ``data`` by EM and leave it holding the best restart's parameters.

    ``start_bound`` is None for a fresh start (``n_init`` initialisations) or the
    previous fit's bound for a warm start from the model's current parameters.
    ``iter_name`` is the model's name for ``max_iter``, used in the warning.
    """
    warm = start_bound is not None
    best = None
    best_params = None
    for _ in range(1 if warm else n_init):
        if not warm:
            model._initialize(data, rng)
        bound = start_bound if warm else -np.inf
        history = []
        converged = False
        n_iter = 0
        if max_iter == 0:
            _, bound = model._e_step(data)
        for n_iter in range(1, max_iter + 1):
            previous = bound
            stats, bound = model._e_step(data)
            model._m_step(stats)
            history.append(bound)
            if callback is not None:
                callback(n_iter, bound)
            if abs(bound - previous) < tol:
                converged = True
                break
        if best is None or bound > best.lower_bound:
            best = EMResult(bound, n_iter, converged, history)
            best_params = model._get_params()
    model._set_params(best_params)
    if not best.converged and max_iter > 0:
        warnings.warn(
            f"EM did not converge in {max_iter} iterations (last change in mean "
            f"log-likelihood above tol={tol:g}); raise {iter_name} or tol",
            ConvergenceWarning,
            stacklevel=3,
        )
    return best
