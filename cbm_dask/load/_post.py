"""From read pixels to the cube's values: decode or encode, SCL mask, labels, solar days.

:func:`finish_group` turns one pixel-size group as read into the cube's Dataset:
physical float32 values (scale, offset, NaN at nodata and masked SCL classes,
optionally dB), or with ``decode`` False the stored values with CF attributes and
the mask as an ``invalid`` coordinate.  :func:`fuse_days` then fuses the images of
one place and :func:`solar_day`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Hashable, Mapping, Sequence
from typing import cast

import numpy as np
import shapely
import xarray as xr
from odc.geo.geom import Geometry

from cbm_dask.errors import InputError
from cbm_dask.load._items import BandSource
from cbm_dask.load._physical import physical_values
from cbm_dask.sentinel.bands import Card, band_spec
from cbm_dask.sentinel.records import ImageRecord

__all__ = ["centre_longitude", "finish_group", "fuse_days", "solar_day"]

# Every band kind is dimensionless; backscatter becomes "dB" when converted.
_UNITS = {
    "reflectance": "1",
    "atmosphere": "1",
    "classification": "1",
    "backscatter": "1",
    "coherence": "1",
}


def finish_group(
    raw: xr.Dataset, records: Sequence[ImageRecord], sources: Sequence[Mapping[str, BandSource]],
    bands: Sequence[str], classes: tuple[int, ...], card: Card, s1_db: bool, res: float,
    crs: str, scl: xr.DataArray | None = None, *, decode: bool = True,
) -> xr.Dataset:
    """Convert one pixel-size group to physical values, mask it and label it (lazy).

    ``scl`` is the scene classification on this group's grid (None: no mask).  With
    ``decode`` False the stored values stay, with their scale and offset as attributes,
    and the mask becomes the ``invalid`` coordinate.
    """
    masked = bool(classes) and scl is not None
    has_scl = np.array([("SCL" in s) for s in sources], dtype=bool)
    out = xr.Dataset(coords=raw.coords)
    if masked and not decode:
        out = out.assign_coords(invalid=_invalid(cast(xr.DataArray, scl), classes, has_scl))
    for band in bands:
        spec = band_spec(band)
        data = raw[band]
        if spec.kind == "classification":
            out[band] = data.astype("uint8")
            out[band].attrs = {"nodata": 0, "units": "1", "band": band,
                               "long_name": "scene classification (SCL) class code"}
            continue
        scale = np.array([s[band].asset.scale if band in s and s[band].asset.scale is not None
                          else 1.0 for s in sources], dtype="float64")
        offset = np.array([s[band].asset.offset if band in s and s[band].asset.offset is not None
                           else 0.0 for s in sources], dtype="float64")
        nodata = next((s[band].nodata for s in sources if band in s), None)
        if not decode:
            out[band] = _encoded(data, band, scale, offset, nodata, _UNITS[spec.kind])
            continue
        scale, offset = scale.astype("float32"), offset.astype("float32")
        # one compiled pass: float32(dn) * scale + offset, NaN at nodata and masked classes
        value = physical_values(data, scale, offset, nodata, scl if masked else None,
                                classes, has_scl)
        units = _UNITS[spec.kind]
        if spec.kind == "backscatter" and s1_db:
            value = cast(xr.DataArray, 10.0 * np.log10(value.where(value > 0))).astype("float32")
            units = "dB"
        value.attrs = {"nodata": np.float32(np.nan), "units": units, "band": band,
                       "grid_mapping": "spatial_ref"}
        out[band] = value
    out = out.assign_coords(
        item_id=("time", [r.item_id for r in records]),
    )
    if all(r.image_id is not None for r in records):
        out = out.assign_coords(image_id=("time", [int(cast(int, r.image_id)) for r in records]))
    out.attrs = {
        "card": card, "crs": crs, "resolution": res, "groupby": "item",
        "scl_invalid": list(classes) if masked else [],
    }
    return out


def _encoded(data: xr.DataArray, band: str, scale: np.ndarray, offset: np.ndarray,
             nodata: float | None, units: str) -> xr.DataArray:
    """Keep a band as stored, with the one scale and offset of its images as CF attributes."""
    scales, offsets = set(scale.tolist()), set(offset.tolist())
    if len(scales) > 1 or len(offsets) > 1:
        raise InputError(
            f"band {band}: the images store it with different scales {sorted(scales)} or "
            f"offsets {sorted(offsets)}; load them with decode=True, or one image at a time")
    value = data.copy()
    # the assets' own numbers, not float32 roundings: statistics are decoded in float64
    value.attrs = {"scale_factor": float(scale[0]), "add_offset": float(offset[0]),
                   "nodata": nodata, "units": units, "band": band, "grid_mapping": "spatial_ref"}
    return value


def _invalid(scl: xr.DataArray, classes: Sequence[int], has_scl: np.ndarray) -> xr.DataArray:
    """Return True where the SCL class is masked (never on steps without an SCL asset)."""
    lut = np.zeros(256, dtype=bool)
    lut[list(classes)] = True

    def lookup(block: np.ndarray, use: np.ndarray) -> np.ndarray:
        return lut[block] & use

    use = xr.Variable("time", np.asarray(has_scl, dtype=bool))
    mask = xr.apply_ufunc(lookup, scl.variable, use, dask="parallelized", output_dtypes=[bool])
    return xr.DataArray(mask, dims=scl.dims)


def solar_day(when: dt.datetime, longitude: float) -> dt.date:
    """Return the local solar date of an acquisition at ``longitude`` (degrees east).

    Same-day passes over one place (adjacent tiles of one datatake) share it even
    when the UTC date differs.
    """
    utc = when.astimezone(dt.UTC) if when.tzinfo else when
    return (utc + dt.timedelta(hours=longitude / 15.0)).date()


def centre_longitude(area: Geometry | None, records: Sequence[ImageRecord]) -> float:
    """Longitude (degrees east) of the place the solar day is reckoned at."""
    if area is not None:
        return float(area.to_crs("EPSG:4326").centroid.points[0][0])
    union = shapely.union_all([r.footprint for r in records])
    return float(union.centroid.x)


def fuse_days(ds: xr.Dataset, records: Sequence[ImageRecord], longitude: float) -> xr.Dataset:
    """Fuse time steps of one solar day: the first valid pixel in time order wins."""
    days: dict[dt.date, list[int]] = {}
    for index, record in enumerate(records):
        days.setdefault(solar_day(record.datetime, longitude), []).append(index)
    attrs = {**ds.attrs, "groupby": "solar_day"}
    if all(len(members) == 1 for members in days.values()):
        return ds.assign_attrs(attrs)
    steps = []
    for members in days.values():
        step = ds.isel(time=members[0])
        for other in members[1:]:
            later = ds.isel(time=other)
            fused: dict[Hashable, xr.DataArray] = {}
            for name, var in step.data_vars.items():
                if name == "SCL":
                    fused[name] = var.where(var != 0, later[name]).astype("uint8")
                else:
                    fused[name] = var.fillna(later[name])
                fused[name].attrs = var.attrs
            step = step.assign(fused)
        steps.append(step.drop_vars(["item_id", "image_id"], errors="ignore"))
    out = xr.concat(steps, dim="time", combine_attrs="override")
    out = out.assign_coords(
        item_id=("time", ["+".join(records[i].item_id for i in members)
                          for members in days.values()])
    )
    if "image_id" in ds.coords:
        out = out.assign_coords(image_id=(
            "time", [int(ds["image_id"].values[m[0]]) if len(m) == 1 else -1
                     for m in days.values()]
        ))
    return out.assign_attrs(attrs)
