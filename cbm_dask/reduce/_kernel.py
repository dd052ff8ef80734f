"""Compiled kernels (numba): polygon scan conversion and per-parcel statistics.

Everything here works on plain numpy arrays in pixel space; nothing knows about
xarray, dask or geometries.  A parcel's pixels are stored as *runs*: row ``r``,
columns ``start <= c < stop``, grouped per parcel by an ``offsets`` array (CSR
layout: the runs of parcel ``p`` are ``offsets[p]:offsets[p + 1]``).

Every kernel is single-threaded, releases the GIL (``nogil=True``) and works on a
range of parcels ``first .. last - 1``, so that callers can spread ranges over
Python threads (:mod:`cbm_dask.reduce._threads`) or let Dask run one per chunk.  No
numba threading layer is involved.  Kernels are compiled on first use per dtype and
cached on disk (``cache=True``).
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np
from numba.extending import overload
from numba.np.numpy_support import as_dtype

__all__ = [
    "COUNT",
    "FIXED",
    "MAX",
    "MEAN",
    "MIN",
    "STD",
    "SUM",
    "gather_serial",
    "histogram_range",
    "scan_count",
    "scan_fill",
    "stats_from_values",
    "stats_range",
]

#: Column positions of the fixed statistics in a kernel's output rows; the requested
#: percentiles follow from column ``FIXED`` on.
COUNT, SUM, MEAN, STD, MIN, MAX = range(6)
FIXED = 6


# --------------------------------------------------------------------------- scan conversion


@nb.njit(cache=True, nogil=True)
def _insertion_sort(buf, n):  # type: ignore[no-untyped-def]
    """Sort ``buf[:n]`` in place (fastest for the few values of a row or a small parcel)."""
    for i in range(1, n):
        v = buf[i]
        j = i - 1
        while j >= 0 and buf[j] > v:
            buf[j + 1] = buf[j]
            j -= 1
        buf[j + 1] = v


@nb.njit(cache=True, nogil=True)
def _crossings(px, py, ring_lo, ring_hi, ring_offsets, cy, out):  # type: ignore[no-untyped-def]
    """Return the x of every edge crossing the horizontal line ``y = cy``, sorted; returns how many.

    An edge counts when ``y_low < cy <= y_high`` (half-open in y, so a vertex on the
    line is counted once and horizontal edges never).  The crossing is always computed
    from the lower endpoint, so two parcels sharing an edge get bit-identical values.
    """
    n = 0
    for ring in range(ring_lo, ring_hi):
        for i in range(ring_offsets[ring], ring_offsets[ring + 1] - 1):
            y1 = py[i]
            y2 = py[i + 1]
            if y1 < y2:
                xa, ya, xb, yb = px[i], y1, px[i + 1], y2
            elif y2 < y1:
                xa, ya, xb, yb = px[i + 1], y2, px[i], y1
            else:
                continue
            if ya < cy <= yb:
                out[n] = xa + (cy - ya) * (xb - xa) / (yb - ya)
                n += 1
    _insertion_sort(out, n)  # a parcel row has a handful of crossings
    return n


@nb.njit(cache=True, nogil=True)
def _scan_one(px, py, ring_lo, ring_hi, ring_offsets, height, width,  # type: ignore[no-untyped-def]
              rows, starts, stops, at, write):
    """Scan-convert one parcel (all its rings, even-odd rule); returns the number of runs."""
    if ring_hi <= ring_lo:
        return 0
    v_lo = ring_offsets[ring_lo]
    v_hi = ring_offsets[ring_hi]
    if v_hi - v_lo < 3:
        return 0
    ymin = py[v_lo]
    ymax = py[v_lo]
    for i in range(v_lo, v_hi):
        if py[i] < ymin:
            ymin = py[i]
        if py[i] > ymax:
            ymax = py[i]
    # rows whose centre r + 0.5 satisfies ymin < centre <= ymax
    r_lo = max(0, math.floor(ymin + 0.5))
    r_hi = min(height, math.floor(ymax + 0.5))
    if r_lo >= r_hi:
        return 0
    xs = np.empty(v_hi - v_lo, np.float64)
    runs = 0
    for r in range(r_lo, r_hi):
        n = _crossings(px, py, ring_lo, ring_hi, ring_offsets, r + 0.5, xs)
        for k in range(0, n - 1, 2):
            # columns whose centre c + 0.5 satisfies left < centre <= right
            c0 = max(0, math.floor(xs[k] + 0.5))
            c1 = min(width, math.floor(xs[k + 1] + 0.5))
            if c0 < c1:
                if write:
                    rows[at + runs] = r
                    starts[at + runs] = c0
                    stops[at + runs] = c1
                runs += 1
    return runs


@nb.njit(cache=True, nogil=True)
def scan_count(px, py, ring_offsets, geom_rings, height, width, counts, first, last):  # type: ignore[no-untyped-def]
    """Count the pixel runs of parcels ``first .. last - 1`` into ``counts``.

    ``px``, ``py`` are vertex coordinates in pixel space (column, row), all rings of all
    parcels, each ring closed (first vertex repeated last); the vertices of ring ``i`` are
    ``ring_offsets[i]:ring_offsets[i + 1]`` and the rings of parcel ``p`` (exterior and
    holes of all its polygons; the even-odd rule decides what is inside) are
    ``geom_rings[p]:geom_rings[p + 1]``.  Runs are clipped to the ``height x width`` grid.
    """
    dummy = np.empty(0, np.int32)
    for p in range(first, last):
        counts[p] = _scan_one(px, py, geom_rings[p], geom_rings[p + 1], ring_offsets,
                              height, width, dummy, dummy, dummy, 0, False)


@nb.njit(cache=True, nogil=True)
def scan_fill(px, py, ring_offsets, geom_rings, height, width, offsets, rows,  # type: ignore[no-untyped-def]
              starts, stops, first, last):
    """Write the runs of parcels ``first .. last - 1`` at ``offsets`` (see :func:`scan_count`).

    Parcel ``p`` covers row ``rows[j]``, columns ``starts[j] <= c < stops[j]`` for ``j`` in
    ``offsets[p]:offsets[p + 1]``.
    """
    for p in range(first, last):
        _scan_one(px, py, geom_rings[p], geom_rings[p + 1], ring_offsets, height, width,
                  rows, starts, stops, offsets[p], True)


# --------------------------------------------------------------------------- statistics


@nb.njit(cache=True, nogil=True)
def _gather(values, mask, use_mask, nodata, use_nodata, rows, starts, stops,  # type: ignore[no-untyped-def]
            lo, hi, buf):
    """Copy the valid pixels of runs ``lo:hi`` into ``buf``; returns how many.

    Invalid: NaN, equal to ``nodata`` (when ``use_nodata``), or ``mask`` True.
    """
    k = 0
    for j in range(lo, hi):
        r = rows[j]
        for c in range(starts[j], stops[j]):
            v = values[r, c]
            if v != v:  # NaN; constant False for integer data
                continue
            if use_nodata and v == nodata:
                continue
            if use_mask and mask[r, c]:
                continue
            buf[k] = v
            k += 1
    return k


@nb.njit(cache=True, nogil=True)
def _run_pixels(starts, stops, lo, hi):  # type: ignore[no-untyped-def]
    n = 0
    for j in range(lo, hi):
        n += stops[j] - starts[j]
    return n


_SMALL = 24  # below this many values, insertion sort beats the radix passes
_BINS = 4096  # histogram bins for quantiles of integers spanning a narrow range


@nb.njit(cache=True, nogil=True)
def _radix_sort(keys, n, scratch, counts):  # type: ignore[no-untyped-def]
    """Sort unsigned integer ``keys[:n]`` in place: least significant byte first.

    ``scratch`` (same dtype, at least ``n`` long) and ``counts`` (``int32[8, 256]``) are
    work space.  One pass counts all bytes at once; a byte that is equal in every key
    (the high bytes of most parcels) costs no scatter pass.  No comparisons, so no
    mispredicted branches: on parcel-sized arrays this is 2-3x faster than a
    comparison sort.
    """
    width = keys.itemsize
    counts[:width] = 0
    for i in range(n):
        v = keys[i]
        for b in range(width):
            counts[b, (v >> (8 * b)) & 255] += 1
    source = keys
    target = scratch
    swapped = False
    for b in range(width):
        count = counts[b]
        if count[(keys[0] >> (8 * b)) & 255] == n:
            continue
        total = 0
        for k in range(256):
            c = count[k]
            count[k] = total
            total += c
        for i in range(n):
            v = source[i]
            k = (v >> (8 * b)) & 255
            target[count[k]] = v
            count[k] += 1
        source, target = target, source
        swapped = not swapped
    if swapped:
        keys[:n] = source[:n]


def _sort_prefix(buf, n, scratch, counts):  # type: ignore[no-untyped-def]
    """Sort ``buf[:n]`` ascending in place (compiled per dtype by the overload below)."""
    buf[:n].sort()


@overload(_sort_prefix, jit_options={"nogil": True})
def _sort_prefix_compiled(buf, n, scratch, counts):  # type: ignore[no-untyped-def]
    """Radix sort on order-preserving unsigned keys; numpy's sort for other dtypes.

    Signed integers flip their sign bit; IEEE floats flip the sign bit of positive
    values and every bit of negative ones.  The keys are views of ``buf`` (and of the
    ``scratch`` space of the same dtype) and are turned back into values after sorting.
    """
    dtype = as_dtype(buf.dtype)
    bits = dtype.itemsize * 8
    if dtype.kind == "u":

        def unsigned_impl(buf, n, scratch, counts):  # type: ignore[no-untyped-def]
            if n <= _SMALL:
                _insertion_sort(buf, n)
            else:
                _radix_sort(buf, n, scratch, counts)

        return unsigned_impl
    if dtype.kind == "i":
        unsigned = getattr(np, f"uint{bits}")
        sign = unsigned(1 << (bits - 1))

        def signed_impl(buf, n, scratch, counts):  # type: ignore[no-untyped-def]
            if n <= _SMALL:
                _insertion_sort(buf, n)
                return
            keys = buf[:n].view(unsigned)
            for i in range(n):
                keys[i] ^= sign
            _radix_sort(keys, n, scratch[:n].view(unsigned), counts)
            for i in range(n):
                keys[i] ^= sign

        return signed_impl
    if dtype.kind == "f" and bits in (32, 64):
        unsigned = getattr(np, f"uint{bits}")
        sign = unsigned(1 << (bits - 1))
        every = unsigned((1 << bits) - 1)

        def float_impl(buf, n, scratch, counts):  # type: ignore[no-untyped-def]
            if n <= _SMALL:
                _insertion_sort(buf, n)
                return
            keys = buf[:n].view(unsigned)
            for i in range(n):
                k = keys[i]
                keys[i] = k ^ every if k & sign else k | sign
            _radix_sort(keys, n, scratch[:n].view(unsigned), counts)
            for i in range(n):
                k = keys[i]
                keys[i] = k ^ sign if k & sign else k ^ every

        return float_impl

    def other_impl(buf, n, scratch, counts):  # type: ignore[no-untyped-def]
        buf[:n].sort()

    return other_impl


@nb.njit(cache=True, nogil=True)
def _rank(n, quantile):  # type: ignore[no-untyped-def]
    """Return the lower rank of numpy's "linear" method and the fraction towards the next."""
    position = (n - 1) * quantile
    below = math.floor(position)
    if below > n - 1:
        below = n - 1
    return below, position - below


@nb.njit(cache=True, nogil=True)
def _interpolate(low, high, fraction):  # type: ignore[no-untyped-def]
    """Interpolate between neighbouring order statistics exactly as numpy's ``_lerp``."""
    diff = high - low
    if fraction >= 0.5:
        return high - diff * (1.0 - fraction)
    return low + diff * fraction


@nb.njit(cache=True, nogil=True)
def _quantiles_sorted(buf, n, quantiles, out, p):  # type: ignore[no-untyped-def]
    """Quantiles of the sorted ``buf[:n]`` into ``out[p, FIXED:]``."""
    for q in range(quantiles.size):
        below, fraction = _rank(n, quantiles[q])
        low = np.float64(buf[below])
        if fraction == 0.0 or below == n - 1:
            out[p, FIXED + q] = low
        else:
            out[p, FIXED + q] = _interpolate(low, np.float64(buf[below + 1]), fraction)


@nb.njit(cache=True, nogil=True)
def _quantiles_counted(buf, n, lo, span, quantiles, out, p, bins):  # type: ignore[no-untyped-def]
    """Quantiles of integer ``buf[:n]`` from a histogram of ``value - lo`` (``span`` bins).

    One pass over the values and one partial pass over the bins, walking the cumulative
    count up to each needed rank: cheaper than sorting when the values of a parcel
    span a range not much wider than their number.
    """
    bins[:span] = 0
    for i in range(n):
        bins[np.int64(buf[i]) - lo] += 1
    seen = 0  # values below bin `at`
    at = 0
    for q in range(quantiles.size):
        below, fraction = _rank(n, quantiles[q])
        while seen + bins[at] <= below:
            seen += bins[at]
            at += 1
        low = np.float64(lo + at)
        if fraction == 0.0 or below == n - 1:
            out[p, FIXED + q] = low
            continue
        above_at = at
        above_seen = seen
        while above_seen + bins[above_at] <= below + 1:
            above_seen += bins[above_at]
            above_at += 1
        out[p, FIXED + q] = _interpolate(low, np.float64(lo + above_at), fraction)


def _fill_quantiles(buf, n, lo, hi, quantiles, out, p, scratch, counts, bins):  # type: ignore[no-untyped-def]
    """Quantiles of ``buf[:n]`` (min ``lo``, max ``hi``) into ``out[p]``; see the overload."""
    raise NotImplementedError  # only the compiled overload exists


@overload(_fill_quantiles, jit_options={"nogil": True})
def _fill_quantiles_compiled(buf, n, lo, hi, quantiles, out, p, scratch, counts, bins):  # type: ignore[no-untyped-def]
    """Integers spanning a narrow range: histogram walk; otherwise radix sort, then read."""
    dtype = as_dtype(buf.dtype)
    if dtype.kind in "ui" and dtype.itemsize <= 4:  # value - lo fits an int64 exactly

        def integer_impl(buf, n, lo, hi, quantiles, out, p, scratch, counts, bins):  # type: ignore[no-untyped-def]
            span = np.int64(hi) - np.int64(lo) + 1
            if n > _SMALL and 0 < span <= bins.size and span <= 8 * n + 512:
                _quantiles_counted(buf, n, np.int64(lo), span, quantiles, out, p, bins)
            else:
                _sort_prefix(buf, n, scratch, counts)
                _quantiles_sorted(buf, n, quantiles, out, p)

        return integer_impl

    def other_impl(buf, n, lo, hi, quantiles, out, p, scratch, counts, bins):  # type: ignore[no-untyped-def]
        _sort_prefix(buf, n, scratch, counts)
        _quantiles_sorted(buf, n, quantiles, out, p)

    return other_impl


@nb.njit(cache=True, nogil=True)
def _describe(buf, n, quantiles, out, p, scratch, counts, bins):  # type: ignore[no-untyped-def]
    """Statistics of ``buf[:n]`` into ``out[p]`` (count, sum, mean, std, min, max, quantiles).

    Matches numpy on the pixels converted to float64: population standard deviation
    (ddof=0) and the "linear" quantile method, including numpy's way of interpolating
    from the upper neighbour when the fraction is >= 0.5.  ``buf`` may be reordered;
    ``scratch``, ``counts`` and ``bins`` are work space.
    """
    out[p, COUNT] = n
    if n == 0:
        out[p, SUM] = np.nan
        for i in range(MEAN, out.shape[1]):
            out[p, i] = np.nan
        return
    total = 0.0
    lo = buf[0]
    hi = buf[0]
    for i in range(n):
        v = buf[i]
        total += np.float64(v)
        if v < lo:
            lo = v
        if v > hi:
            hi = v
    mean = total / n
    squares = 0.0
    for i in range(n):
        d = np.float64(buf[i]) - mean
        squares += d * d
    out[p, SUM] = total
    out[p, MEAN] = mean
    out[p, STD] = math.sqrt(squares / n)
    out[p, MIN] = lo
    out[p, MAX] = hi
    if quantiles.size:
        _fill_quantiles(buf, n, lo, hi, quantiles, out, p, scratch, counts, bins)


@nb.njit(cache=True, nogil=True)
def stats_range(values, mask, use_mask, nodata, use_nodata, offsets, rows, starts,  # type: ignore[no-untyped-def]
                stops, quantiles, out, first, last):
    """Statistics of the valid pixels of parcels ``first .. last - 1`` of ``values`` (2-D).

    ``out`` has one row per parcel and ``FIXED + len(quantiles)`` columns; ``quantiles``
    are ascending fractions in [0, 1].  ``mask`` is a 2-D boolean array (True = excluded)
    used when ``use_mask``; ``nodata`` is compared when ``use_nodata``; NaN is always
    excluded.  One work space serves all parcels of the range.
    """
    largest = 0
    for p in range(first, last):
        largest = max(largest, _run_pixels(starts, stops, offsets[p], offsets[p + 1]))
    buf = np.empty(largest, values.dtype)
    scratch = np.empty(largest, values.dtype)
    counts = np.empty((8, 256), np.int32)
    bins = np.empty(_BINS, np.int32)
    for p in range(first, last):
        k = _gather(values, mask, use_mask, nodata, use_nodata, rows, starts, stops,
                    offsets[p], offsets[p + 1], buf)
        _describe(buf, k, quantiles, out, p, scratch, counts, bins)


@nb.njit(cache=True, nogil=True)
def gather_serial(values, mask, use_mask, nodata, use_nodata, offsets, rows, starts,  # type: ignore[no-untyped-def]
                  stops):
    """Gather the valid pixels of every parcel, concatenated in parcel order.

    Returns ``(counts, pixels)``: parcel ``p`` contributed ``counts[p]`` values, stored
    after those of parcels ``0 .. p - 1``.
    """
    n_parcels = offsets.size - 1
    total = _run_pixels(starts, stops, offsets[0], offsets[n_parcels])
    pixels = np.empty(total, values.dtype)
    counts = np.zeros(n_parcels, np.int64)
    at = 0
    for p in range(n_parcels):
        k = _gather(values, mask, use_mask, nodata, use_nodata, rows, starts, stops,
                    offsets[p], offsets[p + 1], pixels[at:])
        counts[p] = k
        at += k
    return counts, pixels[:at]


@nb.njit(cache=True, nogil=True)
def stats_from_values(pixels, offsets, quantiles, out):  # type: ignore[no-untyped-def]
    """Statistics of gathered valid pixels, ``pixels[offsets[p]:offsets[p + 1]]`` for parcel p."""
    largest = 0
    for p in range(offsets.size - 1):
        largest = max(largest, offsets[p + 1] - offsets[p])
    buf = np.empty(largest, pixels.dtype)
    scratch = np.empty(largest, pixels.dtype)
    counts = np.empty((8, 256), np.int32)
    bins = np.empty(_BINS, np.int32)
    for p in range(offsets.size - 1):
        n = offsets[p + 1] - offsets[p]
        buf[:n] = pixels[offsets[p]:offsets[p + 1]]
        _describe(buf, n, quantiles, out, p, scratch, counts, bins)


# --------------------------------------------------------------------------- histograms


@nb.njit(cache=True, nogil=True)
def histogram_range(values, offsets, rows, starts, stops, out, first, last):  # type: ignore[no-untyped-def]
    """Add the class counts (values ``0 .. out.shape[1] - 1``) of parcels ``first .. last - 1``."""
    n_classes = out.shape[1]
    for p in range(first, last):
        for j in range(offsets[p], offsets[p + 1]):
            r = rows[j]
            for c in range(starts[j], stops[j]):
                v = values[r, c]
                if 0 <= v < n_classes:
                    out[p, v] += 1
