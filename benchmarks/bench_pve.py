"""Partial-volume estimates (issue 12): accuracy against known fractions, and time.

    python benchmarks/bench_pve.py          # 2-D 256^2, 3-D 64^3, two noise levels; 160^3 timed
    python benchmarks/bench_pve.py --quick    # 2-D 128^2 and 3-D 32^3, no large volume

Phantom: a smooth random field at 4x the working resolution, cut at its 33rd and 66th
percentiles into three classes; averaging that fine label map over 4x4 (4x4x4) blocks
gives each voxel's true fractions, and the image is those fractions times the class
values 40 / 120 / 200 plus Gaussian noise of 0.1 or 0.25 of the class spacing (8 or
20), float32. About a fifth of the voxels are mixed.

Each case is segmented by ``emseg.segment(image, 3)`` (and with ``beta=0.5``, the
MRF), then ``emseg.partial_volumes(image, seg)``. Printed: the RMSE against the true
fractions (root of the mean squared error over voxels and classes) of the hard labels
as one-hot fractions, of the posteriors and of the partial-volume estimates, over all
voxels and over the mixed voxels alone (no class above 0.9); the median time of
``partial_volumes`` over three runs. The last lines time a 160^3 (4.1 million voxel)
volume, and a pair of co-registered channels (96^3). No reference implementation runs here: FSL FAST is not a Python package.
"""

import argparse
import os
import sys
import time

import numpy as np
from scipy import ndimage

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import cpu_name  # noqa: E402

import emseg  # noqa: E402

MEANS = np.array([40.0, 120.0, 200.0])


def phantom(shape, noise, seed=0, factor=4):
    """``(image, truth)``: the float32 image and the true fractions, shape + (3,)."""
    rng = np.random.default_rng(seed)
    fine_shape = tuple(s * factor for s in shape)
    field = ndimage.gaussian_filter(rng.standard_normal(fine_shape, dtype=np.float32),
                                    sigma=3 * factor)
    low, high = np.quantile(field, [0.33, 0.66])
    fine = (field > low).astype(np.int8) + (field > high)
    del field
    truth = np.stack([fine == c for c in range(3)], axis=-1).astype(np.float32)
    del fine
    for axis in range(len(shape)):
        truth = truth.reshape(truth.shape[:axis] + (shape[axis], factor)
                              + truth.shape[axis + 1:]).mean(axis=axis + 1)
    image = truth @ MEANS.astype(np.float32)
    image += rng.normal(0, noise * (MEANS[1] - MEANS[0]), shape).astype(np.float32)
    return image.astype(np.float32), truth.astype(np.float64)


def rmse(estimate, truth, where=None):
    err = ((np.asarray(estimate, np.float64) - truth) ** 2).mean(axis=-1)
    return float(np.sqrt(err.mean() if where is None else err[where].mean()))


def median_time(fn, repeats=3):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    shapes = [(128, 128), (32, 32, 32)] if args.quick else [(256, 256), (64, 64, 64)]
    print(f"CPU: {cpu_name()}, load {os.getloadavg()[0]:.1f}")
    print("| phantom | noise | labels | RMSE hard | RMSE posteriors | RMSE PVE "
          "| mixed voxels: posteriors | mixed: PVE | PVE time (s) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for shape in shapes:
        for noise in (0.1, 0.25):
            image, truth = phantom(shape, noise)
            mixed = truth.max(axis=-1) < 0.9
            for beta in (0.0, 0.5):
                seg = emseg.segment(image, 3, beta=beta)
                seconds, pve = median_time(lambda: emseg.partial_volumes(image, seg))
                hard = np.eye(3)[seg.labels]
                name = "x".join(map(str, shape))
                labels = "mixture" if beta == 0 else f"MRF beta {beta}"
                print(f"| {name} | {noise} | {labels} | {rmse(hard, truth):.4f} "
                      f"| {rmse(seg.posteriors, truth):.4f} | {rmse(pve, truth):.4f} "
                      f"| {rmse(seg.posteriors, truth, mixed):.4f} "
                      f"| {rmse(pve, truth, mixed):.4f} | {seconds:.3f} |")
    if not args.quick:
        image, truth = phantom((160, 160, 160), 0.1, seed=1)
        start = time.perf_counter()
        seg = emseg.segment(image, 3)
        seg_seconds = time.perf_counter() - start
        seconds, pve = median_time(lambda: emseg.partial_volumes(image, seg))
        print(f"\n160^3 ({image.size} voxels, float32, noise 0.1): segment "
              f"{seg_seconds:.2f} s, partial_volumes {seconds:.2f} s (median of 3); "
              f"RMSE posteriors {rmse(seg.posteriors, truth):.4f}, PVE {rmse(pve, truth):.4f}")
        u8 = np.clip(np.rint(image), 0, 255).astype(np.uint8)
        seg = emseg.segment(u8, 3)
        seconds, pve = median_time(lambda: emseg.partial_volumes(u8, seg))
        print(f"the same as uint8: partial_volumes {seconds:.2f} s; RMSE PVE "
              f"{rmse(pve, truth):.4f}")
    # two co-registered channels (a T1/T2-like pair: the second channel's contrast
    # differs), float32, 96^3 (64^3 with --quick)
    side = 64 if args.quick else 96
    image, truth = phantom((side,) * 3, 0.1, seed=3)
    rng = np.random.default_rng(1)
    second = truth @ np.array([150.0, 40.0, 90.0]) + rng.normal(0, 8, image.shape)
    both = np.stack([image, second.astype(np.float32)], axis=-1)
    seg = emseg.segment(both, 3, multichannel=True)
    seconds, pve = median_time(lambda: emseg.partial_volumes(both, seg))
    print(f"two channels, {side}^3 ({image.size} voxels, float32, noise 0.1): "
          f"partial_volumes {seconds:.2f} s (median of 3); RMSE posteriors "
          f"{rmse(seg.posteriors, truth):.4f}, PVE {rmse(pve, truth):.4f}")


if __name__ == "__main__":
    main()
