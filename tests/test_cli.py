"""The command line names its flags where the library names its parameters; command names."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from cbm_dask.catalogue import sync_catalogue
from cbm_dask.cli.main import cli
from cbm_dask.cli.options import CbmGroup, flag_spellings
from cbm_dask.errors import InputError
from cbm_dask.extract import connect_cluster

# nothing listens there: every check below fails before a connection is tried
NOWHERE = "http://127.0.0.1:9/stac"


def test_a_library_error_names_the_parameter_and_the_cli_the_flag() -> None:
    with pytest.raises(InputError) as raised:
        sync_catalogue(NOWHERE, "c", bbox="4,50,5", start="2023-01-01", end="2023-01-02")
    assert str(raised.value).startswith("bbox='4,50,5': expected four numbers")
    assert "--" not in str(raised.value) and raised.value.parameters == ("bbox",)
    result = CliRunner().invoke(cli, ["catalogue", "sync", "--stac-url", NOWHERE, "-c", "c",
                                      "--bbox", "4,50,5", "--start", "2023-01-01",
                                      "--end", "2023-01-02"])
    assert result.exit_code == 1
    assert "Error: --bbox '4,50,5': expected four numbers W,S,E,N" in result.output
    assert "bbox=" not in result.output


def test_several_parameters_and_dates_are_respelled() -> None:
    with pytest.raises(InputError, match=r"^give exactly one of dataset= \(a dataset name\) "
                                         r"or bbox= \(W,S,E,N\)$"):
        sync_catalogue(NOWHERE, "c", start="2023-01-01", end="2023-01-02")
    result = CliRunner().invoke(cli, ["catalogue", "sync", "--stac-url", NOWHERE, "-c", "c",
                                      "--start", "2023-01-01", "--end", "2023-01-02"])
    assert result.exit_code == 1
    assert "give exactly one of --dataset (a dataset name) or --bbox (W,S,E,N)" in result.output
    with pytest.raises(InputError, match="^start='30/04/2023': not a date"):
        sync_catalogue(NOWHERE, "c", bbox="4,50,5,51", start="30/04/2023", end="2023-05-01")
    result = CliRunner().invoke(cli, ["catalogue", "sync", "--stac-url", NOWHERE, "-c", "c",
                                      "--bbox", "4,50,5,51", "--start", "30/04/2023",
                                      "--end", "2023-05-01"])
    assert "Error: --start '30/04/2023': not a date; use YYYY-MM-DD" in result.output
    result = CliRunner().invoke(cli, ["catalogue", "sync", "--stac-url", NOWHERE, "-c", "c",
                                      "--bbox", "4,50,5,51", "--start", "2023-01-01",
                                      "--end", "2023-01-02", "--page-size", "0"])
    assert "--page-size 0: must be at least 1 (default cbm.catalogue.page-size)" in result.output


def test_an_unknown_cluster_names_the_parameter() -> None:
    with (pytest.raises(InputError, match="^cluster='yarn': use 'local', 'gateway' or") as raised,
          connect_cluster("yarn")):
        pass
    assert raised.value.parameters == ("cluster",)


def test_flag_spellings_follow_the_options_and_the_commands_table() -> None:
    catalogue = cli.get_command(None, "catalogue")  # type: ignore[arg-type]
    assert isinstance(catalogue, CbmGroup)
    sync = catalogue.get_command(None, "sync")  # type: ignore[arg-type]
    assert sync is not None
    spellings = flag_spellings(sync)
    assert spellings["stac_url="] == "--stac-url "  # by the option's name
    assert spellings["page_size="] == "--page-size "
    assert spellings["strict=True"] == "--strict"  # a boolean flag
    assert spellings["on_invalid='skip'"] == "run without --strict"  # the command's own table
    export = cli.get_command(None, "parcels").get_command(None, "export")  # type: ignore[arg-type, union-attr]
    assert flag_spellings(export)["to="] == "--to "  # by the flag, whose option is `target`


def test_catalogue_is_the_command_and_catalog_a_hidden_alias() -> None:
    shown = CliRunner().invoke(cli, ["--help"])
    assert shown.exit_code == 0
    listed = [line.split()[0] for line in shown.output.splitlines() if line.startswith("  ")]
    assert "catalogue" in listed and "catalog" not in listed
    old = CliRunner().invoke(cli, ["catalog", "sync", "--stac-url", NOWHERE, "-c", "c",
                                   "--bbox", "4,50,5", "--start", "2023-01-01",
                                   "--end", "2023-01-02"])
    assert old.exit_code == 1 and "--bbox '4,50,5'" in old.output
    usage = CliRunner().invoke(cli, ["catalog", "--help"])
    assert usage.exit_code == 0 and "sync  Search a STAC collection" in usage.output
