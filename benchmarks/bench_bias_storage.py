"""Does ``segment(bias=True)`` give one answer however the same picture is stored?

    python benchmarks/bench_bias_storage.py            # 14 of skimage's pictures, K=3 and 4
    python benchmarks/bench_bias_storage.py camera coins --k 3

For each picture shipped with scikit-image, the reference is the uint8 file; the copies
are float32 x 0.1, float32 x 1e-3, float32 x 7.3 and uint16 x 257 (the same values,
stored otherwise). Printed per copy: the share of labels equal to the reference's (%)
and the largest difference between the two fields; per picture: the field's iterations,
seconds and range. The last line gives the worst of each. (An offset, uint16 + 1000, is
a different image to a multiplicative model and is not a copy here.)
"""

import argparse
import time
import warnings

import numpy as np

import emseg

PICTURES = ["camera", "coins", "moon", "page", "text", "cell", "astronaut", "chelsea",
            "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "brick",
            "grass"]
COPIES = {
    "f32x0.1": lambda a: (a * 0.1).astype(np.float32),
    "f32x1e-3": lambda a: (a * 1e-3).astype(np.float32),
    "f32x7.3": lambda a: (a * 7.3).astype(np.float32),
    "u16x257": lambda a: a.astype(np.uint16) * 257,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("pictures", nargs="*", default=PICTURES)
    parser.add_argument("--k", type=int, nargs="+", default=[3, 4])
    args = parser.parse_args()
    from skimage import data

    warnings.simplefilter("ignore")
    print("picture k | iterations seconds field range | " + "  ".join(
        f"{name}: labels % / field diff" for name in COPIES))
    worst_labels, worst_field = 100.0, 0.0
    for name in args.pictures:
        image = getattr(data, name)()
        if name == "hubble_deep_field":
            image = image[..., 0]
        for k in args.k:
            clock = time.perf_counter()
            ref = emseg.segment(image, k, bias=True, random_state=0)
            seconds = time.perf_counter() - clock
            cells = []
            for make in COPIES.values():
                other = emseg.segment(make(image), k, bias=True, random_state=0)
                labels = 100.0 * float(np.mean(other.labels == ref.labels))
                field = float(np.abs(other.bias - ref.bias).max())
                worst_labels, worst_field = min(worst_labels, labels), max(worst_field, field)
                cells.append(f"{labels:6.2f} / {field:.0e}")
            print(f"{name} {k} | {ref.bias_fit['iterations']:2d} {seconds:4.1f} s "
                  f"{ref.bias.min():.2f}-{ref.bias.max():.2f} | " + "  ".join(cells), flush=True)
    print(f"worst: labels {worst_labels:.2f} %, field {worst_field:.1e}")


if __name__ == "__main__":
    main()
