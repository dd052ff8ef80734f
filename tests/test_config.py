"""Configuration: shipped defaults, dask.config overrides and CBM_* env, read at call time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dask.config
import pytest

from cbm_dask import config
from cbm_dask.errors import ConfigError
from cbm_dask.store.embedded import EmbeddedCluster


def test_shipped_defaults_are_registered() -> None:
    assert config.get("database.name") == "cbm"
    assert "gewascode" in config.get("parcels.crop-code-columns")
    assert config.get("parcels.area-crs") == "EPSG:3035"


def test_values_are_read_at_call_time() -> None:
    with dask.config.set({"cbm.database.port": 6543}):
        assert EmbeddedCluster.from_config().port == 6543
    assert EmbeddedCluster.from_config().port != 6543


def test_env_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CBM_HOME", str(tmp_path / "h"))
    assert config.home() == tmp_path / "h"
    monkeypatch.delenv("CBM_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    with dask.config.set({"cbm.home": None}):
        assert config.home() == tmp_path / "xdg" / "cbm"
    monkeypatch.setenv("CBM_DATABASE_URL", "postgresql://u:p@db.example:5432/cbm")
    assert config.database_url_override() == "postgresql://u:p@db.example:5432/cbm"


def test_dask_env_variables_reach_the_namespace(tmp_path: Path) -> None:
    code = "from cbm_dask import config; print(config.get('database.port'))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True,
        env={"DASK_CBM__DATABASE__PORT": "7777", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert result.stdout.strip() == "7777", result.stderr


def test_missing_key_says_where_to_set_it() -> None:
    with pytest.raises(ConfigError, match="DASK_CBM__NO__SUCH_KEY"):
        config.get("no.such-key")
    assert config.get("no.such-key", 5) == 5


def test_importing_reads_no_configuration() -> None:
    code = (
        "import dask.config, cbm_dask, cbm_dask.cli.main, cbm_dask.store.parcels;"
        "print('cbm' in dask.config.config)"
    )
    # Without DASK_CBM__* variables, which dask itself reads at import.
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_CBM__")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env)
    assert result.stdout.strip() == "False", result.stderr


def test_defaults_survive_a_set_that_created_the_namespace() -> None:
    """dask.config.set() deletes a namespace it created on exit, defaults included."""
    import dask.config

    from cbm_dask import config

    saved = dask.config.config.pop("cbm", None)
    try:
        with dask.config.set({"cbm.database.port": 1234}):
            assert config.get("database.port") == 1234
            assert config.get("database.name") == "cbm"
        assert "cbm" not in dask.config.config or config.get("database.port") != 1234
        assert config.get("database.name") == "cbm"
        assert config.get("database.port") == config.defaults()["cbm"]["database"]["port"]
    finally:
        if saved is not None:
            dask.config.config["cbm"] = saved
