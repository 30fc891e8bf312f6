"""emseg.io.tables through standard readers (issue 15): which columns are numeric, what
is missing, quoting and line endings, and the pandas path (large files) giving the
same arrays and errors as the csv-module path (the reader of reference)."""

import random
import re

import numpy as np
import pytest

import emseg.io._table_pandas as pandas_mod
import emseg.io._table_text as text_mod
import emseg.io.tables as table_mod
from emseg import EmsegError
from emseg.io.tables import MISSING_TOKENS, read_table
from _helpers import float_bits as bits, write_text as write

HAVE_PANDAS = pandas_mod.available()


@pytest.fixture(params=["csv", "pandas"])
def reader(request, monkeypatch):
    """Read through the csv module, or through pandas (every file counts as large);
    ``reader.used_pandas`` tells whether pandas gave the last table."""
    if request.param == "pandas":
        if not HAVE_PANDAS:
            pytest.skip("pandas 3.1 or later is not installed")
        monkeypatch.setattr(table_mod, "LARGE_BYTES", 0)
    calls = []
    real = pandas_mod.parse_body

    def spy(*args, **kwargs):
        found = real(*args, **kwargs)
        calls.append(found is not None)
        return found

    monkeypatch.setattr(pandas_mod, "parse_body", spy)

    class Reader:
        kind = request.param

        @staticmethod
        def read(*args, **kwargs):
            calls.clear()
            return read_table(*args, **kwargs)

        @property
        def used_pandas(self):
            return bool(calls) and calls[-1]

    return Reader()


# --------------------------------------------------------------------------- numeric columns


@pytest.mark.parametrize(
    "first", ["null", "NULL", "None", "#N/A", "n/a", "<NA>", "-nan", "NA", ""]
)
def test_a_missing_first_cell_keeps_the_column(tmp_path, reader, first):
    t = reader.read(write(tmp_path, "t.csv", f"a,b\n1,{first}\n2,3.5\n3,4\n"))
    assert t.columns == ["a", "b"]
    np.testing.assert_array_equal(t.X[:, 1], [np.nan, 3.5, 4])
    assert not np.signbit(t.X[0, 1])  # '-nan' is missing, not a negative number


@pytest.mark.parametrize(
    "first, hint",
    [("?", "a missing value is an empty cell"), ("-", "a missing value is an empty cell"),
     ("1_000", "without digit separators"), ("n.a.", "a missing value is an empty cell")],
)
def test_a_first_cell_that_is_not_a_number_is_reported_not_dropped(tmp_path, reader, first,
                                                                  hint):
    path = write(tmp_path, "t.csv", f"a,b\n1,{first}\n2,3\n3,4\n")
    with pytest.raises(EmsegError) as info:
        reader.read(path)
    message = str(info.value)
    assert f"column 'b' of {path} is not numeric (value {first!r} on line 2)" in message
    assert hint in message and "\n" not in message


def test_one_text_cell_mid_file(tmp_path, reader):
    rows = "".join(f"{i},{i * 0.5}\n" for i in range(40))
    path = write(tmp_path, "t.csv", "a,b\n" + rows + "7,oops\n" + rows)
    with pytest.raises(EmsegError, match=r"column 'b' .* not numeric \(value 'oops' on line 42\)"):
        reader.read(path)
    with pytest.raises(EmsegError, match="line 42"):
        reader.read(path, ["b"])


def test_text_columns_are_left_out_and_named(tmp_path, reader):
    t = reader.read(write(tmp_path, "t.csv", "name,a,when\nx,1,2020-01-01\ny,2,2020-01-02\n"))
    assert t.columns == ["a"] and t.skipped == ["name", "when"]
    with pytest.raises(EmsegError, match=r"'name' .* \(value 'x' on line 2\); choose numeric"):
        reader.read(write(tmp_path, "t.csv", "name,a\nx,1\ny,2\n"), ["name", "a"])


def test_python_float_extensions_are_not_numbers(tmp_path, reader):
    """Python's float reads these; a table's number grammar does not."""
    for cell in ["1_0", "0x10", "infinity", "١٢", "1e5e5", "nAn"]:
        path = write(tmp_path, "t.csv", f"a,b\n1,2\n3,{cell}\n")
        with pytest.raises(EmsegError, match="line 3"):
            reader.read(path)


def test_number_forms(tmp_path, reader):
    cells = ["5.", ".5", "+3", "007", "1E-05", "-0", " 2 ", "\t4", "-.5", "1e+3"]
    t = reader.read(write(tmp_path, "t.csv", "a\n" + "\n".join(cells) + "\n"))
    np.testing.assert_array_equal(bits(t.X[:, 0]), bits([float(c) for c in cells]))


def test_all_missing_tokens(tmp_path, reader):
    lines = [f"{i},{tok}" for i, tok in enumerate(MISSING_TOKENS)]
    with pytest.raises(EmsegError, match=r"column 'b' .* has no value"):
        reader.read(write(tmp_path, "t.csv", "a,b\n" + "\n".join(lines) + "\n"))
    lines.append("99,5")
    t = reader.read(write(tmp_path, "t.csv", "a,b\n" + "\n".join(lines) + "\n"))
    assert np.isnan(t.X[:-1, 1]).all() and t.X[-1, 1] == 5


def test_missing_cells_with_blanks(tmp_path, reader):
    t = reader.read(write(tmp_path, "t.csv", "a,b\n1, NA \n2,  \n3,\tnull\n4,5\n"))
    np.testing.assert_array_equal(t.X[:, 1], [np.nan, np.nan, np.nan, 5])


# --------------------------------------------------------------------------- text format


def test_quoted_fields(tmp_path, reader):
    text = 'a,"b, c",name\n"1", "2" ,"x,""y"""\n3,4,z\n'
    t = reader.read(write(tmp_path, "t.csv", text))
    assert t.header == ["a", "b, c", "name"] and t.columns == ["a", "b, c"]
    np.testing.assert_array_equal(t.X, [[1, 2], [3, 4]])
    t = reader.read(write(tmp_path, "t.csv", 'id,x\n"a,1",1\n"a,1",2\nb,3\n'), sequence_col="id")
    assert t.sequence_ids == ["a,1", "b"]


def test_bom_crlf_tsv(tmp_path, reader):
    t = reader.read(write(tmp_path, "t.tsv", "\ufeffa\tb\r\n1\t2\r\n\t3\r\n\r\n"))
    assert t.header == ["a", "b"] and t.delimiter == "\t"
    np.testing.assert_array_equal(t.X, [[1, 2], [np.nan, 3]])
    assert reader.used_pandas == (reader.kind == "pandas")
    assert t.row_text(1) == "\t3"


def test_header_required(tmp_path, reader):
    with pytest.raises(EmsegError, match="looks like data .* add a header row"):
        reader.read(write(tmp_path, "t.csv", "1.5,2\n3,4\n"))
    t = reader.read(write(tmp_path, "t.csv", "1,2\n3,4\n"))  # integer names: a header
    assert t.columns == ["1", "2"] and t.n_rows == 1


@pytest.mark.parametrize(
    "text, match",
    [
        ("a,b\n1,2\n3\n", "line 3 of .* has 1 fields but the header has 2"),
        ("a,b\n1,2\n\n3,4\n", "line 3 of .* is empty but the header has 2 columns"),
        ("a,b\nx,y\n\nz,w\n", "line 3 of .* is empty but the header has 2 columns"),
        ("a,b\n1,\n,\n\n3,4\n", "line 4 of .* is empty but the header has 2 columns"),
        ('a,b\n1,"2\n3,4\n', "line 2 of .* has a quoted field that is not closed"),
        ('a,b\n1,2\n3,"4"x\n', "line 3 of .* has a quoted field"),
        ("a,b\n1,2\n3,4\r5,6\n", "line 3 of .* carriage return"),
        ("a,b\n1,2\n3,1e999\n", r"column 'b' .* infinite value '1e999' on line 3"),
        ("a,b\n1,2\n3,-inf\n", r"column 'b' .* infinite value '-inf' on line 3"),
        ("id,x\na,1\nNA,2\n", "column 'id' .* has no sequence id on line 3"),
        ("a,b\n1,2,3\n4,5\n", "line 2 of .* has 3 fields but the header has 2"),
        ("a,b\n1,\n2\n3,4\n", "line 3 of .* has 1 fields but the header has 2"),
        ("a,b,c\n1,2,\n3,4\n", "line 3 of .* has 2 fields but the header has 3"),
        ("a,b\n1,2\n3,4\x00\n", "is a binary file"),
        ("a,b\n1,2\n3,+inf\n", r"column 'b' .* infinite value '\+inf' on line 3"),
    ],
)
def test_errors_name_line_and_column(tmp_path, reader, text, match):
    path = write(tmp_path, "t.csv", text)
    with pytest.raises(EmsegError, match=match) as info:
        reader.read(path, sequence_col="id" if text.startswith("id") else None)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


# --------------------------------------------------------------------------- both paths


def _messy_table(rng, n, quotes):
    lines = ["id,name,x,y,n,z,note"]
    for i in range(n):
        x = float(rng.normal() * 10.0 ** rng.integers(-5, 5))
        y = "" if rng.random() < 0.1 else repr(float(rng.normal()))
        z = str(rng.choice(["NA", "null", "-0", "12345678901234567890", "1e-320", "3"]))
        name = f'"n,{i}"' if quotes else f"n{i}"
        lines.append(f"s{i // 50},{name},{x!r},{y},{i % 7},{z},{'' if i % 3 else 'ok'}")
    return "\r\n".join(lines) + "\r\n"


@pytest.mark.parametrize("threshold", [0, 1000, 1 << 62])
@pytest.mark.parametrize("quotes", [False, True])
def test_large_and_small_paths_give_identical_tables(tmp_path, monkeypatch, threshold, quotes):
    rng = np.random.default_rng(7)
    path = write(tmp_path, "t.csv", _messy_table(rng, 600, quotes))
    reference = read_table(path, sequence_col="id")
    cat_reference = read_table(path, [], categorical="name")
    if threshold < (1 << 62) and not HAVE_PANDAS:
        pytest.skip("pandas 3.1 or later is not installed")
    monkeypatch.setattr(table_mod, "LARGE_BYTES", threshold)
    for got, want in ((read_table(path, sequence_col="id"), reference),
                      (read_table(path, [], categorical="name"), cat_reference)):
        np.testing.assert_array_equal(bits(got.X), bits(want.X))
        assert got.columns == want.columns == ([] if got.categorical else ["x", "y", "n", "z"])
        assert got.skipped == want.skipped
        assert got.sequence_ids == want.sequence_ids
        assert got.symbols == want.symbols
        for a, b in ((got.lengths, want.lengths), (got.codes, want.codes)):
            assert (a is None and b is None) or np.array_equal(a, b)
    assert reference.skipped == ["name", "note"] and reference.lengths.tolist() == [50] * 12
    assert np.signbit(reference.X[:, 3]).any()  # '-0' kept its sign on both paths


def test_pandas_reads_a_plain_table_itself(tmp_path, reader):
    if reader.kind != "pandas":
        pytest.skip("the pandas path")
    rng = np.random.default_rng(1)
    path = write(tmp_path, "t.csv", _messy_table(rng, 300, quotes=False))
    reader.read(path, sequence_col="id")
    assert reader.used_pandas
    reader.read(write(tmp_path, "q.csv", _messy_table(rng, 300, quotes=True)))
    assert reader.used_pandas  # quotes that open and close fields
    for odd in ['"a""b"', ' "a"', '"a" ', 'a"b']:
        text = _messy_table(rng, 30, quotes=False).replace("n7,", f"{odd},")
        t = reader.read(write(tmp_path, "o.csv", text), sequence_col="id")
        assert not reader.used_pandas, odd  # handed to the csv module
        assert t.columns == ["x", "y", "n", "z"]
    text = _messy_table(rng, 30, quotes=False).replace("n7,", '"a\nb",')
    with pytest.raises(EmsegError, match="line 9 of .* quoted field that is not closed"):
        reader.read(write(tmp_path, "o.csv", text))
    assert not reader.used_pandas


def test_pandas_hands_back_what_it_reads_otherwise(tmp_path, reader):
    """pandas fills a short row, skips a vertical tab around a number, reads a leading
    + with another converter: such tables are read by the csv module, with the same
    result; missing last cells, CRLF and trailing blank lines stay with pandas."""
    if reader.kind != "pandas":
        pytest.skip("the pandas path")
    plain = [
        "a,b,c\r\n1,2,\r\n3,,NA\r\n4,5,6\r\n",  # missing last cells: their fields are counted
        "a,b,c\n1,2,3\n4,5,6\n\n\n",  # blank lines at the end are not rows
        "a,b\n1e+300,-2E+5\n",  # + as an exponent's sign
        'a,b,c\n"1",2,"x"\n"",4,"y"\n',
        '"a",b\n1,2\n3,4\n',  # a quoted header: the body is read from memory
    ]
    for text in plain:
        t = reader.read(write(tmp_path, "p.csv", text))
        assert reader.used_pandas, text
        want = _reference(tmp_path, text)
        assert bits(t.X).tolist() == bits(want.X).tolist() and t.columns == want.columns
    for text in ["a,b\n+1,2\n", "a,b\n1,\x0b2\n", 'a,b\n1,"x""y"\n',
                 'a,b\n1,"x\ny"\n']:
        try:
            got = bits(reader.read(write(tmp_path, "h.csv", text)).X).tolist()
        except EmsegError as exc:
            got = str(exc).replace("h.csv", "r.csv")
        assert not reader.used_pandas, text
        try:
            want = bits(_reference(tmp_path, text).X).tolist()
        except EmsegError as exc:
            want = str(exc)
        assert got == want, text


def _reference(tmp_path, text):
    saved = table_mod.LARGE_BYTES
    table_mod.LARGE_BYTES = 1 << 62
    try:
        return read_table(write(tmp_path, "r.csv", text))
    finally:
        table_mod.LARGE_BYTES = saved


def test_without_pandas_any_size_is_read(tmp_path, monkeypatch):
    monkeypatch.setattr(table_mod, "LARGE_BYTES", 0)
    monkeypatch.setattr(pandas_mod, "available", lambda: False)
    t = read_table(write(tmp_path, "t.csv", "a,b\n1,2\n3,\n"))
    np.testing.assert_array_equal(t.X, [[1, 2], [3, np.nan]])


# --------------------------------------------------------------------------- the grammar


def _cells(seed, n):
    rng = random.Random(seed)
    alphabet = "0123456789+-.eE \t_xnaif"
    return {"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6))) for _ in range(n)}


def test_one_column_check_is_the_grammar():
    """scan_numbers' check (float + the grammar's characters) accepts exactly the
    strings the regular expression of the grammar accepts."""
    for cell in sorted(_cells(0, 50_000)):
        expected = (cell.strip(" \t") in text_mod.MISSING
                    or re.fullmatch(text_mod.NUMBER_PATTERN, cell.strip(" \t")) is not None)
        assert (text_mod.scan_numbers((cell, "1")).values is not None) == expected, repr(cell)


def _outcome(path, columns=None):
    try:
        t = read_table(path, columns)
    except EmsegError as exc:
        return str(exc)
    return bits(t.X).tolist(), t.columns


@pytest.mark.skipif(not HAVE_PANDAS, reason="pandas 3.1 or later is not installed")
def test_pandas_cells_read_as_the_reference_reads_them(tmp_path, monkeypatch):
    """Random cells (digits, signs, exponents, blanks, vertical tabs, letters of inf and
    nan) in a number column: the pandas path gives the reference's values, or its
    error, cell by cell (a leading + and blanks inside an exponent send pandas to a
    converter that is not correctly rounded; those are handed back)."""
    rng = random.Random(5)
    alphabet = "0123456789+-.eE \t\x0b\x0cnaifNI"
    cells = sorted({"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 7)))
                    for _ in range(1_500)})
    cells += ["+6e66", " +3E93", "+2e 9", "nAn", "+nan", "Infinity", "1e500", "\x0b1.5"]
    for i, cell in enumerate(cells):
        path = write(tmp_path, f"c{i}.csv", f"a,b\n1,{cell}\n2,3\n")
        monkeypatch.setattr(table_mod, "LARGE_BYTES", 1 << 62)
        want = _outcome(path), _outcome(path, ["a", "b"])
        monkeypatch.setattr(table_mod, "LARGE_BYTES", 0)
        assert (_outcome(path), _outcome(path, ["a", "b"])) == want, repr(cell)


def test_large_table_bytes_are_loaded_again_when_needed(tmp_path, reader):
    """Through pandas the file is memory-mapped; ``raw`` (for gmm impute) is read
    again on first use, and refused if the file changed in between."""
    from emseg.io.tables import write_imputed

    path = write(tmp_path, "t.csv", "a,b\n1,\n2,3\n4,5\n")
    t = reader.read(path)
    assert t.raw == path.read_bytes() and t.row_starts.tolist() == [4, 7, 11]
    write_imputed(tmp_path / "o.csv", t, np.nan_to_num(t.X, nan=2.5))
    assert (tmp_path / "o.csv").read_bytes() == b"a,b\n1,2.5\n2,3\n4,5\n"
    t = reader.read(path)
    path.write_bytes(b"a,b\n1,\n2,3\n4,6\n")
    if reader.kind == "pandas":
        with pytest.raises(EmsegError, match="has changed since it was read"):
            write_imputed(tmp_path / "p.csv", t, np.nan_to_num(t.X, nan=2.5))
