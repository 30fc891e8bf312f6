"""Small result tables as CSV files: named columns in, one file out (atomically).

For tables a workflow builds (per-object measurements, batch summaries), not for the
numeric tables the ``gmm`` and ``hmm`` commands read and write (:mod:`emseg.io.tables`).
Floats are written with ``repr``'s shortest round-trip digits, so re-reading gives the
same numbers.
"""

import csv

from .._shared.errors import EmsegError
from .atomic import open_temp, writing

__all__ = ["write_columns"]


def write_columns(path, columns, *, overwrite=False):
    """Write ``columns`` (a dict of name -> equal-length sequence) as a CSV file with a
    header row. Refuses to replace an existing file unless ``overwrite``."""
    names = list(columns)
    lengths = {len(columns[n]) for n in names}
    if len(lengths) > 1:
        raise EmsegError(f"cannot write {path}: columns of different lengths {sorted(lengths)}")
    with writing(path, overwrite) as tmp:
        with open_temp(tmp, "w", newline="", encoding="utf-8") as f:
            out = csv.writer(f, lineterminator="\n")
            out.writerow(names)
            out.writerows(zip(*(columns[n] for n in names)))
