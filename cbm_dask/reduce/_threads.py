"""Spreading a kernel over parcel ranges on Python threads.

The compiled kernels release the GIL, so plain threads run them in parallel.  This
replaces numba's own threading layer: no parallel variant has to be compiled per
dtype, and concurrent callers (several Dask threads reducing in-memory arrays at
once) cannot trip numba's non-reentrant ``workqueue`` layer.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from cbm_dask import config

__all__ = ["reduce_threads", "run_ranges"]

_POOLS: dict[int, ThreadPoolExecutor] = {}
_LOCK = threading.Lock()


def reduce_threads() -> int:
    """Threads for in-memory reductions: ``reduce.threads`` (null: one per CPU core)."""
    value = config.get("reduce.threads", None)
    if value is None:
        return max(1, os.cpu_count() or 1)
    return max(1, int(value))


def _pool(size: int) -> ThreadPoolExecutor:
    """Return the shared pool of ``size`` threads (one per size asked for, kept for reuse)."""
    with _LOCK:
        if size not in _POOLS:
            _POOLS[size] = ThreadPoolExecutor(max_workers=size,
                                              thread_name_prefix=f"cbm-reduce-{size}")
        return _POOLS[size]


def _ranges(weights: np.ndarray, parts: int) -> list[tuple[int, int]]:
    """Cut ``0 .. len(weights)`` into up to ``parts`` consecutive ranges of similar weight."""
    n = int(weights.size)
    cumulative = np.cumsum(weights, dtype=np.float64)
    total = float(cumulative[-1]) if n else 0.0
    if total <= 0:
        bounds = np.linspace(0, n, parts + 1).round().astype(int)
    else:
        targets = total * np.arange(1, parts) / parts
        bounds = np.concatenate([[0], np.searchsorted(cumulative, targets), [n]]).astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(bounds) if b > a]


def run_ranges(kernel: Callable[..., Any], args: tuple[Any, ...], weights: np.ndarray,
               *, threads: int | None = None) -> None:
    """Call ``kernel(*args, first, last)`` over ranges covering all items, in parallel.

    Parameters
    ----------
    kernel
        A GIL-free compiled function taking a range ``first, last`` as its last arguments
        and writing its results into arrays it was given (disjoint per range).
    args
        The arguments before the range.
    weights
        Work per item (e.g. pixels per parcel), to balance the ranges.
    threads
        Threads to use; default :func:`reduce_threads`.  One thread, or too little work,
        runs the kernel on the calling thread.
    """
    n = int(weights.size)
    threads = reduce_threads() if threads is None else max(1, threads)
    if threads == 1 or n < 64:
        kernel(*args, 0, n)
        return
    ranges = _ranges(weights, threads * 4)
    pool = _pool(threads)
    futures = [pool.submit(kernel, *args, first, last) for first, last in ranges]
    for future in futures:
        future.result()
