"""Sentinel-1 pixel synthesis (pure numpy): gamma0 backscatter and 6-day coherence.

Backscatter follows a water-cloud model: a vegetation layer of "volume" V (green and
upright dry biomass) adds direct volume scattering and attenuates the soil term twice.
The soil term rises with tillage roughness and topsoil wetness.  Values are terrain
flattened gamma0 in linear power units (float32); dB = 10 log10(value).

Interferometric coherence of a 6-day pair is the product of
* a volume term, high over bare or short cover and low over tall canopies that move,
* a surface term, lowered while freshly tilled soil settles,
* an event term, collapsing when the surface is reworked between the two dates
  (ploughing, sowing; less for harvest and mowing), and
* a weather term (rain between the dates decorrelates everything a little, at most 20 %).
Hence coherence rises after mowing and harvest (short, stable cover), stays high on
settled bare soil, drops in the pair spanning ploughing and falls as crops grow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from cbm_dask.world._layout import BUILT, FIELD0, FOREST, ROAD, VERGE, WATER
from cbm_dask.world._noise import derive_rng

__all__ = [
    "INCIDENCE_DEG",
    "PairEvents",
    "backscatter_lut",
    "coherence_lut",
    "synthesize_backscatter",
    "synthesize_coherence",
]

INCIDENCE_DEG = 38.0
_COS = math.cos(math.radians(INCIDENCE_DEG))
# water cloud model coefficients (A: canopy reflectivity, B: attenuation per unit volume)
_A = {"vv": 0.14, "vh": 0.045}
_B = {"vv": 0.45, "vh": 0.30}


def _db(x: float) -> float:
    return float(10 ** (x / 10))


@dataclass(frozen=True)
class PairEvents:
    """Which fields had management events between the two dates of a pair."""

    tillage: NDArray[np.bool_]
    harvest: NDArray[np.bool_]
    mowing: NDArray[np.bool_]


def backscatter_lut(
    green: NDArray[np.float32],
    standing: NDArray[np.float32],
    rough: NDArray[np.float32],
    wetness: float,
    forest_cover: float,
    verge_cover: float,
    water_wind_db: float,
) -> dict[str, NDArray[np.float32]]:
    """Per-label gamma0 (linear) for ``vv`` and ``vh`` on one date."""
    n = FIELD0 + len(green)
    volume = np.zeros(n, dtype=np.float64)
    soil_db = np.full(n, -17.0)
    volume[FIELD0:] = 2.2 * green + 0.9 * np.maximum(standing - green, 0.0)
    soil_db[FIELD0:] = -17.0 + 9.0 * rough + 6.0 * wetness
    volume[VERGE] = 1.4 * verge_cover
    soil_db[VERGE] = -15.0 + 6.0 * wetness
    out: dict[str, NDArray[np.float32]] = {}
    for pol in ("vv", "vh"):
        soil = 10 ** ((soil_db - (8.0 if pol == "vh" else 0.0)) / 10)
        tau2 = np.exp(-2.0 * _B[pol] * volume / _COS)
        sigma = _A[pol] * _COS * (1.0 - tau2) + tau2 * soil
        sigma[FOREST] = _db(-7.5 if pol == "vv" else -12.5) * (0.9 + 0.1 * forest_cover)
        sigma[BUILT] = _db(-4.0 if pol == "vv" else -11.0)
        sigma[ROAD] = _db(-16.0 if pol == "vv" else -24.0)
        sigma[WATER] = _db((-21.0 if pol == "vv" else -28.0) + water_wind_db)
        out[pol] = sigma.astype(np.float32)
    return out


def coherence_lut(
    standing_1: NDArray[np.float32],
    standing_2: NDArray[np.float32],
    rough_1: NDArray[np.float32],
    rough_2: NDArray[np.float32],
    events: PairEvents,
    rain_mm: float,
    forest_cover: float,
    verge_cover: float,
) -> NDArray[np.float32]:
    """Per-label expected 6-day VV coherence of a pair."""
    n = FIELD0 + len(standing_1)
    gamma = np.zeros(n, dtype=np.float64)
    volume = 0.5 * (standing_1 + standing_2)
    rough = 0.5 * (rough_1 + rough_2)
    veg_term = 0.15 + 0.85 * np.exp(-4.0 * volume)
    surface = 0.85 * (1.0 - 0.55 * np.clip((rough - 0.1) / 0.9, 0.0, 1.0))
    event = np.where(events.tillage, 0.3, 1.0) * np.where(events.harvest, 0.6, 1.0)
    event = event * np.where(events.mowing, 0.75, 1.0)
    gamma[FIELD0:] = veg_term * surface * event
    gamma[VERGE] = (0.15 + 0.85 * math.exp(-4.0 * 0.6 * verge_cover)) * 0.8
    gamma[ROAD] = 0.65
    gamma[FOREST] = 0.12 + 0.08 * (1.0 - forest_cover)
    gamma[BUILT] = 0.85
    gamma[WATER] = 0.04
    weather = max(0.8, math.exp(-rain_mm / 200.0))
    return (gamma * weather).astype(np.float32)


def synthesize_backscatter(
    seed: int,
    index: int,
    labels: NDArray[np.int32],
    lut: dict[str, NDArray[np.float32]],
    texture: NDArray[np.float32],
    looks: float,
) -> dict[str, NDArray[np.float32]]:
    """Per-pixel gamma0 with static texture and gamma-distributed speckle of ``looks`` looks."""
    rng = derive_rng(seed, "s1-speckle", index)
    out: dict[str, NDArray[np.float32]] = {}
    for pol in ("vv", "vh"):
        speckle = rng.gamma(looks, 1.0 / looks, labels.shape).astype(np.float32)
        value = lut[pol][labels] * texture
        value *= speckle
        np.maximum(value, np.float32(1e-5), out=value)
        out[pol] = value
    return out


def synthesize_coherence(
    seed: int,
    index: int,
    labels: NDArray[np.int32],
    lut: NDArray[np.float32],
    texture: NDArray[np.float32],
    looks: float,
) -> NDArray[np.float32]:
    """Per-pixel coherence magnitude: estimation noise of ``looks`` looks and its bias."""
    rng = derive_rng(seed, "s1-coherence", index)
    gamma = lut[labels] * texture
    np.clip(gamma, 0.0, 0.98, out=gamma)
    sigma = (1.0 - gamma * gamma) / np.float32(math.sqrt(2.0 * looks))
    noisy = gamma + sigma * rng.standard_normal(labels.shape, dtype=np.float32)
    # the magnitude estimator is biased upwards at low coherence
    noisy = np.sqrt(noisy * noisy + np.float32(0.5 / looks))
    np.clip(noisy, 0.0, 0.99, out=noisy)
    return noisy.astype(np.float32)
