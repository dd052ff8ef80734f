"""Local services: the real SeaweedFS and STAC API on 127.0.0.1, ``cbm services``."""

from __future__ import annotations

import json
import os
import pickle
import re
import stat
import subprocess
import sys
from pathlib import Path

import boto3
import botocore
import botocore.exceptions
import dask.config
import pytest
import requests
from botocore.config import Config
from click.testing import CliRunner

from cbm_dask.cli.main import cli
from cbm_dask.errors import ConfigError, ServiceError
from cbm_dask.load.gdal_env import GdalEnv, capture_gdal_env, s3_gdal_options
from cbm_dask.services import registry
from cbm_dask.services._process import alive
from cbm_dask.services.s3 import S3Settings, SeaweedService, embedded_identity, ensure_bucket
from cbm_dask.services.stac import StacService, stac_url
from tests.conftest import REAL_DATA, free_port, s3_port_settings

COG = REAL_DATA / "s2_l2a_flanders_kempen_2022_2023" / "cogs" / "2023-04-05" / "B04.tif"


def listening(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket ``pid`` listens on, from ``ss``."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        if f"pid={pid}," not in line:
            continue
        local = line.split()[3]
        address, _, port = local.rpartition(":")
        found.append((address, int(port)))
    return found


# ---------------------------------------------------------------------------
# SeaweedFS


def test_seaweedfs_listens_on_loopback_only(s3_server: S3Settings) -> None:
    service = SeaweedService.from_config()
    pid = service.pid()
    assert pid is not None
    sockets = listening(pid)
    assert sockets, "weed listens on nothing?"
    assert {address for address, _ in sockets} == {"127.0.0.1"}
    # Every listener is one we configured (no stray default port such as 8333/9333).
    assert {port for _, port in sockets} <= set(service.all_ports().values())
    assert s3_server.endpoint == f"127.0.0.1:{service.port}"


def test_credentials_are_generated_once_and_private(s3_server: S3Settings) -> None:
    identity = SeaweedService.from_config().root / "identity.json"
    assert stat.S_IMODE(identity.stat().st_mode) == 0o600
    assert stat.S_IMODE(identity.parent.stat().st_mode) == 0o700
    again = embedded_identity(create=True)
    assert again["access_key"] == s3_server.access_key
    assert again["secret_key"] == s3_server.secret_key
    assert s3_server.secret_key not in repr(s3_server)


def test_signed_put_get_list(s3_server: S3Settings) -> None:
    client = boto3.client(
        "s3", endpoint_url=s3_server.endpoint_url, region_name=s3_server.region,
        aws_access_key_id=s3_server.access_key, aws_secret_access_key=s3_server.secret_key,
        config=Config(s3={"addressing_style": "path"}),
    )
    assert ensure_bucket(s3_server, "cbm-test-roundtrip") is True
    assert ensure_bucket(s3_server, "cbm-test-roundtrip") is False
    client.put_object(Bucket="cbm-test-roundtrip", Key="a/b/hello.txt", Body=b"hello archive")
    body = client.get_object(Bucket="cbm-test-roundtrip", Key="a/b/hello.txt")["Body"].read()
    assert body == b"hello archive"
    listed = client.list_objects_v2(Bucket="cbm-test-roundtrip", Prefix="a/")
    assert [o["Key"] for o in listed["Contents"]] == ["a/b/hello.txt"]

    forged = boto3.client(
        "s3", endpoint_url=s3_server.endpoint_url, region_name=s3_server.region,
        aws_access_key_id=s3_server.access_key, aws_secret_access_key="not-the-secret",
    )
    with pytest.raises(botocore.exceptions.ClientError, match="SignatureDoesNotMatch"):
        forged.get_object(Bucket="cbm-test-roundtrip", Key="a/b/hello.txt")
    anonymous = boto3.client("s3", endpoint_url=s3_server.endpoint_url,
                             region_name=s3_server.region,
                             config=Config(signature_version=botocore.UNSIGNED))
    with pytest.raises(botocore.exceptions.ClientError, match="AccessDenied"):
        anonymous.get_object(Bucket="cbm-test-roundtrip", Key="a/b/hello.txt")


def test_up_is_idempotent_and_a_taken_port_is_named(
    s3_server: S3Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = SeaweedService.from_config().pid()
    assert registry.get_service("s3").up().pid == before

    monkeypatch.setenv("CBM_HOME", str(tmp_path))  # another home: its store is not running
    taken = int(s3_server.endpoint.split(":")[1])
    with dask.config.set({**s3_port_settings(), "cbm.s3.port": taken}), \
            pytest.raises(ServiceError, match=rf"port {taken} .*taken.*cbm\.s3\.port"):
        SeaweedService.from_config().up()


def test_external_endpoint_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CBM_S3_ENDPOINT", "https://eodata.dataspace.copernicus.eu")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI")
    monkeypatch.setenv("CBM_S3_BUCKET", "eodata")
    settings = S3Settings.from_config()
    assert (settings.endpoint, settings.https, settings.path_style, settings.embedded) == (
        "eodata.dataspace.copernicus.eu", True, True, False)
    assert settings.bucket == "eodata" and settings.access_key == "AKIDEXAMPLE"
    assert "wJalrXUtnFEMI" not in repr(settings)
    assert SeaweedService.from_config().status().state == "external"
    assert s3_gdal_options(settings) == {
        "AWS_S3_ENDPOINT": "eodata.dataspace.copernicus.eu", "AWS_HTTPS": "YES",
        "AWS_VIRTUAL_HOSTING": "FALSE", "AWS_REGION": "us-east-1"}

    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(ConfigError, match="AWS_SECRET_ACCESS_KEY"):
        S3Settings.from_config()
    monkeypatch.setenv("CBM_S3_ENDPOINT", "ftp://somewhere")
    with pytest.raises(ConfigError, match="ftp://somewhere"):
        S3Settings.from_config()


def test_unreachable_store_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("CBM_S3_ENDPOINT", dead)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "a")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "b")
    with pytest.raises(ServiceError, match=re.escape(dead) + ".*cannot be reached"):
        ensure_bucket(S3Settings.from_config())


# ---------------------------------------------------------------------------
# GDAL environment


def test_gdal_env_is_picklable_complete_and_discreet(s3_server: S3Settings) -> None:
    env = capture_gdal_env()
    assert pickle.loads(pickle.dumps(env)) == env
    options = env.options()
    assert options["AWS_S3_ENDPOINT"] == s3_server.endpoint  # host:port, no scheme (GDAL)
    assert options["AWS_HTTPS"] == "NO" and options["AWS_VIRTUAL_HOSTING"] == "FALSE"
    assert options["AWS_ACCESS_KEY_ID"] == s3_server.access_key
    assert options["GDAL_DISABLE_READDIR_ON_OPEN"] == "EMPTY_DIR"
    assert "GDAL_HTTP_MAX_RETRY" in options and "CPL_VSIL_CURL_ALLOWED_EXTENSIONS" in options
    assert "AWS_SECRET_ACCESS_KEY" not in env.gdal_options()
    assert s3_server.secret_key not in repr(env)
    wrapped = env.wrap(len)
    assert pickle.loads(pickle.dumps(wrapped))("abc") == 3
    assert GdalEnv.from_options(options) == env


def test_gdal_env_captures_process_overrides(
    s3_server: S3Settings, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "9")
    monkeypatch.setenv("GDAL_DATA", "/this/machine/only")
    env = capture_gdal_env(extra={"VSI_CACHE_SIZE": 1000})
    assert env.options()["GDAL_HTTP_MAX_RETRY"] == "9"
    assert env.options()["VSI_CACHE_SIZE"] == "1000"
    assert "GDAL_DATA" not in env.options()
    plain = capture_gdal_env(with_s3=False)
    assert not plain.uses_s3 and plain.aws_session_kwargs() is None


def test_reading_s3_needs_the_applied_env(s3_server: S3Settings) -> None:
    import rasterio

    client = boto3.client(
        "s3", endpoint_url=s3_server.endpoint_url, region_name=s3_server.region,
        aws_access_key_id=s3_server.access_key, aws_secret_access_key=s3_server.secret_key,
    )
    ensure_bucket(s3_server)
    client.upload_file(str(COG), s3_server.bucket, "test-services/B04.tif")
    href = f"s3://{s3_server.bucket}/test-services/B04.tif"
    with rasterio.open(COG) as src:
        expected = src.read(1)
    with capture_gdal_env().apply(), rasterio.open(href) as src:
        assert (src.read(1) == expected).all()
    with pytest.raises(rasterio.errors.RasterioIOError):
        rasterio.open(href).close()


# ---------------------------------------------------------------------------
# STAC API


def test_stac_api_listens_on_loopback_with_transactions(stac_api: str) -> None:
    service = StacService.from_config()
    pid = service.pid()
    assert pid is not None and stac_api == service.address == stac_url()
    sockets = listening(pid)
    assert sockets == [("127.0.0.1", service.port)]
    assert requests.get(f"{stac_api}/_mgmt/ping", timeout=5).json()
    landing = requests.get(stac_api, timeout=5).json()
    assert landing["id"] == "cbm-archive"
    conforms = requests.get(f"{stac_api}/conformance", timeout=5).json()["conformsTo"]
    assert "https://api.stacspec.org/v1.0.0/ogcapi-features/extensions/transaction" in conforms
    assert StacService.from_config().up().pid == pid


# ---------------------------------------------------------------------------
# registry and command line


def test_registry_order_and_requirements() -> None:
    assert registry.names()[:3] == ["database", "s3", "stac"]
    assert registry.resolve(["stac"], with_requirements=True) == ["database", "stac"]
    assert registry.resolve(["stac", "s3"]) == ["s3", "stac"]
    with pytest.raises(ConfigError, match="unknown service 'api'.*database, s3, stac"):
        registry.resolve(["api"])


def test_cli_status_of_the_session_services(stac_api: str) -> None:
    result = CliRunner().invoke(cli, ["services", "status", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["service"]: row for row in json.loads(result.output)}
    assert [rows[n]["state"] for n in ("database", "s3", "stac")] == ["running"] * 3
    assert rows["stac"]["address"] == stac_api
    assert all("127.0.0.1" in rows[n]["address"] for n in rows)
    table = CliRunner().invoke(cli, ["services", "status"])
    assert table.exit_code == 0
    assert re.search(r"service\W+state\W+pid\W+address", table.output)


def test_subprocesses_see_the_session_ports(stac_api: str, s3_server: S3Settings) -> None:
    code = ("from cbm_dask.services.s3 import SeaweedService; "
            "from cbm_dask.services.stac import stac_url; "
            "print(SeaweedService.from_config().all_ports()['s3'], stac_url())")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=dict(os.environ), timeout=60, check=True)
    assert result.stdout.split() == [s3_server.endpoint.split(":")[1], stac_api]


def test_cli_up_status_down_in_a_fresh_home(
    postgis: str, s3_server: S3Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A second home using the session database as external: s3 + stac up, status, down."""
    monkeypatch.setenv("CBM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CBM_DATABASE_URL", postgis)
    settings = {**s3_port_settings(), "cbm.stac.port": free_port(),
                "cbm.stac.database": "cbm_stac_cli_test"}
    runner = CliRunner()
    with dask.config.set(settings):
        up = runner.invoke(cli, ["services", "up", "--json"])
        assert up.exit_code == 0, up.output
        try:
            states = {row["service"]: row for row in json.loads(up.output)}
            assert states["database"]["state"] == "external"
            assert states["s3"]["state"] == "running" and states["stac"]["state"] == "running"
            assert "***" in states["database"]["address"]
            status = runner.invoke(cli, ["services", "status"])
            assert status.exit_code == 0, status.output
            for word in ("service", "state", "pid", "address", "external", "running"):
                assert word in status.output
            pids = [states["s3"]["pid"], states["stac"]["pid"]]
        finally:
            down = runner.invoke(cli, ["services", "down"])
        assert down.exit_code == 0, down.output
        assert "s3: stopped" in down.output and "stac: stopped" in down.output
        assert "database: was not running" in down.output
        assert not any(alive(pid) for pid in pids)  # gone (or a zombie awaiting init)
        after = runner.invoke(cli, ["services", "status", "s3", "stac"])
        assert after.exit_code == 3
        assert after.output.count("stopped") == 2
