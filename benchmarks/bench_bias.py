"""Benchmark the bias field estimated inside EM (``emseg.segment(..., bias=True)``, issue 12).

    python benchmarks/bench_bias.py               # the table (2-D and 3-D phantoms)
    python benchmarks/bench_bias.py --large       # also the 4-million-voxel volume
    python benchmarks/bench_bias.py --no-n4       # without SimpleITK's N4

Phantoms: a 3-tissue "brain" (an ellipse or ellipsoid mask holding smoothed noise cut
at its 25 % and 60 % quantiles into classes of intensity 40 / 80 / 120, smooth shapes
of about 4 mm), Gaussian noise of sigma 12 (plain emseg misclassifies about 6 %), zero
outside the mask. 2-D: 256 x 256 pixels of 1 mm; 3-D: 64 x 80 x 64 voxels of 2 mm
(128 x 160 x 128 mm, a head's size). The field multiplies the clean image: smoothed
noise (sigma a third of the field of view) scaled to span 1 - L/2 .. 1 + L/2 in the
mask, L = 20 % and 40 % (BrainWeb's levels; 40 % spans 0.8 - 1.2), then to mean 1.

Columns: misclassification (%) of plain emseg on the image without a field, with the
field, with ``bias=True``, after SimpleITK's N4 (``N4BiasFieldCorrectionImageFilter``
with the mask, its defaults, on the float image) then plain emseg; the seconds of each
(``bias=True`` includes its plain fit); and the correlation with the true field inside
the mask of emseg's field and of N4's. Misclassification counts the voxels inside the
mask whose label differs from the truth (classes sorted darkest first, as the truth).

``--large``: a 4-million-voxel volume (160 x 200 x 128 of 1 mm), 40 % field, through
``segment(bias=True, beta="auto")``, timed with its parts.
"""

import argparse
import os
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
from scipy import ndimage as ndi

import emseg

MEANS = (40.0, 80.0, 120.0)


def phantom(shape, level, *, noise=12.0, seed=0, spacing=None):
    """``(image, truth, mask, field)`` as the module docstring describes (float32)."""
    rng = np.random.default_rng(seed)
    spacing = np.ones(len(shape)) if spacing is None else np.asarray(spacing, float)
    grids = np.indices(shape, dtype=float)
    r2 = sum(((g - (n - 1) / 2) / (0.45 * n)) ** 2 for g, n in zip(grids, shape))
    mask = r2 <= 1
    tissue = ndi.gaussian_filter(rng.standard_normal(shape), 4.0 / spacing)
    lo, hi = np.quantile(tissue[mask], [0.25, 0.6])
    truth = np.digitize(tissue, [lo, hi]).astype(np.int32)
    slow = ndi.gaussian_filter(rng.standard_normal(shape), [n / 3 for n in shape], mode="wrap")
    slow = (slow - slow[mask].min()) / np.ptp(slow[mask])
    field = 1 + level * (slow - 0.5)
    field /= field[mask].mean()
    image = field * np.array(MEANS)[truth] + rng.normal(0, noise, shape)
    image[~mask] = 0
    return image.astype(np.float32), truth, mask, field


def misclassified(labels, truth, mask):
    """Percentage of the mask's voxels whose label is not the truth (the labels'
    lowest class inside the mask is taken as class 0, whatever the label convention)."""
    inside = labels[mask]
    return 100.0 * float(np.mean(inside - inside.min() != truth[mask]))


def n4(image, mask, spacing):
    """SimpleITK's N4 with the mask; ``(restored, field)``."""
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(image.astype(np.float32))
    msk = sitk.GetImageFromArray(mask.astype(np.uint8))
    if spacing is not None:
        img.SetSpacing(tuple(float(s) for s in spacing[::-1]))
        msk.SetSpacing(tuple(float(s) for s in spacing[::-1]))
    corrector = sitk.N4BiasFieldCorrectionImageFilter()
    out = corrector.Execute(img, msk)
    log_field = corrector.GetLogBiasFieldAsImage(img)
    return sitk.GetArrayFromImage(out), np.exp(sitk.GetArrayFromImage(log_field))


def correlation(a, b, mask):
    return float(np.corrcoef(a[mask], b[mask])[0, 1])


def case(shape, spacing, level, use_n4):
    clean, truth, mask, _ = phantom(shape, 0.0, spacing=spacing)
    image, _, _, field = phantom(shape, level, spacing=spacing)
    row = {"no field": misclassified(emseg.segment(clean, 3, mask=mask).labels, truth, mask)}
    clock = time.perf_counter()
    row["plain"] = misclassified(emseg.segment(image, 3, mask=mask).labels, truth, mask)
    row["t plain"] = time.perf_counter() - clock
    clock = time.perf_counter()
    seg = emseg.segment(image, 3, mask=mask, bias=True, spacing=spacing)
    row["t bias"] = time.perf_counter() - clock
    row["bias"] = misclassified(seg.labels, truth, mask)
    row["r bias"] = correlation(seg.bias, field, mask)
    if use_n4:
        clock = time.perf_counter()
        restored, n4_field = n4(image, mask, spacing)
        row["n4"] = misclassified(emseg.segment(restored, 3, mask=mask).labels, truth, mask)
        row["t n4"] = time.perf_counter() - clock
        row["r n4"] = correlation(n4_field, field, mask)
    return row


def large(use_n4):
    shape = (160, 200, 128)
    image, truth, mask, field = phantom(shape, 0.4)
    print(f"\n4-million-voxel volume {shape} (1 mm), 40 % field, bias=True, beta='auto':")
    for beta in (0.0, "auto"):
        clock = time.perf_counter()
        seg = emseg.segment(image, 3, mask=mask, bias=True, beta=beta)
        total = time.perf_counter() - clock
        parts = ", ".join(f"{k} {v:.2f} s" for k, v in seg.timings.items())
        print(f"  beta={beta}: {total:.1f} s ({parts}); misclassified "
              f"{misclassified(seg.labels, truth, mask):.2f} %, field r = "
              f"{correlation(seg.bias, field, mask):.3f}")
    clock = time.perf_counter()
    seg = emseg.segment(image, 3, mask=mask)
    print(f"  plain, no correction: {time.perf_counter() - clock:.1f} s; misclassified "
          f"{misclassified(seg.labels, truth, mask):.2f} %")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--large", action="store_true")
    parser.add_argument("--no-n4", action="store_true")
    args = parser.parse_args()
    try:
        import SimpleITK  # noqa: F401

        use_n4 = not args.no_n4
    except ImportError:
        use_n4 = False
    warm, _, wmask, _ = phantom((48, 48), 0.2)  # compile / load numba's cache, untimed
    emseg.segment(warm, 3, mask=wmask, bias=True)
    head = ("case", "no field", "plain", "bias", "n4", "t plain", "t bias", "t n4",
            "r bias", "r n4")
    print(" | ".join(head))
    print("|".join("---" for _ in head))
    for name, shape, spacing in (("2-D 256^2", (256, 256), None),
                                 ("3-D 64x80x64 @2mm", (64, 80, 64), (2.0, 2.0, 2.0))):
        for level in (0.2, 0.4):
            row = case(shape, spacing, level, use_n4)
            cells = [f"{name}, {int(level * 100)} %"]
            for key in head[1:]:
                value = row.get(key)
                cells.append("-" if value is None else (
                    f"{value:.3f}" if key.startswith("r") else
                    f"{value:.2f}" if key.startswith("t") else f"{value:.2f}"))
            print(" | ".join(cells), flush=True)
    if args.large:
        large(use_n4)


if __name__ == "__main__":
    main()
