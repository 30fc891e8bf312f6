"""Hidden Markov models fitted by Baum-Welch (EM), decoded by Viterbi or by
posteriors, as hmmlearn: a shared base (:mod:`.base`) and one module per emission
family (:mod:`.gaussian`, :mod:`.categorical`); the argument checks they share in
:mod:`.checks`; model files in :mod:`.serialize`. The constructors and attributes are
hmmlearn's (see :mod:`.base` for what differs, and why)."""

from .._shared.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {"GaussianHMM": "gaussian", "CategoricalHMM": "categorical", "hmm_from_dict": "serialize"},
)
