"""Crops, declarations, violations, management events and the daily canopy state.

Everything here is pure numpy.  :func:`plan_fields` decides, for every field, the declared
crop and practice, whether the farmer complies, the actual crop and the dates of the
management events.  :func:`simulate` then runs a small daily canopy model for all fields
at once and returns, for requested days, three state variables per field:

``green``
    green vegetation cover fraction (drives NDVI and vegetation backscatter),
``dry``
    cover of dry/senescent material: straw, stubble, hay, dead leaves,
``rough``
    soil surface roughness after tillage (1 right after ploughing, decays to 0.1),
``standing``
    standing canopy (green plus upright dead material, not lying hay or stubble; for grass
    scaled by the sward height, which regrows slower than the cover after a cut), the
    part of the vegetation that moves in the wind and decorrelates radar phase.

Day numbers are days of the season year (1 = 1 January of the year of the start date).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from cbm_dask.world._noise import derive_rng

__all__ = [
    "CROPS",
    "EVENTS",
    "VIOLATION_KINDS",
    "CanopyState",
    "Crop",
    "Plan",
    "Weather",
    "doy_to_date",
    "plan_fields",
    "simulate",
    "weather",
]

EVENTS = ("mowing", "harvest", "ploughing", "sowing", "emergence")
VIOLATION_KINDS = (
    "not_mown",
    "grassland_ploughed",
    "fallow_cultivated",
    "catch_crop_not_sown",
    "harvest_early",
    "harvest_late",
    "crop_mismatch",
)

# regimes of the daily model
GRASS, GRAZED, FALLOW, BARE, CROP, STUBBLE = range(6)

Float = NDArray[np.float64]
Strings = NDArray[np.object_]


@dataclass(frozen=True)
class Crop:
    """A crop of the catalogue.

    Attributes
    ----------
    code, name
        Crop code and name as declared.
    family
        ``grass``, ``grazed``, ``winter``, ``spring`` or ``fallow``.
    share
        Share among declarations.
    scheme, practice
        Default declared scheme and practice.
    window
        Declared practice window ((month, day), (month, day)), or None.
    """

    code: str
    name: str
    family: str
    share: float
    scheme: str
    practice: str
    window: tuple[tuple[int, int], tuple[int, int]] | None


CROPS: dict[str, Crop] = {c.code: c for c in (
    Crop("PGM", "Permanent grassland, mown", "grass", 0.22,
         "permanent_grassland_mowing", "mowing", ((4, 1), (7, 31))),
    Crop("PGG", "Permanent grassland, grazed", "grazed", 0.08, "none", "grazing",
         ((4, 1), (10, 31))),
    Crop("WWH", "Winter wheat", "winter", 0.17, "none", "harvest", ((7, 15), (8, 31))),
    Crop("WBA", "Winter barley", "winter", 0.09, "none", "harvest", ((7, 1), (8, 15))),
    Crop("SBA", "Spring barley", "spring", 0.05, "none", "harvest", ((7, 20), (8, 31))),
    Crop("MAI", "Silage maize", "spring", 0.16, "none", "harvest", ((9, 1), (10, 31))),
    Crop("POT", "Potatoes", "spring", 0.08, "none", "harvest", ((8, 15), (10, 15))),
    Crop("SBE", "Sugar beet", "spring", 0.07, "none", "harvest", ((9, 15), (11, 30))),
    Crop("FAL", "Fallow land", "fallow", 0.08, "eco_fallow", "fallow", ((1, 1), (8, 31))),
    # never declared: what violating fallow parcels are sown with in summer
    Crop("FOD", "Green fodder (summer sown)", "spring", 0.0, "none", "harvest", None),
)}
CATCH_CROP_WINDOW = ((8, 1), (10, 15))
CATCH_CROP_SHARE = {"WWH": 0.35, "WBA": 0.6}
_ARABLE = ("WWH", "WBA", "SBA", "MAI", "POT", "SBE")
_APPLICABLE: dict[str, tuple[tuple[str, float], ...]] = {
    "PGM": (("not_mown", 0.6), ("grassland_ploughed", 0.4)),
    "PGG": (("grassland_ploughed", 1.0),),
    "FAL": (("fallow_cultivated", 1.0),),
    "catch": (("catch_crop_not_sown", 0.6), ("harvest_early", 0.2), ("crop_mismatch", 0.2)),
    "cereal": (("harvest_early", 0.35), ("harvest_late", 0.25), ("crop_mismatch", 0.4)),
    "root": (("crop_mismatch", 0.6), ("harvest_late", 0.4)),
}
# growth parameters per crop: (gmax, rate/day, senescence rate/day, stubble dry, harvest roughness)
_GROWTH = {
    "WWH": (0.92, 0.06, 0.06, 0.45, 0.15),
    "WBA": (0.90, 0.065, 0.065, 0.42, 0.15),
    "SBA": (0.86, 0.09, 0.07, 0.40, 0.15),
    "MAI": (0.92, 0.08, 0.03, 0.20, 0.25),
    "POT": (0.86, 0.10, 0.06, 0.03, 0.70),
    "SBE": (0.92, 0.065, 0.01, 0.04, 0.65),
    "FOD": (0.82, 0.12, 0.05, 0.25, 0.20),
    "CATCH": (0.78, 0.13, 0.05, 0.20, 0.20),
    "WINTER_NEXT": (0.92, 0.06, 0.06, 0.45, 0.15),
    "GRASS": (0.92, 0.0, 0.0, 0.0, 0.0),
}


def doy_to_date(year: int, doy: float) -> dt.date:
    """Return the date of day ``doy`` (1 = 1 January) of ``year``; may spill into next year."""
    return dt.date(year, 1, 1) + dt.timedelta(days=int(doy) - 1)


def _doy(year: int, month_day: tuple[int, int]) -> int:
    return dt.date(year, *month_day).timetuple().tm_yday


@dataclass(frozen=True)
class Plan:
    """Declarations, truth and management of every field (arrays of length n_fields).

    Attributes
    ----------
    year
        Season year.
    seed
        World seed.
    declared_code, actual_code, scheme, practice, violation_kind
        Object arrays of text (violation kind "" when compliant).
    window_start, window_end
        Declared practice window as day numbers (0 when none).
    violation
        Whether the field's actual practice differs from the declaration.
    events
        Event name -> (n_fields, k) day numbers, NaN where no event.
    regime0, cycle0
        Initial regime and crop cycle on 1 January.
    gmax, rate, sen_doy, sen_rate, stubble, harvest_rough, emerge_grass
        (n_fields, 2) parameters of the main (0) and follow (1) crop cycle.
    cut_green
        (n_fields, 5) green cover left by each mowing.
    """

    year: int
    seed: int
    declared_code: Strings
    actual_code: Strings
    scheme: Strings
    practice: Strings
    window_start: NDArray[np.int32]
    window_end: NDArray[np.int32]
    violation: NDArray[np.bool_]
    violation_kind: Strings
    events: dict[str, Float]
    regime0: NDArray[np.int8]
    cycle0: NDArray[np.int8]
    gmax: Float
    rate: Float
    sen_doy: Float
    sen_rate: Float
    stubble: Float
    harvest_rough: Float
    emerge_grass: NDArray[np.bool_]
    cut_green: Float

    @property
    def n_fields(self) -> int:
        """Number of fields."""
        return len(self.declared_code)

    def event_table(self, indices: NDArray[np.intp], first: int, last: int
                    ) -> list[tuple[int, str, int]]:
        """(field index, event, day) of the events of ``indices`` within [first, last]."""
        rows: list[tuple[int, str, int]] = []
        for name in EVENTS:
            days = self.events[name][indices]
            fi, k = np.nonzero(np.isfinite(days))
            values = days[fi, k].astype(int)
            ok = (values >= first) & (values <= last)
            rows.extend(zip(indices[fi[ok]].tolist(), [name] * int(ok.sum()),
                            values[ok].tolist(), strict=True))
        rows.sort(key=lambda r: (r[0], r[2], EVENTS.index(r[1])))
        return rows


class _Builder:
    """Mutable arrays filled group by group, frozen into a :class:`Plan`."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.events = {
            "mowing": np.full((n, 5), np.nan),
            "harvest": np.full((n, 2), np.nan),
            "ploughing": np.full((n, 2), np.nan),
            "sowing": np.full((n, 2), np.nan),
            "emergence": np.full((n, 2), np.nan),
        }
        self.regime0 = np.full(n, STUBBLE, dtype=np.int8)
        self.cycle0 = np.full(n, -1, dtype=np.int8)
        self.gmax = np.full((n, 2), 0.9)
        self.rate = np.full((n, 2), 0.08)
        self.sen_doy = np.full((n, 2), 999.0)
        self.sen_rate = np.full((n, 2), 0.05)
        self.stubble = np.full((n, 2), 0.3)
        self.harvest_rough = np.full((n, 2), 0.15)
        self.emerge_grass = np.zeros((n, 2), dtype=bool)
        self.cut_green = np.full((n, 5), 0.35)

    def set_cycle(self, idx: NDArray[np.intp], cycle: int, crop: str,
                  rng: np.random.Generator, sen: Float | None = None) -> None:
        gmax, rate, sen_rate, stubble, rough = _GROWTH[crop]
        m = len(idx)
        self.gmax[idx, cycle] = np.minimum(0.95, gmax * rng.uniform(0.93, 1.04, m))
        self.rate[idx, cycle] = rate * rng.uniform(0.9, 1.1, m)
        self.sen_rate[idx, cycle] = sen_rate
        self.stubble[idx, cycle] = stubble * rng.uniform(0.8, 1.2, m)
        self.harvest_rough[idx, cycle] = rough
        self.emerge_grass[idx, cycle] = crop == "GRASS"
        if sen is not None:
            self.sen_doy[idx, cycle] = sen


def _normal(rng: np.random.Generator, mean: float, sd: float, m: int,
            lo: float | None = None, hi: float | None = None) -> Float:
    values = np.round(rng.normal(mean, sd, m))
    return np.clip(values, lo if lo is not None else -np.inf, hi if hi is not None else np.inf)


def _uniform_days(rng: np.random.Generator, lo: float, hi: float, m: int) -> Float:
    return np.round(rng.uniform(lo, hi, m))


def _spring_cycle(b: _Builder, idx: NDArray[np.intp], crop: str, rng: np.random.Generator,
                  plough: Float, cycle: int = 0) -> Float:
    """Plough, sow and emerge a spring-sown crop; returns the harvest day (not yet set)."""
    m = len(idx)
    timing = {  # sow lag, emergence lag, senescence after emergence, harvest after senescence
        "SBA": ((3, 10), (12, 18), (95, 6), (28, 5)),
        "MAI": ((4, 12), (10, 14), (112, 8), (18, 6)),
        "POT": ((3, 8), (20, 28), (80, 8), (35, 8)),
        "SBE": ((3, 10), (12, 18), (190, 8), (10, 10)),
        "FOD": ((2, 6), (6, 10), (200, 5), (200, 5)),
    }[crop]
    sow = plough + _uniform_days(rng, *timing[0], m)
    emerge = sow + _uniform_days(rng, *timing[1], m)
    sen = emerge + _normal(rng, timing[2][0], timing[2][1], m)
    harvest = sen + np.maximum(3, _normal(rng, timing[3][0], timing[3][1], m))
    b.events["ploughing"][idx, cycle] = plough
    b.events["sowing"][idx, cycle] = sow
    b.events["emergence"][idx, cycle] = emerge
    b.set_cycle(idx, cycle, crop, rng, sen)
    return harvest


def _follow(b: _Builder, idx: NDArray[np.intp], rng: np.random.Generator, harvest: Float,
            catch: NDArray[np.bool_], year: int) -> None:
    """After the main harvest: a catch crop (sown soon) or the next winter cereal (autumn)."""
    m = len(idx)
    plough = np.where(
        catch,
        harvest + _uniform_days(rng, 5, 20, m),
        np.maximum(harvest + 10, _normal(rng, _doy(year, (10, 15)), 8, m)),
    )
    sow = plough + np.where(catch, _uniform_days(rng, 0, 3, m), _uniform_days(rng, 2, 8, m))
    emerge = sow + np.where(catch, _uniform_days(rng, 6, 11, m), _uniform_days(rng, 12, 20, m))
    b.events["ploughing"][idx, 1] = plough
    b.events["sowing"][idx, 1] = sow
    b.events["emergence"][idx, 1] = emerge
    if catch.any():
        b.set_cycle(idx[catch], 1, "CATCH", rng)
    if (~catch).any():
        b.set_cycle(idx[~catch], 1, "WINTER_NEXT", rng)


def _mowing(b: _Builder, idx: NDArray[np.intp], rng: np.random.Generator) -> None:
    m = len(idx)
    n_cuts = rng.choice([2, 3, 4], size=m, p=[0.3, 0.45, 0.25])
    first = _normal(rng, 145, 7, m, 125, 170)
    gaps = np.round(rng.uniform(35, 50, (m, 4)))
    cuts = np.concatenate([first[:, None], first[:, None] + np.cumsum(gaps, axis=1)], axis=1)
    cuts[np.arange(5)[None, :] >= n_cuts[:, None]] = np.nan
    cuts[cuts > 285] = np.nan
    b.events["mowing"][idx] = cuts
    b.cut_green[idx] = rng.uniform(0.28, 0.42, (m, 5))


def plan_fields(
    declared: NDArray[np.bool_],
    seed: int,
    start: dt.date,
    end: dt.date,
    violation_share: float,
) -> Plan:
    """Draw crops, declarations, violations and management events for every field.

    Parameters
    ----------
    declared
        Which fields are declared parcels; only those can be violators.
    seed
        World seed.
    start, end
        Monitored period (violating events are placed inside it where the crop allows).
    violation_share
        Share of declared parcels that violate; the count is rounded, not drawn.
    """
    year = start.year
    n = len(declared)
    first = start.timetuple().tm_yday
    last = first + (end - start).days
    rng = derive_rng(seed, "crops")
    codes = [c.code for c in CROPS.values() if c.share > 0]
    shares = np.array([CROPS[c].share for c in codes])
    drawn = rng.choice(len(codes), n, p=shares / shares.sum())
    declared_code = np.array(codes, dtype=object)[drawn]
    scheme = np.array([CROPS[c].scheme for c in declared_code], dtype=object)
    practice = np.array([CROPS[c].practice for c in declared_code], dtype=object)
    window_start = np.zeros(n, dtype=np.int32)
    window_end = np.zeros(n, dtype=np.int32)
    for code, crop in CROPS.items():
        if crop.window is None:
            continue
        sel = declared_code == code
        window_start[sel] = _doy(year, crop.window[0])
        window_end[sel] = _doy(year, crop.window[1])
    catch = np.zeros(n, dtype=bool)
    for code, share in CATCH_CROP_SHARE.items():
        sel = np.flatnonzero((declared_code == code) & declared)
        catch[sel[rng.random(len(sel)) < share]] = True
    scheme[catch] = "eco_catch_crop"
    practice[catch] = "catch_crop"
    window_start[catch] = _doy(year, CATCH_CROP_WINDOW[0])
    window_end[catch] = _doy(year, CATCH_CROP_WINDOW[1])
    scheme[~declared] = "none"

    # violations: an exact share of the declared parcels
    rng_v = derive_rng(seed, "violations")
    declared_idx = np.flatnonzero(declared)
    n_viol = round(violation_share * len(declared_idx))
    violators = np.sort(rng_v.choice(declared_idx, size=n_viol, replace=False))
    kind = np.full(n, "", dtype=object)
    for i in violators:
        code = declared_code[i]
        group = code if code in ("PGM", "PGG", "FAL") else (
            "catch" if catch[i] else "cereal" if code in ("WWH", "WBA", "SBA") else "root")
        names, probs = zip(*_APPLICABLE[group], strict=True)
        kind[i] = names[int(rng_v.choice(len(names), p=np.array(probs)))]
    violation = kind != ""

    actual = declared_code.copy()
    mismatch = np.flatnonzero(kind == "crop_mismatch")
    for i in mismatch:
        options = [c for c in _ARABLE if c != declared_code[i]]
        actual[i] = options[int(rng_v.integers(len(options)))]

    b = _Builder(n)
    rng_m = derive_rng(seed, "management")
    # the violating ploughing of grassland and fallow happens inside the monitored period
    lo = max(first + 7, 100)
    hi = max(lo, min(last - 14, 240))

    grass = np.flatnonzero(np.isin(actual, ["PGM", "PGG"]))
    b.regime0[grass] = np.where(actual[grass] == "PGM", GRASS, GRAZED)
    mown = np.flatnonzero((actual == "PGM") & (kind != "not_mown"))
    _mowing(b, mown, rng_m)
    b.set_cycle(grass, 0, "GRASS", rng_m)
    ploughed = np.flatnonzero(kind == "grassland_ploughed")
    if len(ploughed):
        plough = _uniform_days(rng_m, lo, hi, len(ploughed))
        to_maize = plough < 150
        if to_maize.any():
            sel = ploughed[to_maize]
            harvest = _spring_cycle(b, sel, "MAI", rng_m, plough[to_maize])
            b.events["harvest"][sel, 0] = harvest
            actual[sel] = "MAI"
        if (~to_maize).any():
            sel = ploughed[~to_maize]
            p = plough[~to_maize]
            b.events["ploughing"][sel, 0] = p
            b.events["sowing"][sel, 0] = p + _uniform_days(rng_m, 2, 8, len(sel))
            b.events["emergence"][sel, 0] = (b.events["sowing"][sel, 0]
                                             + _uniform_days(rng_m, 8, 14, len(sel)))
            b.set_cycle(sel, 0, "GRASS", rng_m)
        cuts = b.events["mowing"][ploughed]
        cuts[cuts >= plough[:, None] - 2] = np.nan
        b.events["mowing"][ploughed] = cuts

    fallow = np.flatnonzero(actual == "FAL")
    b.regime0[fallow] = FALLOW
    cultivated = np.flatnonzero(kind == "fallow_cultivated")
    if len(cultivated):
        plough = _uniform_days(rng_m, lo, hi, len(cultivated))
        spring = plough < 140
        for sel, sown, p in ((cultivated[spring], "MAI", plough[spring]),
                             (cultivated[~spring], "FOD", plough[~spring])):
            if len(sel):
                b.events["harvest"][sel, 0] = _spring_cycle(b, sel, sown, rng_m, p)
                actual[sel] = sown

    planned = np.isin(kind, ["grassland_ploughed", "fallow_cultivated"])
    for code in _ARABLE:
        idx = np.flatnonzero((actual == code) & ~planned)
        if not len(idx):
            continue
        m = len(idx)
        crop = CROPS[code]
        assert crop.window is not None
        win0, win1 = _doy(year, crop.window[0]), _doy(year, crop.window[1])
        if crop.family == "winter":
            b.regime0[idx] = CROP
            b.cycle0[idx] = 0
            sen_mean, harvest_mean = (178, 215) if code == "WWH" else (163, 195)
            sen = _normal(rng_m, sen_mean, 5, m)
            b.set_cycle(idx, 0, code, rng_m, sen)
            harvest = np.maximum(sen + 12, _normal(rng_m, harvest_mean, 5, m, win0 + 3, win1 - 3))
        else:
            plough_mean = {"SBA": 68, "MAI": 112, "POT": 95, "SBE": 80}[code]
            plough = _normal(rng_m, plough_mean, 5, m)
            harvest = _spring_cycle(b, idx, code, rng_m, plough)
            harvest = np.clip(harvest, win0 + 3, win1 - 3)
        early = kind[idx] == "harvest_early"
        late = kind[idx] == "harvest_late"
        harvest[early] = win0 - _uniform_days(rng_m, 18, 35, int(early.sum()))
        harvest[late] = win1 + _uniform_days(rng_m, 12, 30, int(late.sum()))
        # an early (green) harvest happens before senescence
        b.sen_doy[idx[early], 0] = np.minimum(b.sen_doy[idx[early], 0], harvest[early] + 30)
        b.events["harvest"][idx, 0] = harvest
        has_catch = catch[idx] & (kind[idx] != "catch_crop_not_sown") & (actual[idx]
                                                                        == declared_code[idx])
        if code != "SBE":
            _follow(b, idx, rng_m, harvest, has_catch, year)

    return Plan(
        year=year,
        seed=seed,
        declared_code=declared_code,
        actual_code=actual,
        scheme=scheme,
        practice=practice,
        window_start=window_start,
        window_end=window_end,
        violation=violation,
        violation_kind=kind,
        events=b.events,
        regime0=b.regime0,
        cycle0=b.cycle0,
        gmax=b.gmax,
        rate=b.rate,
        sen_doy=b.sen_doy,
        sen_rate=b.sen_rate,
        stubble=b.stubble,
        harvest_rough=b.harvest_rough,
        emerge_grass=b.emerge_grass,
        cut_green=b.cut_green,
    )


def _smooth(x: float) -> float:
    x = min(max(x, 0.0), 1.0)
    return x * x * (3.0 - 2.0 * x)


def season_doy(doy: int) -> int:
    """Fold a day number beyond the year end back into the calendar (for seasonal curves)."""
    return (doy - 1) % 365 + 1


def growth_factor(doy: int) -> float:
    """Relative growth speed by season (temperature and light), 0.1 in winter, 1 in summer."""
    d = season_doy(doy)
    return 0.1 + 0.9 * _smooth((d - 45) / 60) * (1 - _smooth((d - 290) / 50))


def grass_potential(doy: int) -> float:
    """Green cover an uncut meadow tends to (before the field's own vigour)."""
    d = season_doy(doy)
    return (0.45 + 0.5 * _smooth((d - 50) / 70)
            - 0.08 * _smooth((d - 180) / 30) * (1 - _smooth((d - 250) / 30))
            - 0.3 * _smooth((d - 290) / 60))


def fallow_potential(doy: int) -> tuple[float, float]:
    """(green, dry) cover of spontaneous fallow vegetation."""
    d = season_doy(doy)
    green = 0.22 + 0.4 * _smooth((d - 70) / 80) - 0.22 * _smooth((d - 280) / 60)
    dry = 0.08 + 0.22 * _smooth((d - 170) / 70) * (1 - 0.5 * _smooth((d - 300) / 60))
    return green, dry


def forest_green(doy: int) -> float:
    """Green cover of a mixed forest (leaf-out in April, leaf fall in October)."""
    d = season_doy(doy)
    return 0.55 + 0.35 * _smooth((d - 100) / 35) * (1 - _smooth((d - 285) / 35))


@dataclass(frozen=True)
class CanopyState:
    """Field state on requested days: arrays (n_days, n_fields)."""

    doy: NDArray[np.int32]
    green: NDArray[np.float32]
    dry: NDArray[np.float32]
    rough: NDArray[np.float32]
    standing: NDArray[np.float32]


def _events_by_day(plan: Plan) -> dict[int, list[tuple[str, NDArray[np.intp], NDArray[np.intp]]]]:
    """Group the events by day: day -> [(event, field indices, slot)].

    Within a day the order is harvest, mowing, ploughing, sowing, emergence, so events on
    the same day apply in a sensible sequence.
    """
    by_day: dict[int, list[tuple[str, NDArray[np.intp], NDArray[np.intp]]]] = {}
    for name in ("harvest", "mowing", "ploughing", "sowing", "emergence"):
        days = plan.events[name]
        fi, slot = np.nonzero(np.isfinite(days))
        values = days[fi, slot].astype(int)
        for day in np.unique(values):
            sel = values == day
            by_day.setdefault(int(day), []).append((name, fi[sel], slot[sel]))
    return by_day


def simulate(plan: Plan, days: NDArray[np.integer] | list[int]) -> CanopyState:
    """Run the daily canopy model from 1 January and return the state on ``days``.

    Parameters
    ----------
    plan
        The fields' management plan.
    days
        Day numbers of the season year (may exceed 365), in any order.
    """
    want = np.asarray(days, dtype=np.int32)
    n = plan.n_fields
    out_green = np.zeros((len(want), n), dtype=np.float32)
    out_dry = np.zeros_like(out_green)
    out_rough = np.zeros_like(out_green)
    out_standing = np.zeros_like(out_green)
    if len(want) == 0:
        return CanopyState(want, out_green, out_dry, out_rough, out_standing)
    slots: dict[int, list[int]] = {}
    for i, day in enumerate(want.tolist()):
        slots.setdefault(day, []).append(i)

    regime = plan.regime0.astype(np.int8).copy()
    cycle = plan.cycle0.astype(np.int8).copy()
    green = np.where(regime == CROP, 0.18, np.where(regime == STUBBLE, 0.06, 0.45))
    green = np.where(regime == FALLOW, 0.22, green)
    dry = np.where(regime == STUBBLE, 0.15, 0.08)
    rough = np.where(regime == STUBBLE, 0.25, 0.1)
    hay_base = np.full(n, 0.05)
    height = np.ones(n)  # sward height of grass relative to an uncut meadow
    last_cut = np.full(n, -100.0)
    idx_all = np.arange(n)
    vigour = plan.gmax[:, 0]
    by_day = _events_by_day(plan)
    phase = derive_rng(plan.seed, "grazing").uniform(0, 2 * np.pi, n)

    for day in range(1, int(want.max()) + 1):
        for name, fi, slot in by_day.get(day, ()):
            if name == "harvest":
                c = np.clip(cycle[fi], 0, 1)
                regime[fi] = STUBBLE
                green[fi] = 0.03
                dry[fi] = plan.stubble[fi, c]
                rough[fi] = np.maximum(rough[fi], plan.harvest_rough[fi, c])
            elif name == "mowing":
                green[fi] = np.minimum(green[fi], plan.cut_green[fi, slot])
                dry[fi] = dry[fi] + 0.2
                height[fi] = 0.3
                last_cut[fi] = day
            elif name == "ploughing":
                regime[fi] = BARE
                green[fi] = 0.0
                dry[fi] = 0.02
                rough[fi] = 1.0
            elif name == "sowing":
                regime[fi] = BARE
                green[fi] = 0.0
                cycle[fi] = np.minimum(cycle[fi] + 1, 1)
                rough[fi] = np.minimum(rough[fi], 0.5)
            else:  # emergence
                c = np.clip(cycle[fi], 0, 1)
                regime[fi] = np.where(plan.emerge_grass[fi, c], GRASS, CROP)
                green[fi] = 0.02
                height[fi] = 0.3
        f = growth_factor(day)
        c = np.clip(cycle, 0, 1)
        gmax = plan.gmax[idx_all, c]

        is_grass = regime == GRASS
        old = np.clip((day - last_cut - 50) / 60, 0, 1) * (season_doy(day) > 160)
        target_dry = hay_base + 0.2 * old
        pot = grass_potential(day) * vigour - 0.6 * 0.2 * old
        green = np.where(is_grass, green + 0.07 * f * (pot - green), green)
        dry = np.where(is_grass, target_dry + (dry - target_dry) * 0.85, dry)
        height = np.where(is_grass, height + 0.03 * f * (1.0 - height), height)

        is_grazed = regime == GRAZED
        pot_g = grass_potential(day) * vigour * (0.84 + 0.06 * np.sin(2 * np.pi * day / 24 + phase))
        green = np.where(is_grazed, green + 0.1 * f * (pot_g - green), green)
        dry = np.where(is_grazed, 0.08 + (dry - 0.08) * 0.9, dry)

        is_fallow = regime == FALLOW
        fg, fd = fallow_potential(day)
        green = np.where(is_fallow, green + 0.05 * f * (fg * vigour - green), green)
        dry = np.where(is_fallow, dry + 0.05 * (fd - dry), dry)

        is_bare = regime == BARE
        green = np.where(is_bare, green + 0.004 * f * (0.12 - green), green)
        dry = np.where(is_bare, dry * 0.99, dry)

        is_crop = regime == CROP
        grow = plan.rate[idx_all, c] * f * green * (1 - green / gmax)
        senescing = is_crop & (day >= plan.sen_doy[idx_all, c])
        loss = np.where(senescing, green * plan.sen_rate[idx_all, c], 0.0)
        green = np.where(is_crop, green + np.where(senescing, 0.0, grow) - loss, green)
        dry = np.where(is_crop, np.minimum(dry + 0.8 * loss, 0.6), dry)

        is_stubble = regime == STUBBLE
        green = np.where(is_stubble, green + 0.006 * f * (0.18 - green), green)
        dry = np.where(is_stubble, dry * 0.996, dry)

        green = np.clip(green, 0.0, 0.97)
        dry = np.clip(dry, 0.0, 1.0 - green)
        rough = 0.1 + (rough - 0.1) * 0.975
        if day in slots:
            standing = np.where(is_crop | is_fallow, green + dry, green)
            standing = np.where(is_grass, green * height + 0.2 * old, standing)
            standing = np.where(is_grazed, 0.7 * green, standing)
            for i in slots[day]:
                out_green[i] = green
                out_dry[i] = dry
                out_rough[i] = rough
                out_standing[i] = standing
    return CanopyState(want, out_green, out_dry, out_rough, out_standing)


@dataclass(frozen=True)
class Weather:
    """Daily scene weather from 1 January: rain (mm) and topsoil wetness (0..1)."""

    rain: Float
    wetness: Float

    def at(self, doy: int) -> float:
        """Topsoil wetness on day ``doy``."""
        return float(self.wetness[min(max(doy, 1), len(self.wetness)) - 1])

    def rain_between(self, first: int, last: int) -> float:
        """Rain (mm) on days first..last inclusive."""
        lo = min(max(first, 1), len(self.rain)) - 1
        hi = min(max(last, 1), len(self.rain))
        return float(self.rain[lo:hi].sum())


def weather(seed: int, days: int) -> Weather:
    """Draw a rain series (wet spells, ~35 % rainy days) and the resulting soil wetness."""
    rng = derive_rng(seed, "weather")
    wet = np.zeros(days, dtype=bool)
    state = False
    for i in range(days):
        state = rng.random() < (0.6 if state else 0.2)
        wet[i] = state
    rain = np.where(wet, rng.gamma(0.8, 5.0, days), 0.0)
    wetness = np.zeros(days)
    level = 0.4
    for i in range(days):
        level = level * 0.88 + min(rain[i], 20.0) * 0.03
        wetness[i] = min(level, 1.0)
    return Weather(rain=rain, wetness=wetness)
