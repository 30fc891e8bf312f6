"""Hidden Markov models fitted by Baum-Welch (EM), decoded by Viterbi or by
posteriors, as hmmlearn: a shared base (:mod:`.base`) and one module per emission
family (:mod:`.gaussian`, :mod:`.categorical`); model files in :mod:`.serialize`."""

from .._shared.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {"GaussianHMM": "gaussian", "CategoricalHMM": "categorical", "hmm_from_dict": "serialize"},
)
