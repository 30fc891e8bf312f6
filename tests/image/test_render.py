"""Tests for emseg.image.render: small arrays with known answers."""

import numpy as np
import pytest

from emseg import EmsegError
from emseg.image import render


@pytest.fixture
def halves():
    """A 6 x 8 image: left half dark grey, right half light; labels 1 / 2, one background
    pixel (0)."""
    pixels = np.full((6, 8), 200, np.uint8)
    pixels[:, :4] = 40
    labels = np.ones((6, 8), np.int64)
    labels[:, 4:] = 2
    labels[0, 0] = 0
    return pixels, labels


# ------------------------------------------------------------------------- palette


def test_palette_shape_dtype_and_determinism():
    for k in (0, 1, 5, 12, 13, 40):
        colors = render.palette(k)
        assert colors.shape == (k, 3) and colors.dtype == np.uint8
        np.testing.assert_array_equal(colors, render.palette(k))
    # a longer palette starts with the shorter one: class i keeps its colour
    np.testing.assert_array_equal(render.palette(40)[:7], render.palette(7))


def test_palette_first_twelve_are_well_separated():
    colors = render.palette(12).astype(float)
    dist = np.sqrt(((colors[:, None] - colors[None]) ** 2).sum(-1))
    np.fill_diagonal(dist, np.inf)
    assert dist.min() > 60


def test_palette_large_k_has_no_repeats():
    colors = render.palette(300)
    assert len(np.unique(colors, axis=0)) == 300
    # neighbours in the generated part are still easy to tell apart
    steps = np.abs(np.diff(colors[12:].astype(int), axis=0)).sum(-1)
    assert steps.min() > 40


def test_palette_rejects_bad_k():
    for k in (-1, 2.5, "3", True):
        with pytest.raises(EmsegError, match="k must be"):
            render.palette(k)


# ---------------------------------------------------------------------- to_display


def test_to_display_uint8_grey_and_rgb_unchanged():
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    out = render.to_display(grey)
    assert out.shape == (3, 4, 3) and out.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], grey)
    rgb = np.random.default_rng(0).integers(0, 256, (3, 4, 3), dtype=np.uint8)
    out = render.to_display(rgb)
    np.testing.assert_array_equal(out, rgb)
    assert out is not rgb


def test_to_display_uint16_stretches_by_percentiles():
    arr = np.linspace(1000, 2000, 1001).astype(np.uint16).reshape(7, 143)
    out = render.to_display(arr)
    assert out.dtype == np.uint8 and out.shape == (7, 143, 3)
    assert out.min() == 0 and out.max() == 255
    # one hot pixel does not flatten the rest: percentiles, not min/max
    arr = arr.copy()
    arr[0, 0] = 65535
    out = render.to_display(arr)
    assert out[3, 70, 0] in range(120, 136)  # the middle value stays mid-grey


def test_to_display_float_nan_constant_and_valid():
    arr = np.array([[0.0, 1.0], [np.nan, 0.5]], np.float32)
    out = render.to_display(arr)
    assert out[1, 0, 0] == 0 and out[0, 1, 0] > out[1, 1, 0] > out[0, 0, 0]
    assert (render.to_display(np.full((2, 3), 7.5)) == 128).all()
    # percentiles over valid pixels only: a huge invalid value does not matter
    arr = np.array([[0.0, 1.0], [1e9, 0.5]])
    valid = np.array([[True, True], [False, True]])
    out = render.to_display(arr, valid=valid)
    assert out[0, 1, 0] == 255 and out[0, 0, 0] == 0


def test_to_display_rgb_uint16_keeps_channel_balance():
    arr = np.zeros((4, 4, 3), np.uint16)
    arr[..., 0] = 4000  # red twice as bright as green
    arr[..., 1] = 2000
    arr[0, 0] = 0
    out = render.to_display(arr)
    assert out[2, 2, 0] > out[2, 2, 1] > out[2, 2, 2]


def test_to_display_input_not_modified():
    arr = np.arange(20, dtype=np.uint16).reshape(4, 5)
    before = arr.copy()
    render.to_display(arr)
    np.testing.assert_array_equal(arr, before)


def test_to_display_rejects_stacks():
    with pytest.raises(EmsegError, match="one slice"):
        render.to_display(np.zeros((2, 3, 4), np.uint8))


# --------------------------------------------------------------------- label_image


def test_label_image_values_and_background(halves):
    _, labels = halves
    out = render.label_image(labels, 2)
    assert out.dtype == np.uint8 and out.shape == labels.shape
    assert out[0, 0] == 0 and out[1, 0] == 1 and out[1, 7] == 2


def test_label_image_uint16_above_255_classes():
    labels = np.array([[1, 300], [0, 256]])
    out = render.label_image(labels, 300)
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, [[1, 300], [0, 256]])
    assert render.label_image(np.array([[0, 255]]), 255).dtype == np.uint8


def test_label_image_rejects_out_of_range():
    with pytest.raises(EmsegError, match="1..2"):
        render.label_image(np.array([[0, 3]]), 2)
    with pytest.raises(EmsegError, match="1..2"):
        render.label_image(np.array([[-1, 1]]), 2)
    with pytest.raises(EmsegError, match="integers"):
        render.label_image(np.array([[0.0, 1.0]]), 2)


# ---------------------------------------------------------------------- boundaries


def test_boundaries_one_pixel_on_the_higher_side(halves):
    _, labels = halves
    edge = render.boundaries(labels)
    assert edge.dtype == bool and edge.shape == labels.shape
    expected = np.zeros_like(edge)
    expected[:, 4] = True  # the first column of class 2
    expected[0, 1] = expected[1, 0] = True  # class 1 around the background pixel
    np.testing.assert_array_equal(edge, expected)
    assert not render.boundaries(np.zeros((4, 4), int)).any()
    # the order of the labels does not matter: swap them and the line moves one pixel
    swapped = np.where(labels > 0, 3 - labels, 0)
    assert render.boundaries(swapped)[:, 3].all() and not render.boundaries(swapped)[:, 4].any()


def test_boundaries_in_plane_for_stacks():
    labels = np.ones((2, 4, 4), int)
    labels[1] = 2  # a change between slices only: no in-plane boundary
    assert not render.boundaries(labels).any()
    labels[0, :, 2:] = 2
    assert render.boundaries(labels)[0].any() and not render.boundaries(labels)[1].any()


# ------------------------------------------------------------------------- overlay


def test_overlay_shape_dtype_and_background_untouched(halves):
    pixels, labels = halves
    out = render.overlay(pixels, labels, 2)
    assert out.shape == (6, 8, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0, 0], render.to_display(pixels)[0, 0])
    # labelled pixels away from the edge are the blend with their class colour
    colors = render.palette(2).astype(float)
    np.testing.assert_array_equal(out[3, 1], np.rint(0.55 * 40 + 0.45 * colors[0]))
    np.testing.assert_array_equal(out[3, 6], np.rint(0.55 * 200 + 0.45 * colors[1]))


def test_overlay_background_untouched_everywhere():
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    labels = rng.integers(0, 5, (20, 30))
    out = render.overlay(pixels, labels, 4)
    np.testing.assert_array_equal(out[labels == 0], pixels[labels == 0])
    assert (out[labels > 0] != pixels[labels > 0]).any(axis=-1).mean() > 0.9


def test_overlay_boundaries_contrast(halves):
    pixels, labels = halves
    out = render.overlay(pixels, labels, 2)
    plain = render.overlay(pixels, labels, 2, draw_boundaries=False)
    edge = render.boundaries(labels) & (labels > 0)
    assert edge.any()
    assert set(map(tuple, out[edge])) <= {(0, 0, 0), (255, 255, 255)}
    np.testing.assert_array_equal(out[~edge], plain[~edge])


def test_overlay_matches_numpy_blend_and_boundaries_on_random_labels():
    """The overlay against its definition written out in numpy: the rounded
    blend, background kept, edges exactly where boundaries() marks a labelled pixel."""
    rng = np.random.default_rng(7)
    for pixels in (rng.integers(0, 256, (33, 47, 3), dtype=np.uint8),
                   rng.integers(0, 256, (33, 47), dtype=np.uint8)):
        labels = rng.integers(0, 6, (33, 47))
        labels[5:20, 10:30] = 3  # a block, so some pixels are not on an edge
        out = render.overlay(pixels, labels, 5, alpha=0.3)
        base = render.to_display(pixels).astype(float)
        colors = np.vstack([[0, 0, 0], render.palette(5)]).astype(float)[labels]
        want = np.rint(0.7 * base + 0.3 * colors).astype(np.uint8)
        want[labels == 0] = render.to_display(pixels)[labels == 0]
        edge = render.boundaries(labels) & (labels > 0)
        luma = want[edge].astype(float) @ [0.299, 0.587, 0.114]
        want[edge] = np.where(luma < 128, 255, 0)[:, None]
        np.testing.assert_array_equal(out, want)
        assert edge.any() and (~edge & (labels > 0)).any()


def test_segments_and_label_image_take_any_integer_labels():
    labels = np.array([[1, 2, 0], [3, 3, 1]])
    for dtype in (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16):
        lab = labels.astype(dtype)
        colors = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]], np.uint8)
        np.testing.assert_array_equal(
            render.segments(lab, colors),
            np.vstack([[[0, 0, 0]], colors])[lab.astype(int)])
        np.testing.assert_array_equal(render.label_image(lab, 3), labels.astype(np.uint8))


def _reference_overlay(base, labels, k, alpha, draw_boundaries):
    """The overlay as its definition reads, in whole-image numpy: the rounded blend of
    (1 - alpha) * image and alpha * class colour, background kept, and, with boundaries,
    every labelled pixel with a lower-labelled 4-neighbour inside the image (background
    0 counts as lower) white where 0.299 r + 0.587 g + 0.114 b < 128, else black."""
    lab = labels.astype(np.int64)
    rgb = base if base.ndim == 3 else np.repeat(base[:, :, None], 3, axis=2)
    colors = render.palette(k).astype(np.float64)[np.maximum(lab - 1, 0)]
    blend = np.rint((1.0 - alpha) * rgb.astype(np.float64) + alpha * colors)
    out = np.where((lab > 0)[..., None], blend, rgb).astype(np.uint8)
    if draw_boundaries:
        padded = np.pad(lab, 1, constant_values=np.iinfo(np.int64).max)  # outside: never lower
        centre = padded[1:-1, 1:-1]
        lower = ((padded[:-2, 1:-1] < centre) | (padded[2:, 1:-1] < centre)
                 | (padded[1:-1, :-2] < centre) | (padded[1:-1, 2:] < centre))
        o = out.astype(np.float64)
        dark = 0.299 * o[..., 0] + 0.587 * o[..., 1] + 0.114 * o[..., 2] < 128.0
        edge = lower & (lab > 0)
        out[edge] = np.where(dark, 255, 0)[edge][:, None]
    return out


def _random_case(rng, k, colour, shape):
    """Pixels and labels for the reference comparison: random or blocky labels (so that
    some pixels are off boundaries), with or without background, of a random integer
    dtype, either array possibly a non-contiguous view."""
    low = 0 if rng.random() < 0.8 else 1
    if rng.random() < 0.5:
        labels = rng.integers(low, k + 1, shape)
    else:
        blocks = rng.integers(low, k + 1, (shape[0] // 3 + 1, shape[1] // 3 + 1))
        labels = np.kron(blocks, np.ones((3, 3), int))[: shape[0], : shape[1]]
    dtypes = [np.int16, np.int32, np.int64] + ([np.int8] if k <= 127 else [])
    dtypes += [np.uint8, np.uint16] if k <= 255 else [np.uint16]
    labels = labels.astype(dtypes[rng.integers(len(dtypes))])
    pixels = rng.integers(0, 256, shape + ((3,) if colour else ()), dtype=np.uint8)
    if rng.random() < 0.5:
        pixels = np.sort(pixels, axis=1)  # smooth, so that blends repeat along rows
    view = rng.integers(3)
    if view == 1:  # every other pixel of a larger array
        big = np.zeros((2 * shape[0], 2 * shape[1]) + pixels.shape[2:], np.uint8)
        big[::2, ::2] = pixels
        pixels = big[::2, ::2]
        labels = np.repeat(labels, 2, axis=1)[:, ::2]
    elif view == 2:  # negative strides
        pixels = pixels[::-1, ::-1].copy()[::-1, ::-1]
        labels = labels[:, ::-1].copy()[:, ::-1]
    return pixels, labels


@pytest.mark.parametrize("k", [1, 2, 3, 7, 31, 32, 127, 128, 254, 255, 300])
def test_pictures_match_a_numpy_reference_on_random_cases(k, monkeypatch):
    """overlay, segments and label_image against their definitions in plain numpy, on
    grey and colour images, with and without boundaries, any alpha, tiny shapes and
    views; the drawing in strips and parallel bands is forced down to a few pixels, so
    that strip and band edges fall inside these small images."""
    rng = np.random.default_rng(k)
    monkeypatch.setattr(render, "_STRIP", 16)
    monkeypatch.setattr(render, "_BAND_STRIPS", 1)
    monkeypatch.setattr(render.cv2, "getNumThreads", lambda: 3)
    shapes = [(1, 1), (1, 5), (5, 1), (2, 3), (7, 9), (23, 31), (40, 17)]
    for i, shape in enumerate(shapes * 2):
        colour = i % 2 == 1
        pixels, labels = _random_case(rng, k, colour, shape)
        alpha = [0.0, 1.0, 0.45, float(rng.random())][i % 4]
        draw = i % 3 != 2
        before = pixels.copy(), labels.copy()
        out = render.overlay(pixels, labels, k, alpha=alpha, draw_boundaries=draw)
        assert out.dtype == np.uint8 and out.shape == shape + (3,)
        np.testing.assert_array_equal(
            out, _reference_overlay(pixels, labels, k, alpha, draw),
            err_msg=f"k={k} shape={shape} colour={colour} alpha={alpha} {labels.dtype}")
        colors = rng.integers(0, 256, (k, 3), dtype=np.uint8)
        lab = labels.astype(np.int64)
        np.testing.assert_array_equal(
            render.segments(labels, colors), np.vstack([[[0, 0, 0]], colors])[lab])
        stored = render.label_image(labels, k)
        assert stored.dtype == (np.uint8 if k <= 255 else np.uint16)
        np.testing.assert_array_equal(stored, lab)
        np.testing.assert_array_equal(pixels, before[0])
        np.testing.assert_array_equal(labels, before[1])


def test_boundary_colour_at_exact_luma_ties():
    """Where 0.299 r + 0.587 g + 0.114 b is exactly 128, float64 rounding decides (46 of
    the 111 such colours come out below 128, and grey 128 does): boundaries follow it."""
    o = np.arange(256)
    luma = 299 * o[:, None, None] + 587 * o[None, :, None] + 114 * o[None, None, :]
    ties = np.argwhere(luma == 128000).astype(np.uint8)
    greys = np.arange(256, dtype=np.uint8)[:, None]
    for pixels in (np.stack([ties, ties]), np.stack([greys, greys])[..., 0]):
        labels = np.ones(pixels.shape[:2], int)
        labels[1] = 2  # the second row is all boundary; alpha 0 leaves the colours
        out = render.overlay(pixels, labels, 2, alpha=0.0)
        np.testing.assert_array_equal(out, _reference_overlay(pixels, labels, 2, 0.0, True))
        assert set(out[1, :, 0]) == {0, 255}


def test_overlay_of_all_background_is_the_image():
    for pixels in (np.arange(24, dtype=np.uint8).reshape(4, 6),
                   np.arange(72, dtype=np.uint8).reshape(4, 6, 3)):
        out = render.overlay(pixels, np.zeros((4, 6), int), 3)
        np.testing.assert_array_equal(out, render.to_display(pixels))


def test_overlay_alpha_zero_without_boundaries_is_the_image(halves):
    pixels, labels = halves
    out = render.overlay(pixels, labels, 2, alpha=0.0, draw_boundaries=False)
    np.testing.assert_array_equal(out, render.to_display(pixels))


def test_overlay_checks_arguments(halves):
    pixels, labels = halves
    with pytest.raises(EmsegError, match="alpha"):
        render.overlay(pixels, labels, 2, alpha=1.5)
    with pytest.raises(EmsegError, match="shape"):
        render.overlay(pixels, labels[:, :4], 2)
    with pytest.raises(EmsegError, match=r"1\.\.1"):
        render.overlay(pixels, labels, 1)


def test_overlay_does_not_modify_inputs(halves):
    pixels, labels = halves
    p0, l0 = pixels.copy(), labels.copy()
    render.overlay(pixels, labels, 2)
    np.testing.assert_array_equal(pixels, p0)
    np.testing.assert_array_equal(labels, l0)


# ------------------------------------------------------------------------ segments


def test_segments(halves):
    _, labels = halves
    class_colors = np.array([[10, 20, 30], [200, 100, 50]], np.uint8)
    out = render.segments(labels, class_colors)
    assert out.shape == (6, 8, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0, 0], (0, 0, 0))
    np.testing.assert_array_equal(out[2, 1], (10, 20, 30))
    np.testing.assert_array_equal(out[2, 6], (200, 100, 50))
    with pytest.raises(EmsegError, match="uint8"):
        render.segments(labels, class_colors.astype(float))
    with pytest.raises(EmsegError, match=r"\(k, 3\)"):
        render.segments(labels, class_colors[:, :2])


# ----------------------------------------------------------------- posterior_pages


def test_posterior_pages():
    post = np.random.default_rng(0).random((4, 5, 3))
    post[0, 0] = np.nan
    pages = render.posterior_pages(post)
    assert pages.shape == (3, 4, 5) and pages.dtype == np.float32
    assert pages.flags.c_contiguous
    np.testing.assert_array_equal(pages[2], post[..., 2].astype(np.float32))
    assert np.isnan(pages[:, 0, 0]).all()
    with pytest.raises(EmsegError, match=r"\(H, W, k\)"):
        render.posterior_pages(np.zeros((4, 5)))


def test_montage_tiles_slices_in_order():
    from emseg.image.render import montage, representative_slices

    pics = [np.full((4, 5, 3), i * 20, np.uint8) for i in range(5)]
    out = montage(pics, gap=2)
    assert out.shape == (2 * 4 + 2, 3 * 5 + 2 * 2, 3)
    assert out[0, 0, 0] == 0 and out[0, 7, 0] == 20 and out[6, 0, 0] == 60
    assert out[4, 0, 0] == 0  # the gap
    assert list(representative_slices(3)) == [0, 1, 2]
    idx = representative_slices(100, 9)
    assert len(idx) == 9 and idx[0] > 0 and idx[-1] < 99


def test_palette_is_computed_once_not_once_per_class(monkeypatch):
    # issue 17: a report looking up palette(k)[i] for each class built the whole palette
    # k times (10,000 classes: minutes per image). The colours stay colorsys's.
    import colorsys

    reference = render.palette(300).copy()
    calls = []
    real = colorsys.hsv_to_rgb
    monkeypatch.setattr(colorsys, "hsv_to_rgb", lambda *a: calls.append(1) or real(*a))
    monkeypatch.setattr(render, "_PALETTE", np.zeros((0, 3), dtype=np.uint8))
    rows = [render.palette(300)[i] for i in range(300)]
    assert np.array_equal(np.stack(rows), reference)
    assert len(calls) <= 300  # linear in k, not k * k
    levels = ((0.85, 0.95), (0.55, 0.8), (0.95, 0.6))
    for i in (12, 13, 14, 150, 299):
        j = i - 12
        rgb = real((0.07 + j * render._GOLDEN) % 1.0, *levels[j % 3])
        assert tuple(reference[i]) == tuple(int(round(c * 255)) for c in rgb)
    with pytest.raises(ValueError):
        render.palette(5)[0, 0] = 1  # read-only: a caller cannot change everyone's colours
