"""Tests for emseg.image.objects: connected components per class, measured, against
scikit-image's regionprops_table."""

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner
from skimage.draw import disk
from skimage.measure import label, regionprops_table

from emseg import EmsegError, segment
from emseg.cli.main import main
from emseg.image.objects import measure_objects, object_counts
from _helpers import save_png


def discs(n_side=5, radius=6, step=20, noise=10.0, seed=0):
    """A grey image with ``n_side**2`` separated bright discs on a dark background."""
    rng = np.random.default_rng(seed)
    truth = np.zeros((n_side * step, n_side * step), bool)
    for i in range(n_side):
        for j in range(n_side):
            truth[disk((step // 2 + i * step, step // 2 + j * step), radius, shape=truth.shape)] = True
    image = np.where(truth, 180.0, 60.0) + rng.normal(0, noise, truth.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), truth


def test_25_separated_discs_are_25_objects():
    image, truth = discs()
    seg = segment(image, 2)
    table = measure_objects(seg.labels, 2, image, min_size=5)
    assert object_counts(table, 2).tolist() == [1, 25]
    bright = np.asarray(table["class"]) == 2
    area = np.asarray(table["area"])[bright]
    # each disc's area within a few pixels of the drawn one
    drawn = truth[:20, :20].sum()
    assert np.all(np.abs(area - drawn) <= 6)
    assert np.all(np.asarray(table["mean"])[bright] > 150)


def test_measurements_equal_regionprops_table_with_spacing():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 4, (40, 50))
    labels[10:30, 5:25] = 2  # some large objects too
    values = rng.normal(100, 20, (40, 50, 2))
    spacing = (0.5, 0.25)
    table = measure_objects(labels, 3, values, spacing=spacing)
    for c in (1, 2, 3):
        comp = label(labels == c)
        ref = regionprops_table(comp, intensity_image=values,
                                properties=["area", "centroid", "bbox", "intensity_mean"])
        order = np.argsort(-ref["area"], kind="stable")
        rows = np.asarray(table["class"]) == c
        assert rows.sum() == comp.max()
        np.testing.assert_array_equal(np.asarray(table["object"])[rows], np.arange(1, rows.sum() + 1))
        np.testing.assert_array_equal(np.asarray(table["pixels"])[rows], ref["area"][order])
        np.testing.assert_allclose(np.asarray(table["area"])[rows], ref["area"][order] * 0.125)
        for i, axis in enumerate("yx"):
            np.testing.assert_allclose(np.asarray(table[f"centroid_{axis}"])[rows],
                                       ref[f"centroid-{i}"][order])
            np.testing.assert_array_equal(np.asarray(table[f"bbox_{axis}_min"])[rows],
                                          ref[f"bbox-{i}"][order])
            np.testing.assert_array_equal(np.asarray(table[f"bbox_{axis}_max"])[rows],
                                          ref[f"bbox-{i + 2}"][order])
        for ch in range(2):
            np.testing.assert_allclose(np.asarray(table[f"mean_{ch}"])[rows],
                                       ref[f"intensity_mean-{ch}"][order])


def test_min_size_drops_specks_and_volumes_are_calibrated():
    labels = np.ones((4, 20, 20), int)
    labels[1:3, 5:10, 5:10] = 2  # 50 voxels
    labels[0, 0, 0] = 2  # a speck
    table = measure_objects(labels, 2, spacing=(2.0, 0.5, 0.5), min_size=2)
    assert object_counts(table, 2).tolist() == [1, 1]
    assert "volume" in table and "mean" not in table
    big = table["class"].index(2)
    assert table["pixels"][big] == 50 and table["volume"][big] == 50 * 0.5
    assert (table["bbox_z_min"][big], table["bbox_z_max"][big]) == (1, 3)
    everything = measure_objects(labels, 2)
    assert object_counts(everything, 2).tolist() == [1, 2]


def test_bad_arguments_are_one_line_errors():
    labels = np.ones((5, 5), int)
    with pytest.raises(EmsegError, match="min_size"):
        measure_objects(labels, 1, min_size=0)
    with pytest.raises(EmsegError, match="spacing"):
        measure_objects(labels, 1, spacing=(1.0,))
    with pytest.raises(EmsegError, match="values have shape"):
        measure_objects(labels, 1, np.zeros((4, 5)))
    with pytest.raises(EmsegError, match="2-D image or 3-D"):
        measure_objects(np.ones(5, int), 1)


def test_cli_objects_table_and_report(tmp_path):
    image, _ = discs()
    save_png(tmp_path / "cells.png", image)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["run", str(tmp_path / "cells.png"), "-k", "2", "--objects", "--min-size", "5",
               "-o", str(out)])
    assert result.exit_code == 0, result.output
    with open(out / "cells_objects.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sum(r["class"] == "2" for r in rows) == 25
    report = json.loads((out / "cells_report.json").read_text())
    assert report["objects"] == {"min_size": 5, "per_class": [1, 25]}
    # a user's file of that name is not replaced without --overwrite
    other = tmp_path / "other"
    other.mkdir()
    (other / "cells_objects.csv").write_text("mine\n")
    again = CliRunner().invoke(main, ["run", str(tmp_path / "cells.png"), "-k", "2",
                                      "--objects", "-o", str(other)])
    assert again.exit_code == 1 and "cells_objects.csv exists" in again.output
    assert (other / "cells_objects.csv").read_text() == "mine\n"
    assert not (other / "cells_labels.png").exists()
