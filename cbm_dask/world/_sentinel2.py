"""Sentinel-2 L2A pixel synthesis (pure numpy): reflectance, clouds, SCL and digital numbers.

Surface reflectance is a linear mixture of endmember spectra.  Fields mix green
vegetation, dry matter (straw, stubble, hay) and soil in the proportions of the canopy
model; the soil gets darker when wet or freshly tilled.  Background classes (verge, road,
forest, village, water) have fixed mixtures with seasonal vegetation.  Per-pixel variety
comes from static vigour and soil-brightness textures, a small point spread (neighbour
mixing, so edge pixels are mixed), and per-date noise.  Clouds are mixed in by opacity,
cirrus adds a haze, shadows remove direct light.  Digital numbers follow processing
baseline 04.00 and later: ``DN = reflectance * 10000 + 1000`` with 0 as nodata.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from cbm_dask.world._clouds import CloudField
from cbm_dask.world._layout import BUILT, FIELD0, FOREST, ROAD, VERGE, WATER
from cbm_dask.world._noise import derive_rng

__all__ = [
    "BANDS",
    "BANDS_10M",
    "BANDS_20M",
    "BOA_OFFSET",
    "Band",
    "LabelMixture",
    "S2Scene",
    "label_mixture",
    "noise_bank",
    "synthesize_s2",
    "to_dn",
]

BOA_OFFSET = 1000
QUANTIFICATION = 10000


@dataclass(frozen=True)
class Band:
    """A Sentinel-2 band: asset key, band id, resolution and wavelength data."""

    key: str
    band_id: str
    resolution: int
    center: float
    fwhm: float
    title: str


BANDS: tuple[Band, ...] = (
    Band("blue", "B02", 10, 0.49, 0.098, "Blue - 10m"),
    Band("green", "B03", 10, 0.56, 0.045, "Green - 10m"),
    Band("red", "B04", 10, 0.665, 0.038, "Red - 10m"),
    Band("nir", "B08", 10, 0.842, 0.145, "NIR 1 - 10m"),
    Band("rededge1", "B05", 20, 0.704, 0.019, "Red Edge 1 - 20m"),
    Band("swir16", "B11", 20, 1.61, 0.143, "SWIR 1.6\u03bcm - 20m"),
)
BANDS_10M = tuple(b for b in BANDS if b.resolution == 10)
BANDS_20M = tuple(b for b in BANDS if b.resolution == 20)

# Endmember reflectances, columns in BANDS order: B02 B03 B04 B08 B05 B11.
_VEG = np.array([0.030, 0.070, 0.032, 0.480, 0.105, 0.200], dtype=np.float32)
_DRY = np.array([0.090, 0.130, 0.170, 0.290, 0.210, 0.380], dtype=np.float32)
_SOIL = np.array([0.080, 0.110, 0.140, 0.220, 0.170, 0.300], dtype=np.float32)
_WATER = np.array([0.055, 0.050, 0.030, 0.012, 0.020, 0.005], dtype=np.float32)
_URBAN = np.array([0.110, 0.120, 0.130, 0.170, 0.140, 0.200], dtype=np.float32)
_ASPHALT = np.array([0.060, 0.070, 0.080, 0.100, 0.085, 0.120], dtype=np.float32)
_CLOUD = np.array([0.52, 0.50, 0.50, 0.52, 0.51, 0.36], dtype=np.float32)
_CIRRUS = np.array([0.14, 0.12, 0.11, 0.11, 0.11, 0.06], dtype=np.float32)
# direct-light share per band: shadows keep more diffuse light in the blue
_SHADOW_DEPTH = np.array([0.45, 0.55, 0.60, 0.70, 0.65, 0.72], dtype=np.float32)


@dataclass(frozen=True)
class LabelMixture:
    """Per-label endmember abundances of one date (index = raster label).

    ``veg``, ``dry`` and ``soil`` get per-pixel textures; ``static`` is the reflectance of
    everything else (water, built surfaces) per label and band.
    """

    veg: NDArray[np.float32]
    dry: NDArray[np.float32]
    soil: NDArray[np.float32]
    static: NDArray[np.float32]


def label_mixture(
    green: NDArray[np.float32],
    dry: NDArray[np.float32],
    rough: NDArray[np.float32],
    wetness: float,
    forest_cover: float,
    verge_cover: float,
) -> LabelMixture:
    """Abundances per label from the fields' canopy state and the scene's season.

    Parameters
    ----------
    green, dry, rough
        Canopy state of every field on this date.
    wetness
        Topsoil wetness 0..1 (wet soil is darker).
    forest_cover, verge_cover
        Green cover of forest canopies and of grass verges on this date.
    """
    n = FIELD0 + len(green)
    veg = np.zeros(n, dtype=np.float32)
    dry_a = np.zeros(n, dtype=np.float32)
    soil = np.zeros(n, dtype=np.float32)
    static = np.zeros((n, len(BANDS)), dtype=np.float32)
    darken = 1.0 - 0.25 * wetness
    veg[FIELD0:] = green
    dry_a[FIELD0:] = dry
    soil[FIELD0:] = np.clip(1.0 - green - dry, 0.0, 1.0) * (1.0 - 0.22 * rough) * darken

    veg[VERGE] = 0.55 * verge_cover
    dry_a[VERGE] = 0.1
    soil[VERGE] = 0.15 * darken
    static[VERGE] = 0.25 * _ASPHALT
    veg[ROAD] = 0.08
    static[ROAD] = 0.88 * _ASPHALT
    veg[FOREST] = 0.8 * forest_cover  # canopy shading darkens the vegetation signal
    dry_a[FOREST] = 0.12 * (1.0 - forest_cover)
    soil[FOREST] = 0.05 * darken
    veg[BUILT] = 0.25 * verge_cover
    soil[BUILT] = 0.05
    static[BUILT] = 0.6 * _URBAN + 0.1 * _ASPHALT
    static[WATER] = _WATER
    return LabelMixture(veg, dry_a, soil, static)


@dataclass(frozen=True)
class S2Scene:
    """One synthesised acquisition.

    Attributes
    ----------
    dn
        Band key -> uint16 digital numbers (10 m or 20 m shape).
    scl
        Scene classification (uint8, 20 m).
    """

    dn: dict[str, NDArray[np.uint16]]
    scl: NDArray[np.uint8]

    def scl_percentages(self) -> dict[int, float]:
        """Share (percent) of each SCL class."""
        counts = np.bincount(self.scl.ravel(), minlength=12)
        total = max(int(counts.sum()), 1)
        return {c: 100.0 * float(counts[c]) / total for c in range(12)}


def to_dn(reflectance: NDArray[np.float32]) -> NDArray[np.uint16]:
    """Reflectance to baseline-04.00 digital numbers (offset +1000, never 0 = nodata)."""
    scaled = reflectance * np.float32(QUANTIFICATION)
    scaled += np.float32(BOA_OFFSET + 0.5)
    np.clip(scaled, 1.0, 65535.0, out=scaled)
    return scaled.astype(np.uint16)


def _psf(a: NDArray[np.float32], weight: float = 0.1) -> NDArray[np.float32]:
    """Mix each pixel with its four neighbours (``weight`` each), edges replicated."""
    out = a * np.float32(1.0 - 4 * weight)
    w = np.float32(weight)
    out[1:, :] += w * a[:-1, :]
    out[0, :] += w * a[0, :]
    out[:-1, :] += w * a[1:, :]
    out[-1, :] += w * a[-1, :]
    out[:, 1:] += w * a[:, :-1]
    out[:, 0] += w * a[:, 0]
    out[:, :-1] += w * a[:, 1:]
    out[:, -1] += w * a[:, -1]
    return out


def _block_mean(a: NDArray[np.float32]) -> NDArray[np.float32]:
    """2x2 mean (10 m -> 20 m)."""
    out = a[0::2, 0::2] + a[1::2, 0::2]
    out += a[0::2, 1::2]
    out += a[1::2, 1::2]
    out *= np.float32(0.25)
    return out


def _up(a: NDArray[np.float32]) -> NDArray[np.float32]:
    """Nearest 2x upsampling as a broadcastable view shape (rows, 1, cols, 1)."""
    return a[:, None, :, None]


def _apply_clouds(refl: NDArray[np.float32], band: int, clouds: CloudField,
                  texture: NDArray[np.float32], ten_m: bool) -> NDArray[np.float32]:
    opacity, cirrus, shadow = clouds.opacity, clouds.cirrus, clouds.shadow
    cloud_refl = np.float32(_CLOUD[band] * clouds.brightness) * (0.8 + 0.4 * opacity) * texture
    if ten_m:
        rows, cols = refl.shape
        view = refl.reshape(rows // 2, 2, cols // 2, 2)
        view *= _up(1.0 - np.float32(_SHADOW_DEPTH[band]) * shadow)
        view *= _up(1.0 - opacity)
        view += _up(opacity * cloud_refl + np.float32(_CIRRUS[band]) * cirrus)
        return refl
    refl *= 1.0 - np.float32(_SHADOW_DEPTH[band]) * shadow
    refl *= 1.0 - opacity
    refl += opacity * cloud_refl + np.float32(_CIRRUS[band]) * cirrus
    return refl


def _classify(red: NDArray[np.float32], nir: NDArray[np.float32], labels20: NDArray[np.int32],
              clouds: CloudField) -> NDArray[np.uint8]:
    """Sen2Cor-like scene classification on the 20 m grid."""
    ndvi = (nir - red) / np.maximum(nir + red, np.float32(1e-4))
    scl = np.where(ndvi > 0.40, 4, 5).astype(np.uint8)
    scl[(labels20 == WATER) | ((ndvi < 0.0) & (nir < 0.06))] = 6
    opacity, cirrus, shadow = clouds.opacity, clouds.cirrus, clouds.shadow
    scl[(shadow >= 0.12) & (shadow < 0.3)] = 2
    scl[shadow >= 0.3] = 3
    scl[(opacity >= 0.08) & (opacity < 0.2)] = 7
    scl[(cirrus >= 0.05) & (opacity < 0.2)] = 10
    scl[opacity >= 0.2] = 8
    scl[opacity >= 0.5] = 9
    return scl


NOISE_PAD = 64


def noise_bank(seed: int, shape: tuple[int, int], fields: int = 3) -> NDArray[np.float32]:
    """Draw unit normal noise fields, ``NOISE_PAD`` pixels larger than ``shape``.

    Acquisitions take randomly shifted windows of these fields instead of drawing fresh
    noise for every pixel, band and date, which costs more than the rest of the model.
    """
    rng = derive_rng(seed, "s2-noise-bank")
    rows, cols = shape
    return rng.standard_normal((fields, rows + NOISE_PAD, cols + NOISE_PAD), dtype=np.float32)


def _noise_view(bank: NDArray[np.float32], rng: np.random.Generator, shape: tuple[int, int],
                step: int = 1) -> NDArray[np.float32]:
    k = int(rng.integers(bank.shape[0]))
    dy, dx = (int(v) for v in rng.integers(0, NOISE_PAD, 2))
    rows, cols = shape
    return bank[k, dy:dy + rows * step:step, dx:dx + cols * step:step]


def synthesize_s2(
    seed: int,
    index: int,
    labels10: NDArray[np.int32],
    labels20: NDArray[np.int32],
    vigour: NDArray[np.float32],
    soil_texture: NDArray[np.float32],
    mixture: LabelMixture,
    clouds: CloudField,
    cloud_texture: NDArray[np.float32],
    bank: NDArray[np.float32],
) -> S2Scene:
    """Synthesise the bands and SCL of acquisition ``index``.

    Parameters
    ----------
    seed, index
        World seed and acquisition index (own random stream per acquisition).
    labels10, labels20
        Label rasters at 10 m and 20 m.
    vigour, soil_texture
        Static per-pixel multipliers of vegetation and soil abundance (10 m).
    mixture
        Per-label abundances of this date.
    clouds
        Cloud layers (20 m).
    cloud_texture
        Brightness texture of cloud tops (20 m).
    bank
        Noise fields from :func:`noise_bank` for the 10 m shape.
    """
    rng = derive_rng(seed, "s2-noise", index)
    shape10 = labels10.shape
    shape20 = labels20.shape
    veg = mixture.veg[labels10]
    veg *= vigour
    soil = mixture.soil[labels10]
    soil *= soil_texture
    dry = mixture.dry[labels10]
    veg = _psf(veg)
    soil = _psf(soil)
    common = _noise_view(bank, rng, shape10) * np.float32(0.012)
    common += np.float32(1.0)
    dn: dict[str, NDArray[np.uint16]] = {}
    surface20: dict[str, NDArray[np.float32]] = {}
    refl = np.empty(shape10, dtype=np.float32)
    tmp = np.empty(shape10, dtype=np.float32)
    for b, band in enumerate(BANDS_10M):
        np.multiply(veg, _VEG[b], out=refl)
        np.multiply(dry, _DRY[b], out=tmp)
        refl += tmp
        np.multiply(soil, _SOIL[b], out=tmp)
        refl += tmp
        refl += mixture.static[labels10, b]
        refl *= common
        np.multiply(_noise_view(bank, rng, shape10), np.float32(0.003), out=tmp)
        refl += tmp
        if band.key in ("red", "nir"):
            surface20[band.key] = _block_mean(refl)
        if not clouds.clear:
            refl = _apply_clouds(refl, b, clouds, cloud_texture, ten_m=True)
        dn[band.key] = to_dn(refl)
    del refl, tmp
    veg20 = _block_mean(veg)
    soil20 = _block_mean(soil)
    dry20 = _block_mean(dry)
    common20 = _block_mean(common)
    del veg, soil, dry, common
    offset = len(BANDS_10M)
    for j, band in enumerate(BANDS_20M):
        b = offset + j
        refl20 = veg20 * _VEG[b]
        refl20 += dry20 * _DRY[b]
        refl20 += soil20 * _SOIL[b]
        refl20 += mixture.static[labels20, b]
        refl20 *= common20
        refl20 += _noise_view(bank, rng, shape20, step=2) * np.float32(0.003)
        if not clouds.clear:
            refl20 = _apply_clouds(refl20, b, clouds, cloud_texture, ten_m=False)
        dn[band.key] = to_dn(refl20)
    scl = _classify(surface20["red"], surface20["nir"], labels20, clouds)
    return S2Scene(dn=dn, scl=scl)
