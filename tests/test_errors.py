"""The exception hierarchy: one module, parameters named for any front end, real config keys."""

from __future__ import annotations

import ast
import pickle
import re
from pathlib import Path

import yaml

import cbm_dask
from cbm_dask import errors
from cbm_dask.errors import CbmError, ColumnDetectionError, InputError, ItemError

PACKAGE = Path(cbm_dask.__file__).parent
SOURCES = sorted(PACKAGE.rglob("*.py"))
# a configuration key as messages name it: cbm.section.key (not cbm_dask.module, cbm.yaml)
CONFIG_KEY = re.compile(r"(?<![\w.-])cbm\.(?!yaml\b)([a-z][a-z0-9-]*(?:\.[a-z0-9-]+)*)")
DEFAULTS = yaml.safe_load((PACKAGE / "cbm.yaml").read_text())["cbm"]


def _exists(key: str) -> bool:
    node = DEFAULTS
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _error_classes(tree: ast.AST) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            bases = [ast.unparse(b) for b in node.bases]
            if any(b.endswith(("Error", "Exception")) for b in bases):
                names.append(node.name)
    return names


def test_every_exception_class_lives_in_errors() -> None:
    elsewhere = {
        str(path.relative_to(PACKAGE)): _error_classes(ast.parse(path.read_text()))
        for path in SOURCES if path.name != "errors.py"
    }
    assert {k: v for k, v in elsewhere.items() if v} == {}
    assert set(_error_classes(ast.parse(Path(errors.__file__).read_text()))) == set(
        errors.__all__)


def test_input_errors_are_value_errors_and_keep_their_parameters_through_pickle() -> None:
    error = ColumnDetectionError("id_column='x': no such column", parameter="id_column")
    assert isinstance(error, ValueError) and isinstance(error, InputError)
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is ColumnDetectionError
    assert (str(again), again.parameters) == (str(error), ("id_column",))
    assert issubclass(ItemError, ValueError)


def test_respelled_replaces_only_the_named_parameters_where_they_begin_a_word() -> None:
    error = CbmError(
        "give exactly one of dataset= (a name) or bbox= (W,S,E,N); start='x'; pass "
        "replace=True to replace it; subdataset= and cbm.catalogue.start= stay",
        parameter=("dataset", "bbox", "replace"),
    )
    spellings = {"dataset=": "--dataset ", "bbox=": "--bbox ", "start=": "--start ",
                 "replace=": "--replace ", "replace=True": "--replace"}
    assert error.respelled(spellings) == (
        "give exactly one of --dataset (a name) or --bbox (W,S,E,N); start='x'; pass "
        "--replace to replace it; subdataset= and cbm.catalogue.start= stay"
    )
    assert CbmError("start='x'").respelled(spellings) == "start='x'"  # names no parameter


def _message_strings(tree: ast.AST) -> list[str]:
    """The text of every ``...Error(...)`` constructed (f-strings by their literal parts)."""
    texts = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            if name.endswith("Error") and node.args:
                first = node.args[0]
                parts = first.values if isinstance(first, ast.JoinedStr) else [first]
                texts.append("".join(
                    p.value if isinstance(p, ast.Constant) and isinstance(p.value, str)
                    else "{}" for p in parts))
    return texts


def test_config_keys_named_in_messages_exist() -> None:
    named = {(str(path.relative_to(PACKAGE)), key)
             for path in SOURCES for text in _message_strings(ast.parse(path.read_text()))
             for key in CONFIG_KEY.findall(text)}
    # the scan finds them, and would have caught the key once named for the STAC API URL
    assert ("catalogue/sync.py", "stac.url") in named
    assert _exists("stac.url") and not _exists("catalogue.stac-url")
    assert sorted((where, key) for where, key in named if not _exists(key)) == []


def test_messages_name_config_keys_with_their_namespace() -> None:
    """``catalogue.page-size`` alone reads as a file or attribute; messages say ``cbm.``."""
    bare = re.compile(r"(?<![\w.-])((?:" + "|".join(map(re.escape, DEFAULTS)) +
                      r")\.[a-z][a-z0-9-]*)")
    unqualified = sorted(
        (str(path.relative_to(PACKAGE)), key)
        for path in SOURCES for text in _message_strings(ast.parse(path.read_text()))
        for key in bare.findall(text) if _exists(key)
    )
    assert unqualified == []
