"""Band names across STAC catalogues: one canonical name per Sentinel band.

The same Sentinel-2 red band is the asset ``red`` in Earth Search v1,
``B04`` in Earth Search v0 and the Planetary Computer, ``B04_10m`` in the
Copernicus Data Space STAC and ``red``/``red_20m``/``red_60m`` in items made by
stactools.  Everything downstream of the catalogue (cubes, signatures, the API)
uses the canonical names defined here:

* Sentinel-2 L2A: the ESA band ids ``B01`` ... ``B12``, ``B8A``, plus ``SCL``,
  ``AOT`` and ``WVP``;
* Sentinel-1 backscatter: ``VV``, ``VH``, ``HH``, ``HV``;
* Sentinel-1 coherence: ``COH_VV``, ``COH_VH``, ``COH_HH``, ``COH_HV``.

This module is pure: tables and string functions, no I/O.  The scene
classification classes are in :mod:`cbm_dask.sentinel.scl`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "BandKind",
    "Card",
    "BandSpec",
    "BANDS",
    "CARDS",
    "DEFAULT_SCALE",
    "BOA_ADD_OFFSET_DN",
    "BOA_OFFSET_BASELINE",
    "POLARISATIONS",
    "band_spec",
    "canonical_band",
    "parse_asset_key",
    "asset_band_name",
    "bands_of_card",
    "resolve_requested",
]

Card = Literal["s2", "bs", "c6"]
"""Kind of image: Sentinel-2 L2A, Sentinel-1 backscatter, Sentinel-1 coherence (JRC names)."""

BandKind = Literal["reflectance", "classification", "atmosphere", "backscatter", "coherence"]

CARDS: tuple[Card, ...] = ("s2", "bs", "c6")


@dataclass(frozen=True)
class BandSpec:
    """One canonical band and the names it goes by in the catalogues we read.

    Attributes
    ----------
    name
        Canonical name (``B04``, ``SCL``, ``VV``, ``COH_VV``).
    card
        Image kind the band belongs to.
    kind
        ``reflectance`` bands get the Sentinel-2 BOA offset rules; ``classification``
        bands (SCL) keep their integer class codes.
    resolution
        Native pixel size in metres; when an item offers the band at several
        resolutions the asset at this one is preferred.
    aliases
        Other names (asset keys, ``eo:bands`` names and common names), compared
        case-insensitively.
    """

    name: str
    card: Card
    kind: BandKind
    resolution: int
    aliases: tuple[str, ...] = ()


def _s2(name: str, resolution: int, *aliases: str, kind: BandKind = "reflectance") -> BandSpec:
    return BandSpec(name, "s2", kind, resolution, aliases)


BANDS: tuple[BandSpec, ...] = (
    _s2("B01", 60, "coastal"),
    _s2("B02", 10, "blue"),
    _s2("B03", 10, "green"),
    _s2("B04", 10, "red"),
    _s2("B05", 20, "rededge1", "rededge_1", "re1"),
    _s2("B06", 20, "rededge2", "rededge_2", "re2"),
    _s2("B07", 20, "rededge3", "rededge_3", "re3"),
    _s2("B08", 10, "nir", "nir_broad"),
    _s2("B8A", 20, "nir08", "nir_narrow", "narrow_nir", "rededge4", "b08a"),
    _s2("B09", 60, "nir09", "water_vapour_band"),
    _s2("B10", 60, "cirrus"),
    _s2("B11", 20, "swir16", "swir1", "swir_1"),
    _s2("B12", 20, "swir22", "swir2", "swir_2"),
    _s2("SCL", 20, "scene_classification", "scene_classification_map", kind="classification"),
    _s2("AOT", 20, "aerosol_optical_thickness", kind="atmosphere"),
    _s2("WVP", 20, "water_vapour", "water_vapor", kind="atmosphere"),
    BandSpec("VV", "bs", "backscatter", 10, ("sigma0_vv", "gamma0_vv")),
    BandSpec("VH", "bs", "backscatter", 10, ("sigma0_vh", "gamma0_vh")),
    BandSpec("HH", "bs", "backscatter", 10, ("sigma0_hh", "gamma0_hh")),
    BandSpec("HV", "bs", "backscatter", 10, ("sigma0_hv", "gamma0_hv")),
    BandSpec("COH_VV", "c6", "coherence", 20, ("coherence_vv", "vv_coherence", "cohvv")),
    BandSpec("COH_VH", "c6", "coherence", 20, ("coherence_vh", "vh_coherence", "cohvh")),
    BandSpec("COH_HH", "c6", "coherence", 20, ("coherence_hh", "hh_coherence")),
    BandSpec("COH_HV", "c6", "coherence", 20, ("coherence_hv", "hv_coherence")),
)

# ESA quantification of L2A products: reflectance = DN / 10000, AOT and WVP = DN / 1000.
DEFAULT_SCALE: Mapping[BandKind, float] = {"reflectance": 1e-4, "atmosphere": 1e-3}
"""Scale of a band kind when the item declares none (``value = DN * scale + offset``)."""

BOA_ADD_OFFSET_DN = -1000.0
"""The ESA ``BOA_ADD_OFFSET`` of reflectance bands, in digital numbers."""

BOA_OFFSET_BASELINE = (4, 0)
"""The first processing baseline (``04.00``) whose reflectances carry ``BOA_ADD_OFFSET_DN``."""

POLARISATIONS: tuple[str, ...] = ("VV", "VH", "HH", "HV")
"""Sentinel-1 polarisations: plain in backscatter items, ``COH_`` prefixed in coherence items."""

_BY_NAME: dict[str, BandSpec] = {spec.name: spec for spec in BANDS}

# Lower-cased alias -> canonical name.  Canonical names are aliases of themselves.
_ALIASES: dict[str, str] = {}
for _spec in BANDS:
    for _alias in (_spec.name, *_spec.aliases):
        _ALIASES[_alias.lower()] = _spec.name

_RES_SUFFIX = re.compile(r"^(?P<name>.+?)[_-](?P<res>\d{1,3})m$", re.IGNORECASE)
_ZERO_PADDED = re.compile(r"^b0?(\d{1,2}a?)$", re.IGNORECASE)


def band_spec(name: str) -> BandSpec:
    """Return the :class:`BandSpec` of a canonical band name.

    Raises
    ------
    KeyError
        When ``name`` is not a canonical band name (use :func:`canonical_band` first).
    """
    return _BY_NAME[name]


def _lookup(name: str, card: Card | None) -> str | None:
    key = name.strip().lower()
    found: str | None
    if key.startswith("coh_") and key[4:].upper() in POLARISATIONS:
        found = f"COH_{key[4:].upper()}"
    else:
        found = _ALIASES.get(key)
        padded = None if found is not None else _ZERO_PADDED.match(key)
        if padded:  # "b4", "B8a", "b004" style ids
            digits = padded.group(1).upper()
            number = int(digits.rstrip("A"))
            found = _ALIASES.get(f"b{number:02d}a" if digits.endswith("A") else f"b{number:02d}")
    if found is None or card is None or _BY_NAME[found].card == card:
        return found
    if card == "c6" and found in POLARISATIONS:
        return f"COH_{found}"
    return None


def parse_asset_key(key: str, card: Card | None = None) -> tuple[str | None, int | None]:
    """Split an asset key into its canonical band and the resolution it names.

    Parameters
    ----------
    key
        Asset key as found in an item: ``red``, ``B04``, ``B04_10m``, ``blue_60m``,
        ``scl-jp2``, ``coh_vv``.
    card
        Image kind, to resolve names that differ by kind (``vv`` in a coherence
        item is ``COH_VV``) and to reject names of another kind.

    Returns
    -------
    tuple
        ``(band, resolution)``: the canonical band name or None when the key is
        not a band (``visual``, ``thumbnail``, ``granule_metadata``), and the
        resolution in metres written in the key or None.

    Examples
    --------
    >>> parse_asset_key("B04_10m")
    ('B04', 10)
    >>> parse_asset_key("rededge1-jp2")
    ('B05', None)
    >>> parse_asset_key("visual")
    (None, None)
    """
    name = key.strip()
    if name.lower().endswith("-jp2"):
        name = name[: -len("-jp2")]
    resolution: int | None = None
    match = _RES_SUFFIX.match(name)
    if match:
        name, resolution = match.group("name"), int(match.group("res"))
    band = _lookup(name, card)
    return (band, resolution) if band is not None else (None, None)


def canonical_band(name: str, card: Card | None = None) -> str | None:
    """Return the canonical name of a band alias, or None when it is not a known band.

    Accepts every spelling :func:`parse_asset_key` does, e.g. ``red``, ``b4``,
    ``B04_10m``, ``nir08``, ``vv``.

    Examples
    --------
    >>> canonical_band("red"), canonical_band("nir08"), canonical_band("B8A")
    ('B04', 'B8A', 'B8A')
    """
    band, _ = parse_asset_key(name, card)
    return band


def asset_band_name(asset: Mapping[str, Any], card: Card | None = None) -> str | None:
    """Return the canonical band of a single-band asset from its ``eo:bands``/``bands`` names.

    Multi-band assets (true-colour previews) return None.
    """
    for field in ("eo:bands", "bands"):
        entries = asset.get(field)
        if isinstance(entries, list) and len(entries) == 1 and isinstance(entries[0], Mapping):
            entry = entries[0]
            for candidate in (entry.get("name"), entry.get("common_name"),
                              entry.get("eo:common_name")):
                if isinstance(candidate, str):
                    found = canonical_band(candidate, card)
                    if found is not None:
                        return found
        elif isinstance(entries, list) and len(entries) > 1:
            return None
    return None


def bands_of_card(card: Card) -> tuple[str, ...]:
    """Return the canonical band names of one image kind, in table order."""
    return tuple(spec.name for spec in BANDS if spec.card == card)


def resolve_requested(names: Iterable[str], card: Card) -> list[str]:
    """Map user-requested band names (any alias) to canonical names, keeping order.

    Raises
    ------
    ValueError
        Naming every request that is not a band of ``card`` and listing the valid names.
    """
    resolved: list[str] = []
    unknown: list[str] = []
    for name in names:
        band = canonical_band(name, card)
        if band is None:
            unknown.append(name)
        elif band not in resolved:
            resolved.append(band)
    if unknown:
        raise ValueError(
            f"unknown band(s) {', '.join(map(repr, unknown))} for card {card!r}; "
            f"use one of {', '.join(bands_of_card(card))} (or their common names)"
        )
    return resolved
