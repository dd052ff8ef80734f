"""Clouds, cirrus and cloud shadows on the 20 m grid (pure numpy).

A fixed share of dates is cloud-affected (the count is rounded, not drawn); of those about
a third are overcast and the others partly cloudy.  Cumulus opacity is thresholded fractal
noise; the shadow is the same field displaced away from the sun by the cloud height, drawn
on a canvas larger than the window so clouds just outside cast shadows inside.  Thin
cirrus is a separate, smoother layer.  The scene classification mimics Sen2Cor, including
its known weakness: thin cloud edges are left unflagged (class 7 or a surface class).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from cbm_dask.world._noise import derive_rng, fractal_noise

__all__ = ["CloudField", "SkyPlan", "cloud_field", "plan_sky"]

Float = NDArray[np.float32]


@dataclass(frozen=True)
class SkyPlan:
    """Per-date cloud situation: kind ("clear", "partly", "overcast"), cover and cirrus."""

    kind: tuple[str, ...]
    cover: tuple[float, ...]
    cirrus: tuple[float, ...]

    @property
    def affected_share(self) -> float:
        """Share of dates that are not clear."""
        return sum(k != "clear" for k in self.kind) / max(len(self.kind), 1)


def plan_sky(seed: int, n_dates: int, cloud_share: float) -> SkyPlan:
    """Decide which dates are clear, partly cloudy or overcast.

    Exactly ``round(cloud_share * n_dates)`` dates are affected.
    """
    rng = derive_rng(seed, "sky")
    n_affected = round(cloud_share * n_dates)
    affected = set(rng.choice(n_dates, size=n_affected, replace=False).tolist())
    kinds: list[str] = []
    covers: list[float] = []
    cirri: list[float] = []
    for i in range(n_dates):
        draw = rng.random(4)
        if i not in affected:
            kinds.append("clear")
            covers.append(0.0)
            cirri.append(0.0)
        elif draw[0] < 0.3:
            kinds.append("overcast")
            covers.append(float(0.93 + 0.07 * draw[1]))
            cirri.append(0.0)
        else:
            kinds.append("partly")
            cumulus = draw[2] < 0.85
            covers.append(float(0.03 + 0.45 * draw[1]) if cumulus else 0.0)
            cirri.append(float(0.15 + 0.5 * draw[3]) if (draw[3] < 0.35 or not cumulus) else 0.0)
    return SkyPlan(tuple(kinds), tuple(covers), tuple(cirri))


@dataclass(frozen=True)
class CloudField:
    """Cloud layers of one date on the 20 m grid.

    Attributes
    ----------
    opacity
        Cumulus opacity 0..1.
    cirrus
        Cirrus opacity 0..~0.3.
    shadow
        Shadow strength 0..1 (fraction of direct light removed).
    brightness
        Cloud top reflectance factor (varies per date).
    """

    opacity: Float
    cirrus: Float
    shadow: Float
    brightness: float

    @property
    def clear(self) -> bool:
        """True when the date has no cloud at all."""
        return not (self.opacity.any() or self.cirrus.any())


def _threshold(field: Float, cover: float) -> float:
    sample = field[::5, ::5]
    return float(np.quantile(sample, 1.0 - cover))


def cloud_field(
    seed: int,
    index: int,
    shape: tuple[int, int],
    cover: float,
    cirrus_cover: float,
    sun_azimuth: float,
    sun_elevation: float,
) -> CloudField:
    """Draw the cloud layers of date ``index`` on a 20 m grid of ``shape``.

    Parameters
    ----------
    seed, index
        World seed and date index (each date has its own random stream).
    shape
        (rows, cols) of the 20 m grid.
    cover, cirrus_cover
        Target fraction of the window under cumulus and under cirrus.
    sun_azimuth, sun_elevation
        Sun position in degrees (for the shadow displacement).
    """
    rows, cols = shape
    zero = np.zeros(shape, dtype=np.float32)
    if cover <= 0 and cirrus_cover <= 0:
        return CloudField(zero, zero, zero, 1.0)
    rng = derive_rng(seed, "clouds", index)
    brightness = float(rng.uniform(0.85, 1.1))
    opacity = zero
    shadow = zero
    if cover > 0:
        height = rng.uniform(700.0, 2500.0)
        reach = height / math.tan(math.radians(max(sun_elevation, 10.0)))
        az = math.radians(sun_azimuth)
        # shadows fall away from the sun: east offset -sin(az), north offset -cos(az)
        dcol = round(-reach * math.sin(az) / 20.0)
        drow = round(reach * math.cos(az) / 20.0)
        pad = max(abs(dcol), abs(drow)) + 1
        big = (rows + 2 * pad, cols + 2 * pad)
        scale = rng.uniform(60.0, 180.0)
        field = fractal_noise(big, scale, rng, octaves=5, persistence=0.55)
        thr = _threshold(field[pad:pad + rows, pad:pad + cols], cover)
        dense = np.clip((field - thr) / 0.45, 0.0, 1.0).astype(np.float32)
        dense = np.power(dense, 0.6, dtype=np.float32)
        opacity = dense[pad:pad + rows, pad:pad + cols].copy()
        # the shadow at (r, c) comes from the cloud at (r - drow, c - dcol)
        shadow = dense[pad - drow:pad - drow + rows, pad - dcol:pad - dcol + cols].copy()
        shadow *= np.float32(0.85)
        shadow *= 1.0 - opacity
    cirrus = zero
    if cirrus_cover > 0:
        field = fractal_noise(shape, rng.uniform(150.0, 400.0), rng, octaves=3, persistence=0.5)
        thr = _threshold(field, cirrus_cover)
        cirrus = (np.clip((field - thr) / 1.2, 0.0, 1.0) * 0.3).astype(np.float32)
    return CloudField(opacity, cirrus, shadow, brightness)
