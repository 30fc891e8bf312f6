"""Hidden Markov models fitted by Baum-Welch (EM), decoded by Viterbi or by
posteriors, as hmmlearn: a shared base and one class per emission family."""

from .._shared.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {"GaussianHMM": "models", "CategoricalHMM": "models", "hmm_from_dict": "models"},
)
