"""scikit-learn's estimator protocol, without importing scikit-learn.

:class:`EstimatorMixin` gives emseg's estimators what :class:`sklearn.base.BaseEstimator`
gives scikit-learn's: ``get_params`` / ``set_params`` read from the ``__init__``
signature (every parameter stored unmodified as an attribute of the same name, checked
only in ``fit``), a ``__repr__`` that shows the parameters that differ from their
defaults, ``__sklearn_is_fitted__``, and ``__sklearn_tags__``. With them an emseg
estimator works in :func:`sklearn.base.clone`, :class:`~sklearn.pipeline.Pipeline`,
:class:`~sklearn.model_selection.GridSearchCV` and ``check_estimator``.

The choice: emseg's estimators do **not** subclass ``sklearn.base.BaseEstimator``,
even when scikit-learn is installed. Importing scikit-learn costs about 1-2 s (it
loads scipy), which would triple the time of a small ``emseg gmm fit``; and the class
hierarchy would then depend on what happens to be installed. scikit-learn stays an
optional dependency (the ``test`` extra). The price is one ``UserWarning`` from
``check_estimator`` ("does not inherit from sklearn.base.BaseEstimator"); every check
runs and passes all the same. ``__sklearn_tags__`` imports ``sklearn.utils`` only when
called, which only scikit-learn does (so it is loaded already). A subclass describes
itself with :meth:`EstimatorMixin._emseg_tags`, plain values that ``__sklearn_tags__``
turns into scikit-learn's ``Tags`` (scikit-learn >= 1.6) and ``_more_tags`` into the
dict of older versions.

:func:`check_is_fitted` raises :class:`emseg._shared.errors.NotFittedError`, which is an
``EmsegError`` and, when scikit-learn is installed, also scikit-learn's own
``NotFittedError`` (see :mod:`emseg._shared.errors`).
"""

import inspect

import numpy as np

# what EstimatorMixin._emseg_tags returns unless a subclass says otherwise
DEFAULT_TAGS = {
    # "density_estimator", "clusterer", "classifier", "regressor", "transformer" or None
    "estimator_type": None,
    "allow_nan": False,  # NaN in X is data ("missing"), not an error
    "requires_y": False,  # fit needs a target
    "preserves_float32": False,  # float32 X gives float32 parameters and outputs
    "non_deterministic": False,  # results differ between runs with a fixed random_state
    "one_d_array": False,  # a 1-D X is accepted as one feature
    "two_d_array": True,  # X is rows x features
}


class EstimatorMixin:
    """``get_params``, ``set_params``, ``__repr__`` and scikit-learn's tags for an
    estimator whose ``__init__`` only stores its keyword parameters.

    A subclass overrides :meth:`_emseg_tags` to describe itself (see ``DEFAULT_TAGS``).
    """

    @classmethod
    def _get_param_names(cls):
        """The names of the ``__init__`` parameters, sorted (as scikit-learn's)."""
        init = cls.__init__
        if init is object.__init__:
            return []
        names = []
        for p in inspect.signature(init).parameters.values():
            if p.name == "self" or p.kind == p.VAR_KEYWORD:
                continue
            if p.kind == p.VAR_POSITIONAL:
                raise RuntimeError(
                    f"{cls.__name__}.__init__ takes *args; an estimator must name "
                    "every parameter in its signature"
                )
            names.append(p.name)
        return sorted(names)

    def get_params(self, deep=True):
        """The estimator's parameters as ``{name: value}`` (with ``deep``, also those
        of parameters that are estimators themselves, as ``name__sub``)."""
        out = {}
        for key in self._get_param_names():
            value = getattr(self, key)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                out.update((f"{key}__{k}", v) for k, v in value.get_params().items())
            out[key] = value
        return out

    def set_params(self, **params):
        """Set parameters by name (``name__sub`` for a nested estimator's); returns
        ``self``. Values are stored as given and checked by the next ``fit``."""
        if not params:
            return self
        valid = self.get_params(deep=True)
        nested = {}
        for key, value in params.items():
            key, delim, sub_key = key.partition("__")
            if key not in valid:
                raise ValueError(
                    f"Invalid parameter {key!r} for estimator {type(self).__name__}. "
                    f"Valid parameters are: {self._get_param_names()!r}."
                )
            if delim:
                nested.setdefault(key, {})[sub_key] = value
            else:
                setattr(self, key, value)
                valid[key] = value
        for key, sub_params in nested.items():
            valid[key].set_params(**sub_params)
        return self

    def __repr__(self):
        defaults = {
            name: p.default
            for name, p in inspect.signature(type(self).__init__).parameters.items()
        }
        shown = []
        for name in self._get_param_names():
            value = getattr(self, name, None)
            if not _changed(value, defaults.get(name, inspect.Parameter.empty)):
                continue
            shown.append(f"{name}={_short_repr(value)}")
        return f"{type(self).__name__}({', '.join(shown)})"

    def __sklearn_is_fitted__(self):
        """Whether ``fit`` has run (or the fitted attributes were set by hand): the
        attributes of :meth:`_fitted_attributes` all exist."""
        return all(hasattr(self, a) for a in self._fitted_attributes())

    def _fitted_attributes(self):
        """Attributes that a fitted estimator has; by default every instance attribute
        whose name ends in ``_`` (scikit-learn's rule), so a subclass overrides this
        with its own list."""
        fitted = [a for a in vars(self) if a.endswith("_") and not a.startswith("__")]
        return fitted or ["_no_fitted_attribute_"]

    def _emseg_tags(self):
        """Plain-value tags, ``DEFAULT_TAGS`` updated by the subclass."""
        return dict(DEFAULT_TAGS)

    def __sklearn_tags__(self):
        """scikit-learn's ``Tags`` (scikit-learn >= 1.6), built from :meth:`_emseg_tags`.
        Imports scikit-learn: only scikit-learn calls this."""
        from sklearn.utils import InputTags, Tags, TargetTags

        t = self._emseg_tags()
        tags = Tags(
            estimator_type=t["estimator_type"],
            target_tags=TargetTags(required=t["requires_y"]),
            transformer_tags=None,
            regressor_tags=None,
            classifier_tags=None,
            non_deterministic=t["non_deterministic"],
            input_tags=InputTags(
                one_d_array=t["one_d_array"],
                two_d_array=t["two_d_array"],
                allow_nan=t["allow_nan"],
            ),
        )
        if t["estimator_type"] == "transformer":
            from sklearn.utils import TransformerTags

            dtypes = ["float64", "float32"] if t["preserves_float32"] else ["float64"]
            tags.transformer_tags = TransformerTags(preserves_dtype=dtypes)
        return tags

    def _more_tags(self):
        """The same tags for scikit-learn < 1.6."""
        t = self._emseg_tags()
        types = ["2darray"] + (["1darray"] if t["one_d_array"] else [])
        return {
            "allow_nan": t["allow_nan"],
            "requires_y": t["requires_y"],
            "non_deterministic": t["non_deterministic"],
            "preserves_dtype": [np.float64, np.float32] if t["preserves_float32"]
            else [np.float64],
            "X_types": types,
        }

    @property
    def _estimator_type(self):
        """scikit-learn < 1.6 reads the estimator's kind here."""
        kind = self._emseg_tags()["estimator_type"]
        return {"density_estimator": "DensityEstimator"}.get(kind, kind)


def check_is_fitted(estimator, attributes=None):
    """Raise :class:`~emseg._shared.errors.NotFittedError` (one line) unless
    ``estimator`` has every attribute in ``attributes`` (a name or a list of names;
    default: its ``__sklearn_is_fitted__()``)."""
    if attributes is None:
        if estimator.__sklearn_is_fitted__():
            return
        missing = []
    else:
        names = [attributes] if isinstance(attributes, str) else list(attributes)
        missing = [a for a in names if not hasattr(estimator, a)]
        if not missing:
            return
    from .errors import NotFittedError

    name = type(estimator).__name__
    what = f" (no {', '.join(missing)})" if missing else ""
    raise NotFittedError(
        f"this {name} is not fitted yet{what}; call fit(X) first"
        + (" or set those attributes" if missing else "")
    )


def _changed(value, default):
    """Whether a parameter differs from its default (arrays always count as set)."""
    if value is default:
        return False
    if default is inspect.Parameter.empty:
        return True
    if isinstance(value, np.ndarray) or isinstance(default, np.ndarray):
        return True
    try:
        same = bool(value == default) and type(value) is type(default)
    except Exception:  # objects whose == is not a plain bool
        return True
    return not same


def _short_repr(value):
    """A parameter's value for ``__repr__``: arrays summarised past a few elements."""
    if isinstance(value, np.ndarray):
        with np.printoptions(threshold=6, edgeitems=2):
            text = repr(value)
    else:
        text = repr(value)
    return " ".join(text.split()) if len(text) <= 200 else text[:196] + "...)"
