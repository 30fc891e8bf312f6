"""Tests for the readable overlay: legend strip, slice captions, boundary width."""

import numpy as np
import pytest
from scipy import ndimage

from emseg import EmsegError
from emseg.image import legend, render


def _overlay(k, shape=(120, 160), seed=0):
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, shape, dtype=np.uint8)
    labels = np.repeat(np.arange(1, k + 1), -(-shape[1] // k))[: shape[1]]
    labels = np.broadcast_to(labels, shape).copy()
    return render.overlay(pixels, labels, k), labels


@pytest.mark.parametrize("k", [2, 8])
def test_legend_keeps_the_overlay_and_shows_each_class_colour_in_order(k):
    pic, labels = _overlay(k)
    colors = render.palette(k)
    means = np.linspace(10, 200, k)
    fractions = np.bincount(labels.ravel(), minlength=k + 1)[1:] / labels.size
    out = legend.with_legend(pic, colors, means, fractions)
    H, W = pic.shape[:2]
    assert out.dtype == np.uint8 and out.shape[0] >= H and out.shape[1] > W
    np.testing.assert_array_equal(out[:H, :W], pic)  # the overlay, pixel for pixel
    strip = out[:, W:]
    rows = []
    for c in colors:  # a solid swatch of each class colour, top to bottom in label order
        hit = np.all(strip == c, axis=-1)
        ys, xs = np.nonzero(hit)
        assert hit.sum() >= 25, c
        assert xs.max() < strip.shape[1] // 2  # the swatch column, left of the text
        rows.append(ys.mean())
    assert np.all(np.diff(rows) > 0)
    # and text: dark pixels right of the swatches
    assert (strip[:, 40:] < 100).all(axis=-1).sum() > 50
    assert pic.flags.writeable and np.array_equal(pic, _overlay(k)[0])  # input untouched


def test_legend_rows_text():
    rows = legend.legend_rows(np.array([[12.345], [200.0]]), [0.25, 0.0001])
    assert rows == [("label", "mean", "fraction"), ("1", "12.35", "25.0%"), ("2", "200", "<0.1%")]
    rows = legend.legend_rows(np.array([[1.0, 2.5, 300.0]]), [1.0])
    assert rows[1] == ("1", "1, 2.5, 300", "100.0%")


def test_legend_for_many_classes_on_a_small_picture_grows_taller():
    pic, _ = _overlay(2, shape=(40, 50))
    k = 20
    out = legend.with_legend(pic, render.palette(k), np.arange(k), np.full(k, 1 / k))
    assert out.shape[0] > 40
    np.testing.assert_array_equal(out[:40, :50], pic)
    assert not out[40:, :50].any()  # black below the picture
    for c in render.palette(k):
        assert np.all(out[:, 50:] == c, axis=-1).any()


def test_legend_checks_arguments():
    pic, _ = _overlay(2)
    with pytest.raises(EmsegError, match="colors"):
        legend.with_legend(pic, render.palette(3), [1, 2], [0.5, 0.5])
    with pytest.raises(EmsegError, match="fractions"):
        legend.with_legend(pic, render.palette(2), [1, 2], [0.5])
    with pytest.raises(EmsegError, match="picture"):
        legend.with_legend(pic[..., 0], render.palette(2), [1, 2], [0.5, 0.5])


def test_montage_captions_change_only_the_label_corners():
    rng = np.random.default_rng(1)
    pics = [rng.integers(0, 256, (64, 80, 3), dtype=np.uint8) for _ in range(5)]
    plain = render.montage(pics)
    numbered = render.montage(pics, captions=[f"z={z}" for z in (3, 10, 17, 24, 31)])
    assert numbered.shape == plain.shape
    differ = np.any(numbered != plain, axis=-1)
    tile_h, tile_w = 64 + 2, 80 + 2  # tiles and their gap
    for i in range(5):
        y0, x0 = (i // 3) * tile_h, (i % 3) * tile_w
        tile = differ[y0 : y0 + 64, x0 : x0 + 80]
        assert tile[:20, :40].sum() > 30  # the caption, in the top-left corner
        assert not tile[25:].any() and not tile[:, 45:].any()
    # white text on black
    corner = numbered[:20, :40]
    assert (corner == 255).all(axis=-1).any() and (corner == 0).all(axis=-1).any()
    with pytest.raises(EmsegError, match="captions"):
        render.montage(pics, captions=["a"])


def test_boundary_width_rule():
    assert render.boundary_width((512, 512)) == 1
    assert render.boundary_width((1080, 1920)) == 1  # 2 MP
    assert render.boundary_width((3000, 4000)) == 2  # 12 MP
    assert render.boundary_width((4000, 3000, 3)) == 2  # rotated, colour
    assert render.boundary_width((6000, 8000)) == 4  # 48 MP
    assert render.boundary_width((0, 0)) == 1
    widths = [render.boundary_width((n, n)) for n in range(100, 20000, 100)]
    assert np.all(np.diff(widths) >= 0)


@pytest.mark.parametrize("width", [2, 3])
def test_wide_boundaries_match_a_scipy_erosion(width):
    rng = np.random.default_rng(width)
    labels = ndimage.zoom(rng.integers(0, 5, (2, 8, 10)), (1, 6, 6), order=0)
    disc = np.hypot(*np.mgrid[-width : width + 1, -width : width + 1]) <= width
    want = np.stack([
        ndimage.grey_erosion(p, footprint=disc, mode="constant", cval=99) < p for p in labels
    ])
    got = render.boundaries(labels, width)
    np.testing.assert_array_equal(got, want)
    thin = render.boundaries(labels)
    assert (got >= thin).all() and got.sum() > 1.5 * thin.sum()
    assert not got[labels == 0].any()


@pytest.mark.parametrize("color", [False, True])
def test_overlay_with_wide_boundaries_is_the_plain_overlay_marked(color):
    rng = np.random.default_rng(5)
    shape = (50, 70, 3) if color else (50, 70)
    pixels = rng.integers(0, 256, shape, dtype=np.uint8)
    labels = ndimage.zoom(rng.integers(0, 4, (5, 7)), 10, order=0)
    plain = render.overlay(pixels, labels, 3, draw_boundaries=False)
    out = render.overlay(pixels, labels, 3, boundary_width=2)
    edge = render.boundaries(labels, 2)
    np.testing.assert_array_equal(out[~edge], plain[~edge])
    luma = plain[edge].astype(float) @ [0.299, 0.587, 0.114]
    np.testing.assert_array_equal(out[edge], np.repeat(np.where(luma < 128, 255, 0)[:, None], 3, axis=1))
    # width 1 is the 1-px drawing
    np.testing.assert_array_equal(render.overlay(pixels, labels, 3, boundary_width=1),
                                  render.overlay(pixels, labels, 3))
    with pytest.raises(EmsegError, match="boundary_width"):
        render.overlay(pixels, labels, 3, boundary_width=0)


def test_run_writes_the_overlay_with_its_legend_and_numbered_montage(tmp_path):
    import imageio.v3 as iio
    from _helpers import save_png, three_bands

    from emseg.io import write_tiff_stack
    from emseg.workflows.run import RunOptions, segment_file

    img = three_bands()
    report = segment_file(save_png(tmp_path / "img.png", img), tmp_path, RunOptions(classes=3))
    written = iio.imread(report["outputs"]["overlay"])
    labels = iio.imread(report["outputs"]["labels"])
    plain = render.overlay(img, labels, 3)
    assert written.shape[0] >= plain.shape[0] and written.shape[1] > plain.shape[1]
    np.testing.assert_array_equal(written[: plain.shape[0], : plain.shape[1]], plain)
    for c in render.palette(3):
        assert np.all(written[:, plain.shape[1]:] == c, axis=-1).sum() >= 25

    rng = np.random.default_rng(0)
    vol = np.clip(rng.normal(100, 10, (7, 60, 70)), 0, 255).astype(np.uint8)
    vol[:, :, 35:] += 80
    write_tiff_stack(tmp_path / "vol.tif", vol)
    report = segment_file(tmp_path / "vol.tif", tmp_path, RunOptions(classes=2))
    segments = iio.imread(report["outputs"]["segments"])
    assert segments.shape == (2 * 60 + 2, 3 * 70 + 4, 3)  # 5 slices (1..5 of 7)
    corner = segments[:20, :35]  # "z=1" in white on black over the first tile
    assert (corner == 255).all(axis=-1).any() and (corner == 0).all(axis=-1).sum() > 50
