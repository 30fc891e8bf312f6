"""Shared segmentation models: one mixture for many images, stored as plain JSON.

A model file is data, never code: loading one parses JSON (no pickle), checks every
type, shape and value, and refuses anything else with a one-line
:class:`~emseg.EmsegError` that names the field and the fix.

- Mixtures are stored through :mod:`emseg.mixture.serialize`, files through
  :mod:`emseg.io.jsonfile`.
- :class:`SegmentationModel`: a mixture fitted on many images' pixels, with the
  feature settings, channel count and label order needed to label any other image the
  same way; :func:`fit_model` makes one, :meth:`SegmentationModel.save` and
  :func:`load_model` store it, ``emseg.segment(image, model=...)`` applies it.
- :class:`PixelSummary`: one image's pixels as weighted feature rows (an exact
  histogram, or a seeded sample for float images). Summaries computed anywhere merge
  by adding counts, so a shared fit can read its images in parallel workers.
"""

import json
import numbers
import os
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from .._shared.errors import EmsegError
from .._shared.jsonfields import (
    check_header,
    describe_number,
    is_finite_number,
    is_int,
    kind,
)
from .._shared.version import __version__
from ..io.jsonfile import load_json, save_json
from ..mixture.serialize import mixture_from_dict, mixture_to_dict
from .features import (
    FeatureSpec,
    distinct_values,
    luminance,
    resolve_color_space,
    split_channels,
    value_features,
)
from .pixels import check_spatial, fit_mixture, order_by_luminance, valid_pixels

# --------------------------------------------------------------------------- shared models

SEGMENTATION_FORMAT = "emseg.SegmentationModel"
SEGMENTATION_FORMAT_VERSION = 2  # 2: features scaled by the training pixels' own range
# Float images (and any image with spatial features) are sampled: together the sampled
# images contribute about this many rows to a shared fit (see summarize_image).
DEFAULT_MAX_SAMPLES = 1_000_000
# Label images are uint16 at most (render.label_image), so no more classes can be written.
# Labelling costs O(rows x classes) time and memory: measured 1.9 s for 10,000 pixels x
# 10,000 classes, linear in each, so a model near this limit is slow but works.
MAX_CLASSES = 65535
LABEL_ORDER = "darkest first: classes sorted by the mean luminance of their training pixels"


@dataclass
class SegmentationModel:
    """A mixture fitted on the pixels of one or many images, with everything needed to
    label another image the same way: label 2 means the same material in every image.

    ``mixture``: the fitted :class:`~emseg.GaussianMixture`, its components already in
    label order (``LABEL_ORDER``). ``features``: the :class:`~emseg.image.features.FeatureSpec`
    (colour space, spatial weight; the scaling is fixed by emseg and recorded in the
    file). ``channels``: 1 for grey images, 3 for colour. ``spatial_ndim``: 2 or 3 when
    the features include pixel coordinates, else None. ``classes``: per label, the
    share of the training pixels and their mean luminance. ``training``: how it was
    fitted (images, pixels, exact or sampled, options).
    """

    mixture: object
    features: FeatureSpec
    channels: int
    spatial_ndim: int | None = None
    classes: list = field(default_factory=list)
    training: dict = field(default_factory=dict)
    emseg_version: str = __version__
    source: str | None = field(default=None, compare=False)  # the file it was loaded from

    @property
    def k(self):
        return int(self.mixture.means_.shape[0])

    @property
    def n_features(self):
        return len(self.features.names) + (self.spatial_ndim or 0)

    def to_dict(self):
        return {
            "format": SEGMENTATION_FORMAT,
            "format_version": SEGMENTATION_FORMAT_VERSION,
            "emseg_version": self.emseg_version,
            "k": self.k,
            "label_order": LABEL_ORDER,
            "features": self.features.to_dict(),
            "channels": self.channels,
            "spatial_ndim": self.spatial_ndim,
            "classes": self.classes,
            "training": self.training,
            "mixture": mixture_to_dict(self.mixture),
        }

    @classmethod
    def from_dict(cls, d, *, where="model"):
        """Validate ``d`` (as written by :meth:`to_dict`) and build the model."""
        check_header(
            d,
            SEGMENTATION_FORMAT,
            SEGMENTATION_FORMAT_VERSION,
            where,
            "segmentation model",
            hint="make one with 'emseg fit'",
        )
        if d.get("format_version") != SEGMENTATION_FORMAT_VERSION:
            raise EmsegError(
                f"{where} has format version {d.get('format_version')}, whose features were "
                "scaled by the dtype's range; refit the model with this emseg ('emseg fit')"
            )
        emseg_version = d.get("emseg_version")
        if not isinstance(emseg_version, str):
            raise EmsegError(f"{where}.emseg_version must be a string, got {emseg_version!r}")
        spec = _spec_from_dict(d.get("features"), f"{where}.features")
        channels = d.get("channels")
        if channels not in (1, 3) or isinstance(channels, bool):
            raise EmsegError(f"{where}.channels must be 1 (grey) or 3 (colour), got {channels!r}")
        if len(spec.offset) != channels:
            raise EmsegError(
                f"{where}.features.offset and .scale need {channels} value(s), one per "
                f"channel, got {len(spec.offset)}"
            )
        ndim = d.get("spatial_ndim")
        if spec.value_only:
            if ndim is not None:
                raise EmsegError(f"{where}.spatial_ndim must be null when spatial is 0, got {ndim!r}")
        elif ndim not in (2, 3) or isinstance(ndim, bool):
            raise EmsegError(f"{where}.spatial_ndim must be 2 or 3 when spatial > 0, got {ndim!r}")
        k = d.get("k")
        if not is_int(k) or not 1 <= k <= MAX_CLASSES:
            raise EmsegError(
                f"{where}.k must be an integer from 1 to {MAX_CLASSES} (the most classes a "
                f"16-bit label image holds), got {describe_number(k)}"
            )
        mixture = mixture_from_dict(d.get("mixture"), where=f"{where}.mixture")
        model = cls(mixture, spec, channels, ndim, emseg_version=emseg_version)
        D = mixture.means_.shape[1]
        if D != model.n_features:
            raise EmsegError(
                f"{where}.mixture has {D} features but the features "
                f"({spec.color_space}, spatial {spec.spatial:g}) make {model.n_features}; "
                "the file is inconsistent, refit the model"
            )
        if k != model.k:
            raise EmsegError(f"{where}.k is {k!r} but the mixture has {model.k} components")
        model.classes = _classes_from_dict(d.get("classes"), model.k, f"{where}.classes")
        training = d.get("training", {})
        if not isinstance(training, dict):
            raise EmsegError(f"{where}.training must be a JSON object, got {kind(training)}")
        model.training = training
        return model

    def fingerprint(self):
        """A SHA-256 of the model's JSON: equal for equal models, whatever their file."""
        import hashlib

        text = json.dumps(self.to_dict(), sort_keys=True, allow_nan=False)
        return hashlib.sha256(text.encode()).hexdigest()

    def save(self, path, *, overwrite=False):
        """Write the model as JSON at ``path`` (atomically; see :func:`save_json`)."""
        save_json(path, self.to_dict(), overwrite=overwrite)

    def check_image(self, channels, spatial_ndim, what="the image"):
        """Refuse an image this model was not made for (channel count, dimensions)."""
        if channels != self.channels:
            kinds = {1: "grey (1 channel)", 3: "colour (3 channels)"}
            raise EmsegError(
                f"{what} is {kinds.get(channels, f'{channels} channels')} but the model was "
                f"fitted on {kinds[self.channels]} images; use a model fitted on "
                f"{'colour' if channels == 3 else 'grey'} images"
            )
        if self.spatial_ndim is not None and spatial_ndim != self.spatial_ndim:
            raise EmsegError(
                f"{what} is {spatial_ndim}-D but the model's spatial features are "
                f"{self.spatial_ndim}-D; use a model fitted on {spatial_ndim}-D images "
                "or one without --spatial"
            )


def check_model_input(model, values, valid, what="the image"):
    """Warn (:class:`~emseg.ModelMismatchWarning`) when ``model`` is applied to pixel
    ``values`` (shape (..., C)) unlike its training images: another dtype kind than all
    of them (a model fitted on 8-bit images, given floats in 0..1, puts every pixel in
    its darkest class), or more than 1% of the ``valid`` pixels further outside the
    training range than its own width. A warning, not an error: a float image in the
    training's units is fine. Models without ``training["dtype_kinds"]`` skip that part.
    """
    import warnings

    from .._shared.errors import ModelMismatchWarning

    kinds = model.training.get("dtype_kinds")
    kind = _dtype_kind(values.dtype)
    if isinstance(kinds, list) and kinds and all(isinstance(k, str) for k in kinds) and kind not in kinds:
        trained = " and ".join(_KIND_NAMES.get(k, k) for k in kinds)
        warnings.warn(
            f"{what} has {_KIND_NAMES.get(kind, kind)} pixels but the model was fitted on "
            f"{trained} images (values {_describe_range(model.features)}); convert the image "
            "to the training images' type and range, or fit a model on images like it",
            ModelMismatchWarning,
            stacklevel=3,
        )
        return
    offset = np.asarray(model.features.offset, dtype=np.float64)
    scale = np.asarray(model.features.scale, dtype=np.float64)
    low, high = offset - scale, offset + 2 * scale  # the range, widened by its width
    flat = values.reshape(-1, values.shape[-1])
    with np.errstate(invalid="ignore"):
        if flat.shape[0] == 0 or (
            np.nanmin(flat, axis=0) >= low).all() and (np.nanmax(flat, axis=0) <= high).all():
            return
        if valid is not None:
            flat = flat[np.asarray(valid).ravel()]
        far = ((flat < low) | (flat > high)).any(axis=1)
    share = far.mean() if far.size else 0.0
    if share > 0.01:
        warnings.warn(
            f"{100 * share:.3g}% of the pixels of {what} lie far outside the values the model "
            f"was fitted on ({_describe_range(model.features)}); rescale the image to the "
            "training images' range, or fit a model on images like it",
            ModelMismatchWarning,
            stacklevel=3,
        )


def _describe_range(spec):
    lows = spec.offset
    highs = [o + s for o, s in zip(spec.offset, spec.scale)]
    return ", ".join(f"{lo:.4g}..{hi:.4g}" for lo, hi in zip(lows, highs))


def load_model(path):
    """Read and validate a :class:`SegmentationModel` JSON file (no code is run).

    Raises :class:`~emseg.EmsegError` with one line naming the file and the problem
    when it is missing, corrupt, not a model, or inconsistent.
    """
    path = os.fspath(path)
    d = load_json(path, where="model")
    try:
        model = SegmentationModel.from_dict(d)
    except EmsegError as exc:
        raise EmsegError(f"{path}: {exc}") from None
    model.source = path
    return model


def _spec_from_dict(d, where):
    if not isinstance(d, dict):
        raise EmsegError(f"{where} must be a JSON object, got {kind(d)}")
    color_space = d.get("color_space")
    if color_space not in ("gray", "rgb", "lab", "hsv"):
        raise EmsegError(f"{where}.color_space must be gray, rgb, lab or hsv, got {color_space!r}")
    spatial = d.get("spatial")
    if not is_finite_number(spatial) or spatial < 0:
        raise EmsegError(f"{where}.spatial must be a number >= 0, got {describe_number(spatial)}")
    value_range = []
    for key in ("offset", "scale"):
        values = d.get(key)
        if not isinstance(values, list) or not values or not all(
            is_finite_number(v) for v in values
        ):
            raise EmsegError(f"{where}.{key} must be a non-empty list of finite numbers")
        value_range.append(tuple(float(v) for v in values))
    offset, scale = value_range
    if len(offset) != len(scale) or min(scale) <= 0:
        raise EmsegError(f"{where}.scale must hold one positive number per offset")
    spec = FeatureSpec(color_space, float(spatial), offset=offset, scale=scale)
    expected = json.loads(json.dumps(spec.to_dict()))
    for key, value in expected.items():
        if d.get(key) != value:
            raise EmsegError(
                f"the model was made for other features: {where}.{key} is {d.get(key)!r} but "
                f"this emseg computes {value!r}; refit the model with this version"
            )
    return spec


def _classes_from_dict(classes, k, where):
    if not isinstance(classes, list) or len(classes) != k:
        raise EmsegError(f"{where} must be a list of {k} objects, one per label")
    for i, c in enumerate(classes):
        if not isinstance(c, dict) or c.get("label") != i:
            raise EmsegError(f"{where}[{i}] must be an object with label {i}")
        for key in ("fraction", "mean_luminance"):
            if not is_finite_number(c.get(key)):
                raise EmsegError(f"{where}[{i}].{key} must be a finite number")
    return classes


@dataclass
class PixelSummary:
    """The pixels of one or more images as weighted rows of pixel values: the unit that
    travels in a shared fit (computed per image, in any worker, then merged). Features
    are made only when the merged rows are fitted, on the range of all of them.

    Exact part: for integer images with value-only features, the distinct pixel values
    and how many pixels have each (``exact_w``); merging sums counts, so it is exact and
    does not depend on the order images are merged in. Sampled part: for float images
    and spatial features, per image index a seeded random sample ``(X, w, lum)`` (the
    pixel values, then the spatial features) whose weights are (valid pixels / sampled
    pixels), so every image weighs by its pixels. ``exact_lum`` holds count x luminance
    (summed on merge) to order the labels.
    """

    spec: FeatureSpec
    channels: int
    spatial_ndim: int | None
    exact_X: np.ndarray
    exact_w: np.ndarray
    exact_lum: np.ndarray
    samples: dict = field(default_factory=dict)
    n_images: int = 1
    n_pixels: int = 0
    first_index: int = 0
    dtype_kinds: tuple = ()  # numpy dtype kinds of the images ("u", "i", "f")

    @property
    def group(self):
        """Summaries merge only within a group: same channels and spatial dimensions."""
        return (self.channels, self.spatial_ndim)

    def merge(self, other):
        if other.group != self.group or other.spec != self.spec:
            raise EmsegError("cannot merge pixel summaries of different kinds of image")
        X = np.concatenate([self.exact_X, other.exact_X])
        w = np.concatenate([self.exact_w, other.exact_w])
        lum = np.concatenate([self.exact_lum, other.exact_lum])
        if X.shape[0]:
            unique, _, inverse = distinct_values(X)
            w = np.bincount(inverse, weights=w, minlength=unique.shape[0])
            lum = np.bincount(inverse, weights=lum, minlength=unique.shape[0])
            X = unique
        return PixelSummary(
            self.spec,
            self.channels,
            self.spatial_ndim,
            X,
            w,
            lum,
            {**self.samples, **other.samples},
            self.n_images + other.n_images,
            self.n_pixels + other.n_pixels,
            min(self.first_index, other.first_index),
            tuple(sorted(set(self.dtype_kinds) | set(other.dtype_kinds))),
        )

    def training_rows(self):
        """``(spec, X, weights, luminance)``: the feature rows, exact rows (sorted) then
        samples by image index, and the spec with the range of all their values."""
        parts = [(self.exact_X, self.exact_w, self.exact_lum / np.maximum(self.exact_w, 1e-300))]
        parts += [self.samples[i] for i in sorted(self.samples)]
        rows = np.concatenate([np.asarray(p[0], dtype=np.float64) for p in parts])
        w = np.concatenate([p[1] for p in parts])
        lum = np.concatenate([p[2] for p in parts])
        values = rows[:, : self.channels]
        spec = self.spec.with_range(values)
        X = np.hstack([value_features(values, spec), rows[:, self.channels :]])
        return spec, X, w, lum


def summarize_image(
    image,
    *,
    color_space="auto",
    spatial=0.0,
    mask=None,
    channel_axis="auto",
    index=0,
    n_images=1,
    max_samples=DEFAULT_MAX_SAMPLES,
    random_state=0,
):
    """The :class:`PixelSummary` of one image for a shared fit.

    Integer (8/16-bit) images with ``spatial == 0`` give their exact histogram. Float
    images, and every image when ``spatial > 0``, give a uniform random sample of
    ``ceil(max_samples / n_images)`` of their valid pixels (all of them when fewer),
    drawn with ``numpy.random.default_rng([random_state, index])``, so the sample of
    image ``index`` does not depend on which worker draws it or when.
    """
    values, is_color, alpha = split_channels(image, channel_axis)
    shape = values.shape[:-1]
    spec = FeatureSpec(resolve_color_space(color_space, is_color), check_spatial(spatial))
    valid = valid_pixels(shape, alpha, mask, values)
    flat = values.reshape(-1, values.shape[-1])
    if valid is not None:
        flat = flat[valid.ravel()]
    n_valid = flat.shape[0]
    if n_valid == 0:
        raise EmsegError("no pixel to fit: the mask (or alpha) excludes every pixel")
    channels = 3 if is_color else 1
    ndim = None if spec.value_only else len(shape)
    empty = (np.empty((0, channels + (ndim or 0))), np.empty(0), np.empty(0))
    kinds = (_dtype_kind(flat.dtype),)
    if spec.value_only and np.issubdtype(flat.dtype, np.integer):
        unique, counts, _ = distinct_values(flat)
        return PixelSummary(
            spec, channels, ndim, unique, counts, counts * luminance(unique), {}, 1, n_valid,
            index, kinds,
        )
    if isinstance(random_state, bool) or not isinstance(random_state, numbers.Integral) or random_state < 0:
        raise EmsegError(
            f"random_state must be an integer >= 0 for a shared fit, got {random_state!r}"
        )
    take = min(n_valid, -(-int(max_samples) // int(n_images)))
    rng = np.random.default_rng([int(random_state), int(index)])
    rows = np.sort(rng.choice(n_valid, take, replace=False)) if take < n_valid else np.arange(n_valid)
    sample = flat[rows]
    X = sample.astype(np.float64)
    if ndim is not None:
        positions = np.flatnonzero(valid.ravel())[rows] if valid is not None else rows
        coords = np.stack(np.unravel_index(positions, shape), 1).astype(np.float64)
        X = np.hstack([X, coords * (spec.spatial / max(max(shape) - 1, 1))])
    w = np.full(take, n_valid / take)
    return PixelSummary(
        spec, channels, ndim, *empty, {index: (X, w, luminance(sample))}, 1, n_valid, index,
        kinds,
    )


def fit_summary(summary, k, *, covariance_type="full", random_state=0, k_max=8, max_samples=None,
                **em_options):
    """Fit a :class:`SegmentationModel` on a merged :class:`PixelSummary`.

    ``k`` is a number of classes or ``"auto"`` (chosen from 2..``k_max`` by
    :func:`emseg.mixture.selection.choose_k`, with the number of pixels as the sample size).
    Other keywords go to :class:`~emseg.GaussianMixture`.
    """
    spec, X, w, lum = summary.training_rows()
    options = dict(covariance_type=covariance_type, random_state=random_state, **em_options)
    gm, bic_table = fit_mixture(X, w, summary.n_pixels, X.shape[0], k, k_max, options,
                                 " in all the images")
    order_by_luminance(gm, gm.predict_proba(X), lum, w)  # components in label order
    mass = gm.predict_proba(X) * w[:, None]
    total = mass.sum(0)
    classes = [
        {
            "label": i,
            "fraction": float(total[i] / total.sum()),
            "mean_luminance": float((mass[:, i] @ lum) / max(total[i], 1e-300)),
        }
        for i in range(gm.n_components_)
    ]
    training = {
        "n_images": summary.n_images,
        "n_pixels": summary.n_pixels,
        "dtype_kinds": list(summary.dtype_kinds),
        "exact": not summary.samples,
        "sampled_images": len(summary.samples),
        "max_samples": max_samples,
        "k": k,
        "k_max": k_max if k == "auto" else None,
        "bic_table": bic_table,
        "covariance_type": covariance_type,
        "random_state": random_state,
        "options": {key: v for key, v in em_options.items() if _plain(v)},
        "iterations": int(gm.n_iter_),
        "converged": bool(gm.converged_),
        "log_likelihood": float(gm.lower_bound_),
    }
    return SegmentationModel(gm, spec, summary.channels, summary.spatial_ndim, classes, training)


def fit_model(
    images,
    k,
    *,
    color_space="auto",
    spatial=0.0,
    masks=None,
    channel_axis="auto",
    covariance_type="full",
    random_state=0,
    k_max=8,
    max_samples=DEFAULT_MAX_SAMPLES,
    **em_options,
):
    """Fit one mixture on the pixels of all ``images``: a :class:`SegmentationModel`.

    8/16-bit images (with ``spatial == 0``) are fitted exactly: their histograms are
    merged (distinct values with their pixel counts summed across images), which is the
    same maximum-likelihood fit as fitting every pixel of every image. Float images, and
    all images when ``spatial > 0``, contribute a seeded uniform random sample of
    ``ceil(max_samples / len(images))`` pixels each (see :func:`summarize_image`),
    weighted so each image counts by its number of valid pixels.

    ``images``: a sequence of arrays, all grey or all colour (and of one dimensionality
    when ``spatial > 0``). ``masks``: None, or one boolean mask (or None) per image.
    ``k``: number of classes or ``"auto"``. Other keywords go to
    :class:`~emseg.GaussianMixture`. Labels are ordered darkest first, and
    :func:`emseg.segment` with ``model=`` gives every image the same labels for the
    same values.
    """
    if isinstance(images, np.ndarray) or not isinstance(images, Iterable) or isinstance(images, (str, bytes)):
        raise EmsegError(
            f"images must be a list of image arrays, got {type(images).__name__}; "
            "for one image pass [image]"
        )
    images = list(images)
    if not images:
        raise EmsegError("images is empty; pass at least one image")
    if masks is not None and (
        isinstance(masks, (np.ndarray, str, bytes)) or not isinstance(masks, Iterable)
    ):
        raise EmsegError(
            f"masks must be None or a list with one mask (or None) per image, got "
            f"{type(masks).__name__}"
        )
    masks = [None] * len(images) if masks is None else list(masks)
    if len(masks) != len(images):
        raise EmsegError(f"masks has {len(masks)} entries for {len(images)} images; pass one per image")
    merged = None
    for i, (image, mask) in enumerate(zip(images, masks)):
        part = summarize_image(
            image,
            color_space=color_space,
            spatial=spatial,
            mask=mask,
            channel_axis=channel_axis,
            index=i,
            n_images=len(images),
            max_samples=max_samples,
            random_state=random_state,
        )
        if merged is not None and part.group != merged.group:
            raise EmsegError(
                f"image {i} is {_describe_group(part.group)} but image 0 is "
                f"{_describe_group(merged.group)}; a shared model needs images of one kind"
            )
        merged = part if merged is None else merged.merge(part)
    return fit_summary(
        merged,
        k,
        covariance_type=covariance_type,
        random_state=random_state,
        k_max=k_max,
        max_samples=max_samples if merged.samples else None,
        **em_options,
    )


def _dtype_kind(dtype):
    """"u"/"i" for integer pixels, "f" for floats (bool counts as unsigned)."""
    return "u" if dtype.kind == "b" else dtype.kind


_KIND_NAMES = {"u": "unsigned integer", "i": "signed integer", "f": "float"}


def _describe_group(group):
    channels, ndim = group
    text = "colour" if channels == 3 else "grey"
    return text if ndim is None else f"{text} {ndim}-D"


def _plain(value):
    return value is None or isinstance(value, (bool, int, float, str))
