"""The ``emseg`` command: the only code that imports click."""
