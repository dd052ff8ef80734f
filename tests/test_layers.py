"""No import runs back up the pipeline.

The packages of cbm_dask are stacked in layers (``docs/architecture.md``): a module
may import its own package and the layers below, never one above nor a sibling of
its own layer.  Function-level imports count as much as module-level ones, so the
check reads every module's syntax tree rather than what importing it happens to load.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import cbm_dask

PACKAGE = Path(cbm_dask.__file__).parent

# Bottom to top.  Names in one layer do not import each other.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"errors", "_version"}),
    frozenset({"config"}),
    frozenset({"_process", "objectstore"}),
    frozenset({"sentinel", "zones"}),
    frozenset({"store"}),
    frozenset({"services"}),
    frozenset({"catalogue", "archive"}),
    frozenset({"world"}),
    frozenset({"load"}),
    frozenset({"reduce"}),
    frozenset({"markers"}),
    frozenset({"extract"}),
    frozenset({"demo"}),
    frozenset({"cli"}),
    frozenset({"__main__"}),
)
LAYER_OF = {name: level for level, names in enumerate(LAYERS) for name in names}


def top_level_names() -> list[str]:
    """The packages and modules directly under cbm_dask (what the layers must list)."""
    names = [p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()]
    names += [p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"]
    return sorted(names)


def imported_parts(module: Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line, top-level cbm_dask name)`` for every cbm_dask import in ``module``."""
    tree = ast.parse(module.read_text(), filename=str(module))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "cbm_dask" and len(parts) > 1:
                    yield node.lineno, parts[1]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            parts = node.module.split(".")
            if parts[0] != "cbm_dask":
                continue
            if len(parts) > 1:
                yield node.lineno, parts[1]
            else:  # from cbm_dask import config, errors
                for alias in node.names:
                    yield node.lineno, alias.name


def owner(module: Path) -> str:
    relative = module.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def test_every_package_has_a_layer() -> None:
    missing = [name for name in top_level_names() if name not in LAYER_OF]
    assert not missing, f"add {missing} to LAYERS here and to docs/architecture.md"


def test_no_import_runs_up_or_sideways() -> None:
    wrong = []
    for module in sorted(PACKAGE.rglob("*.py")):
        if "migrations" in module.parts:  # alembic scripts, run by store.migrate
            continue
        here = owner(module)
        if here == "__init__":
            continue
        for line, name in imported_parts(module):
            if name == here or name not in LAYER_OF:
                continue
            if LAYER_OF[name] >= LAYER_OF[here]:
                wrong.append(f"{module.relative_to(PACKAGE.parent)}:{line} ({here}) imports {name}")
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


@pytest.mark.parametrize("name", [n for n in top_level_names() if n not in {"__main__"}])
def test_each_package_imports_alone(name: str) -> None:
    """Each package imports in a fresh interpreter, so no import depends on an earlier one."""
    done = subprocess.run(
        [sys.executable, "-c", f"import cbm_dask.{name}"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize("name", [n for n in top_level_names() if (PACKAGE / n).is_dir()])
def test_public_surface_resolves(name: str) -> None:
    """Every package lists its public names in ``__all__``, and each of them exists."""
    package = importlib.import_module(f"cbm_dask.{name}")
    public = getattr(package, "__all__", None)
    assert public, f"cbm_dask.{name} lists no public surface in __all__"
    missing = [n for n in public if not hasattr(package, n)]
    assert not missing, f"cbm_dask.{name}.__all__ names what it does not define: {missing}"
