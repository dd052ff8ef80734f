"""Local services: the real SeaweedFS and STAC API on 127.0.0.1, ``cbm services``."""

from __future__ import annotations

import json
import os
import pickle
import random
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import botocore
import botocore.exceptions
import dask.config
import psutil
import pytest
import requests
from botocore.config import Config
from click.testing import CliRunner

import cbm_dask
from cbm_dask._process import (
    alive,
    ensure_port_free,
    ephemeral_port_range,
    port_in_use,
    setting_env_name,
)
from cbm_dask.cli.main import cli
from cbm_dask.errors import ConfigError, ServiceError
from cbm_dask.load.gdal_env import GdalEnv, capture_gdal_env, s3_gdal_options
from cbm_dask.objectstore import S3Settings
from cbm_dask.services import registry
from cbm_dask.services.s3 import SeaweedService, embedded_identity, ensure_bucket
from cbm_dask.services.stac import StacService, stac_url
from tests._helpers import REAL_DATA, free_port, occupy, release, s3_port_settings

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


# ---------------------------------------------------------------------------
# ports: what holds them, and `cbm services up` / `down` every time

CBM = Path(sys.executable).with_name("cbm")


def low_free_port(taken: set[int], offset: int = 0) -> int:
    """A port below the kernel's ephemeral range, bindable now (and ``port + offset`` too).

    Ports inside the range can be handed to outgoing connections at any moment,
    which is the failure the tests below are about.
    """
    low = ephemeral_port_range()[0]
    for _ in range(500):
        port = random.randrange(10000, low - offset)
        candidates = {port, port + offset}
        if candidates & taken:
            continue
        try:
            for candidate in candidates:
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        taken.update(candidates)
        return port
    raise RuntimeError("no free port below the ephemeral range")


def low_port_env() -> dict[str, str]:
    """DASK_CBM__… variables giving every embedded server its own port below the range."""
    taken: set[int] = set()
    env = {"DASK_CBM__DATABASE__PORT": str(low_free_port(taken)),
           "DASK_CBM__S3__PORT": str(low_free_port(taken)),
           "DASK_CBM__STAC__PORT": str(low_free_port(taken)),
           "DASK_CBM__S3__PORTS__ADMIN": str(low_free_port(taken, offset=10000))}
    for name in ("master", "master-grpc", "volume", "volume-grpc", "filer", "filer-grpc",
                 "s3-grpc"):
        env[setting_env_name(f"cbm.s3.ports.{name}")] = str(low_free_port(taken))
    return env


def clean_env(home: Path, extra: dict[str, str]) -> dict[str, str]:
    """This process's environment without any cbm setting of the test session, plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DASK_CBM__", "CBM_", "AWS_"))}
    return {**env, "CBM_HOME": str(home), **extra}


@pytest.fixture
def homes() -> Iterator[Path]:
    """A short directory for fresh CBM_HOMEs, not under pytest's tmp dirs (whose
    permissions another starting test session resets, locking out the database's
    OS user)."""
    root = Path(tempfile.mkdtemp(prefix="cbm-homes-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def processes_of(home: Path) -> list[str]:
    """Processes whose command line names ``home`` or whose working directory lies in it."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "cwd"]):
        cmdline = " ".join(proc.info["cmdline"] or ())
        cwd = proc.info["cwd"] or ""
        if str(home) in cmdline or cwd == str(home) or cwd.startswith(f"{home}/"):
            found.append(f"{proc.info['pid']} {cmdline} (cwd {cwd})")
    return found


def test_default_ports_are_below_the_ephemeral_range() -> None:
    import yaml

    low, _ = ephemeral_port_range()
    defaults = yaml.safe_load((Path(cbm_dask.__file__).parent / "cbm.yaml").read_text())["cbm"]
    ports = {"cbm.stac.port": defaults["stac"]["port"], "cbm.s3.port": defaults["s3"]["port"],
             **{f"cbm.s3.ports.{k}": v for k, v in defaults["s3"]["ports"].items()}}
    ports["cbm.s3.ports.admin + 10000"] = defaults["s3"]["ports"]["admin"] + 10000
    assert {name: port for name, port in ports.items() if port >= low} == {}
    assert len(set(ports.values())) == len(ports)


def test_a_time_wait_source_port_blocks_bind_and_is_explained() -> None:
    """The cause of the "address already in use" of a port nobody listens on."""
    port = low_free_port(set())
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        peer = server.getsockname()[1]
        client = socket.socket()  # like any outgoing connection: no SO_REUSEADDR
        client.bind(("127.0.0.1", port))
        client.connect(server.getsockname())
        accepted, _ = server.accept()
        client.close()  # the side closing first keeps the port in TIME_WAIT
        accepted.close()
    assert not port_in_use(port)  # nothing listens: a connect probe sees a free port ...
    with pytest.raises(ServiceError) as caught:  # ... but a server cannot bind it
        ensure_port_free(port, what="STAC API", setting="cbm.stac.port")
    message = str(caught.value)
    assert f"port {port} on 127.0.0.1 (STAC API)" in message
    assert "TIME_WAIT, no process" in message and f"127.0.0.1:{peer}" in message
    assert "source port; it is released within 60 s" in message
    assert "cbm.stac.port (env DASK_CBM__STAC__PORT)" in message


@pytest.mark.services
def test_a_taken_port_names_its_owner_and_the_setting(homes: Path) -> None:
    env = clean_env(homes / "home", low_port_env())
    stac_port = int(env["DASK_CBM__STAC__PORT"])
    filer_port = int(env["DASK_CBM__S3__PORTS__FILER"])
    holders = [occupy(stac_port), occupy(filer_port)]
    try:
        stac = subprocess.run([str(CBM), "services", "up", "stac"], env=env,
                              capture_output=True, text=True, timeout=300)
        s3 = subprocess.run([str(CBM), "services", "up", "s3"], env=env,
                            capture_output=True, text=True, timeout=300)
    finally:
        for holder in holders:
            release(holder)
        subprocess.run([str(CBM), "services", "down"], env=env, capture_output=True,
                       timeout=300, check=False)
    assert stac.returncode != 0 and s3.returncode != 0
    assert (f"port {stac_port} on 127.0.0.1 (STAC API) is taken: pid {holders[0].pid} "
            f"({sys.executable} -c") in stac.stderr
    assert "cbm.stac.port (env DASK_CBM__STAC__PORT)" in stac.stderr
    assert (f"port {filer_port} on 127.0.0.1 (filer of the embedded S3 store) is taken: "
            f"pid {holders[1].pid} (") in s3.stderr
    assert "cbm.s3.ports.filer (env DASK_CBM__S3__PORTS__FILER)" in s3.stderr
    assert processes_of(homes / "home") == []


@pytest.mark.slow
@pytest.mark.services
@pytest.mark.timeout(1800)
def test_twenty_up_down_cycles_in_fresh_homes(homes: Path) -> None:
    """`cbm services up` then `down`, 20 times, each in a new CBM_HOME, on the same ports."""
    ports = low_port_env()
    timings = []
    for cycle in range(20):
        home = homes / f"home{cycle:02d}"
        env = clean_env(home, ports)
        started = time.monotonic()
        up = subprocess.run([str(CBM), "services", "up", "--json"], env=env,
                            capture_output=True, text=True, timeout=600)
        up_s = time.monotonic() - started
        try:
            assert up.returncode == 0, f"cycle {cycle}: {up.stderr}"
            rows = {row["service"]: row for row in json.loads(up.stdout)}
            assert {name: row["state"] for name, row in rows.items()} == {
                "database": "running", "s3": "running", "stac": "running"}
            stac = f"http://127.0.0.1:{ports['DASK_CBM__STAC__PORT']}"
            assert rows["stac"]["address"] == stac
            assert requests.get(f"{stac}/_mgmt/ping", timeout=10).json()
            assert processes_of(home)
        finally:
            started = time.monotonic()
            down = subprocess.run([str(CBM), "services", "down"], env=env,
                                  capture_output=True, text=True, timeout=600)
            down_s = time.monotonic() - started
        assert down.returncode == 0, f"cycle {cycle}: {down.stderr}"
        assert down.stdout.split("\n")[:3] == ["stac: stopped", "s3: stopped",
                                               "database: stopped"]
        assert processes_of(home) == [], f"cycle {cycle}"
        timings.append((up_s, down_s))
    ups, downs = zip(*timings, strict=True)
    print(f"\n20 cycles: up {sum(ups) / 20:.1f} s (max {max(ups):.1f}), "
          f"down {sum(downs) / 20:.1f} s (max {max(downs):.1f}) on average")
