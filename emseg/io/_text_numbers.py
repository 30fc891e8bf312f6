"""The compiled scanner behind :func:`emseg.io.tables.read_table`: text cells to numbers.

Private to the table reader. The body of a text table is cut into chunks of lines
(:func:`chunks`) that :func:`parse_body` scans on every core: quoted fields, spaces
around fields, CRLF; it records where each line and each wanted cell starts and parses
the numeric cells into float64.

A number is [+-] digits [. digits] [(e|E) [+-] digits], parsed by hand into up to 19
significant digits and a power of ten, then turned into the correctly rounded double:

1. Clinger's fast path: when the digits fit in 2**53 and the power of ten is within
   1e22, one IEEE multiplication or division of two exact values rounds correctly.
2. The Eisel-Lemire algorithm (Lemire, "Number parsing at a gigabyte per second",
   2021; as in Rust's core::num::dec2flt and Go's strconv): a 128-bit product with a
   table of powers of five, which either rounds correctly or says it cannot tell.
3. Otherwise (more than 19 digits, halfway ambiguities, subnormals, overflow): the C
   library's strtod, which rounds correctly. Where strtod cannot be used (a locale
   with a decimal comma, or no C library found) the row is flagged and Python's
   float parses it (:func:`python_numbers`).

Either way the value equals Python's float(text) (tests check this on random and
hard cases).

All compiled functions stay in this one file: numba's cache checks only the source
file of the function it loads, so a kernel inlined from another file could go stale.
"""

import ctypes
import ctypes.util
import locale
import math

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

MISSING_TOKENS = ("", "NA", "N/A", "NaN", "nan", "NAN")  # _is_missing knows the same
MISSING_BYTES = tuple(t.encode() for t in MISSING_TOKENS)
NONE = np.iinfo(np.int64).max  # "no such row" in the scanner's per-chunk reports
_CHUNK_BYTES = 1 << 20  # text is parsed in chunks of about 1 MiB, spread over the cores


def _find_strtod():
    candidates = []
    try:
        candidates.append(ctypes.CDLL(None))
    except (OSError, TypeError):  # pragma: no cover - Windows
        pass
    for name in (ctypes.util.find_library("c"), "ucrtbase", "msvcrt"):
        if name:
            try:
                candidates.append(ctypes.CDLL(name))
            except OSError:
                pass
    for lib in candidates:
        func = getattr(lib, "strtod", None)
        if func is not None:
            func.restype = ctypes.c_double
            func.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p)]
            return func
    return None  # pragma: no cover


def _register_strtod():
    """Make the C library's strtod callable from compiled code as ``emseg_table_strtod``.

    The symbol is looked up by name when a (cached) kernel is linked, so it is defined
    before any kernel is compiled or loaded; without a C library it is a stub that the
    kernels never call.
    """
    import llvmlite.binding as llvm

    func = _find_strtod()
    if func is not None:
        try:
            ok = func(b"0.1", None) == 0.1
        except Exception:  # pragma: no cover
            ok = False
        if ok:
            llvm.add_symbol("emseg_table_strtod", ctypes.cast(func, ctypes.c_void_p).value)
            return func
    stub = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_void_p, ctypes.c_void_p)(  # pragma: no cover
        lambda ptr, end: math.nan
    )
    _register_strtod.stub = stub  # pragma: no cover - keep it alive
    llvm.add_symbol("emseg_table_strtod", ctypes.cast(stub, ctypes.c_void_p).value)  # pragma: no cover
    return None  # pragma: no cover


_STRTOD = _register_strtod()


def use_strtod():
    """True when the C strtod reads '.' decimals (it follows the LC_NUMERIC locale)."""
    return _STRTOD is not None and locale.localeconv().get("decimal_point", ".") == "."


@intrinsic
def _strtod(typingctx, address, end_address):
    """``strtod((char *) address, (char **) end_address)``."""
    sig = types.float64(types.uintp, types.uintp)

    def codegen(context, builder, signature, args):
        char_p = ir.IntType(8).as_pointer()
        fnty = ir.FunctionType(ir.DoubleType(), [char_p, char_p.as_pointer()])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "emseg_table_strtod")
        return builder.call(
            fn,
            [builder.inttoptr(args[0], char_p), builder.inttoptr(args[1], char_p.as_pointer())],
        )

    return sig, codegen


@intrinsic
def _mul_hi_lo(typingctx, a, b):
    """The 128-bit product of two uint64: (high 64 bits, low 64 bits)."""
    sig = types.UniTuple(types.uint64, 2)(types.uint64, types.uint64)

    def codegen(context, builder, signature, args):
        i128 = ir.IntType(128)
        i64 = ir.IntType(64)
        prod = builder.mul(builder.zext(args[0], i128), builder.zext(args[1], i128))
        hi = builder.trunc(builder.lshr(prod, ir.Constant(i128, 64)), i64)
        lo = builder.trunc(prod, i64)
        return context.make_tuple(builder, signature.return_type, (hi, lo))

    return sig, codegen


@intrinsic
def _leading_zeros(typingctx, a):
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):
        return builder.ctlz(args[0], ir.Constant(ir.IntType(1), 0))

    return sig, codegen


@intrinsic
def _bits_to_float(typingctx, a):
    sig = types.float64(types.uint64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return sig, codegen


def _powers_of_five():
    """128-bit significands of 5**q, q = -342..308 (Lemire's table, as Rust generates it)."""
    hi, lo = [], []
    for q in range(-342, 0):
        power5 = 5**-q
        z = (power5 - 1).bit_length()  # the least z with 2**z >= 5**-q
        if q >= -27:
            c = 2 ** (z + 127) // power5 + 1
        else:
            c = 2 ** (2 * z + 128) // power5 + 1
            while c >= 1 << 128:
                c //= 2
        hi.append(c >> 64)
        lo.append(c & 0xFFFFFFFFFFFFFFFF)
    for q in range(0, 309):
        power5 = 5**q
        while power5 < 1 << 127:
            power5 *= 2
        while power5 >= 1 << 128:
            power5 //= 2
        hi.append(power5 >> 64)
        lo.append(power5 & 0xFFFFFFFFFFFFFFFF)
    return np.array(hi, dtype=np.uint64), np.array(lo, dtype=np.uint64)


_POW5_HI, _POW5_LO = _powers_of_five()
_POW10 = np.array([10.0**i for i in range(23)])
_QUOTE, _NL, _SPACE, _CR = 34, 10, 32, 13
# statuses of a parsed cell
_NUMBER, _MISSING, _BAD, _PYTHON = 0, 1, 2, 3
_U0 = np.uint64(0)
_U1 = np.uint64(1)
_ALL_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)
_MASK_9 = np.uint64(0x1FF)
_HIDDEN = np.uint64(1 << 52)
_SIGN = np.uint64(1 << 63)


@njit(cache=True, inline="always")
def _eisel_lemire(mant, q, negative):
    """(value, True) for mant * 10**q, or (0, False) when the algorithm cannot tell.

    ``mant`` is non-zero; subnormal results are left to strtod.
    """
    if q < -342 or q > 308:
        return 0.0, False
    lz = _leading_zeros(mant)
    w = mant << lz
    index = q + 342
    hi, lo = _mul_hi_lo(w, _POW5_HI[index])
    if (hi & _MASK_9) == _MASK_9:
        second_hi, _ = _mul_hi_lo(w, _POW5_LO[index])
        lo = lo + second_hi
        if second_hi > lo:
            hi = hi + _U1
    if lo == _ALL_ONES and not (-27 <= q <= 55):
        return 0.0, False
    upperbit = hi >> np.uint64(63)
    shift = upperbit + np.uint64(9)
    mantissa = hi >> shift
    power2 = ((q * 217706) >> 16) + 63 + np.int64(upperbit) - np.int64(lz) + 1023
    if power2 <= 0:
        return 0.0, False
    if (
        lo <= _U1 and -4 <= q <= 23 and (mantissa & np.uint64(3)) == _U1
        and (mantissa << shift) == hi
    ):
        mantissa &= ~_U1
    mantissa += mantissa & _U1
    mantissa >>= _U1
    if mantissa >= (_HIDDEN << _U1):
        mantissa = _HIDDEN
        power2 += 1
    mantissa &= ~_HIDDEN
    if power2 >= 0x7FF:
        return (-np.inf if negative else np.inf), True
    bits = mantissa | (np.uint64(power2) << np.uint64(52))
    if negative:
        bits |= _SIGN
    return _bits_to_float(bits), True


@njit(cache=True, inline="always")
def _lex_number(buf, i, b):
    """Read a number's syntax from ``buf[i:b]`` as far as it goes.

    Returns (negative, significant digits (at most 19), power of ten, digit count,
    truncated (more than 19 significant digits), stop, exponent ok).
    """
    negative = False
    if i < b and (buf[i] == 45 or buf[i] == 43):
        negative = buf[i] == 45
        i += 1
    mant = _U0
    n_sig = 0
    exp10 = 0
    n_digits = 0
    truncated = False
    while i < b and 48 <= buf[i] <= 57:
        n_digits += 1
        if n_sig < 19:
            mant = mant * np.uint64(10) + np.uint64(buf[i] - 48)
            if mant != _U0:
                n_sig += 1
        else:
            exp10 += 1
            truncated = True
        i += 1
    if i < b and buf[i] == 46:
        i += 1
        while i < b and 48 <= buf[i] <= 57:
            n_digits += 1
            if n_sig < 19:
                mant = mant * np.uint64(10) + np.uint64(buf[i] - 48)
                if mant != _U0:
                    n_sig += 1
                exp10 -= 1
            else:
                truncated = True
            i += 1
    exponent_ok = True
    if n_digits > 0 and i < b and (buf[i] == 101 or buf[i] == 69):
        i += 1
        exp_negative = False
        if i < b and (buf[i] == 45 or buf[i] == 43):
            exp_negative = buf[i] == 45
            i += 1
        if i == b or not (48 <= buf[i] <= 57):
            exponent_ok = False
        e = 0
        while i < b and 48 <= buf[i] <= 57:
            if e < 100000:
                e = e * 10 + (buf[i] - 48)
            i += 1
        exp10 += -e if exp_negative else e
    return negative, mant, exp10, n_digits, truncated, i, exponent_ok


@njit(cache=True, inline="always")
def _make_float(negative, mant, exp10, truncated, a, b, base, end_slot, use_strtod):
    """(value, status) of the lexed number ``buf[a:b]``."""
    if not truncated:
        if mant == _U0:
            return (-0.0 if negative else 0.0), _NUMBER
        if mant <= np.uint64(9007199254740992) and -22 <= exp10 <= 22:
            value = float(mant)
            if exp10 >= 0:
                value = value * _POW10[exp10]
            else:
                value = value / _POW10[-exp10]
            return (-value if negative else value), _NUMBER
        value, ok = _eisel_lemire(mant, exp10, negative)
        if ok:
            return value, _NUMBER
    if not use_strtod:
        return np.nan, _PYTHON
    value = _strtod(base + np.uintp(a), end_slot.ctypes.data)
    if end_slot[0] != base + np.uintp(b):  # pragma: no cover - the syntax was checked
        return np.nan, _PYTHON
    return value, _NUMBER


@njit(cache=True, inline="always")
def _is_missing(buf, a, b):
    n = b - a
    if n == 0:
        return True
    if n == 2:
        return buf[a] == 78 and buf[a + 1] == 65  # NA
    if n == 3:
        c0, c1, c2 = buf[a], buf[a + 1], buf[a + 2]
        if c0 == 78 and c1 == 47 and c2 == 65:  # N/A
            return True
        if c0 == 78 and c1 == 97 and c2 == 78:  # NaN
            return True
        if c0 == 110 and c1 == 97 and c2 == 110:  # nan
            return True
        if c0 == 78 and c1 == 65 and c2 == 78:  # NAN
            return True
    return False


@njit(cache=True)
def _parse_cell(buf, a, b, base, end_slot, use_strtod):
    """(value, status) of the trimmed cell ``buf[a:b]``."""
    if _is_missing(buf, a, b):
        return np.nan, _MISSING
    negative, mant, exp10, n_digits, truncated, stop, exponent_ok = _lex_number(buf, a, b)
    if n_digits == 0 or not exponent_ok or stop != b:
        return np.nan, _BAD
    return _make_float(negative, mant, exp10, truncated, a, b, base, end_slot, use_strtod)


@njit(cache=True, inline="always")
def _scan_field(buf, pos, end, delim):
    """One field from ``pos``: (content start, content end, stop, quote_error).

    ``stop`` is the index of the delimiter or newline that ends the field, or ``end``.
    Spaces (and a CR before the newline) around the content are dropped; a field that
    starts with a quote runs to the closing quote, with ``""`` for a quote inside.
    """
    a = pos
    while a < end and buf[a] == _SPACE:
        a += 1
    if a < end and buf[a] == _QUOTE:
        q = a + 1
        start = q
        while True:
            if q >= end or buf[q] == _NL:
                return start, q, q, True
            if buf[q] == _QUOTE:
                if q + 1 < end and buf[q + 1] == _QUOTE:
                    q += 2
                    continue
                break
            q += 1
        stop_content = q
        q += 1
        while q < end and (buf[q] == _SPACE or buf[q] == _CR):
            q += 1
        if q < end and buf[q] != delim and buf[q] != _NL:
            while q < end and buf[q] != _NL:
                q += 1
            return start, stop_content, q, True
        return start, stop_content, q, False
    q = a
    while q < end and buf[q] != delim and buf[q] != _NL:
        q += 1
    c = q
    while c > a and (buf[c - 1] == _SPACE or buf[c - 1] == _CR):
        c -= 1
    return a, c, q, False


@njit(cache=True, inline="always")
def _fast_cell(buf, pos, end, delim, base, end_slot, use_strtod):
    """A plain number right at ``pos`` ended by the delimiter, a newline or ``end``:
    (value, status, stop); status -1 when the cell needs the general path."""
    negative, mant, exp10, n_digits, truncated, stop, exponent_ok = _lex_number(buf, pos, end)
    if n_digits == 0 or not exponent_ok:
        return np.nan, -1, pos
    q = stop
    if q < end and buf[q] == _CR:
        q += 1
    if q < end and buf[q] != delim and buf[q] != _NL:
        return np.nan, -1, pos
    if q > stop and q < end and buf[q] != _NL:  # a CR inside a line
        return np.nan, -1, pos
    value, status = _make_float(
        negative, mant, exp10, truncated, pos, stop, base, end_slot, use_strtod
    )
    return value, status, q


@njit(parallel=True, cache=True)
def parse_body(
    buf, bounds, row0, delim, n_cols, colmap, spancol, X, spans, row_starts,
    first_num, first_bad, problems, fallback, use_strtod,
):
    """Parse every data line; one chunk of lines per task.

    Per chunk, record the first row where each column holds a number
    (``first_num``) or a non-number (``first_bad``), and the first ragged row with
    its field count and the first row with a quoting error (``problems``).
    """
    base = np.uintp(buf.ctypes.data)
    for c in prange(bounds.shape[0] - 1):
        end_slot = np.zeros(1, dtype=np.uintp)
        end = bounds[c + 1]
        p = bounds[c]
        r = row0[c]
        while p < end:
            row_starts[r] = p
            j = 0
            pos = p
            quote_error = False
            while True:
                k = colmap[j] if j < n_cols else -1
                s = spancol[j] if j < n_cols else -1
                status = -1
                value = np.nan
                q = pos
                if k >= 0 and s < 0:
                    value, status, q = _fast_cell(buf, pos, end, delim, base, end_slot, use_strtod)
                if status < 0:
                    a, b, q, bad_quote = _scan_field(buf, pos, end, delim)
                    if bad_quote:
                        quote_error = True
                    if k >= 0:
                        value, status = _parse_cell(buf, a, b, base, end_slot, use_strtod)
                    if s >= 0:
                        spans[r, s, 0] = a
                        spans[r, s, 1] = b
                if k >= 0:
                    X[r, k] = value
                    if status == _NUMBER or status == _PYTHON:
                        if first_num[c, j] == NONE:
                            first_num[c, j] = r
                        if status == _PYTHON:
                            fallback[r] = 1
                    elif status == _BAD:
                        if first_bad[c, j] == NONE:
                            first_bad[c, j] = r
                j += 1
                if q >= end or buf[q] == _NL:
                    break
                pos = q + 1
            if quote_error and problems[c, 2] == NONE:
                problems[c, 2] = r
            if j != n_cols and problems[c, 0] == NONE:
                problems[c, 0] = r
                problems[c, 1] = j
            for jj in range(j, n_cols):  # cells of a short row
                if colmap[jj] >= 0:
                    X[r, colmap[jj]] = np.nan
                if spancol[jj] >= 0:
                    spans[r, spancol[jj], 0] = q
                    spans[r, spancol[jj], 1] = q
            p = q + 1
            r += 1


@njit(cache=True)
def field_spans(buf, starts, delim, want, out):
    """For the lines starting at ``starts``: ``out[i, want[j]] = (start, end)`` of the
    content of field ``j`` wherever ``want[j] >= 0`` (an empty span past a short line)."""
    end = buf.shape[0]
    for i in range(starts.shape[0]):
        pos = starts[i]
        j = 0
        q = pos
        while True:
            a, b, q, _ = _scan_field(buf, pos, end, delim)
            if j < want.shape[0] and want[j] >= 0:
                out[i, want[j], 0] = a
                out[i, want[j], 1] = b
            j += 1
            if q >= end or buf[q] == _NL:
                break
            pos = q + 1
        for jj in range(j, want.shape[0]):
            if want[jj] >= 0:
                out[i, want[jj], 0] = q
                out[i, want[jj], 1] = q


@njit(cache=True)
def _gather(buf, spans, width):
    out = np.zeros((spans.shape[0], width), dtype=np.uint8)
    for i in range(spans.shape[0]):
        a = spans[i, 0]
        for t in range(spans[i, 1] - a):
            out[i, t] = buf[a + t]
    return out


# --- around the kernels ---------------------------------------------------------------


def chunks(data, start, end):
    """Chunk boundaries (after a newline) and the first row of each chunk (cumulative)."""
    bounds = [start]
    while True:
        cut = bounds[-1] + _CHUNK_BYTES
        if cut >= end:
            break
        nl = data.find(b"\n", cut, end)
        if nl < 0 or nl + 1 >= end:
            break
        bounds.append(nl + 1)
    bounds.append(end)
    counts = [data.count(b"\n", a, b) for a, b in zip(bounds[:-1], bounds[1:])]
    counts[-1] += 1  # the last line has no newline (trailing newlines were stripped)
    return bounds, np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def line_bytes(data, row_starts, row):
    """The bytes of data row ``row`` of the file's bytes ``data``, without the line end."""
    start = int(row_starts[row])
    stop = data.find(b"\n", start)
    return data[start : len(data) if stop < 0 else stop].rstrip(b"\r")


def cell_text(buf, delimiter, row_starts, row, col):
    """The text of one cell (for messages), decoded leniently."""
    spans = np.empty((1, 1, 2), dtype=np.int64)
    want = np.full(col + 1, -1, dtype=np.int64)
    want[col] = 0
    field_spans(buf, row_starts[row : row + 1], ord(delimiter), want, spans)
    a, b = spans[0, 0]
    text = bytes(buf[a:b]).decode("utf-8", errors="replace")
    return text if len(text) <= 60 else text[:57] + "..."


def python_numbers(buf, delimiter, row_starts, fallback, colmap, X):
    """Parse the numbers of the flagged rows with Python's float (strtod unavailable)."""
    rows = np.flatnonzero(fallback)
    cols = np.flatnonzero(colmap >= 0)
    spans = np.empty((rows.size, cols.size, 2), dtype=np.int64)
    want = np.full(colmap.size, -1, dtype=np.int64)
    want[cols] = np.arange(cols.size)
    field_spans(buf, row_starts[rows], ord(delimiter), want, spans)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            text = bytes(buf[spans[i, j, 0] : spans[i, j, 1]])
            if text in MISSING_BYTES:
                continue
            try:
                X[r, colmap[c]] = float(text)
            except ValueError:  # pragma: no cover - the scanner checked the syntax
                X[r, colmap[c]] = np.nan


def field_matrix(buf, spans):
    """The cells given by ``spans`` (n, 2) as a fixed-width bytes array (n,)."""
    width = max(1, int((spans[:, 1] - spans[:, 0]).max()))
    out = _gather(buf, spans, width)
    return out.view(f"S{width}").ravel()
