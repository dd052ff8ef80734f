"""Splitting parcel runs over the chunks of a Dask array, and the task graph that uses them.

A parcel whose pixels all fall in one spatial chunk is reduced completely by that
chunk's task (*inner* parcels).  A parcel that touches several chunks (*crossing*
parcels, about 1-2 % of the parcels for 2048-pixel chunks) has its valid pixels
gathered by every chunk it touches; one task per 2-D slice (band x date) then
concatenates them and computes the statistics.  The result is exact — the same
numbers as on the whole array — and no task ever holds more than one chunk.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import dask.array as da
import dask.base
import numpy as np
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph

from cbm_dask.reduce.labels import ParcelLabels

__all__ = ["BlockPart", "LazyInput", "RunSet", "all_runs", "lazy_slices", "split_runs"]


@dataclass(frozen=True, eq=False)
class RunSet:
    """Runs of some parcels, in the coordinates of one array (block or whole grid).

    Attributes
    ----------
    positions
        ``int64[m]``: positions of the parcels in :attr:`ParcelLabels.ids`.
    offsets
        ``int64[m + 1]``: runs of the ``k``-th parcel are ``offsets[k]:offsets[k + 1]``.
    rows, starts, stops
        ``int32`` run coordinates relative to the array's first row and column.
    """

    positions: np.ndarray
    offsets: np.ndarray
    rows: np.ndarray
    starts: np.ndarray
    stops: np.ndarray

    def __len__(self) -> int:
        return int(self.positions.size)


@dataclass(frozen=True, eq=False)
class BlockPart:
    """What one spatial chunk has to do: its inner parcels and its share of crossing ones."""

    inner: RunSet
    crossing: RunSet


def all_runs(labels: ParcelLabels) -> RunSet:
    """Every parcel's runs, in grid coordinates (for arrays that cover the whole grid)."""
    return RunSet(np.arange(len(labels), dtype=np.int64), labels.offsets, labels.rows,
                  labels.starts, labels.stops)


def _edges(chunks: Sequence[int]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(np.asarray(chunks, dtype=np.int64))])


def _runset(positions: np.ndarray, rows: np.ndarray, starts: np.ndarray,
            stops: np.ndarray) -> RunSet:
    """Group runs (sorted by parcel position) into a RunSet."""
    if positions.size == 0:
        empty = np.zeros(0, dtype=np.int32)
        return RunSet(np.zeros(0, dtype=np.int64), np.zeros(1, dtype=np.int64), empty, empty,
                      empty)
    change = np.flatnonzero(np.diff(positions)) + 1
    firsts = np.concatenate([[0], change])
    offsets = np.concatenate([firsts, [positions.size]]).astype(np.int64)
    return RunSet(positions[firsts].astype(np.int64), offsets, rows.astype(np.int32),
                  starts.astype(np.int32), stops.astype(np.int32))


def split_runs(labels: ParcelLabels, chunks_y: Sequence[int],
               chunks_x: Sequence[int]) -> dict[tuple[int, int], BlockPart]:
    """Cut every run at chunk boundaries and sort the pieces into chunks.

    Parameters
    ----------
    labels
        Labels of the whole grid.
    chunks_y, chunks_x
        Chunk sizes along rows and columns (Dask ``chunks`` of the two spatial axes);
        they must add up to the grid shape.

    Returns
    -------
    dict
        ``(i, j) -> BlockPart`` for every chunk that holds at least one parcel pixel, with
        run coordinates relative to the chunk's first row and column.
    """
    edges_y = _edges(chunks_y)
    edges_x = _edges(chunks_x)
    if (int(edges_y[-1]), int(edges_x[-1])) != labels.grid.shape:
        raise ValueError(f"chunks {tuple(chunks_y)} x {tuple(chunks_x)} do not tile "
                         f"the grid {labels.grid.shape}")
    n_bx = len(chunks_x)
    run_parcel = np.repeat(np.arange(len(labels), dtype=np.int64), np.diff(labels.offsets))
    rows = labels.rows.astype(np.int64)
    starts = labels.starts.astype(np.int64)
    stops = labels.stops.astype(np.int64)
    block_i = np.searchsorted(edges_y, rows, side="right") - 1
    first_j = np.searchsorted(edges_x, starts, side="right") - 1
    last_j = np.searchsorted(edges_x, stops - 1, side="right") - 1
    pieces = last_j - first_j + 1
    run = np.repeat(np.arange(rows.size), pieces)
    step = np.arange(run.size) - np.repeat(np.cumsum(pieces) - pieces, pieces)
    block_j = first_j[run] + step
    piece_start = np.maximum(starts[run], edges_x[block_j])
    piece_stop = np.minimum(stops[run], edges_x[block_j + 1])
    piece_i = block_i[run]
    piece_parcel = run_parcel[run]
    block = piece_i * n_bx + block_j

    n_blocks = len(chunks_y) * n_bx
    pairs = np.unique(piece_parcel * n_blocks + block)
    crossing = np.bincount(pairs // n_blocks, minlength=len(labels)) > 1

    order = np.argsort(block, kind="stable")  # pieces stay in parcel order within a block
    block = block[order]
    bounds = np.flatnonzero(np.diff(block)) + 1
    parts: dict[tuple[int, int], BlockPart] = {}
    for lo, hi in zip(np.concatenate([[0], bounds]), np.concatenate([bounds, [block.size]]),
                      strict=True):
        if lo == hi:
            continue
        b = int(block[lo])
        i, j = divmod(b, n_bx)
        sel = order[lo:hi]
        parcel = piece_parcel[sel]
        row = rows[run[sel]] - edges_y[i]
        start = piece_start[sel] - edges_x[j]
        stop = piece_stop[sel] - edges_x[j]
        cross = crossing[parcel]
        parts[(i, j)] = BlockPart(
            inner=_runset(parcel[~cross], row[~cross], start[~cross], stop[~cross]),
            crossing=_runset(parcel[cross], row[cross], start[cross], stop[cross]),
        )
    return parts


@dataclass(frozen=True, eq=False)
class LazyInput:
    """One Dask array to reduce per parcel, with its mask and per-array task arguments.

    Attributes
    ----------
    array
        Shape ``(*lead, y, x)``, leading axes chunked by 1.
    mask
        Boolean array of the same shape and chunks (True = excluded), or None.
    block_args
        Extra arguments of the chunk function for this array (e.g. its nodata value).
    """

    array: da.Array
    mask: da.Array | None
    block_args: tuple[Any, ...]


def lazy_slices(
    inputs: Sequence[LazyInput],
    labels: ParcelLabels,
    block_fn: Callable[..., Any],
    finish_fn: Callable[..., Any],
    finish_args: tuple[Any, ...],
    name: str,
) -> list[list[Delayed]]:
    """For each input, one Delayed per 2-D slice (leading axes in C order).

    For each slice and each spatial chunk holding parcel pixels, a task calls
    ``block_fn(values, mask_or_None, part, *block_args)``; one task per slice then calls
    ``finish_fn(list_of_block_results, *finish_args)``.  Chunks without parcel pixels are
    never read.  The runs are split once per distinct spatial chunking, and every input
    with that chunking shares the same graph keys for them.
    """
    token = dask.base.tokenize(
        [(i.array.name, None if i.mask is None else i.mask.name, i.block_args) for i in inputs],
        labels.token, block_fn, finish_fn, finish_args,
    )
    layer_name = f"{name}-{token}"
    block_name = f"{name}-block-{token}"
    layer: dict[Any, Any] = {}
    plans: dict[tuple[tuple[int, ...], tuple[int, ...]], tuple[str, dict[Any, BlockPart]]] = {}
    results: list[list[tuple[Any, ...]]] = []
    dependencies: list[Any] = []
    for number, item in enumerate(inputs):
        array = item.array
        lead = array.shape[:-2]
        if any(len(c) != n for c, n in zip(array.chunks[:-2], lead, strict=True)):
            raise ValueError("leading axes must be chunked by 1")
        spatial = (tuple(array.chunks[-2]), tuple(array.chunks[-1]))
        if spatial not in plans:
            part_name = f"{name}-parts-{dask.base.tokenize(labels.token, spatial)}"
            plans[spatial] = (part_name, split_runs(labels, *spatial))
            for (i, j), part in plans[spatial][1].items():
                layer[(part_name, i, j)] = part
        part_name, parts = plans[spatial]
        finishes: list[tuple[Any, ...]] = []
        for index in itertools.product(*(range(n) for n in lead)):
            keys = []
            for i, j in parts:
                key = (block_name, number, *index, i, j)
                mask_key = None if item.mask is None else (item.mask.name, *index, i, j)
                layer[key] = (block_fn, (array.name, *index, i, j), mask_key,
                              (part_name, i, j), *item.block_args)
                keys.append(key)
            finish = (layer_name, number, *index)
            layer[finish] = (finish_fn, keys, *finish_args)
            finishes.append(finish)
        results.append(finishes)
        dependencies.append(array)
        if item.mask is not None:
            dependencies.append(item.mask)
    graph = HighLevelGraph.from_collections(layer_name, layer, dependencies=dependencies)
    return [[Delayed(key, graph, layer=layer_name) for key in keys] for keys in results]
