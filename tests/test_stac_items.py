"""Every STAC item and collection the project writes is valid, checked offline.

The core STAC 1.1.0 JSON schemas come with pystac and are resolved from its
local copies (a schema reference that is not local fails instead of being
fetched).  No package on PyPI or npm ships the extension schemas (eo, raster,
projection, sar, sat, grid, mgrs, view), so every extension field is read back
and written again through pystac's extension classes, whose setters check the
values, and every declared extension must carry a field (and the reverse).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path
from typing import Any

import jsonschema
import pystac
import pytest
from pystac.extensions.eo import EOExtension
from pystac.extensions.grid import GridExtension
from pystac.extensions.mgrs import MgrsExtension
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import RasterExtension
from pystac.extensions.sar import SarExtension
from pystac.extensions.sat import SatExtension
from pystac.extensions.view import ViewExtension
from pystac.validation.local_validator import get_local_schema_cache
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource

from cbm_dask.archive import plan_directory
from cbm_dask.sentinel.stac import STAC_VERSION
from cbm_dask.world import S1_BACKSCATTER, S1_COHERENCE, S2_L2A, WorldParams, build_world
from tests._helpers import REAL_DATA

_CORE = f"https://schemas.stacspec.org/v{STAC_VERSION}"
_PREFIXES = {"eo": "/eo/", "raster": "/raster/", "proj": "/projection/", "sar": "/sar/",
             "sat": "/sat/", "grid": "/grid/", "mgrs": "/mgrs/", "view": "/view/",
             "s2": "/sentinel-2/", "processing": "/processing/"}
SMALL_WORLD = WorldParams(size=128, parcels=20, start=dt.date(2024, 6, 10),
                          end=dt.date(2024, 6, 30), seed=5, workers=1)


def _offline(uri: str) -> Resource[Any]:
    raise NoSuchResource(ref=uri)


_SCHEMAS = get_local_schema_cache()
_REGISTRY: Registry[Any] = Registry(retrieve=_offline).with_resources(  # type: ignore[call-arg]
    [(uri, Resource.from_contents(schema)) for uri, schema in _SCHEMAS.items()])


def _core_errors(doc: dict[str, Any]) -> list[str]:
    kind = "item" if doc.get("type") == "Feature" else "collection"
    schema = _SCHEMAS[f"{_CORE}/{kind}-spec/json-schema/{kind}.json"]
    validator = jsonschema.Draft7Validator(schema, registry=_REGISTRY,
                                           format_checker=jsonschema.FormatChecker())
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]


def _declared(doc: dict[str, Any]) -> set[str]:
    return {prefix for prefix, part in _PREFIXES.items()
            if any(part in uri for uri in doc.get("stac_extensions", []))}


def _used(doc: dict[str, Any]) -> set[str]:
    fields = set(doc.get("properties", {}))
    for asset in doc.get("assets", {}).values():
        fields |= set(asset)
    return {name.split(":")[0] for name in fields if ":" in name} & set(_PREFIXES)


def _round_trip(doc: dict[str, Any]) -> dict[str, Any]:
    """Read every extension field with pystac's classes and write it again through them."""
    item = pystac.Item.from_dict(copy.deepcopy(doc), migrate=False)
    if "mgrs" in _declared(doc):
        mgrs = MgrsExtension.ext(item)
        mgrs.apply(latitude_band=mgrs.latitude_band, grid_square=mgrs.grid_square,
                   utm_zone=mgrs.utm_zone)
        grid = GridExtension.ext(item)
        grid.code = grid.code
        eo = EOExtension.ext(item)
        eo.cloud_cover = eo.cloud_cover
    if "view" in _declared(doc):
        view = ViewExtension.ext(item)
        view.sun_azimuth, view.sun_elevation = view.sun_azimuth, view.sun_elevation
    if "sar" in _declared(doc):
        sar = SarExtension.ext(item)
        sar.apply(instrument_mode=sar.instrument_mode, frequency_band=sar.frequency_band,
                  polarizations=sar.polarizations, product_type=sar.product_type,
                  center_frequency=sar.center_frequency,
                  observation_direction=sar.observation_direction)
        if any(k.startswith("sat:") for k in doc["properties"]):
            sat = SatExtension.ext(item)
            sat.apply(orbit_state=sat.orbit_state, relative_orbit=sat.relative_orbit,
                      absolute_orbit=sat.absolute_orbit,
                      platform_international_designator=sat.platform_international_designator)
    projection = ProjectionExtension.ext(item)
    projection.centroid = projection.centroid
    for asset in item.assets.values():
        proj = ProjectionExtension.ext(asset)
        proj.shape, proj.transform = proj.shape, proj.transform
        raster = RasterExtension.ext(asset)
        raster.bands = raster.bands
        if "eo:bands" in asset.extra_fields:
            bands = EOExtension.ext(asset).bands
            EOExtension.ext(asset).bands = bands
    written: dict[str, Any] = json.loads(json.dumps(
        item.to_dict(include_self_link=False, transform_hrefs=False)))
    return written


def assert_valid(doc: dict[str, Any]) -> None:
    """Fail with the reasons when ``doc`` is not a valid STAC item or collection."""
    errors = _core_errors(doc)
    assert not errors, f"{doc.get('id')}: {errors[:5]}"
    assert doc["stac_version"] == STAC_VERSION
    if doc["type"] != "Feature":
        return
    assert _used(doc) == _declared(doc), f"{doc['id']}: fields vs stac_extensions"
    written = _round_trip(doc)
    for key in ("properties", "assets"):
        ours = {k: v for k, v in doc[key].items() if k != "datetime"}
        theirs = {k: v for k, v in written[key].items() if k != "datetime"}
        assert theirs == ours, f"{doc['id']}: {key} change when pystac writes them"


@pytest.fixture(scope="module")
def small_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("world") / "w"
    build_world(root, SMALL_WORLD)
    return root


def test_written_stac_version_is_the_one_pystac_ships_schemas_of() -> None:
    assert pystac.get_stac_version() == STAC_VERSION
    assert f"{_CORE}/item-spec/json-schema/item.json" in _SCHEMAS


def test_world_items_and_collections_are_valid(small_world: Path) -> None:
    stac_dir = small_world / "stac"
    for cid in (S2_L2A, S1_BACKSCATTER, S1_COHERENCE):
        assert_valid(json.loads((stac_dir / "collections" / f"{cid}.json").read_text()))
        paths = sorted((stac_dir / "items" / cid).glob("*.json"))
        assert paths, cid
        for path in paths:
            assert_valid(json.loads(path.read_text()))


@pytest.mark.realdata
def test_archive_items_and_collections_of_the_real_cogs_are_valid() -> None:
    plan = plan_directory(REAL_DATA, bucket="b")
    assert len(plan.items) == 62
    for planned in plan.items:
        assert_valid(planned.item)
    for collection in plan.collections.values():
        assert_valid(collection)


def test_broken_items_and_collections_are_rejected(small_world: Path) -> None:
    path = next((small_world / "stac" / "items" / S2_L2A).glob("*.json"))
    good = json.loads(path.read_text())
    assert_valid(good)

    no_geometry = {k: v for k, v in good.items() if k != "geometry"}
    bad_time = copy.deepcopy(good)
    bad_time["properties"]["datetime"] = "the fifth of June"
    no_href = copy.deepcopy(good)
    del no_href["assets"]["red"]["href"]
    no_link = copy.deepcopy(good)
    no_link["links"] = [link for link in good["links"] if link["rel"] != "collection"]
    for broken in (no_geometry, bad_time, no_href, no_link):
        with pytest.raises(AssertionError):
            assert_valid(broken)

    bad_band = copy.deepcopy(good)
    bad_band["properties"]["mgrs:latitude_band"] = "I"  # MGRS never uses I
    with pytest.raises(ValueError, match="latitude band"):
        assert_valid(bad_band)
    undeclared = copy.deepcopy(good)
    undeclared["stac_extensions"] = [u for u in good["stac_extensions"] if "/view/" not in u]
    with pytest.raises(AssertionError, match="stac_extensions"):
        assert_valid(undeclared)

    collection = json.loads((small_world / "stac" / "collections" / f"{S2_L2A}.json")
                            .read_text())
    assert_valid(collection)
    with pytest.raises(AssertionError):
        assert_valid({k: v for k, v in collection.items() if k != "extent"})
