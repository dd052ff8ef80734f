"""Random fields: smooth value noise (bilinear interpolation of a coarse lattice)."""

from __future__ import annotations

import zlib

import numpy as np
from numpy.typing import NDArray

__all__ = ["derive_rng", "fractal_noise", "value_noise"]

Float = NDArray[np.float32]


def derive_rng(seed: int, *keys: int | str) -> np.random.Generator:
    """Return an independent generator for ``seed`` and a path of keys.

    Every random component draws from its own stream, so adding a component or changing
    the order in which dates are processed never changes the others.
    """
    words = [int(seed) & 0xFFFFFFFF]
    for key in keys:
        if isinstance(key, str):
            words.append(zlib.crc32(key.encode("utf-8")))
        else:
            words.append(int(key) & 0xFFFFFFFF)
    return np.random.default_rng(np.random.SeedSequence(words))


def _axis_weights(n: int, cells: int) -> tuple[NDArray[np.intp], Float]:
    pos = (np.arange(n, dtype=np.float32) + 0.5) * (cells / n)
    idx = np.minimum(pos.astype(np.intp), cells - 1)
    frac = (pos - idx).astype(np.float32)
    # smoothstep gives a C1 field without the creases of plain bilinear interpolation
    frac = frac * frac * (3.0 - 2.0 * frac)
    return idx, frac


def value_noise(shape: tuple[int, int], scale_px: float, rng: np.random.Generator) -> Float:
    """Smooth noise of unit variance with features of about ``scale_px`` pixels."""
    rows, cols = shape
    cy = max(1, int(np.ceil(rows / scale_px)))
    cx = max(1, int(np.ceil(cols / scale_px)))
    lattice = rng.standard_normal((cy + 1, cx + 1)).astype(np.float32)
    iy, fy = _axis_weights(rows, cy)
    ix, fx = _axis_weights(cols, cx)
    # interpolate along x on the two bracketing lattice rows, then along y
    left = lattice[:, ix]
    right = lattice[:, ix + 1]
    along_x = left + (right - left) * fx[None, :]
    top = along_x[iy]
    bottom = along_x[iy + 1]
    out = top
    out += (bottom - top) * fy[:, None]
    # bilinear smoothing lowers the variance; rescale to roughly one
    out *= np.float32(1.0 / 0.72)
    return out


def fractal_noise(
    shape: tuple[int, int],
    scale_px: float,
    rng: np.random.Generator,
    octaves: int = 3,
    persistence: float = 0.5,
) -> Float:
    """Sum of value-noise octaves (halving scale, ``persistence`` amplitude), unit variance."""
    total = np.zeros(shape, dtype=np.float32)
    norm = 0.0
    amplitude = 1.0
    scale = scale_px
    for _ in range(octaves):
        if scale < 1.0:
            break
        total += np.float32(amplitude) * value_noise(shape, scale, rng)
        norm += amplitude**2
        amplitude *= persistence
        scale /= 2.0
    total *= np.float32(1.0 / np.sqrt(norm))
    return total
