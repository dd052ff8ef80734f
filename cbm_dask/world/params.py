"""Parameter and result bundles of the synthetic world generator."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from cbm_dask import config
from cbm_dask.errors import InputError
from cbm_dask.sentinel.collections import S1_BACKSCATTER, S1_COHERENCE, S2_L2A

__all__ = [
    "S1_BACKSCATTER",
    "S1_COHERENCE",
    "S2_L2A",
    "WorldParams",
    "WorldSummary",
]

def _as_date(value: Any, name: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise InputError(f"{name} {value!r} is not a date; write it as YYYY-MM-DD") from None


@dataclass(frozen=True)
class WorldParams:
    """Everything that determines a synthetic world; the same values give identical files.

    Parameters
    ----------
    size
        Side of the square world in 10 m pixels (even, 64 to 10980).
    parcels
        Number of declared parcels in ``parcels.gpkg``.
    start, end
        First and last day of the monitored period (one agricultural season).
    seed
        Seed of every random choice.
    violation_share
        Share of declared parcels whose actual practice differs from the declaration.
    cloud_share
        Share of Sentinel-2 dates affected by clouds (partly or fully cloudy).
    tile
        MGRS tile id (``"31UFS"``); the world is a window of that tile's 10 m grid.
    offset_px
        Column and row of the window's upper-left pixel in the tile's 10 m grid, or None
        for the default position (moved inwards when the window would leave the tile).
    s2_revisit_days, s1_revisit_days
        Days between Sentinel-2 acquisitions and between Sentinel-1 acquisitions.
    s1_resolution
        Pixel size of the Sentinel-1 rasters in metres (10 or 20).
    overviews
        Whether the COGs get internal overviews.
    blocksize
        COG tile size in pixels.
    workers
        Threads synthesising and writing acquisitions (does not change the output).
    """

    size: int = 512
    parcels: int = 200
    start: dt.date = dt.date(2024, 3, 1)
    end: dt.date = dt.date(2024, 10, 31)
    seed: int = 42
    violation_share: float = 0.1
    cloud_share: float = 0.5
    tile: str = "31UFS"
    offset_px: tuple[int, int] | None = None
    s2_revisit_days: int = 5
    s1_revisit_days: int = 6
    s1_resolution: int = 20
    overviews: bool = True
    blocksize: int = 512
    workers: int = 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", _as_date(self.start, "start"))
        object.__setattr__(self, "end", _as_date(self.end, "end"))
        object.__setattr__(self, "tile", str(self.tile).upper())
        if self.offset_px is not None:
            object.__setattr__(self, "offset_px", (int(self.offset_px[0]), int(self.offset_px[1])))
        self.validate()

    def validate(self) -> None:
        """Raise :class:`InputError` with the fix when a value cannot be used."""
        if not 64 <= self.size <= 10980 or self.size % 2:
            raise InputError(
                f"size {self.size} is not usable: give an even number of 10 m pixels "
                "between 64 and 10980 (the 20 m bands cover 2x2 pixels)"
            )
        if self.parcels < 1:
            raise InputError(f"parcels must be at least 1, not {self.parcels}")
        max_parcels = int((self.size * 10) ** 2 / 2500)
        if self.parcels > max_parcels:
            raise InputError(
                f"parcels={self.parcels} do not fit in a world of size={self.size} pixels "
                f"square; use at most {max_parcels} parcels or a larger size",
                parameter=("parcels", "size"),
            )
        if self.end < self.start:
            raise InputError(f"end {self.end} is before start {self.start}; swap them")
        if (self.end - self.start).days > 366:
            raise InputError("the period spans more than one season; keep end - start <= 366 days")
        if not 0.0 <= self.violation_share <= 1.0:
            raise InputError(f"violation share {self.violation_share} must lie in [0, 1]")
        if not 0.0 <= self.cloud_share <= 1.0:
            raise InputError(f"cloud share {self.cloud_share} must lie in [0, 1]")
        if self.s1_resolution not in (10, 20):
            raise InputError(f"s1_resolution must be 10 or 20 m, not {self.s1_resolution}")
        if self.s2_revisit_days < 1 or self.s1_revisit_days < 1:
            raise InputError("revisit days must be positive")
        if self.blocksize % 16 or self.blocksize < 64:
            raise InputError(f"blocksize {self.blocksize} must be a multiple of 16, at least 64")
        if self.workers < 1:
            raise InputError("workers must be at least 1")

    @classmethod
    def from_config(cls, **overrides: Any) -> WorldParams:
        """Build parameters from ``cbm.world.*`` in dask.config, then ``overrides``.

        Overrides whose value is None are ignored, so CLI options can be passed through.
        """
        names = {f.name for f in fields(cls)}
        values: dict[str, Any] = {}
        configured = config.get("world", {}) or {}
        for key, value in dict(configured).items():
            name = str(key).replace("-", "_")
            if name in names and value is not None:
                values[name] = value
        for key, value in overrides.items():
            if key not in names:
                raise InputError(f"unknown world parameter {key!r}; known: {sorted(names)}")
            if value is not None:
                values[key] = value
        if isinstance(values.get("offset_px"), list):
            values["offset_px"] = tuple(values["offset_px"])
        return cls(**values)

    def with_(self, **changes: Any) -> WorldParams:
        """Return a copy with some fields changed."""
        return replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        """Return JSON-ready values (dates as ISO text)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, dt.date):
                value = value.isoformat()
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        out.pop("workers")
        return out


def _id_time(item_id: str) -> str:
    """Return the first date or date-time part of an item id (YYYYMMDD[THHMMSS])."""
    for part in item_id.split("_"):
        if len(part) >= 8 and part[:8].isdigit():
            return part
    return item_id


@dataclass(frozen=True)
class WorldSummary:
    """What a build wrote (also what :func:`read_world` returns).

    Attributes
    ----------
    root
        The world directory.
    params
        The parameters it was built with.
    tile, epsg
        MGRS tile id and EPSG code of the UTM zone.
    bounds
        (left, bottom, right, top) of the world in the UTM CRS.
    bbox
        (west, south, east, north) in EPSG:4326.
    counts
        Numbers of parcels, violations, events, items per collection and cloudy dates.
    cloudy_share
        Share of Sentinel-2 dates with clouds or shadows.
    bytes
        Total size of the files written.
    seconds
        Wall time of the build (0 when read back from disk).
    """

    root: Path
    params: WorldParams
    tile: str
    epsg: int
    bounds: tuple[float, float, float, float]
    bbox: tuple[float, float, float, float]
    counts: dict[str, int] = field(default_factory=dict)
    cloudy_share: float = 0.0
    bytes: int = 0
    seconds: float = 0.0

    @property
    def parcels_path(self) -> Path:
        """``parcels.gpkg``."""
        return self.root / "parcels.gpkg"

    @property
    def truth_dir(self) -> Path:
        """``truth/``: parcels.parquet, events.parquet, acquisitions.parquet."""
        return self.root / "truth"

    @property
    def stac_dir(self) -> Path:
        """``stac/`` with ``collections/`` and ``items/<collection>/``."""
        return self.root / "stac"

    @property
    def cogs_dir(self) -> Path:
        """``cogs/<collection>/<item>/<asset>.tif``."""
        return self.root / "cogs"

    def collection_path(self, collection_id: str) -> Path:
        """Path of a collection document."""
        return self.stac_dir / "collections" / f"{collection_id}.json"

    def item_paths(self, collection_id: str) -> list[Path]:
        """Item documents of a collection in acquisition order.

        Ids start with the platform (S2A/S2B, S1A/S1C), so the date part of the id, not
        the whole id, gives the order.
        """
        paths = (self.stac_dir / "items" / collection_id).glob("*.json")
        return sorted(paths, key=lambda p: (_id_time(p.stem), p.stem))
