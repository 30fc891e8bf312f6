"""Tests for emseg.io.tables (with its parts _table_header, _table_text, _table_pandas,
table_writers): reading CSV/TSV/.npy tables, writing results."""

import csv
import os
import random
from decimal import Decimal

import numpy as np
import pytest

import emseg.io._table_pandas as pandas_mod
import emseg.io.table_writers as writers_mod
import emseg.io.tables as table_mod
from emseg import EmsegError
from emseg.mixture.gaussian_mixture import GaussianMixture
from emseg.io.tables import (
    read_table,
    write_imputed,
    write_labels,
    write_states,
)
from _helpers import float_bits as bits, write_text as write


@pytest.fixture(params=["csv", "pandas"])
def both_paths(request, monkeypatch):
    """Run the test through the csv module, then through pandas (every file large)."""
    if request.param == "pandas":
        if not pandas_mod.available():
            pytest.skip("pandas 3.1 or later is not installed")
        monkeypatch.setattr(table_mod, "LARGE_BYTES", 0)
    return request.param


# --------------------------------------------------------------------------- reading


def test_reads_csv(tmp_path, both_paths):
    path = write(tmp_path, "t.csv", "a,b,c\n1,2.5,-3e2\n4,5,6\n")
    t = read_table(path)
    assert t.columns == ["a", "b", "c"] and t.header == ["a", "b", "c"]
    assert t.delimiter == "," and t.feature_index == [0, 1, 2]
    assert t.X.dtype == np.float64 and t.X.flags.c_contiguous
    np.testing.assert_array_equal(t.X, [[1, 2.5, -300], [4, 5, 6]])
    assert t.n_rows == 2 and t.line_number(1) == 3 and t.describe_row(1) == "line 3"
    assert t.read_seconds > 0
    assert t.lengths is None and t.codes is None
    assert t.raw == path.read_bytes()
    np.testing.assert_array_equal(t.row_starts, [6, 17])


def test_missing_values(tmp_path, both_paths):
    text = "a,b\n1,\n NA ,2\nN/A,NaN\nnan,NAN\n,3\n4, 5 \n"
    t = read_table(write(tmp_path, "t.csv", text))
    expected = [[1, np.nan], [np.nan, 2], [np.nan, np.nan], [np.nan, np.nan], [np.nan, 3], [4, 5]]
    np.testing.assert_array_equal(t.X, expected)


def test_values_equal_python_float(tmp_path, monkeypatch):
    """Exact parsing: fast path, Eisel-Lemire, strtod and Python fallback all agree."""
    rng = random.Random(3)
    values = ["0.1", "-0.0", "5.", ".5", "+3", "007", "1e22", "1e23", "9007199254740993",
              "9007199254740992.5", "4.9e-324", "2.2250738585072011e-308",
              "1.7976931348623157e308", "2.4703282292062328e-324", "1e-400",
              "123456789012345678901234567890e-10", "0.30000000000000004"]
    gen = np.random.default_rng(4)
    values += [repr(float(v)) for v in gen.normal(size=300) * 10.0 ** gen.integers(-300, 300, 300)]
    for _ in range(300):  # decimal midpoints between adjacent doubles
        x = rng.uniform(1, 10) * 10.0 ** rng.randint(-300, 300)
        mid = (Decimal(x) + Decimal(float(np.nextafter(x, np.inf)))) / 2
        values.append(format(mid, "e"))
    for _ in range(300):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 24)))
        values.append(f"{digits}e{rng.randint(-330, 280)}")
    values = values[: len(values) // 3 * 3]
    lines = [",".join(values[i : i + 3]) for i in range(0, len(values), 3)]
    path = write(tmp_path, "v.csv", "a,b,c\n" + "\n".join(lines) + "\n")
    expected = np.array([float(v) for v in values]).reshape(-1, 3)
    np.testing.assert_array_equal(bits(read_table(path).X), bits(expected))
    monkeypatch.setattr(table_mod, "LARGE_BYTES", 0)  # through pandas: the same bits
    np.testing.assert_array_equal(bits(read_table(path).X), bits(expected))


def test_assemble_copies_columns_and_blocks_alike():
    """X from separate columns, from the rows of one (features, rows) block (as pandas'
    threaded reader gives them), small and large (shared among threads)."""
    gen = np.random.default_rng(2)
    for n in (5, 100_003):
        block = gen.normal(size=(3, n))
        want = np.ascontiguousarray(block.T)
        for columns in ([[row] for row in block], [[row.copy()] for row in block],
                        [[block[0][:7], block[0][7:]], [block[1]], [block[2]]]):
            X = table_mod._assemble(n, columns)
            assert X.flags.c_contiguous
            np.testing.assert_array_equal(bits(X), bits(want))
    assert table_mod._one_block([row for row in block]) is block
    assert table_mod._one_block([block[1], block[0], block[2]]) is None


@pytest.mark.skipif(not pandas_mod.available(), reason="pandas 3.1 or later is not installed")
def test_a_large_file_through_pandas_threads_is_the_reference(tmp_path, monkeypatch):
    """Over 5 MB pandas reads the file with several threads (in chunks of lines): the
    same bits as the csv module, and a bad row still found."""
    gen = np.random.default_rng(1)
    X = gen.normal(size=(45_000, 8)) * 10.0 ** gen.integers(-8, 8, size=(45_000, 8))
    X[gen.random(X.shape) < 0.01] = np.nan
    lines = ["a,b,c,d,e,f,g,h"] + [
        ",".join("" if np.isnan(v) else repr(float(v)) for v in row) for row in X]
    path = write(tmp_path, "t.csv", "\n".join(lines) + "\n")
    assert path.stat().st_size > 5 << 20
    calls = []
    real = pandas_mod.parse_body
    monkeypatch.setattr(pandas_mod, "parse_body",
                        lambda *a: calls.append(1) or real(*a))
    monkeypatch.setattr(table_mod, "LARGE_BYTES", 1 << 20)
    np.testing.assert_array_equal(bits(read_table(path).X), bits(X))
    assert calls
    lines[30_000] += ",1"
    with pytest.raises(EmsegError, match="line 30001 .* has 9 fields but the header has 8"):
        read_table(write(tmp_path, "t.csv", "\n".join(lines) + "\n"))
    lines[30_000] = lines[30_000][:-2].rsplit(",", 1)[0]
    with pytest.raises(EmsegError, match="line 30001 .* has 7 fields but the header has 8"):
        read_table(write(tmp_path, "t.csv", "\n".join(lines) + "\n"))


def test_problem_far_into_the_file(tmp_path, monkeypatch):
    gen = np.random.default_rng(0)
    X = gen.normal(size=(3000, 4))
    X[gen.random(X.shape) < 0.1] = np.nan
    lines = ["w,x,y,z"] + [",".join("" if np.isnan(v) else repr(float(v)) for v in row) for row in X]
    path = write(tmp_path, "t.csv", "\n".join(lines) + "\n")
    monkeypatch.setattr(table_mod, "LARGE_BYTES", 997)
    t = read_table(path)
    np.testing.assert_array_equal(bits(t.X), bits(X))
    # a problem far into the file is reported on its own line
    lines[2500] = lines[2500] + ",9"
    path = write(tmp_path, "t.csv", "\n".join(lines) + "\n")
    with pytest.raises(EmsegError, match="line 2501 .* has 5 fields but the header has 4"):
        read_table(path)


def test_tsv_and_sniffed_delimiters(tmp_path, both_paths):
    t = read_table(write(tmp_path, "t.tsv", "a\tb\n1\t2\n\t3\n"))
    assert t.delimiter == "\t"
    np.testing.assert_array_equal(t.X, [[1, 2], [np.nan, 3]])
    t = read_table(write(tmp_path, "t.txt", "a;b;c\n1;2;3\n"))
    assert t.delimiter == ";" and t.columns == ["a", "b", "c"]
    t = read_table(write(tmp_path, "t.txt", "a\tb\n1\t2\n"))
    assert t.delimiter == "\t"
    t = read_table(write(tmp_path, "eu.csv", "a;b\n1;2\n"))  # a .csv without commas
    assert t.delimiter == ";"
    t = read_table(write(tmp_path, "one.csv", "a\n1\n\n2\n"))  # one column: a blank line is NA
    np.testing.assert_array_equal(t.X, [[1], [np.nan], [2]])


def test_quotes_crlf_bom_and_trailing_blank_lines(tmp_path, both_paths):
    text = '\ufeff"a","b, c",name\r\n"1",2,"x,""y"""\r\n3 , "4" ,z\r\n\r\n\r\n'
    t = read_table(write(tmp_path, "t.csv", text))
    assert t.header == ["a", "b, c", "name"]
    assert t.columns == ["a", "b, c"]  # name is text
    np.testing.assert_array_equal(t.X, [[1, 2], [3, 4]])


def test_column_choice(tmp_path, both_paths):
    text = ",id,a,kind,b\n0,s,1,x,2\n1,s,3,y,4\n"  # pandas index column has no name
    path = write(tmp_path, "t.csv", text)
    t = read_table(path)
    assert t.columns == ["a", "b"] and t.feature_index == [2, 4]
    t = read_table(path, ["b", "a"])
    assert t.columns == ["b", "a"]
    np.testing.assert_array_equal(t.X, [[2, 1], [4, 3]])
    t = read_table(path, "a")
    assert t.columns == ["a"]


def test_npy(tmp_path):
    X = np.arange(12, dtype=np.float32).reshape(4, 3)
    X[1, 2] = np.nan
    np.save(tmp_path / "x.npy", X)
    t = read_table(tmp_path / "x.npy")
    assert t.header == ["0", "1", "2"] and t.delimiter is None and not t.is_text
    assert t.line_number(1) is None and t.describe_row(1) == "row index 1"
    np.testing.assert_array_equal(t.X, X.astype(np.float64))
    t = read_table(tmp_path / "x.npy", ["2", 0])
    assert t.columns == ["2", "0"]
    np.save(tmp_path / "v.npy", np.array([1, 2, 3], dtype=np.int16))
    assert read_table(tmp_path / "v.npy").X.shape == (3, 1)
    seq = np.array([[0, 1.0], [0, 2.0], [5, 3.0]])
    np.save(tmp_path / "s.npy", seq)
    t = read_table(tmp_path / "s.npy", sequence_col="0")
    assert t.columns == ["1"] and t.sequence_ids == ["0", "5"]
    np.testing.assert_array_equal(t.lengths, [2, 1])
    t = read_table(tmp_path / "s.npy", categorical="0")
    assert t.symbols == ["0", "5"] and t.X.shape == (3, 0)
    np.testing.assert_array_equal(t.codes, [0, 0, 1])


@pytest.mark.parametrize(
    "array, match",
    [
        (np.array([{"a": 1}], dtype=object), "holds Python objects"),
        (np.zeros((2, 2, 2)), "3-D array"),
        (np.zeros((2, 2), dtype=complex), "complex"),
        (np.zeros((0, 3)), "empty array"),
        (np.array([[1.0, np.inf]]), "column '1' .* infinite value at row index 0"),
        (np.array([[1.0, np.nan]]), "column '1' .* has no value"),
    ],
)
def test_npy_errors(tmp_path, array, match):
    np.save(tmp_path / "x.npy", array, allow_pickle=True)
    with pytest.raises(EmsegError, match=match):
        read_table(tmp_path / "x.npy")


def test_npy_corrupt(tmp_path):
    path = write(tmp_path, "x.npy", b"\x93NUMPY garbage")
    with pytest.raises(EmsegError, match="x.npy is not a valid .npy file"):
        read_table(path)


def test_sequences(tmp_path, both_paths):
    text = "id,x\nb,1\nb,2\nb,3\na,4\nc,5\nc,6\n"
    t = read_table(write(tmp_path, "t.csv", text), sequence_col="id")
    assert t.columns == ["x"] and t.sequence_col == "id"
    assert t.sequence_ids == ["b", "a", "c"]  # file order, not sorted
    assert t.lengths.dtype == np.int64 and t.lengths.tolist() == [3, 1, 2]


def test_sequences_must_be_contiguous(tmp_path, both_paths):
    path = write(tmp_path, "t.csv", "id,x\na,1\na,2\nb,3\na,4\n")
    with pytest.raises(
        EmsegError, match=r"sequence 'a' of column 'id' .* starts on line 2 and again on line 5.*sort"
    ):
        read_table(path, sequence_col="id")


def test_sequence_id_missing(tmp_path, both_paths):
    path = write(tmp_path, "t.csv", "id,x\na,1\n,2\n")
    with pytest.raises(EmsegError, match="column 'id' .* has no sequence id on line 3"):
        read_table(path, sequence_col="id")


def test_categorical(tmp_path, both_paths):
    text = "seq,sym,v\n1,b,0.5\n1,a,1\n2,c,2\n2,a,3\n"
    path = write(tmp_path, "t.csv", text)
    t = read_table(path, sequence_col="seq", categorical="sym")
    assert t.symbols == ["a", "b", "c"] and t.codes.tolist() == [1, 0, 2, 0]
    assert t.X.shape == (4, 0) and t.columns == []  # no features unless asked for
    assert t.lengths.tolist() == [2, 2]
    t = read_table(path, ["v"], categorical="sym")
    assert t.columns == ["v"]
    t = read_table(path, [], categorical="sym")
    assert t.X.shape == (4, 0) and t.symbols == ["a", "b", "c"]
    # numeric symbols sort as numbers
    t = read_table(write(tmp_path, "n.csv", "s\n10\n9\n2\n10\n"), categorical="s")
    assert t.symbols == ["2", "9", "10"] and t.codes.tolist() == [2, 1, 0, 2]
    with pytest.raises(EmsegError, match="column 's' .* has no symbol on line 3"):
        read_table(write(tmp_path, "m.csv", "s\na\nNA\n"), categorical="s")


@pytest.mark.parametrize(
    "text, kwargs, match",
    [
        ("species,a\nsetosa,1\nsetosa,2\n", {"columns": ["species", "a"]},
         r"column 'species' of .* is not numeric \(value 'setosa' on line 2\); choose numeric "
         "columns with --columns"),
        ("a,b\n1,2\n3,oops\n", {},
         r"column 'b' .* is not numeric \(value 'oops' on line 3\); fix that value"),
        ("a,b\n1,2\n3\n", {}, "line 3 of .* has 1 fields but the header has 2"),
        ("a,b\n1,2\n1,2,3\n", {}, "line 3 of .* has 3 fields but the header has 2"),
        ("a,b\n1,2\n\n3,4\n", {}, "line 3 of .* is empty but the header has 2 columns"),
        ("a,b\n", {}, "has a header but no data rows"),
        ("a,b\n\n\n", {}, "has a header but no data rows"),
        ("\na,b\n1,2\n", {}, "starts with an empty line"),
        ("a,b\n1,2\n", {"columns": ["a", "zz"]}, r"column 'zz' is not in .*; its columns are 'a', 'b'"),
        ("a,b\n1,2\n", {"sequence_col": "id"}, "sequence column 'id' is not in"),
        ("a,b\n1,2\n", {"categorical": "s"}, "categorical column 's' is not in"),
        ("a,b\n1,\n2,NA\n", {}, r"column 'b' .* has no value \(every cell is empty or NA\)"),
        ("a,b,a\n1,2,3\n", {}, r"column name 'a' appears twice .* \(columns 1 and 3\)"),
        ("1.5,2.5\n3,4\n", {}, "looks like data"),
        ('a,b\n1,"2\n3,4\n', {}, "line 2 of .* has a quoted field that is not closed"),
        ('a,b\n1,"2"x\n', {}, "line 2 of .* has a quoted field"),
        ("a,b\n1,inf\n", {"columns": ["b"]}, "column 'b' .* has an infinite value 'inf' on line 2"),
        ("a,b\n1,1e999\n", {}, "column 'b' .* has an infinite value '1e999' on line 2"),
        ("name,note\nx,y\n", {}, "has no numeric column"),
        ("id,x\na,1\n", {"columns": ["id"], "sequence_col": "id"}, "is the sequence column"),
        ("a\r1\r2\r", {}, "carriage returns"),
    ],
)
def test_bad_text_tables(tmp_path, both_paths, text, kwargs, match):
    with pytest.raises(EmsegError, match=match):
        read_table(write(tmp_path, "t.csv", text), **kwargs)


def test_bad_files(tmp_path):
    with pytest.raises(EmsegError, match="does not exist"):
        read_table(tmp_path / "nope.csv")
    with pytest.raises(EmsegError, match="is a folder"):
        read_table(tmp_path)
    with pytest.raises(EmsegError, match=r"empty \(0 bytes\)"):
        read_table(write(tmp_path, "e.csv", b""))
    with pytest.raises(EmsegError, match="b.csv is a binary file"):
        read_table(write(tmp_path, "b.csv", b"a,b\n\x00\x01\x02,3\n"))
    with pytest.raises(EmsegError, match="is not UTF-8 text"):
        read_table(write(tmp_path, "l.csv", "caf\xe9,b\n1,2\n".encode("latin-1")))
    with pytest.raises(EmsegError, match="column 'a' is given twice in columns"):
        read_table(write(tmp_path, "t.csv", "a,b\n1,2\n"), ["a", "a"])
    with pytest.raises(EmsegError, match="cannot be both"):
        read_table(write(tmp_path, "t.csv", "a,b\n1,2\n"), sequence_col="a", categorical="a")


def test_one_column_hint_for_other_delimiters(tmp_path):
    with pytest.raises(EmsegError, match="another delimiter"):
        read_table(write(tmp_path, "t.csv", "a b\n1 2\n"), ["a b"])


# --------------------------------------------------------------------------- writing


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_write_labels(tmp_path):
    proba = np.array([[0.9, 0.1], [0.25, 0.75], [1e-9, 1 - 1e-9]])
    write_labels(tmp_path / "labels.csv", proba.argmax(1), proba)
    rows = read_csv(tmp_path / "labels.csv")
    assert rows == [
        ["row", "label", "p0", "p1"],
        ["0", "0", "0.900000", "0.100000"],
        ["1", "1", "0.250000", "0.750000"],
        ["2", "1", "0.000000", "1.000000"],
    ]
    with pytest.raises(EmsegError, match="exists; pass --overwrite"):
        write_labels(tmp_path / "labels.csv", [0, 1, 1], proba)
    write_labels(tmp_path / "labels.csv", [1, 0], overwrite=True)
    assert read_csv(tmp_path / "labels.csv") == [["row", "label"], ["0", "1"], ["1", "0"]]
    with pytest.raises(EmsegError, match="proba has 3 rows, expected 2"):
        write_labels(tmp_path / "x.csv", [0, 1], proba)
    with pytest.raises(EmsegError, match=r"probabilities in \[0, 1\]"):
        write_labels(tmp_path / "x.csv", [0], [[2.0]])
    assert not (tmp_path / "x.csv").exists()


def test_write_labels_many_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr(writers_mod, "_WRITE_BLOCK", 7)
    proba = np.random.default_rng(1).dirichlet(np.ones(3), 50)
    write_labels(tmp_path / "l.csv", proba.argmax(1), proba)
    rows = read_csv(tmp_path / "l.csv")[1:]
    assert [int(r[0]) for r in rows] == list(range(50))
    np.testing.assert_allclose(np.array([r[2:] for r in rows], float), proba, atol=5e-7)


@pytest.mark.slow
def test_python_and_compiled_formatting_write_the_same_bytes(tmp_path, monkeypatch):
    """Small results are formatted in Python (no numba), large ones by the kernel."""
    rng = np.random.default_rng(3)
    post = rng.dirichlet(np.ones(3), 300)
    post[:5] = [[0.5, 0.5, 0], [0.0000005, 0.9999995, 0], [1, 0, 0], [1e-9, 1 - 1e-9, 0],
                [0.1234565, 0.8765435, 0]]
    states = post.argmax(1)
    ids, lengths = ["a,1", 'q"x', "z"], [100, 150, 50]
    monkeypatch.setattr(writers_mod, "_WRITE_BLOCK", 64)
    for rows in (10**9, 0):
        monkeypatch.setattr(writers_mod, "_PYTHON_ROWS", rows)
        write_states(tmp_path / f"s{rows}.csv", states, post, sequence_ids=ids, lengths=lengths)
        write_labels(tmp_path / f"l{rows}.csv", states - 1, post)
    for name in ("s", "l"):
        assert (tmp_path / f"{name}0.csv").read_bytes() == (tmp_path / f"{name}{10**9}.csv").read_bytes()
    assert read_csv(tmp_path / "s0.csv")[2][:3] == ["1", "a,1", "1"]


def test_write_is_atomic(tmp_path, monkeypatch):
    monkeypatch.setattr(writers_mod, "_WRITE_BLOCK", 4)
    calls = []
    real = writers_mod._format_block

    def failing(*args):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return real(*args)

    monkeypatch.setattr(writers_mod, "_format_block", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        write_labels(tmp_path / "l.csv", np.zeros(10, int), np.ones((10, 1)))
    assert len(calls) == 2 and os.listdir(tmp_path) == []  # no file, no temporary


def test_write_states(tmp_path):
    post = np.array([[0.8, 0.2], [0.3, 0.7], [0.5, 0.5]])
    write_states(tmp_path / "s.csv", [0, 1, 0], post, sequence_ids=["a,1", "b"], lengths=[2, 1])
    assert read_csv(tmp_path / "s.csv") == [
        ["row", "sequence", "state", "posterior", "p0", "p1"],
        ["0", "a,1", "0", "0.800000", "0.800000", "0.200000"],
        ["1", "a,1", "1", "0.700000", "0.300000", "0.700000"],
        ["2", "b", "0", "0.500000", "0.500000", "0.500000"],
    ]
    write_states(tmp_path / "s1.csv", [2, 0], [0.5, 1.0])
    assert read_csv(tmp_path / "s1.csv") == [
        ["row", "state", "posterior"], ["0", "2", "0.500000"], ["1", "0", "1.000000"],
    ]
    with pytest.raises(EmsegError, match="do not match 3 states"):
        write_states(tmp_path / "x.csv", [0, 1, 0], post, sequence_ids=["a"], lengths=[2])
    with pytest.raises(EmsegError, match="states must be in 0..1"):
        write_states(tmp_path / "x.csv", [0, 2, 0], post)


def test_write_imputed_changes_only_missing_cells(tmp_path, both_paths):
    text = (
        'id;note;a;b\r\n'
        's1;"keep ; this";1.50;NA\r\n'
        's1;x;  ;2e0\r\n'
        's2;"";"";7\r\n'
        's2;y;3;4\r\n'
        's3;z;;\r\n'
    )
    path = write(tmp_path, "t.txt", text)
    t = read_table(path, ["b", "a"], sequence_col="id")
    filled = t.X.copy()
    filled[np.isnan(filled)] = [0.1, 2.5, 1 / 3, -8.0, 1e-300]  # row-major, features b, a
    write_imputed(tmp_path / "out.txt", t, filled)
    expected = (
        'id;note;a;b\r\n'
        's1;"keep ; this";1.50;0.1\r\n'
        's1;x;  2.5;2e0\r\n'
        's2;"";"0.3333333333333333";7\r\n'
        's2;y;3;4\r\n'
        's3;z;1e-300;-8.0\r\n'
    )
    assert (tmp_path / "out.txt").read_bytes() == expected.encode()
    again = read_table(tmp_path / "out.txt", ["b", "a"])
    np.testing.assert_array_equal(bits(again.X), bits(filled))
    complete = read_table(tmp_path / "out.txt", ["b", "a"])
    write_imputed(tmp_path / "same.txt", complete, complete.X)  # nothing missing: a copy
    assert (tmp_path / "same.txt").read_bytes() == expected.encode()


def test_write_imputed_with_a_fitted_mixture(tmp_path, both_paths):
    gen = np.random.default_rng(5)
    X = np.concatenate([gen.normal(0, 1, (100, 2)), gen.normal(8, 1, (100, 2))])
    X[gen.random(X.shape) < 0.1] = np.nan
    X[np.isnan(X).all(1), 0] = 1.0
    lines = ["tag,x,y"] + [f"r{i}," + ",".join("" if np.isnan(v) else repr(float(v)) for v in row)
                           for i, row in enumerate(X)]
    path = write(tmp_path, "t.csv", "\n".join(lines) + "\n")
    t = read_table(path)
    filled = GaussianMixture(2, random_state=0).fit(t.X).impute(t.X)
    write_imputed(tmp_path / "filled.csv", t, filled)
    out = (tmp_path / "filled.csv").read_text().splitlines()
    for before, after, row in zip(lines[1:], out[1:], X):
        if not np.isnan(row).any():
            assert before == after
    assert not np.isnan(read_table(tmp_path / "filled.csv").X).any()


def test_write_imputed_npy(tmp_path):
    X = np.array([[1.0, np.nan, 7], [np.nan, 2.0, 8]], dtype=np.float32)
    np.save(tmp_path / "x.npy", X)
    t = read_table(tmp_path / "x.npy", ["0", "1"])
    write_imputed(tmp_path / "f.npy", t, [[1.0, 5.0], [3.0, 2.0]])
    out = np.load(tmp_path / "f.npy")
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[1, 5, 7], [3, 2, 8]])


def test_write_imputed_refuses_changed_values(tmp_path):
    t = read_table(write(tmp_path, "t.csv", "a,b\n1,\n2,3\n"))
    with pytest.raises(EmsegError, match="differ from the table's observed values"):
        write_imputed(tmp_path / "o.csv", t, [[1.5, 0], [2, 3]])
    with pytest.raises(EmsegError, match="still NaN"):
        write_imputed(tmp_path / "o.csv", t, t.X)
    with pytest.raises(EmsegError, match="shape"):
        write_imputed(tmp_path / "o.csv", t, [[1, 2]])
    assert not (tmp_path / "o.csv").exists()


def test_row_text(tmp_path):
    t = read_table(write(tmp_path, "t.csv", "a,b\r\n1,2\r\n3,4"))
    assert t.row_text(0) == "1,2" and t.row_text(1) == "3,4"
    with pytest.raises(EmsegError, match="outside"):
        t.row_text(2)


def test_feature_spans(tmp_path):
    text = 'id;note;a;b\r\ns1;"q ; r"; 1.5 ;"2"\r\ns2;x;;7\r\n'
    t = read_table(write(tmp_path, "t.txt", text), ["b", "a"])
    spans = t.feature_spans(np.array([1, 0]))
    assert spans.shape == (2, 2, 2) and spans.dtype == np.int64
    cells = [[t.raw[a:b] for a, b in row] for row in spans]
    assert cells == [[b"7", b""], [b"2", b"1.5"]]  # features in the order b, a
    np.save(tmp_path / "x.npy", np.ones((2, 2)))
    with pytest.raises(EmsegError, match="no text cells"):
        read_table(tmp_path / "x.npy").feature_spans(np.array([0]))
