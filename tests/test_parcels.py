"""Parcel ingestion: every real LPIS sample, every format, every kind of bad input."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyarrow.parquet as pq
import pytest
import shapely
import sqlalchemy as sa
from click.testing import CliRunner

from cbm_dask.cli.main import cli
from cbm_dask.demo import LPIS_SAMPLES
from cbm_dask.errors import (
    ColumnDetectionError,
    DatabaseError,
    DatasetExistsError,
    InputError,
)
from cbm_dask.store.engine import get_engine
from cbm_dask.store.parcels import (
    dataset_info,
    export_parcels,
    list_datasets,
    load_parcel_file,
)
from tests._helpers import FLANDERS_PARCELS, LPIS


@functools.cache
def _normalised() -> gpd.GeoDataFrame:
    """The published normalised samples, read on first use (collecting needs no data)."""
    return gpd.read_parquet(LPIS / "all_samples_normalized_4326.parquet")


def _count(dataset: str) -> int:
    with get_engine().connect() as conn:
        return int(
            conn.execute(
                sa.text(
                    "SELECT count(*) FROM parcels p JOIN datasets d ON d.id = p.dataset_id "
                    "WHERE d.name = :name"
                ),
                {"name": dataset},
            ).scalar_one()
        )


def _dataset_names() -> list[str]:
    return list(list_datasets()["name"])


@pytest.mark.parametrize("sample", LPIS_SAMPLES, ids=lambda s: s.dataset)
def test_every_real_sample_loads(fresh_db: str, sample, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = gpd.read_file(LPIS / sample.path)
    result = load_parcel_file(
        LPIS / sample.path, sample.dataset, report_dir=tmp_path, **sample.options
    )
    assert result.loaded == len(source) == _count(sample.dataset)
    assert result.rejected == 0
    assert result.crs == f"EPSG:{source.crs.to_epsg()}"
    info = dataset_info(sample.dataset)
    assert info["parcels"] == len(source)
    normalised = _normalised()
    expected = normalised.loc[normalised["dataset"] == sample.dataset, "area_m2"]
    if len(expected):
        assert info["area_m2"]["total"] == pytest.approx(expected.sum(), rel=1e-4)
    # native geometry keeps its SRID; its extent in EPSG:4326 lies where the source says
    with get_engine().connect() as conn:
        srids = conn.execute(
            sa.text(
                "SELECT DISTINCT ST_SRID(geom) FROM parcels p JOIN datasets d "
                "ON d.id = p.dataset_id WHERE d.name = :n"
            ),
            {"n": sample.dataset},
        ).scalars().all()
        extent = conn.execute(
            sa.text(
                "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM (SELECT "
                "ST_Extent(ST_Transform(ST_Envelope(geom), 4326)) e FROM parcels p JOIN datasets d "
                "ON d.id = p.dataset_id "
                "WHERE d.name = :n) s"
            ),
            {"n": sample.dataset},
        ).one()
    assert srids == [source.crs.to_epsg()]
    # parcel envelopes, transformed: the true bounds, widened by at most a few metres
    west, south, east, north = source.to_crs(4326).total_bounds
    assert extent[0] <= west + 1e-9 and extent[1] <= south + 1e-9
    assert extent[2] >= east - 1e-9 and extent[3] >= north - 1e-9
    assert tuple(extent) == pytest.approx((west, south, east, north), abs=2e-3)


def test_detected_columns_match_the_published_roles(fresh_db: str) -> None:
    expected = json.loads((LPIS / "datasets.json").read_text())
    checked = 0
    for sample in LPIS_SAMPLES:
        roles = expected.get(sample.dataset)
        if roles is None or "id_column" in sample.options:
            continue
        result = load_parcel_file(LPIS / sample.path, sample.dataset)
        assert result.mapping.id == (roles["id_col"],)
        assert result.mapping.crop_code == roles["crop_code_col"]
        assert result.mapping.crop_name == roles["crop_name_col"]
        checked += 1
    assert checked >= 9
    # a role the file lacks is NULL, never a text like 'nan'
    with get_engine().connect() as conn:
        codes = conn.execute(
            sa.text("SELECT DISTINCT crop_code, crop_name FROM parcels p JOIN datasets d "
                    "ON d.id = p.dataset_id WHERE d.name = 'ie_gsaa_2024'")
        ).all()
    assert codes == [(None, None)]


def test_tiny_parcels_are_kept(fresh_db: str) -> None:
    sample = next(s for s in LPIS_SAMPLES if s.dataset.startswith("de_bb"))
    load_parcel_file(LPIS / sample.path, "de", **sample.options)
    info = dataset_info("de")
    assert info["area_m2"]["min"] < 20  # a 0.001 ha sliver
    assert info["parcels"] == 100


@pytest.mark.parametrize("suffix", [".shp", ".geojson", ".fgb", ".parquet", ".gpkg"])
def test_any_ogr_format_loads(fresh_db: str, tmp_path: Path, suffix: str) -> None:
    frame = gpd.read_file(FLANDERS_PARCELS)
    path = tmp_path / f"parcels{suffix}"
    if suffix == ".parquet":
        frame.to_parquet(path)
    elif suffix == ".shp":
        frame[["REF_ID", "GWSCOD_H", "GWSNAM_H", "geometry"]].to_file(path, encoding="cp1252")
    else:
        frame.to_file(path)
    result = load_parcel_file(path, f"fmt{suffix[1:]}")
    assert result.loaded == len(frame)
    assert result.mapping.id == ("REF_ID",)
    with get_engine().connect() as conn:
        names = set(conn.execute(sa.text("SELECT crop_name FROM parcels")).scalars())
    assert "Silomaïs" in names  # accents survive every encoding


def test_shapefile_encoding_option(fresh_db: str, tmp_path: Path) -> None:
    frame = gpd.read_file(FLANDERS_PARCELS)[["REF_ID", "GWSNAM_H", "geometry"]]
    path = tmp_path / "latin.shp"
    frame.to_file(path, encoding="cp1252")
    path.with_suffix(".cpg").unlink()  # an old shapefile that does not declare it
    result = load_parcel_file(path, "latin", encoding="cp1252")
    assert result.loaded == len(frame)
    with get_engine().connect() as conn:
        names = set(conn.execute(sa.text("SELECT crop_name FROM parcels")).scalars())
    assert "Silomaïs" in names


def _bad_file(tmp_path: Path) -> Path:
    """Five good parcels plus one of each kind of bad row."""
    square = shapely.box(0, 0, 100, 100)
    bowtie = shapely.Polygon([(0, 0), (100, 100), (100, 0), (0, 100), (0, 0)])
    rows = [
        ("p1", "311", square),
        ("p2", "311", shapely.affinity.translate(square, 200)),
        ("p3", "60", shapely.affinity.translate(square, 400)),
        ("p4", "60", shapely.affinity.translate(bowtie, 600)),  # invalid: repaired
        ("p5", "60", shapely.box(800, 0, 800.5, 0.5)),  # tiny: kept
        ("e1", "60", shapely.Polygon()),  # empty: rejected
        ("n1", "60", None),  # null: rejected
        ("l1", "60", shapely.LineString([(0, 0), (1, 1)])),  # not polygonal: rejected
        ("d1", "60", shapely.affinity.translate(square, 1000)),  # duplicate id: rejected
        ("d1", "60", shapely.affinity.translate(square, 1200)),
    ]
    frame = gpd.GeoDataFrame(
        {"parcel_id": [r[0] for r in rows], "crop_code": [r[1] for r in rows]},
        geometry=[r[2] for r in rows],
        crs="EPSG:32631",
    )
    path = tmp_path / "bad.gpkg"
    frame.to_file(path, layer="parcels", engine="pyogrio", geometry_type="Unknown")
    return path


def test_bad_rows_are_repaired_or_rejected_with_a_report(fresh_db: str, tmp_path: Path) -> None:
    result = load_parcel_file(
        _bad_file(tmp_path), "bad", id_column="parcel_id", report_dir=tmp_path
    )
    assert result.loaded == 5
    assert result.repaired == 1
    assert result.rejected == 5
    assert result.report_path is not None and result.report_path.parent == tmp_path
    report = pd.read_csv(result.report_path)
    by_id = report.groupby("parcel_id")["reason"].apply(list).to_dict()
    assert by_id["p4"][0].startswith("invalid geometry repaired")
    assert by_id["e1"] == ["empty or missing geometry"]
    assert by_id["n1"] == ["empty or missing geometry"]
    assert by_id["l1"][0].startswith("not a polygon (LineString)")
    assert by_id["d1"] == ["duplicate parcel id (2 rows)"] * 2
    with get_engine().connect() as conn:
        rows = dict(
            conn.execute(
                sa.text("SELECT parcel_id, ST_IsValid(geom) AND ST_GeometryType(geom) = "
                        "'ST_MultiPolygon' FROM parcels")
            ).all()
        )
    assert rows == {"p1": True, "p2": True, "p3": True, "p4": True, "p5": True}


def test_existing_dataset_needs_replace(fresh_db: str) -> None:
    load_parcel_file(FLANDERS_PARCELS, "be")
    with pytest.raises(DatasetExistsError, match="pass replace=True"):
        load_parcel_file(FLANDERS_PARCELS, "be")
    assert _count("be") == 100
    result = load_parcel_file(FLANDERS_PARCELS, "be", replace=True)
    assert result.loaded == 100 and _count("be") == 100


def test_failed_load_changes_nothing(fresh_db: str, tmp_path: Path) -> None:
    """A load that fails inside COPY (a NUL byte PostgreSQL cannot store) rolls back whole."""
    load_parcel_file(FLANDERS_PARCELS, "be")
    frame = gpd.read_file(FLANDERS_PARCELS)
    frame.loc[50, "GWSNAM_H"] = "bad\x00name"
    path = tmp_path / "nul.parquet"
    frame.to_parquet(path)
    with pytest.raises(DatabaseError, match=r"0x00.*nothing was changed"):
        load_parcel_file(path, "be", replace=True)
    with pytest.raises(DatabaseError, match=r"0x00.*nothing was changed"):
        load_parcel_file(path, "other")
    assert _dataset_names() == ["be"]
    assert _count("be") == 100
    with get_engine().connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM parcels")).scalar_one() == 100


def test_missing_and_unreadable_files(fresh_db: str, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nowhere\.gpkg: no such file"):
        load_parcel_file(tmp_path / "nowhere.gpkg", "x")
    garbage = tmp_path / "garbage.gpkg"
    garbage.write_bytes(b"this is not a geopackage" * 10)
    with pytest.raises(InputError, match=r"garbage\.gpkg: not a readable vector dataset"):
        load_parcel_file(garbage, "x")
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 broken")
    with pytest.raises(InputError, match=r"broken\.parquet: not a readable GeoParquet"):
        load_parcel_file(broken, "x")
    assert _dataset_names() == []


def test_undecidable_id_column_names_candidates_and_parameter(fresh_db: str) -> None:
    dk = LPIS / "dk_marker_2023" / "parcels.gpkg"
    with pytest.raises(ColumnDetectionError) as err:
        load_parcel_file(dk, "dk")
    message = str(err.value)
    assert "Marknr" in message and "id_column=" in message and "@fid" in message
    assert "--" not in message and err.value.parameters == ("id_column",)
    nl = LPIS / "nl_brp_gewaspercelen_2023" / "parcels.gpkg"
    with pytest.raises(ColumnDetectionError, match="id_column="):
        load_parcel_file(nl, "nl")
    with pytest.raises(ColumnDetectionError, match="^crop_code_column='nope': no such column"):
        load_parcel_file(FLANDERS_PARCELS, "be", crop_code_column="nope")
    # the command line names its flags instead
    result = CliRunner().invoke(cli, ["parcels", "load", str(dk), "-d", "dk"])
    assert result.exit_code == 1
    assert "--id-column 'NAME'" in result.output and "id_column=" not in result.output
    result = CliRunner().invoke(cli, ["parcels", "load", str(FLANDERS_PARCELS), "-d", "be",
                                      "--crop-code-column", "nope"])
    assert result.exit_code == 1 and "--crop-code-column 'nope': no such column" in result.output
    assert _dataset_names() == []


def test_layers_and_crs_must_be_decidable(fresh_db: str, tmp_path: Path) -> None:
    frame = gpd.read_file(FLANDERS_PARCELS)
    two = tmp_path / "two.gpkg"
    frame.to_file(two, layer="a")
    frame.iloc[:10].to_file(two, layer="b")
    with pytest.raises(InputError, match="2 layers .*layer='NAME'"):
        load_parcel_file(two, "two")
    assert load_parcel_file(two, "two", layer="b").loaded == 10
    bare = tmp_path / "nocrs.shp"
    frame[["REF_ID", "geometry"]].to_file(bare)
    bare.with_suffix(".prj").unlink()
    with pytest.raises(InputError, match="declares no coordinate reference system.*crs='EPSG"):
        load_parcel_file(bare, "nocrs")
    assert load_parcel_file(bare, "nocrs", crs="EPSG:31370").crs == "EPSG:31370"
    # Old-style GeoJSON with projected coordinates: read as WGS84 by definition.
    wrong = tmp_path / "lambert.geojson"
    frame[["REF_ID", "geometry"]].to_file(
        wrong, engine="pyogrio", layer_options={"RFC7946": "NO", "WRITE_NAME": "NO"}
    )
    text = wrong.read_text()
    wrong.write_text(text.replace('"crs"', '"ignored_crs"'))
    with pytest.raises(InputError, match="not degrees.*crs='EPSG"):
        load_parcel_file(wrong, "lambert")
    assert load_parcel_file(wrong, "lambert", crs="EPSG:31370").loaded == 100


def test_bad_dataset_name(fresh_db: str) -> None:
    with pytest.raises(InputError, match="^dataset='no spaces; please': use 1-63"):
        load_parcel_file(FLANDERS_PARCELS, "no spaces; please")
    result = CliRunner().invoke(cli, ["parcels", "load", str(FLANDERS_PARCELS), "-d", "a b"])
    assert result.exit_code == 1 and "--dataset 'a b': use 1-63" in result.output


@pytest.mark.parametrize("suffix", [".parquet", ".gpkg", ".fgb"])
def test_export_round_trips(fresh_db: str, tmp_path: Path, suffix: str) -> None:
    load_parcel_file(FLANDERS_PARCELS, "be")
    target = export_parcels("be", tmp_path / f"out{suffix}")
    back = gpd.read_file(target) if suffix != ".parquet" else gpd.read_parquet(target)
    assert len(back) == 100
    assert back.crs.to_epsg() == 31370
    source = gpd.read_file(FLANDERS_PARCELS)
    source = source.set_index(source["REF_ID"].astype(str))
    back = back.set_index("parcel_id")
    assert back.loc[source.index, "geometry"].area.sum() == pytest.approx(
        source.geometry.area.sum(), rel=1e-9
    )
    if suffix == ".parquet":
        geo = json.loads(pq.read_schema(target).metadata[b"geo"])
        assert geo["version"] == "1.1.0"
        assert "covering" in geo["columns"]["geometry"]


def test_parcels_cli(fresh_db: str, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        cli, ["parcels", "load", str(FLANDERS_PARCELS), "--dataset", "be", "--aoi", "BE-VLG",
              "--json"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["loaded"] == 100 and summary["columns"]["id"] == ["REF_ID"]
    result = runner.invoke(cli, ["parcels", "load", str(FLANDERS_PARCELS), "--dataset", "be"])
    assert result.exit_code == 1
    assert "--replace" in result.output and "Traceback" not in result.output
    result = runner.invoke(cli, ["parcels", "info", "--dataset", "be", "--json"])
    info = json.loads(result.output)
    assert info["parcels"] == 100 and info["crops"][0]["crop_name"] == "Grasland"
    result = runner.invoke(cli, ["parcels", "info", "--dataset", "be"])
    assert "Grasland" in result.output and "EPSG:31370" in result.output
    result = runner.invoke(cli, ["datasets", "list", "--json"])
    assert [d["name"] for d in json.loads(result.output)] == ["be"]
    result = runner.invoke(cli, ["datasets", "list"])
    assert "BE-VLG" in result.output
    result = runner.invoke(cli, ["parcels", "export", "-d", "be", "--to", str(tmp_path / "x.fgb")])
    assert result.exit_code == 0 and (tmp_path / "x.fgb").exists()
    result = runner.invoke(cli, ["parcels", "export", "-d", "be", "--to", str(tmp_path / "x.csv")])
    assert result.exit_code == 1 and ".parquet" in result.output and "--to '" in result.output
    result = runner.invoke(cli, ["parcels", "info", "--dataset", "nope"])
    assert result.exit_code == 1 and "no dataset 'nope'" in result.output
    result = runner.invoke(cli, ["parcels", "load", str(tmp_path / "missing.gpkg"), "-d", "m"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].startswith("Error: ")
    result = runner.invoke(cli, ["parcels", "drop", "-d", "be", "--yes"])
    assert result.exit_code == 0 and _dataset_names() == []


@pytest.mark.realdata
def test_areas_are_those_of_the_parcels_as_drawn() -> None:
    """Scale-at-centroid areas equal densified reprojection on every real sample."""
    from cbm_dask.zones.validate import _as_multipolygons, multipolygon_areas

    for sample in LPIS_SAMPLES:
        frame = gpd.read_file(LPIS / sample.path)
        geoms = _as_multipolygons(shapely.make_valid(frame.geometry.to_numpy()))
        areas = multipolygon_areas(geoms, frame.crs, "EPSG:3035")
        step = 1e-5 if frame.crs.is_geographic else 1.0
        dense = gpd.GeoSeries(shapely.segmentize(geoms, step), crs=frame.crs)
        expected = dense.to_crs(3035).area.to_numpy()
        assert areas == pytest.approx(expected, rel=1e-7), sample.dataset


def test_one_native_geometry_with_its_srid_and_a_gist_index(fresh_db: str) -> None:
    load_parcel_file(FLANDERS_PARCELS, "be")
    with get_engine().connect() as conn:
        columns = conn.execute(sa.text(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'parcels' "
            "ORDER BY ordinal_position")).scalars().all()
        indexes = dict(conn.execute(sa.text(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'parcels'")).all())
        partition = dict(conn.execute(sa.text(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i JOIN datasets d "
            "ON i.tablename = 'parcels_d' || d.id WHERE d.name = 'be'")).all())
        row = conn.execute(sa.text(
            "SELECT ST_SRID(geom), ST_AsEWKT(geom) = ST_AsEWKT(ST_Multi(geom)), "
            "ST_Area(geom) FROM parcels WHERE parcel_id = (SELECT min(parcel_id) FROM parcels)"
        )).one()
    assert "geom_4326" not in columns and "geom" in columns
    assert "USING gist (geom)" in indexes["ix_parcels_geom"]
    assert "ix_parcels_dataset_crop" not in indexes
    assert sum("USING gist (geom)" in d for d in partition.values()) == 1
    source = gpd.read_file(FLANDERS_PARCELS)
    source = source.set_index(source["REF_ID"].astype(str))
    assert row[0] == 31370 and row[1] is True
    assert row[2] == pytest.approx(source.loc[source.index.min()].geometry.area, rel=1e-12)


def test_migration_0003_keeps_loaded_parcels(fresh_db: str) -> None:
    from cbm_dask.store import migrate

    load_parcel_file(FLANDERS_PARCELS, "be")
    try:
        migrate.downgrade("0002")
        with get_engine().connect() as conn:
            moved = conn.execute(sa.text(
                "SELECT count(*) FROM parcels WHERE ST_SRID(geom_4326) = 4326")).scalar_one()
        assert moved == 100
    finally:
        migrate.upgrade()
    assert _count("be") == 100
    with get_engine().connect() as conn:
        near = conn.execute(sa.text(
            "SELECT count(*) FROM parcels WHERE geom && ST_Transform("
            "ST_MakeEnvelope(4.1, 50.8, 4.4, 51.4, 4326), 31370)")).scalar_one()
    assert near == 100


def test_batches_load_like_one_batch(fresh_db: str, tmp_path: Path) -> None:
    """Prepared 3 rows at a time (overlapping the COPY), the load and its report are the same."""
    import dask.config

    path = _bad_file(tmp_path)
    whole = load_parcel_file(path, "one", id_column="parcel_id", report_dir=tmp_path / "a")
    with dask.config.set({"cbm.parcels.copy-batch-rows": 3}):
        batched = load_parcel_file(path, "three", id_column="parcel_id",
                                   report_dir=tmp_path / "b")
    assert (batched.loaded, batched.repaired, batched.rejected) == (5, 1, 5)
    assert batched.report_path is not None and whole.report_path is not None
    pd.testing.assert_frame_equal(pd.read_csv(batched.report_path),
                                  pd.read_csv(whole.report_path))
    with get_engine().connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT d.name, p.parcel_id, p.area_m2, ST_AsBinary(p.geom), p.attributes "
            "FROM parcels p JOIN datasets d ON d.id = p.dataset_id ORDER BY p.parcel_id"
        )).all()
        reports = dict(conn.execute(sa.text("SELECT name, load_report FROM datasets")).all())
    assert [r[1:] for r in rows if r[0] == "one"] == [r[1:] for r in rows if r[0] == "three"]
    assert reports["three"] == reports["one"] == {"repaired": 1, "rejected": 5}


def test_an_invalid_parcel_with_a_duplicated_id_is_rejected_not_repaired(
    fresh_db: str, tmp_path: Path
) -> None:
    bowtie = shapely.Polygon([(0, 0), (100, 100), (100, 0), (0, 100), (0, 0)])
    frame = gpd.GeoDataFrame(
        {"parcel_id": ["a", "d", "d"]},
        geometry=[shapely.box(0, 0, 10, 10), bowtie, shapely.box(200, 0, 300, 100)],
        crs="EPSG:32631",
    )
    frame.to_parquet(tmp_path / "dupes.parquet")
    result = load_parcel_file(tmp_path / "dupes.parquet", "dupes", id_column="parcel_id",
                              report_dir=tmp_path)
    assert (result.loaded, result.repaired, result.rejected) == (1, 0, 2)
    assert result.report_path is not None
    report = pd.read_csv(result.report_path)
    assert report["reason"].tolist() == ["duplicate parcel id (2 rows)"] * 2


def test_a_file_whose_every_repair_leaves_no_polygon_changes_nothing(
    fresh_db: str, tmp_path: Path
) -> None:
    load_parcel_file(FLANDERS_PARCELS, "be")
    flat = shapely.Polygon([(0, 0), (1, 1), (2, 2), (0, 0)])  # make_valid: a line
    frame = gpd.GeoDataFrame({"parcel_id": ["f1", "f2"]}, geometry=[flat, flat],
                             crs="EPSG:32631")
    frame.to_parquet(tmp_path / "flat.parquet")
    with pytest.raises(InputError, match="none of its features is a usable parcel"):
        load_parcel_file(tmp_path / "flat.parquet", "be", replace=True, report_dir=tmp_path)
    assert _dataset_names() == ["be"] and _count("be") == 100
    report = pd.read_csv(next(tmp_path.glob("be-*.csv")))
    assert report["reason"].tolist() == ["not a polygon (after repair)"] * 2


def test_attribute_json_matches_a_json_encoder_on_awkward_values() -> None:
    from cbm_dask.zones.validate import _json_attributes

    frame = pd.DataFrame(
        {
            'na"me%s': ['plain', 'quo"te', 'back\\slash', 'new\nline', 'tab\t', None],
            "unicode": ["Silomaïs", "Ω", "", "日本", "a/b", "x"],
            "mixed": [1, "one", None, 2.5, True, "two"],
            "real": [1.5, float("nan"), 0.1, 1e-7, -3.0, 2.0],
            "count": pd.array([1, None, 3, 4, 5, 6], dtype="Int64"),
            "flag": [True, False, True, False, True, False],
            "day": pd.to_datetime(["2025-05-15", None, "2024-01-01", "2023-02-03",
                                   "2022-12-31", "2021-06-30"]),
        }
    )
    texts = _json_attributes(frame)
    expected = frame.to_json(orient="records", lines=True, date_format="iso",
                             force_ascii=False).rstrip("\n").split("\n")
    assert [json.loads(t) for t in texts] == [json.loads(e) for e in expected]
    assert json.loads(texts[1]) == {
        'na"me%s': 'quo"te', "unicode": "Ω", "mixed": "one", "real": None, "count": None,
        "flag": False, "day": None,
    }


def test_geoparquet_geometries_are_stored_as_read(fresh_db: str, tmp_path: Path) -> None:
    """The file's own WKB is stored for unchanged parcels; the rest is encoded again, 2D."""
    import dask.config

    square = shapely.box(0, 0, 100, 100)
    bowtie = shapely.Polygon([(0, 0), (100, 100), (100, 0), (0, 100), (0, 0)])
    geoms = {
        "poly": square,
        "multi": shapely.MultiPolygon(
            [shapely.box(200, 0, 300, 50), shapely.box(200, 60, 300, 90)]
        ),
        "bowtie": shapely.affinity.translate(bowtie, 400),
        "collection": shapely.GeometryCollection(
            [shapely.box(600, 0, 700, 100), shapely.LineString([(0, 0), (5, 5)])]
        ),
        "z": shapely.Polygon([(800, 0, 1), (900, 0, 2), (900, 100, 3), (800, 0, 1)]),
    }
    frame = gpd.GeoDataFrame({"parcel_id": list(geoms)}, geometry=list(geoms.values()),
                             crs="EPSG:32631")
    frame.to_parquet(tmp_path / "kinds.parquet")
    with dask.config.set({"cbm.parcels.copy-batch-rows": 2}):
        result = load_parcel_file(tmp_path / "kinds.parquet", "kinds", id_column="parcel_id",
                                  report_dir=tmp_path)
    assert (result.loaded, result.repaired, result.rejected) == (5, 1, 0)
    with get_engine().connect() as conn:
        stored = {
            pid: (shapely.from_wkb(bytes(wkb)), srid)
            for pid, wkb, srid in conn.execute(sa.text(
                "SELECT parcel_id, ST_AsBinary(geom), ST_SRID(geom) FROM parcels")).all()
        }
    expected = {
        "poly": shapely.MultiPolygon([square]),
        "multi": geoms["multi"],
        "bowtie": shapely.make_valid(geoms["bowtie"]),
        "collection": shapely.MultiPolygon([shapely.box(600, 0, 700, 100)]),
        "z": shapely.MultiPolygon([shapely.force_2d(geoms["z"])]),
    }
    assert {k: v[1] for k, v in stored.items()} == dict.fromkeys(expected, 32631)
    for pid, geom in expected.items():
        got = stored[pid][0]
        assert got.geom_type == "MultiPolygon" and not got.has_z, pid
        assert shapely.equals_exact(got, geom, tolerance=0) or got.equals(geom), pid
    assert shapely.equals_exact(stored["poly"][0], expected["poly"], tolerance=0)


def test_deferred_geoparquet_geometries_are_decided_like_decoded_ones(tmp_path: Path) -> None:
    """Rows left undecoded at read are exactly the plain, surely non-empty (Multi)Polygons.

    The whole-file checks and the report are the same as with every geometry decoded.
    """
    from cbm_dask.zones import detect_columns
    from cbm_dask.zones.read import read_parcels
    from cbm_dask.zones.validate import parcel_report, plan_parcels, prepare_batch

    wkt = shapely.from_wkt
    geoms = [
        shapely.box(0, 0, 10, 10), None, wkt("POLYGON EMPTY"), wkt("MULTIPOLYGON EMPTY"),
        wkt("MULTIPOLYGON (EMPTY, ((0 0, 1 0, 1 1, 0 0)))"), wkt("POINT (1 1)"),
        shapely.Polygon([(0, 0), (100, 100), (100, 0), (0, 100), (0, 0)]),
        shapely.box(5, 5, 20, 20), shapely.box(1, 1, 2, 2),
        wkt("MULTIPOLYGON (((0 0, 1 0, 1 1, 0 0)), ((5 5, 6 5, 6 6, 5 5)))"),
        shapely.Polygon([(0, 0, 1), (9, 0, 2), (9, 9, 3), (0, 0, 1)]), shapely.box(3, 3, 4, 4),
    ]
    ids = ["a", "b", "c", "d", "e", "f", "g", "g", None, "k", "z", "a"]
    path = tmp_path / "mixed.parquet"
    gpd.GeoDataFrame({"parcel_id": ids}, geometry=geoms, crs="EPSG:32631").to_parquet(path)
    lazy, eager = read_parcels(path, defer=True), read_parcels(path)
    assert eager.deferred is None
    assert lazy.deferred is not None and list(lazy.deferred) == [
        True, False, False, False, False, False, True, True, True, True, False, True,
    ]
    assert shapely.to_wkb(lazy.geometries()).tolist() == shapely.to_wkb(
        eager.geometries()).tolist()
    reports = []
    for source in (lazy, eager):
        plan = plan_parcels(source, detect_columns(source.frame, id_column="parcel_id"))
        flagged = [prepare_batch(plan, p, promote_stored=False).flagged for p in plan.batches(3)]
        reports.append(parcel_report(plan, flagged))
    pd.testing.assert_frame_equal(reports[0], reports[1])
    assert list(reports[0]["parcel_id"].fillna("-")) == [
        "a", "b", "c", "d", "f", "g", "g", "-", "a"]
    assert list(reports[0]["action"]) == ["rejected"] * 9
    # in a geographic CRS every geometry is decoded, as its coordinates are checked
    degrees = shapely.transform(geoms, lambda xy: xy / 2)
    gpd.GeoDataFrame({"parcel_id": ids}, geometry=degrees, crs="EPSG:4326").to_parquet(path)
    assert read_parcels(path, defer=True).deferred is None
