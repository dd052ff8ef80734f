"""Batch extraction end to end: world → S3 + STAC → catalogue → Dask → signatures.

Real services (PostGIS, SeaweedFS, stac-fastapi-pgstac), a real Dask cluster of
worker processes; failures are real too: a worker process killed, an image whose
task kills its workers, one of two concurrent drivers killed, a corrupt COG in the
object store.  (The queue's claims and fences in detail: tests/test_queue.py.)
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dask.config
import numpy as np
import pandas as pd
import pytest
import rasterio
import sqlalchemy as sa
from click.testing import CliRunner
from distributed.diagnostics.plugin import WorkerPlugin
from rasterio.features import geometry_mask

from cbm_dask.archive import publish
from cbm_dask.catalogue import sync_catalogue
from cbm_dask.cli.main import cli
from cbm_dask.extract import extract
from cbm_dask.objectstore import S3Settings
from cbm_dask.services.s3 import s3_client
from cbm_dask.store.engine import get_engine
from cbm_dask.store.parcels import load_parcel_file
from cbm_dask.world import S1_BACKSCATTER, S1_COHERENCE, S2_L2A, WorldParams, build_world

# The world, its archive and the reference extraction take tens of seconds to set up.
pytestmark = pytest.mark.slow

DATASET = "extract_world"
PARAMS = WorldParams(size=128, parcels=20, start=dt.date(2023, 6, 1), end=dt.date(2023, 6, 25),
                     seed=7, tile="31UES", workers=1)


@pytest.fixture(scope="module")
def world_dataset(stac_api: str, s3_server: S3Settings, postgis: str,
                  tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    world = build_world(tmp_path_factory.mktemp("xworld") / "w", PARAMS)
    publish(world.root)
    load_parcel_file(world.parcels_path, DATASET, replace=True)
    for collection in (S2_L2A, S1_BACKSCATTER, S1_COHERENCE):
        sync_catalogue(None, collection, dataset=DATASET, start="2023-06-01", end="2023-06-25")
    return {"world": world, "units": _units()}


def _units() -> int:
    with get_engine().connect() as conn:
        return int(conn.execute(sa.text(
            "SELECT count(*) FROM extractions e JOIN datasets d ON d.id = e.dataset_id "
            "WHERE d.name = :n"), {"n": DATASET}).scalar_one())


def _table() -> pd.DataFrame:
    with get_engine().connect() as conn:
        return pd.read_sql(sa.text(
            "SELECT i.item_id, p.parcel_id, s.band, s.count, s.mean, s.std, s.min, s.max, "
            "s.p25, s.p50, s.p75 FROM signature_bands s JOIN images i ON i.id = s.image_id "
            "JOIN parcels p ON p.pid = s.pid AND p.dataset_id = s.dataset_id "
            "JOIN datasets d ON d.id = s.dataset_id WHERE d.name = :n "
            "ORDER BY i.item_id, p.parcel_id, s.band"), conn, params={"n": DATASET})


def _status() -> dict[str, int]:
    with get_engine().connect() as conn:
        return dict(conn.execute(sa.text(
            "SELECT e.status, count(*) FROM extractions e JOIN datasets d ON d.id = e.dataset_id "
            "WHERE d.name = :n GROUP BY e.status"), {"n": DATASET}).all())


def _reset() -> None:
    """Forget every extraction result of the dataset (units back to pending)."""
    with get_engine().begin() as conn:
        dataset_id = conn.execute(sa.text("SELECT id FROM datasets WHERE name = :n"),
                                  {"n": DATASET}).scalar_one()
        conn.execute(sa.text("DELETE FROM signatures WHERE dataset_id = :d"), {"d": dataset_id})
        conn.execute(sa.text("UPDATE extractions SET status = 'pending', error = NULL, "
                             "attempts = 0, row_count = NULL WHERE dataset_id = :d"),
                     {"d": dataset_id})


@pytest.fixture(scope="module")
def reference(world_dataset: dict[str, object]) -> pd.DataFrame:
    """An uninterrupted extraction: the table every other run must reproduce."""
    _reset()
    report = extract([DATASET], workers=2)
    assert report.failed == 0, report.failures
    assert report.extracted == world_dataset["units"]
    table = _table()
    # other tests reset the units later, in whatever order they run: keep the state now
    table.attrs["status"] = _status()
    with get_engine().connect() as conn:
        table.attrs["histograms"] = conn.execute(sa.text(
            "SELECT count(*) FROM scl_histograms h JOIN datasets d ON d.id = h.dataset_id "
            "WHERE d.name = :n"), {"n": DATASET}).scalar_one()
    return table


def test_every_unit_is_extracted_with_every_band(world_dataset, reference) -> None:  # type: ignore[no-untyped-def]
    world = world_dataset["world"]
    counts = world.counts  # type: ignore[attr-defined]
    assert reference.attrs["status"] == {"extracted": world_dataset["units"]}
    bands = reference.groupby("item_id")["band"].agg(lambda b: tuple(sorted(set(b))))
    s2 = {"B02", "B03", "B04", "B05", "B08", "B11"}
    assert sum(set(b) == s2 for b in bands) == counts["s2_items"]
    assert sum(set(b) == {"VHb", "VVb"} for b in bands) == counts["s1_items"]
    assert sum(set(b) == {"VVc"} for b in bands) == counts["coherence_items"]
    # every parcel in every image, never dropped
    assert reference.groupby(["item_id", "band"]).size().eq(PARAMS.parcels).all()
    # one histogram per parcel and Sentinel-2 image (SAR images have no scene classification)
    assert reference.attrs["histograms"] == counts["s2_items"] * PARAMS.parcels


def test_values_match_the_cog_pixels(world_dataset, reference) -> None:  # type: ignore[no-untyped-def]
    """Recompute one parcel's B04 statistics from the local COG with the centre rule."""
    import geopandas as gpd

    world = world_dataset["world"]
    parcels = gpd.read_file(world.parcels_path)  # type: ignore[attr-defined]
    row = reference[(reference["band"] == "B04") & (reference["count"] > 20)].iloc[0]
    cog = next(Path(world.cogs_dir).glob(f"*/{row['item_id']}/red.tif"))  # type: ignore[attr-defined]
    scl_path = cog.with_name("scl.tif")
    geometry = parcels.loc[parcels["parcel_id"] == row["parcel_id"], "geometry"].iloc[0]
    with rasterio.open(cog) as src, rasterio.open(scl_path) as scl_src:
        values = src.read(1).astype("float64")
        inside = ~geometry_mask([geometry], out_shape=values.shape, transform=src.transform)
        scl = scl_src.read(1).repeat(2, axis=0).repeat(2, axis=1)[: values.shape[0],
                                                                  : values.shape[1]]
    valid = inside & (values != 0) & ~np.isin(scl, [0, 1, 3, 8, 9, 10, 11])
    pixels = values[valid] * 0.0001 - 0.1  # stored DN carry the +1000 offset
    assert row["count"] == valid.sum()
    assert row["mean"] == pytest.approx(pixels.mean(), rel=1e-5)
    assert row["std"] == pytest.approx(pixels.std(), rel=1e-4, abs=1e-6)
    assert row["p75"] == pytest.approx(np.percentile(pixels, 75), rel=1e-5)


def test_rerun_is_incremental(reference) -> None:  # type: ignore[no-untyped-def]
    extract([DATASET])  # complete whatever an earlier test left pending
    report = extract([DATASET])
    assert report.extracted == 0 and report.failed == 0
    pd.testing.assert_frame_equal(_table(), reference)


def test_several_spatial_partitions_under_a_distributed_client(reference) -> None:  # type: ignore[no-untyped-def]
    """Datasets larger than one partition are shuffled in the driver, whatever client runs."""
    _reset()
    with dask.config.set({"cbm.extract.partition-parcels": 6}):  # 20 parcels: 4 partitions
        report = extract([DATASET], workers=2)
    assert report.failed == 0, report.failures
    pd.testing.assert_frame_equal(_table(), reference)


def test_a_killed_worker_loses_and_duplicates_nothing(reference) -> None:  # type: ignore[no-untyped-def]
    from distributed import Client, LocalCluster

    _reset()
    killed: list[int] = []
    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        pids = client.run(os.getpid)

        def kill_one(result, done, total):  # type: ignore[no-untyped-def]
            if not killed:
                pid = next(iter(pids.values()))
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

        report = extract([DATASET], client=client, on_progress=kill_one)
    assert killed
    assert report.failed == 0
    assert _status() == {"extracted": len(reference.groupby("item_id"))}
    pd.testing.assert_frame_equal(_table(), reference)


class _PoisonImage(WorkerPlugin):  # type: ignore[misc]
    """Every task of one image kills the worker process running it (a real crash)."""

    def __init__(self, image_id: int) -> None:
        self.image_id = image_id

    def setup(self, worker: object) -> None:
        import cbm_dask.extract as module

        original, victim = module.extract_unit, self.image_id

        def extract_unit(unit, *args, **kwargs):  # type: ignore[no-untyped-def]
            if unit.image_id == victim:
                os._exit(13)
            return original(unit, *args, **kwargs)

        module.extract_unit = extract_unit  # tasks resolve the function by name


def _attempts() -> dict[str, int]:
    with get_engine().connect() as conn:
        return dict(conn.execute(sa.text(
            "SELECT i.item_id, e.attempts FROM extractions e JOIN images i ON i.id = e.image_id "
            "JOIN datasets d ON d.id = e.dataset_id WHERE d.name = :n"), {"n": DATASET}).all())


def test_an_image_that_kills_workers_fails_alone(reference) -> None:  # type: ignore[no-untyped-def]
    """KilledWorker: new attempts up to cbm.extract.max-attempts, then `failed`; the run
    goes on, and --retry-failed starts the image over."""
    from cbm_dask.extract import connect_cluster

    _reset()
    victim = sorted(reference.loc[reference["band"] == "VVb", "item_id"].unique())[0]
    with get_engine().connect() as conn:
        image_id = conn.execute(sa.text("SELECT id FROM images WHERE item_id = :i"),
                                {"i": victim}).scalar_one()
    with connect_cluster("local", 2) as client:  # the cluster `cbm extract` starts
        assert list(client.run_on_scheduler(lambda dask_scheduler: (
            dask_scheduler.allowed_failures, dask_scheduler.WORKER_SATURATION))) == [0, 1.0]
        client.register_plugin(_PoisonImage(int(image_id)))
        report = extract([DATASET], client=client)
    units = len(reference.groupby("item_id"))
    assert report.extracted == units - 1 and report.failed == 1
    (item, error), = report.failures
    assert item == f"{DATASET}:{victim}"
    assert error.startswith("killed workers 3 times: KilledWorker"), error
    assert _status() == {"extracted": units - 1, "failed": 1}
    assert _attempts()[victim] == 3
    with get_engine().connect() as conn:
        stored = conn.execute(sa.text("SELECT error FROM extractions WHERE image_id = :i"),
                              {"i": image_id}).scalar_one()
    assert stored == error
    result = CliRunner().invoke(cli, ["extract", "-d", DATASET, "--retry-failed", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["extracted"] == 1
    assert _attempts()[victim] == 1
    pd.testing.assert_frame_equal(_table(), reference)


def _running_of(pid: int) -> int:
    with get_engine().connect() as conn:
        return int(conn.execute(sa.text(
            "SELECT count(*) FROM extractions WHERE status = 'running' AND worker LIKE :w"),
            {"w": f"%:{pid}"}).scalar_one())


def test_two_drivers_one_killed_then_a_rerun_leave_one_clean_run(reference) -> None:  # type: ignore[no-untyped-def]
    """Two `cbm extract` started together; one SIGKILLed while it holds units; re-run."""
    _reset()
    cbm = str(Path(sys.executable).with_name("cbm"))
    drivers = [subprocess.Popen([cbm, "extract", "-d", DATASET, "--workers", "1", "--json"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                start_new_session=True) for _ in range(2)]
    victim, survivor = drivers
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (
                _status().get("extracted", 0) >= 1 and _running_of(victim.pid) > 0):
            time.sleep(0.1)
        assert _running_of(victim.pid) > 0, "the first driver never held a unit"
        victim.kill()  # SIGKILL, the driver only: its orphaned workers may write late
        victim.wait()
        out, _ = survivor.communicate(timeout=180)
        assert survivor.returncode == 0
        summary = json.loads(out)
        assert summary["failed"] == 0
    finally:
        for driver in drivers:  # the killed driver's orphaned workers, the survivor if stuck
            with contextlib.suppress(ProcessLookupError):
                os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
    result = CliRunner().invoke(cli, ["extract", "-d", DATASET, "--json"])
    assert result.exit_code == 0, result.output
    assert _status() == {"extracted": len(reference.groupby("item_id"))}
    table = _table()
    assert table.groupby("item_id").size().to_dict() == \
        reference.groupby("item_id").size().to_dict()
    pd.testing.assert_frame_equal(table, reference)
    with get_engine().connect() as conn:  # the status agrees with the rows
        mismatched = conn.execute(sa.text(
            "SELECT count(*) FROM extractions e JOIN datasets d ON d.id = e.dataset_id "
            "WHERE d.name = :n AND e.row_count IS DISTINCT FROM (SELECT count(*) FROM "
            "signature_bands s WHERE s.dataset_id = e.dataset_id AND s.image_id = e.image_id)"),
            {"n": DATASET}).scalar_one()
    assert mismatched == 0


def test_a_corrupt_cog_fails_only_its_image(reference, s3_server: S3Settings) -> None:  # type: ignore[no-untyped-def]
    _reset()
    victim = sorted(reference.loc[reference["band"] == "B04", "item_id"].unique())[1]
    key = f"{S2_L2A}/{victim}/red.tif"
    client = s3_client(s3_server)
    original = client.get_object(Bucket=s3_server.bucket, Key=key)["Body"].read()
    client.put_object(Bucket=s3_server.bucket, Key=key, Body=b"not a tiff at all" * 100)
    try:
        report = extract([DATASET])
    finally:
        client.put_object(Bucket=s3_server.bucket, Key=key, Body=original)
    assert report.failed == 1
    (item, error), = report.failures
    assert victim in item
    assert "red.tif" in error, error  # the reason names the broken asset
    status = _status()
    assert status["failed"] == 1 and status["extracted"] == len(reference.groupby("item_id")) - 1
    # once fixed, --retry-failed completes the table
    result = CliRunner().invoke(cli, ["extract", "-d", DATASET, "--retry-failed", "--json"])
    assert result.exit_code == 0, result.output
    pd.testing.assert_frame_equal(_table(), reference)


def test_extract_on_a_running_scheduler(reference) -> None:  # type: ignore[no-untyped-def]
    """`--cluster tcp://…`: the workers of an existing Dask cluster do the work."""
    from distributed import LocalCluster

    _reset()
    with LocalCluster(n_workers=1, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        result = CliRunner().invoke(
            cli, ["extract", "-d", DATASET, "--cluster", cluster.scheduler_address, "--json"]
        )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["extracted"] == len(reference.groupby("item_id"))
    pd.testing.assert_frame_equal(_table(), reference)


def test_unknown_cluster_and_dataset_are_refused_clearly(reference) -> None:  # type: ignore[no-untyped-def]
    result = CliRunner().invoke(cli, ["extract", "-d", "nope"])
    assert result.exit_code == 1 and "no dataset 'nope'; loaded datasets:" in result.output
    _reset()
    result = CliRunner().invoke(cli, ["extract", "-d", DATASET, "--cluster", "yarn"])
    assert result.exit_code == 1 and "--cluster 'yarn': use 'local'" in result.output


@pytest.mark.services
def test_local_workers_keep_glibc_malloc_thresholds(monkeypatch: pytest.MonkeyPatch) -> None:
    """distributed's 64 KiB trim threshold costs ~10x the page faults per image; not set."""
    from cbm_dask.extract import connect_cluster

    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    with connect_cluster("local", 1) as client:
        seen = client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_", "unset"))
    assert list(seen.values()) == ["unset"]
    assert os.environ.get("MALLOC_TRIM_THRESHOLD_") is None  # nor leaked into this process
