"""Exceptions and warnings raised by emseg.

Every error that bad input can cause is an :class:`EmsegError`, so a caller (and the
command line) can tell a problem with the data or the arguments from a bug.
"""


class EmsegError(ValueError):
    """Bad input or arguments: the message names the argument, the value and the fix."""


class NotANumberError(EmsegError, TypeError):
    """A value in the data is of a type that is not a number (a dict in an object
    array): an EmsegError, and a TypeError as Python's ``float()`` raises."""


class ConvergenceWarning(UserWarning):
    """EM stopped at ``max_iter`` before the change in log-likelihood fell below ``tol``."""


class EmptyComponentWarning(UserWarning):
    """A mixture component lost all its weight and was re-seeded."""


class KChoiceWarning(UserWarning):
    """``k="auto"`` chose ``k_max``, the largest K it tried: a larger ``k_max`` might
    choose more."""


class ModelMismatchWarning(UserWarning):
    """A shared model is applied to an image unlike those it was fitted on: another
    kind of dtype (8-bit integers vs floats), or values far outside the training range.
    The labels are computed anyway, but likely mean nothing."""


def __getattr__(name):
    """``NotFittedError`` is made on first use, so ``import emseg`` never imports
    scikit-learn (see :func:`not_fitted_error_class`)."""
    if name == "NotFittedError":
        cls = not_fitted_error_class()
        globals()["NotFittedError"] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def not_fitted_error_class():
    """``NotFittedError``: a model is used before it is fitted.

    It is an :class:`EmsegError` (so the command line prints it as one line) and, when
    scikit-learn is installed, a subclass of ``sklearn.exceptions.NotFittedError`` too,
    so scikit-learn's code and tests that expect that exception catch it. Without
    scikit-learn it is, like scikit-learn's, both a ValueError and an AttributeError.
    The class is built once, on first access of ``emseg._shared.errors.NotFittedError``
    (which imports ``sklearn.exceptions`` when scikit-learn is installed: about a
    second, paid only by code that raises or catches this error).
    """
    cls = globals().get("NotFittedError")
    if cls is not None:
        return cls
    try:
        from sklearn.exceptions import NotFittedError as sklearn_not_fitted
    except ImportError:
        bases = (EmsegError, AttributeError)
    else:
        bases = (EmsegError, sklearn_not_fitted)
    doc = (
        "A model is used before it is fitted: an EmsegError and, when scikit-learn is "
        "installed, sklearn.exceptions.NotFittedError."
    )
    cls = type("NotFittedError", bases, {"__doc__": doc, "__module__": __name__})
    globals()["NotFittedError"] = cls
    return cls
