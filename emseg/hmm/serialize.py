"""HMM model files: :func:`hmm_from_dict` reads either emission family's dict, chosen by
its ``"format"`` field (each class writes its own with ``to_dict``)."""

from .._shared.errors import EmsegError
from .._shared.jsonfields import kind
from .categorical import CATEGORICAL_FORMAT, CategoricalHMM
from .gaussian import GAUSSIAN_FORMAT, GaussianHMM

__all__ = ["hmm_from_dict"]

_FAMILIES = ((GAUSSIAN_FORMAT, GaussianHMM), (CATEGORICAL_FORMAT, CategoricalHMM))


def hmm_from_dict(d, *, where="model"):
    """A fitted :class:`GaussianHMM` or :class:`CategoricalHMM`, chosen by ``d["format"]``."""
    if not isinstance(d, dict):
        raise EmsegError(f"{where} must be a JSON object, got {kind(d)}")
    for fmt, cls in _FAMILIES:
        if d.get("format") == fmt:
            return cls.from_dict(d, where=where)
    raise EmsegError(
        f"{where} is not an emseg HMM (format {d.get('format')!r}, expected "
        f"{GAUSSIAN_FORMAT!r} or {CATEGORICAL_FORMAT!r})"
    )
