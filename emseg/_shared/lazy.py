"""Public names of a package that load their module on first use.

A package's ``__init__`` lists where each public name lives; the module is imported
when the name is first read, so ``import emseg.io`` does not load numba, scipy or
scikit-image before they are needed (``emseg --help`` stays fast).
"""

import importlib


def lazy_exports(package, where):
    """``(__getattr__, __dir__)`` for ``package``, given ``{name: submodule}``."""

    def __getattr__(name):
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        globals_of_package = importlib.import_module(package).__dict__
        globals_of_package[name] = value
        return value

    def __dir__():
        return sorted(set(importlib.import_module(package).__dict__) | set(where))

    return __getattr__, __dir__
