"""The inputs of a batch: which files of the folders given are images to segment, and
where the outputs of each go (see :func:`find_inputs`). Hidden files are never inputs,
nor the files emseg wrote in the output folder
(:class:`~emseg.workflows.outputs.OwnOutputs`)."""

import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path

from .._shared.errors import EmsegError
from .outputs import OwnOutputs

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".nii", ".nii.gz")


@dataclass
class Input:
    """One image of a batch and the folder its outputs go to."""

    path: Path
    out_dir: Path


def find_inputs(inputs, out, *, recursive=False, pattern=None):
    """The images named by ``inputs`` (folders or files), with their output folders.

    A folder contributes its files whose name matches ``pattern`` (shell-style, e.g.
    ``"*.tif"``; by default any PNG, JPEG, BMP or TIFF name), in sorted order, and with
    ``recursive`` those of its sub-folders, whose outputs go to the same sub-folders of
    ``out``. With several folders each gets its own sub-folder of ``out``, named after
    it. A file is taken as it is, its outputs in ``out``. Raises
    :class:`~emseg.EmsegError` if an input does not exist or nothing is found.
    """
    out = Path(out)
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    inputs = [Path(p) for p in inputs]
    if not inputs:
        raise EmsegError("no inputs given; pass one or more folders or images")
    out_real = Path(os.path.realpath(out))
    folders = [p for p in inputs if p.is_dir()]
    found = []
    for root in inputs:
        if not root.exists():
            raise EmsegError(f"{root} does not exist; check the path")
        if not root.is_dir():
            found.append(Input(root, out))
            continue
        base = out / Path(os.path.realpath(root)).name if len(folders) > 1 else out
        walker = sorted(root.rglob("*")) if recursive else sorted(root.iterdir())
        ours = OwnOutputs(walker, out_real)
        for path in walker:
            if not _wanted(path, root, pattern) or ours.wrote(path):
                continue
            found.append(Input(path, base / path.parent.relative_to(root)))
    if not found:
        what = f"matching {pattern!r}" if pattern else "(PNG, JPEG, BMP or TIFF)"
        where = ", ".join(str(p) for p in inputs)
        hint = "" if recursive else "; add --recursive to look in sub-folders"
        raise EmsegError(f"no images {what} found in {where}{hint}")
    return found


def _wanted(path, root, pattern):
    rel = path.relative_to(root)
    if any(part.startswith(".") for part in rel.parts) or not path.is_file():
        return False
    if pattern is not None:
        return fnmatch.fnmatch(path.name, pattern)
    return path.name.lower().endswith(IMAGE_SUFFIXES)
