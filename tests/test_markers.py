"""Markers: the exact test series of the markers research notes (§5), batch honesty, edges."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest

from cbm_dask import config
from cbm_dask.markers import (
    BareSoilParams,
    CoverageParams,
    EventTable,
    MarkerResult,
    MowingParams,
    ParcelSeries,
    SeriesParams,
    Status,
    VegPresenceParams,
    bare_soil,
    coherence_evidence,
    coverage,
    emergence,
    fuse_confidence,
    harvest,
    mowing,
    ploughing,
    veg_presence,
    whittaker_smooth,
)

D = np.datetime64


def days(*isos: str) -> np.ndarray:
    return np.array(isos, dtype="datetime64[D]")


def ndvi_series(dates: np.ndarray, *rows: Sequence[float], **bands: np.ndarray) -> ParcelSeries:
    """Parcels ``p0, p1 ...`` with the given NDVI rows (NaN: no observation)."""
    values = np.array(rows, dtype=float)
    return ParcelSeries(parcel_ids=np.array([f"p{i}" for i in range(len(rows))]),
                        dates=dates, bands={"NDVI": values, **bands})


def every(start: str, end: str, step: int) -> np.ndarray:
    return np.arange(D(start), D(end) + 1, step)


def assert_batch_is_honest(batch: MarkerResult, alone: Sequence[MarkerResult]) -> None:
    """Each parcel of ``batch`` has the events and status it has when run alone."""
    for i, one in enumerate(alone):
        mine = batch.events.of(batch.parcel_ids[i])
        assert len(mine) == len(one.events)
        for column in ("start", "end", "main_date", "flags", "sensor"):
            np.testing.assert_array_equal(getattr(mine, column), getattr(one.events, column))
        np.testing.assert_allclose(mine.confidence, one.events.confidence)
        assert batch.status[i] == one.status[0]


# -- COVERAGE (§5.0) ---------------------------------------------------------------------
MAY_JUL = days("2024-05-05", "2024-05-20", "2024-06-04", "2024-06-19", "2024-07-04",
               "2024-07-19")
MOWING = CoverageParams(g_max=20, n_min=4)
HARVEST = CoverageParams(g_max=30, n_min=3)


def test_coverage_fortnightly_window_is_observable() -> None:
    cov = coverage(np.ones((1, 6), bool), MAY_JUL, "2024-05-01", "2024-07-31")
    assert cov.n_valid.tolist() == [6]
    assert cov.max_gap.tolist() == [15]
    assert cov.observable(MOWING).tolist() == [True]


def test_coverage_dropping_two_obs_leaves_a_45_day_gap() -> None:
    valid = np.array([[True, True, False, False, True, True]])
    cov = coverage(valid, MAY_JUL, "2024-05-01", "2024-07-31")
    assert cov.max_gap.tolist() == [45]
    assert cov.observable(MOWING).tolist() == [False]


def test_coverage_trailing_gap_counts_the_window_end() -> None:
    dates = days("2024-05-05", "2024-05-20", "2024-06-04", "2024-06-16", "2024-07-01")
    cov = coverage(np.ones((1, 5), bool), dates, "2024-05-01", "2024-07-31")
    assert cov.max_gap.tolist() == [30]
    assert cov.observable(MOWING).tolist() == [False]
    assert cov.observable(HARVEST).tolist() == [True]


def test_coverage_gap_exactly_at_the_limit_is_observable() -> None:
    dates = days("2024-05-01", "2024-05-21", "2024-06-10")
    cov = coverage(np.ones((1, 3), bool), dates, "2024-05-01", "2024-06-10")
    assert cov.max_gap.tolist() == [20]
    assert cov.observable(CoverageParams(g_max=20, n_min=3)).tolist() == [True]
    assert cov.observable(CoverageParams(g_max=19, n_min=3)).tolist() == [False]


def test_coverage_without_any_observation_is_zero_not_an_error() -> None:
    cov = coverage(np.zeros((2, 6), bool), MAY_JUL, "2024-05-01", "2024-07-31")
    assert cov.n_valid.tolist() == [0, 0]
    assert cov.max_gap.tolist() == [91, 91]
    assert not cov.observable(HARVEST).any()


def test_coverage_ignores_observations_outside_the_window() -> None:
    cov = coverage(np.ones((1, 6), bool), MAY_JUL, "2024-06-01", "2024-06-30")
    assert cov.n_valid.tolist() == [2]
    assert cov.max_gap.tolist() == [15]  # 19 Jun → 30 Jun is 11, 1 Jun → 4 Jun is 3


# -- VEG_PRESENCE (§5.1) -----------------------------------------------------------------
def test_veg_presence_weekly_season_is_present() -> None:
    dates = every("2024-03-01", "2024-10-31", 7)
    ndvi = 0.2 + 0.58 * np.sin(np.linspace(0, np.pi, len(dates)))
    ndvi[np.argmax(ndvi)] = 0.78
    result = veg_presence(ndvi_series(dates, ndvi), "2024-03-01", "2024-10-31")
    assert result.status.tolist() == [Status.OK]
    assert len(result.events) == 1
    assert result.events.confidence[0] == pytest.approx(0.993, abs=5e-4)


def test_veg_presence_single_obs_just_above_the_threshold() -> None:
    series = ndvi_series(days("2024-06-01"), [0.36])
    result = veg_presence(series, "2024-05-01", "2024-07-31")
    assert len(result.events) == 1
    assert result.events.confidence[0] == pytest.approx(0.548, abs=5e-4)
    strict = veg_presence(series, "2024-05-01", "2024-07-31",
                          VegPresenceParams.from_config(min_count=2))
    assert len(strict.events) == 0
    assert strict.status.tolist() == [Status.NOT_VALID]  # one obs: not observable


def test_veg_presence_low_and_observable_is_absent() -> None:
    dates = every("2024-04-01", "2024-09-30", 14)
    result = veg_presence(ndvi_series(dates, np.full(len(dates), 0.3)),
                          "2024-04-01", "2024-09-30")
    assert len(result.events) == 0
    assert result.status.tolist() == [Status.OK]


def test_veg_presence_low_with_60_day_summer_gap_is_not_valid() -> None:
    dates = every("2024-04-01", "2024-09-30", 14)
    dates = dates[(dates < D("2024-06-01")) | (dates > D("2024-07-31"))]
    result = veg_presence(ndvi_series(dates, np.full(len(dates), 0.3)),
                          "2024-04-01", "2024-09-30")
    assert len(result.events) == 0
    assert result.status.tolist() == [Status.NOT_VALID]
    assert result.table().status.tolist() == [Status.NOT_VALID]


def test_veg_presence_without_any_valid_obs_is_not_valid() -> None:
    dates = every("2024-04-01", "2024-09-30", 14)
    result = veg_presence(ndvi_series(dates, np.full(len(dates), np.nan)),
                          "2024-04-01", "2024-09-30")
    assert result.status.tolist() == [Status.NOT_VALID]
    assert len(result.events) == 0


def test_veg_presence_threshold_is_read_from_config_at_call_time() -> None:
    series = ndvi_series(every("2024-04-01", "2024-06-30", 10), [0.4] * 10)
    with config_set({"markers.veg-presence.threshold": 0.45}):
        assert len(veg_presence(series, "2024-04-01", "2024-06-30").events) == 0
    assert len(veg_presence(series, "2024-04-01", "2024-06-30").events) == 1


# -- BARE_SOIL (§5.3) --------------------------------------------------------------------
def reflectance_series(*rows: Sequence[float], water: Sequence[float] | None = None
                       ) -> ParcelSeries:
    """One parcel, one date per row of (B02, B04, B08, B11)."""
    r = np.array(rows, dtype=float)
    dates = np.arange(D("2024-09-01"), D("2024-09-01") + len(rows))
    return ParcelSeries(parcel_ids=np.array(["p"]), dates=dates,
                        bands={name: r[None, :, i] for i, name in
                               enumerate(("B02", "B04", "B08", "B11"))},
                        water_share=None if water is None else np.array([water]))


BARE = (0.08, 0.14, 0.22, 0.30)
DENSE = (0.03, 0.04, 0.40, 0.20)
SPARSE = (0.06, 0.10, 0.26, 0.27)
MOWN = (0.04, 0.06, 0.28, 0.22)


def test_bare_soil_reference_reflectances() -> None:
    state = bare_soil(reflectance_series(BARE, DENSE, SPARSE, MOWN))
    np.testing.assert_allclose(state.ndvi[0], [0.222, 0.818, 0.444, 0.647], atol=5e-4)
    np.testing.assert_allclose(state.bsi[0], [0.189, -0.284, 0.072, -0.067], atol=5e-4)
    assert state.bare[0].tolist() == [True, False, False, False]
    assert state.confidence[0, 0] == pytest.approx(0.943, abs=5e-4)
    assert np.isnan(state.confidence[0, 1:]).all()
    events = state.events()
    assert events.main_date.tolist() == [D("2024-09-01")]


def test_bare_soil_flooded_observation_is_not_judged() -> None:
    state = bare_soil(reflectance_series(BARE, BARE, water=[0.6, 0.5]))
    assert state.valid[0].tolist() == [False, True]
    assert state.bare[0].tolist() == [False, True]


def test_bare_soil_thresholds_are_parameters() -> None:
    loose = BareSoilParams.from_config(ndvi_max=0.5)
    assert bare_soil(reflectance_series(SPARSE), loose).bare.tolist() == [[True]]


# -- batches: vectorisation must not mix parcels -----------------------------------------
def test_batch_gives_each_parcel_its_own_result() -> None:
    dates = every("2024-04-01", "2024-09-30", 10)
    n = len(dates)
    rows = [np.full(n, 0.3), np.linspace(0.2, 0.8, n), np.full(n, np.nan),
            np.where(np.arange(n) % 5 == 0, 0.5, np.nan), np.full(n, 0.36)]
    batch = veg_presence(ndvi_series(dates, *rows), "2024-04-01", "2024-09-30")
    assert_batch_is_honest(batch, [veg_presence(ndvi_series(dates, row), "2024-04-01",
                                                "2024-09-30") for row in rows])
    assert batch.status.tolist() == [Status.OK, Status.OK, Status.NOT_VALID, Status.OK,
                                     Status.OK]


# -- series preparation (§2.2, §2.3) -----------------------------------------------------
def test_prepare_removes_an_isolated_dip_but_not_a_sustained_drop() -> None:
    dates = every("2024-05-01", "2024-05-26", 5)
    dip = [0.70, 0.72, 0.74, 0.45, 0.74, 0.75]
    cut = [0.70, 0.72, 0.74, 0.45, 0.50, 0.58]
    prepared = ndvi_series(dates, dip, cut).prepare()
    assert np.isnan(prepared.ndvi[0, 3])
    assert np.isfinite(prepared.ndvi[0]).sum() == 5
    np.testing.assert_array_equal(prepared.ndvi[1], cut)


def test_prepare_keeps_a_dip_whose_neighbours_are_far() -> None:
    dates = days("2024-05-01", "2024-05-12", "2024-05-17")
    prepared = ndvi_series(dates, [0.74, 0.45, 0.74]).prepare()
    assert np.isfinite(prepared.ndvi).all()


def test_prepare_masks_cloudy_observations_by_clear_share() -> None:
    dates = every("2024-05-01", "2024-05-11", 5)
    series = ParcelSeries(parcel_ids=np.array(["a"]), dates=dates,
                          bands={"NDVI": np.array([[0.6, 0.6, 0.6]]),
                                 "VVc": np.array([[0.3, 0.4, 0.5]])},
                          clear_share=np.array([[1.0, 0.97, np.nan]]))
    strict = series.prepare()
    assert np.isfinite(strict.ndvi[0]).tolist() == [True, False, True]
    np.testing.assert_array_equal(strict.coherence, series.coherence)  # S1 untouched
    lenient = series.prepare(SeriesParams.from_config(min_clear_share=0.95))
    assert np.isfinite(lenient.ndvi[0]).all()


def signature_rows() -> pd.DataFrame:
    """Long rows of two parcels, as the store returns them plus a parcel id and SCL."""
    clear = [0, 0, 0, 0, 80, 20, 0, 0, 0, 0, 0, 0]
    cloudy = [0, 0, 0, 0, 60, 20, 0, 0, 20, 0, 0, 0]
    rows = []
    for pid, day, scl, b04, b08 in [("a", "2024-05-01T10:30:00Z", clear, 0.05, 0.40),
                                    ("a", "2024-05-06T10:30:00Z", cloudy, 0.06, 0.30),
                                    ("b", "2024-05-06T10:31:00Z", clear, 0.10, 0.20)]:
        for band, mean in (("B04", b04), ("B08", b08)):
            rows.append({"parcel_id": pid, "datetime": pd.Timestamp(day), "band": band,
                         "mean": mean, "count": 100, "cloud_pixels": scl[8], "scl": scl})
    rows.append({"parcel_id": "b", "datetime": pd.Timestamp("2024-05-08T05:00:00Z"),
                 "band": "VVb", "mean": 0.1, "count": 10, "cloud_pixels": None, "scl": None})
    rows.append({"parcel_id": "b", "datetime": pd.Timestamp("2024-05-08T05:00:00Z"),
                 "band": "VHb", "mean": 0.01, "count": 10, "cloud_pixels": None, "scl": None})
    return pd.DataFrame(rows)


def test_from_frame_builds_the_parcel_by_date_grid() -> None:
    series = ParcelSeries.from_frame(signature_rows())
    assert series.parcel_ids.tolist() == ["a", "b"]
    assert series.dates.tolist() == days("2024-05-01", "2024-05-06", "2024-05-08").tolist()
    np.testing.assert_allclose(series.band("B04"), [[0.05, 0.06, np.nan],
                                                    [np.nan, 0.10, np.nan]])
    np.testing.assert_allclose(series.clear_share, [[1.0, 0.8, np.nan], [np.nan, 1.0, np.nan]])
    assert series.ndvi[0, 0] == pytest.approx(0.35 / 0.45)
    assert series.vv_vh_ratio_db[1, 2] == pytest.approx(10.0)
    prepared = series.prepare()
    assert np.isfinite(prepared.ndvi).tolist() == [[True, False, False], [False, True, False]]


def test_from_frame_without_histograms_uses_cloud_pixels() -> None:
    series = ParcelSeries.from_frame(signature_rows().drop(columns="scl"))
    assert series.clear_share[0, 1] == pytest.approx(1 - 20 / 120)


def test_whittaker_smooth_fills_gaps_and_keeps_a_line() -> None:
    values = np.array([[0.1, 0.2, np.nan, 0.4, 0.5], [np.nan] * 5])
    smooth = whittaker_smooth(values, smoothing=100.0)
    np.testing.assert_allclose(smooth[0], [0.1, 0.2, 0.3, 0.4, 0.5], atol=1e-9)
    assert np.isnan(smooth[1]).all()


# -- event records -----------------------------------------------------------------------
def test_fused_confidence_of_mowing_t1() -> None:
    assert float(fuse_confidence(np.array(0.657), np.array(0.475))) == pytest.approx(
        0.793, abs=5e-4)
    assert float(fuse_confidence(np.array(0.6), np.array(np.nan))) == pytest.approx(0.6)


def test_event_table_round_trips_to_records_and_frame() -> None:
    table = EventTable.build("MOWING", np.array(["a", "b"]), days("2024-05-11", "2024-06-01"),
                             days("2024-05-16", "2024-06-06"), days("2024-05-13", "2024-06-03"),
                             [0.657, 0.9], "S2", flags=np.array(["", "wide_interval"]),
                             supporting_dates=np.array([["2024-05-11", "2024-05-16"],
                                                        ["2024-06-01", "NaT"]]),
                             supporting_values=np.array([[0.74, 0.45], [0.8, np.nan]]))
    first, second = table.records()
    assert (first.parcel_id, first.status, first.flags) == ("a", Status.OK, ())
    assert first.supporting_values == (0.74, 0.45)
    assert second.flags == ("wide_interval",)
    assert second.supporting_dates == (D("2024-06-01"),)
    frame = table.to_frame()
    assert frame["type"].tolist() == ["MOWING", "MOWING"]
    assert frame["main_date"].tolist() == [pd.Timestamp("2024-05-13"), pd.Timestamp("2024-06-03")]


def config_set(values: dict[str, object]):
    import dask.config

    config.defaults()
    return dask.config.set({f"cbm.{k}": v for k, v in values.items()})


# -- MOWING (§5.2) -----------------------------------------------------------------------
MAY = every("2024-05-01", "2024-05-26", 5)


def mow(dates: np.ndarray, *rows: Sequence[float], start: str = "2024-04-01",
        end: str = "2024-07-31", **bands: np.ndarray) -> MarkerResult:
    return mowing(ndvi_series(dates, *rows, **bands), start, end)


def test_mowing_t1_positive() -> None:
    events = mow(MAY, [0.70, 0.72, 0.74, 0.45, 0.50, 0.58]).events
    assert len(events) == 1
    assert (events.start[0], events.end[0]) == (D("2024-05-11"), D("2024-05-16"))
    assert events.supporting_values[0, 0] - events.supporting_values[0, 1] == pytest.approx(0.29)
    assert events.confidence[0] == pytest.approx(0.657, abs=5e-4)
    assert events.sensor[0] == "S2"


def test_mowing_t1_with_s1_coherence_rise() -> None:
    dates = np.union1d(MAY, days("2024-05-08", "2024-05-14"))
    ndvi = np.full(len(dates), np.nan)
    ndvi[np.isin(dates, MAY)] = [0.70, 0.72, 0.74, 0.45, 0.50, 0.58]
    coh = np.full(len(dates), np.nan)
    coh[np.isin(dates, days("2024-05-08", "2024-05-14"))] = [0.30, 0.45]
    events = mow(dates, ndvi, VVc=coh[None, :]).events
    assert len(events) == 1
    assert events.sensor[0] == "S2+S1"
    assert events.confidence[0] == pytest.approx(0.793, abs=5e-4)
    s1 = coherence_evidence(ndvi_series(dates, ndvi, VVc=coh[None, :]), 0.05, 0.75, 0.05)
    assert np.nanmax(s1) == pytest.approx(0.475, abs=5e-4)


@pytest.mark.parametrize("ndvi", [
    [0.70, 0.72, 0.74, 0.45, 0.74, 0.75],  # T2 cloud dip: regrowth 0.058/day
    [0.70, 0.72, 0.74, 0.63, 0.66, 0.70],  # T3 drop 0.11
    [0.40, 0.42, 0.45, 0.30, 0.33, 0.38],  # T4 b = 0.45 < 0.5
    [0.92, 0.93, 0.94, 0.80, 0.82, 0.85],  # T5 l = 0.80 > 0.75
], ids=["T2", "T3", "T4", "T5"])
def test_mowing_rejections(ndvi: list[float]) -> None:
    assert len(mow(MAY, ndvi).events) == 0


def test_mowing_t6_long_gap_is_clipped_and_flagged() -> None:
    events = mow(days("2024-04-01", "2024-05-20", "2024-05-25"), [0.75, 0.45, 0.50]).events
    assert len(events) == 1
    assert (events.start[0], events.end[0]) == (D("2024-04-20"), D("2024-05-20"))
    assert events.confidence[0] == pytest.approx(0.665, abs=5e-4)
    assert events.records()[0].flags == ("wide_interval",)


def test_mowing_t7_two_cuts_40_days_apart() -> None:
    dates = every("2024-05-01", "2024-07-05", 5)
    ndvi = [0.70, 0.72, 0.74, 0.45, 0.50, 0.58, 0.66, 0.72, 0.74, 0.76, 0.78, 0.45, 0.50,
            0.58]
    events = mow(dates, ndvi).events
    assert events.end.tolist() == [D("2024-05-16"), D("2024-06-25")]


def test_mowing_t8_cuts_20_days_apart_keep_the_more_confident() -> None:
    dates = every("2024-05-01", "2024-06-10", 5)
    ndvi = [0.70, 0.72, 0.74, 0.45, 0.55, 0.65, 0.72, 0.45, 0.50]
    both = mow(dates, ndvi, start="2024-05-01", end="2024-06-10")
    assert len(both.events) == 1
    assert both.events.end.tolist() == [D("2024-05-16")]
    assert both.events.confidence[0] == pytest.approx(0.657, abs=5e-4)
    loose = mowing(ndvi_series(dates, ndvi), "2024-05-01", "2024-06-10",
                   MowingParams.from_config(min_span=20))
    assert loose.events.end.tolist() == [D("2024-05-16"), D("2024-06-05")]


def t9_dates() -> np.ndarray:
    return np.union1d(every("2024-04-01", "2024-07-31", 10), MAY)


def test_mowing_t9_inputs_to_the_traffic_light() -> None:
    # green: the T1 cut inside an observable 1 Apr - 31 Jul window
    dates = t9_dates()
    ndvi = np.where(np.arange(len(dates)) % 2 == 0, 0.70, 0.72)
    ndvi[np.isin(dates, MAY)] = [0.70, 0.72, 0.74, 0.45, 0.50, 0.58]
    ndvi[dates > D("2024-05-26")] = 0.68  # regrown
    green = mow(dates, ndvi)
    assert (len(green.events), green.status.tolist()) == (1, [Status.OK])
    # red: flat 0.7 ± 0.02 every 10 days, observable, no cut
    flat_dates = every("2024-04-01", "2024-07-31", 10)
    flat = 0.70 + 0.02 * np.where(np.arange(len(flat_dates)) % 2 == 0, 1, -1)
    red = mow(flat_dates, flat)
    assert (len(red.events), red.status.tolist()) == (0, [Status.OK])
    # yellow: the same with one 35-day gap
    gap = days("2024-04-01", "2024-04-11", "2024-04-21", "2024-05-01", "2024-05-11",
               "2024-06-15", "2024-06-25", "2024-07-05", "2024-07-15", "2024-07-25")
    assert np.diff(gap).max() == np.timedelta64(35, "D")
    yellow = mow(gap, 0.70 + 0.02 * np.where(np.arange(len(gap)) % 2 == 0, 1, -1))
    assert (len(yellow.events), yellow.status.tolist()) == (0, [Status.NOT_VALID])


def test_mowing_batch_matches_parcels_alone() -> None:
    rows = [[0.70, 0.72, 0.74, 0.45, 0.50, 0.58], [0.70, 0.72, 0.74, 0.45, 0.74, 0.75],
            [np.nan] * 6, [0.70, 0.72, 0.74, 0.45, np.nan, np.nan], [0.8, 0.6, 0.8, 0.6, 0.8, 0.6]]
    batch = mow(MAY, *rows, start="2024-05-01", end="2024-05-26")
    assert_batch_is_honest(batch, [mow(MAY, row, start="2024-05-01", end="2024-05-26")
                                   for row in rows])
    assert batch.status[2] == Status.NOT_VALID
    assert batch.events.of("p3").records()[0].flags == ("no_regrowth_check",)


# -- PLOUGHING (§5.4) --------------------------------------------------------------------
def vegetated(ndvi: float) -> tuple[float, float, float, float]:
    """Reflectances (B02, B04, B08, B11) of a canopy with this NDVI."""
    b04 = 0.05
    return (0.04, b04, b04 * (1 + ndvi) / (1 - ndvi), 0.20)


def bare_with(ndvi: float, bsi: float) -> tuple[float, float, float, float]:
    """Reflectances (B02, B04, B08, B11) with exactly this NDVI and BSI."""
    b02, b04 = 0.08, 0.15
    b08 = b04 * (1 + ndvi) / (1 - ndvi)
    b11 = (b08 + b02) * (1 + bsi) / (1 - bsi) - b04
    return (b02, b04, b08, b11)


SEP = days("2024-09-01", "2024-09-06", "2024-09-11", "2024-09-16", "2024-10-06")


def reflectance_batch(dates: np.ndarray, *parcels: Sequence[tuple[float, ...]]) -> ParcelSeries:
    r = np.array(parcels, dtype=float)  # parcel, date, band
    return ParcelSeries(parcel_ids=np.array([f"p{i}" for i in range(len(parcels))]),
                        dates=dates, bands={name: r[:, :, i] for i, name in
                                            enumerate(("B02", "B04", "B08", "B11"))})


PLOUGHED = (vegetated(0.70), vegetated(0.68), bare_with(0.222, 0.189), bare_with(0.211, 0.190),
            vegetated(0.30))


def test_ploughing_confirmed_transition() -> None:
    result = ploughing(reflectance_batch(SEP, PLOUGHED), "2024-09-01", "2024-10-31")
    events = result.events
    assert len(events) == 1
    assert (events.start[0], events.end[0]) == (D("2024-09-06"), D("2024-09-11"))
    assert events.confidence[0] == pytest.approx(0.94, abs=5e-3)
    assert events.records()[0].flags == ()
    assert result.status.tolist() == [Status.OK]


def test_ploughing_single_bare_observation_is_weak() -> None:
    single = (*PLOUGHED[:3], vegetated(0.65), PLOUGHED[4])
    events = ploughing(reflectance_batch(SEP, single), "2024-09-01", "2024-10-31").events
    assert len(events) == 1
    assert events.confidence[0] == pytest.approx(0.49)
    assert events.records()[0].flags == ("unconfirmed",)


def test_ploughing_not_in_a_mowing_series() -> None:
    mown = [vegetated(v) for v in (0.70, 0.72, 0.74, 0.45, 0.50, 0.58)]
    assert len(ploughing(reflectance_batch(MAY, mown), "2024-05-01", "2024-05-31").events) == 0


def test_ploughing_after_harvest_needs_no_vegetated_obs() -> None:
    stubble = (vegetated(0.28), vegetated(0.27), bare_with(0.222, 0.189),
               bare_with(0.211, 0.190), vegetated(0.30))
    series = reflectance_batch(SEP, stubble, stubble)
    assert len(ploughing(series, "2024-09-01", "2024-10-31").events) == 0
    cut = EventTable.build("HARVEST", np.array(["p1"]), D("2024-08-25"), D("2024-08-30"),
                           D("2024-08-30"), 0.9, "S2")
    after = ploughing(series, "2024-09-01", "2024-10-31", harvest=cut).events
    assert after.parcel_id.tolist() == ["p1"]
    assert after.start.tolist() == [D("2024-09-06")]


def test_ploughing_batch_matches_parcels_alone() -> None:
    single = (*PLOUGHED[:3], vegetated(0.65), PLOUGHED[4])
    parcels = [PLOUGHED, single, tuple(vegetated(0.7) for _ in SEP)]
    batch = ploughing(reflectance_batch(SEP, *parcels), "2024-09-01", "2024-10-31")
    assert_batch_is_honest(batch, [ploughing(reflectance_batch(SEP, parcel), "2024-09-01",
                                             "2024-10-31") for parcel in parcels])
    assert len(batch.events) == 2


# -- HARVEST (§5.5) ----------------------------------------------------------------------
HARVEST_DATES = days("2024-06-05", "2024-06-15", "2024-06-25", "2024-07-04", "2024-07-05",
                     "2024-07-10", "2024-07-15", "2024-07-25")
HARVEST_NDVI = [0.78, 0.70, 0.55, np.nan, 0.42, 0.24, 0.20, 0.18]
HARVEST_COH = [np.nan, np.nan, np.nan, 0.35, np.nan, 0.62, np.nan, np.nan]


def test_harvest_with_s1_confirmation() -> None:
    series = ndvi_series(HARVEST_DATES, HARVEST_NDVI, VVc=np.array([HARVEST_COH]))
    events = harvest(series, "2024-07-01", "2024-08-31").events
    assert len(events) == 1
    assert (events.start[0], events.end[0]) == (D("2024-07-05"), D("2024-07-10"))
    assert events.sensor[0] == "S2+S1"
    assert events.confidence[0] == pytest.approx(0.884, abs=5e-4)
    s2_only = harvest(ndvi_series(HARVEST_DATES, HARVEST_NDVI), "2024-07-01", "2024-08-31")
    assert s2_only.events.confidence[0] == pytest.approx(0.849, abs=5e-4)


def test_harvest_absent_while_maize_stays_green() -> None:
    dates = every("2024-06-01", "2024-08-31", 10)
    result = harvest(ndvi_series(dates, np.full(len(dates), 0.75)), "2024-07-01", "2024-08-31")
    assert len(result.events) == 0
    assert result.status.tolist() == [Status.OK]


def test_harvest_not_relevant_without_vegetation() -> None:
    dates = every("2024-06-01", "2024-08-31", 10)
    result = harvest(ndvi_series(dates, np.full(len(dates), 0.3), np.full(len(dates), np.nan)),
                     "2024-07-01", "2024-08-31")
    assert len(result.events) == 0
    assert result.status.tolist() == [Status.NOT_EXECUTED, Status.NOT_VALID]


# -- EMERGENCE (§5.6) --------------------------------------------------------------------
SPRING = days("2024-04-01", "2024-04-10", "2024-04-20", "2024-04-30", "2024-05-05",
              "2024-05-10", "2024-05-20")


def test_emergence_green_up() -> None:
    events = emergence(ndvi_series(SPRING, [0.15, 0.16, 0.18, 0.30, 0.38, 0.45, 0.62]),
                       "2024-04-01", "2024-05-31").events
    assert len(events) == 1
    assert (events.start[0], events.end[0]) == (D("2024-04-30"), D("2024-05-05"))
    assert events.main_date[0] == D("2024-05-03")
    assert events.confidence[0] == pytest.approx(0.726, abs=5e-4)


def test_emergence_ignores_a_single_spike() -> None:
    dates = days("2024-04-01", "2024-04-10", "2024-04-20", "2024-04-30")
    result = emergence(ndvi_series(dates, [0.15, 0.16, 0.40, 0.17]), "2024-04-01", "2024-04-30")
    assert len(result.events) == 0


def test_emergence_absent_when_all_low_and_observable() -> None:
    dates = every("2024-04-01", "2024-05-31", 10)
    result = emergence(ndvi_series(dates, np.full(len(dates), 0.3)), "2024-04-01", "2024-05-15")
    assert len(result.events) == 0
    assert result.status.tolist() == [Status.OK]


def test_emergence_batch_matches_parcels_alone() -> None:
    rows = [[0.15, 0.16, 0.18, 0.30, 0.38, 0.45, 0.62], [0.15, 0.16, 0.40, 0.17, 0.2, 0.5, 0.6],
            [np.nan] * 7, [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]]
    batch = emergence(ndvi_series(SPRING, *rows), "2024-04-01", "2024-05-31")
    assert_batch_is_honest(batch, [emergence(ndvi_series(SPRING, row), "2024-04-01",
                                             "2024-05-31") for row in rows])
    assert batch.events.parcel_id.tolist() == ["p0", "p1"]
    assert batch.status[2] == Status.NOT_VALID


def test_harvest_batch_matches_parcels_alone() -> None:
    rows = [HARVEST_NDVI, [0.78, 0.75, 0.74, np.nan, 0.72, 0.7, 0.7, 0.7], [np.nan] * 8,
            [0.3] * 8]
    coh = np.array([HARVEST_COH, HARVEST_COH, [np.nan] * 8, HARVEST_COH])

    def run(i: Sequence[int]) -> MarkerResult:
        series = ndvi_series(HARVEST_DATES, *[rows[k] for k in i], VVc=coh[list(i)])
        return harvest(series, "2024-07-01", "2024-08-31")

    batch = run(range(len(rows)))
    assert_batch_is_honest(batch, [run([k]) for k in range(len(rows))])
    assert batch.events.parcel_id.tolist() == ["p0"]


def test_mowing_keeps_at_most_max_per_year_the_most_confident() -> None:
    dates = every("2024-05-01", "2024-07-05", 5)
    ndvi = [0.70, 0.72, 0.74, 0.45, 0.50, 0.58, 0.66, 0.72, 0.74, 0.76, 0.78, 0.45, 0.50,
            0.58]
    one = mowing(ndvi_series(dates, ndvi), "2024-04-01", "2024-07-31",
                 MowingParams.from_config(max_per_year=1)).events
    assert one.end.tolist() == [D("2024-06-25")]  # drop 0.33 beats drop 0.29


def test_mowing_window_gap_exactly_at_g_max() -> None:
    gap = mow(days("2024-05-01", "2024-05-06", "2024-05-11", "2024-05-31"), [0.7] * 4,
              start="2024-05-01", end="2024-05-31")
    assert gap.status.tolist() == [Status.OK]  # a gap of exactly 20 days
    wider = mow(days("2024-05-01", "2024-05-06", "2024-05-11", "2024-06-01"), [0.7] * 4,
                start="2024-05-01", end="2024-06-01")
    assert wider.status.tolist() == [Status.NOT_VALID]  # 21 days


def test_prepare_drops_implausible_observations() -> None:
    dates = every("2024-05-01", "2024-05-11", 5)
    series = ParcelSeries(parcel_ids=np.array(["a"]), dates=dates,
                          bands={"B04": np.array([[0.05, -0.01, 0.05]]),
                                 "B08": np.array([[0.40, 0.30, 0.0]])})
    assert np.isfinite(series.prepare().ndvi[0]).tolist() == [True, False, False]
    assert np.isnan(series.prepare().band("B04")[0, 1])


def test_marker_result_frame_lists_events_and_undecided_parcels() -> None:
    frame = mow(MAY, [0.70, 0.72, 0.74, 0.45, 0.50, 0.58], [np.nan] * 6,
                start="2024-05-01", end="2024-05-26").to_frame()
    assert frame["parcel_id"].tolist() == ["p0", "p1"]
    assert frame["status"].tolist() == [Status.OK, Status.NOT_VALID]
    assert frame["supporting_values"][0] == pytest.approx((0.74, 0.45, 0.50))
    assert pd.isna(frame["start"][1])


def test_from_frames_joins_one_frame_per_parcel() -> None:
    rows = signature_rows()
    per_parcel = {pid: group.drop(columns="parcel_id")
                  for pid, group in rows.groupby("parcel_id", sort=False)}
    joined = ParcelSeries.from_frames(per_parcel)
    direct = ParcelSeries.from_frame(rows)
    assert joined.parcel_ids.tolist() == ["a", "b"]
    np.testing.assert_array_equal(joined.ndvi, direct.ndvi)
    np.testing.assert_array_equal(joined.clear_share, direct.clear_share)
