"""The work behind ``emseg gmm ...`` and ``emseg hmm ...``: tables in, models and labels out.

Like :mod:`emseg.workflows.run` for images, this module only chains stages (table io ->
mixture / HMM -> table io) and prints nothing: each function returns a summary dict
that the command line shows. Model files are JSON (never pickle): the fitted
parameters plus the feature columns they were fitted on, so ``predict`` and ``decode``
can take those columns from another table and refuse one that lacks them.
"""

import time
import warnings

import numpy as np

from .._shared.errors import EmsegError
from .._shared.version import __version__

GMM_KIND = "emseg.tabular.gmm"
HMM_KIND = "emseg.tabular.hmm"


# --- model files -------------------------------------------------------------------------


def save_gmm(path, gm, columns, *, overwrite=False):
    from ..io.jsonfile import save_json
    from ..mixture.serialize import mixture_to_dict

    save_json(path, {"kind": GMM_KIND, "emseg_version": __version__,
                     "columns": list(columns), "mixture": mixture_to_dict(gm)},
              overwrite=overwrite)


def load_gmm(path):
    """``(GaussianMixture, columns)`` from a file :func:`save_gmm` wrote."""
    from ..mixture.serialize import mixture_from_dict

    d = _load_kind(path, GMM_KIND, "a Gaussian mixture model (emseg gmm fit --model)")
    columns = _columns_field(path, d, "columns")
    gm = mixture_from_dict(d.get("mixture"), where=f"{path}: mixture")
    if gm.means_.shape[1] != len(columns):
        raise EmsegError(
            f"{path}: the mixture has {gm.means_.shape[1]} features but lists "
            f"{len(columns)} columns; the file is inconsistent"
        )
    return gm, columns


def save_hmm(path, model, *, columns, sequence_col, categorical, symbols, overwrite=False):
    from ..io.jsonfile import save_json

    save_json(path, {"kind": HMM_KIND, "emseg_version": __version__,
                     "columns": list(columns), "sequence_col": sequence_col,
                     "categorical": categorical,
                     "symbols": None if symbols is None else [str(s) for s in symbols],
                     "hmm": model.to_dict()}, overwrite=overwrite)


def load_hmm(path):
    """``(model, info)`` from a file :func:`save_hmm` wrote; ``info`` holds the columns."""
    from ..hmm import hmm_from_dict

    d = _load_kind(path, HMM_KIND, "an HMM model (emseg hmm fit --model)")
    model = hmm_from_dict(d.get("hmm"), where=f"{path}: hmm")
    info = {
        "columns": _columns_field(path, d, "columns"),
        "sequence_col": _optional_name(path, d, "sequence_col"),
        "categorical": _optional_name(path, d, "categorical"),
        "symbols": d.get("symbols"),
    }
    if info["categorical"] is not None:
        symbols = info["symbols"]
        if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
            raise EmsegError(f"{path}: symbols must be a list of strings")
        if len(symbols) != model.n_features_:
            raise EmsegError(
                f"{path}: {len(symbols)} symbols listed but the HMM emits "
                f"{model.n_features_}; the file is inconsistent"
            )
    elif model.means_.shape[1] != len(info["columns"]):
        raise EmsegError(
            f"{path}: the HMM has {model.means_.shape[1]} features but lists "
            f"{len(info['columns'])} columns; the file is inconsistent"
        )
    return model, info


def _load_kind(path, kind, what):
    from ..io.jsonfile import load_json

    d = load_json(path)
    if not isinstance(d, dict) or d.get("kind") != kind:
        raise EmsegError(f"{path} is not {what}")
    return d


def _columns_field(path, d, key):
    value = d.get(key)
    if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
        raise EmsegError(f"{path}: {key} must be a list of column names")
    return value


def _optional_name(path, d, key):
    value = d.get(key)
    if value is not None and not isinstance(value, str):
        raise EmsegError(f"{path}: {key} must be a column name or null")
    return value


# --- Gaussian mixtures --------------------------------------------------------------------


def gmm_fit(table_path, k, *, columns=None, covariance_type="full", random_state=0,
            max_iter="auto", tol="auto", n_init="auto", model_path=None, labels_path=None,
            overwrite=False):
    """Fit a K-component mixture to a table's columns (missing cells by EM); write the
    model and/or labels.csv. Returns a summary dict."""
    from ..io import tables as tab
    from ..mixture.gaussian_mixture import GaussianMixture

    _check_targets([model_path, labels_path], overwrite)
    t = tab.read_table(table_path, columns)
    _need_features(t)
    start = time.perf_counter()
    gm = GaussianMixture(k, covariance_type=covariance_type, random_state=random_state,
                         max_iter=max_iter, tol=tol, n_init=n_init).fit(t.X)
    fit_seconds = time.perf_counter() - start
    if model_path is not None:
        save_gmm(model_path, gm, t.columns, overwrite=overwrite)
    if labels_path is not None:
        proba = gm.predict_proba(t.X)
        tab.write_labels(labels_path, proba.argmax(1), proba, overwrite=overwrite)
    return {
        "rows": t.n_rows, "columns": t.columns, "skipped": t.skipped,
        "missing": int(np.isnan(t.X).sum()), "k": k, "iterations": gm.n_iter_, "converged": bool(gm.converged_),
        "log_likelihood": float(gm.lower_bound_), "bic": float(gm.bic(t.X)),
        "read_seconds": t.read_seconds, "fit_seconds": fit_seconds, "model": gm,
    }


def gmm_select(table_path, k_max, *, columns=None, covariance_types=None, random_state=0,
               max_iter="auto", tol="auto", n_init="auto", callback=None):
    """BIC and AIC over K = 1..k_max and covariance types: ``(rows, best, table)``."""
    from ..io import tables as tab
    from ..mixture.gaussian_mixture import COVARIANCE_TYPES
    from ..mixture.selection import select_table

    t = tab.read_table(table_path, columns)
    _need_features(t)
    if np.isnan(t.X).any():
        raise EmsegError(
            f"{table_path} has missing cells; select a model on complete rows, or fit "
            "with 'emseg gmm fit' (which handles them)"
        )
    rows, best = select_table(t.X, k_max, tuple(covariance_types or COVARIANCE_TYPES),
                                  random_state, n_init=n_init, max_iter=max_iter, tol=tol,
                                  callback=callback)
    return rows, best, t


def gmm_predict(model_path, table_path, labels_path, *, overwrite=False):
    from ..io import tables as tab

    _check_targets([labels_path], overwrite)
    gm, columns = load_gmm(model_path)
    t = _read_columns(table_path, columns, model_path)
    proba = gm.predict_proba(t.X)
    tab.write_labels(labels_path, proba.argmax(1), proba, overwrite=overwrite)
    return {"rows": t.n_rows, "k": gm.n_components_, "columns": t.columns,
            "counts": np.bincount(proba.argmax(1), minlength=gm.n_components_).tolist()}


def gmm_impute(table_path, output_path, *, k=None, model_path=None, columns=None,
               covariance_type="full", random_state=0, max_iter="auto", tol="auto", n_init="auto",
               overwrite=False):
    """Fill a table's missing cells with their expectation under a mixture: fitted here
    with ``k`` components, or read from ``model_path``. Writes the table again with only
    those cells changed."""
    from ..io import tables as tab
    from ..mixture.gaussian_mixture import GaussianMixture

    _check_targets([output_path], overwrite)
    if (k is None) == (model_path is None):
        raise EmsegError("give either -k (fit a mixture here) or --model (use a fitted one)")
    if model_path is not None:
        gm, model_columns = load_gmm(model_path)
        t = _read_columns(table_path, model_columns, model_path)
        tab.check_imputed_target(output_path, t)
    else:
        t = tab.read_table(table_path, columns)
        _need_features(t)
        tab.check_imputed_target(output_path, t)  # before the fit, not after
        gm = GaussianMixture(k, covariance_type=covariance_type, random_state=random_state,
                             max_iter=max_iter, tol=tol, n_init=n_init).fit(t.X)
    missing = int(np.isnan(t.X).sum())
    tab.write_imputed(output_path, t, gm.impute(t.X), overwrite=overwrite)
    return {"rows": t.n_rows, "filled": missing, "k": gm.n_components_,
            "columns": t.columns, "skipped": t.skipped}


# --- hidden Markov models -------------------------------------------------------------------


def hmm_fit(table_path, k, *, columns=None, sequence_col=None, categorical=None,
            covariance_type="full", random_state=0, n_iter=100, tol=1e-4, n_init=1,
            model_path=None, states_path=None, overwrite=False):
    from ..io import tables as tab
    from ..hmm import CategoricalHMM, GaussianHMM

    _check_targets([model_path, states_path], overwrite)
    t = tab.read_table(table_path, columns, sequence_col=sequence_col, categorical=categorical)
    if categorical is None:
        _need_features(t)
        if columns is None:
            _check_default_hmm_columns(t)
        _no_missing_for_hmm(t)
        X = t.X
        # covars_prior=0: the command's maximum-likelihood M-step (the library's
        # default is hmmlearn's prior, 1e-2)
        model = GaussianHMM(k, covariance_type=covariance_type, n_iter=n_iter, tol=tol,
                            n_init=n_init, random_state=random_state, covars_prior=0.0)
    else:
        X = t.codes.reshape(-1, 1)
        model = CategoricalHMM(k, n_features=len(t.symbols), n_iter=n_iter, tol=tol,
                               n_init=n_init, random_state=random_state)
    start = time.perf_counter()
    model.fit(X, lengths=t.lengths)
    fit_seconds = time.perf_counter() - start
    if model_path is not None:
        save_hmm(model_path, model, columns=t.columns if categorical is None else [],
                 sequence_col=sequence_col, categorical=categorical,
                 symbols=t.symbols, overwrite=overwrite)
    if states_path is not None:
        _write_decode(states_path, model, X, t, "viterbi", overwrite)
    return {
        "rows": t.n_rows, "sequences": 1 if t.lengths is None else len(t.lengths),
        "columns": t.columns if categorical is None else [categorical], "skipped": t.skipped,
        "k": k, "iterations": model.n_iter_, "converged": bool(model.converged_),
        "log_likelihood": float(model.score(X, lengths=t.lengths)),
        "read_seconds": t.read_seconds, "fit_seconds": fit_seconds, "model": model,
    }


def hmm_decode(model_path, table_path, states_path, *, algorithm="viterbi",
               sequence_col=None, overwrite=False):
    from ..io import tables as tab

    _check_targets([states_path], overwrite)
    model, info = load_hmm(model_path)
    sequence_col = sequence_col or info["sequence_col"]
    if info["categorical"] is not None:
        t = tab.read_table(table_path, [], sequence_col=sequence_col,
                           categorical=info["categorical"])
        index = {s: i for i, s in enumerate(info["symbols"])}
        unknown = [s for s in t.symbols if str(s) not in index]
        if unknown:
            raise EmsegError(
                f"{table_path}: symbol {unknown[0]!r} in column {info['categorical']!r} "
                f"was not seen when {model_path} was fitted"
            )
        remap = np.array([index[str(s)] for s in t.symbols], dtype=np.int64)
        X = remap[t.codes].reshape(-1, 1)
    else:
        t = _read_columns(table_path, info["columns"], model_path, sequence_col=sequence_col)
        _no_missing_for_hmm(t)
        X = t.X
    log_prob = _write_decode(states_path, model, X, t, algorithm, overwrite)
    return {"rows": t.n_rows, "sequences": 1 if t.lengths is None else len(t.lengths),
            "columns": info["columns"] if info["categorical"] is None else [info["categorical"]],
            "log_probability": log_prob, "algorithm": algorithm}


def _write_decode(path, model, X, t, algorithm, overwrite):
    from ..io import tables as tab

    log_prob, states = model.decode(X, t.lengths, algorithm=algorithm)
    posteriors = model.predict_proba(X, t.lengths)
    tab.write_states(path, states, posteriors, sequence_ids=t.sequence_ids,
                     lengths=t.lengths, overwrite=overwrite)
    return float(log_prob)


# --- helpers ---------------------------------------------------------------------------------


def _check_targets(paths, overwrite):
    from ..io.atomic import check_writable

    paths = [p for p in paths if p is not None]
    if paths:
        check_writable(paths, overwrite)


def _need_features(t):
    if t.X.shape[1] == 0:
        raise EmsegError(f"{t.path} has no numeric column to fit; choose some with --columns")


def _check_default_hmm_columns(t):
    """Without ``--columns`` an HMM is fitted to every numeric column: say which, and
    refuse a column that increases on every row of every sequence (a row index or a
    time stamp, which an HMM would model as an observation)."""
    names = ", ".join(repr(c) for c in t.columns)
    for j, name in enumerate(t.columns):
        values = t.X[:, j]
        steps = np.diff(values)
        if t.lengths is not None:  # within sequences only
            steps = np.delete(steps, np.cumsum(t.lengths)[:-1] - 1)
        if steps.size >= 2 and np.all(steps > 0):
            others = [c for c in t.columns if c != name]
            suggestion = f" (e.g. --columns {','.join(others)})" if others else ""
            raise EmsegError(
                f"column {name!r} of {t.path} increases on every row, like a row index or "
                f"a time stamp; an HMM would model it as an observation. Name the columns "
                f"to fit with --columns{suggestion}, or name {name!r} there to use it"
            )
    skipped = f"; text columns left out: {', '.join(repr(c) for c in t.skipped)}" \
        if t.skipped else ""
    warnings.warn(
        f"no --columns given: fitting every numeric column of {t.path}: {names}{skipped}",
        UserWarning, stacklevel=3,
    )


def _no_missing_for_hmm(t):
    if np.isnan(t.X).any():
        row = int(np.flatnonzero(np.isnan(t.X).any(axis=1))[0])
        raise EmsegError(
            f"{t.path}: {t.describe_row(row)} has a missing value; HMMs need complete "
            "rows (fill them first, e.g. with 'emseg gmm impute')"
        )


def _read_columns(table_path, columns, model_path, sequence_col=None):
    """The table's columns that the model was fitted on (an unknown one is an error)."""
    from ..io import tables as tab

    try:
        return tab.read_table(table_path, columns, sequence_col=sequence_col)
    except EmsegError as exc:
        if "column" in str(exc) and any(c in str(exc) for c in columns):
            raise EmsegError(f"{exc} (the model {model_path} needs {', '.join(columns)})") from None
        raise
