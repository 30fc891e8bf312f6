"""Exceptions and warnings raised by emseg.

Every error that bad input can cause is an :class:`EmsegError`, so a caller (and the
command line) can tell a problem with the data or the arguments from a bug.
"""


class EmsegError(ValueError):
    """Bad input or arguments: the message names the argument, the value and the fix."""


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
