"""Run benchmarks: ``python -m benchmarks`` (all) or ``python -m benchmarks NAME [options]``."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = ["parcels_load", "signature_storage", "extraction", "zonal_peers"]

if __name__ == "__main__":
    if len(sys.argv) > 1:
        importlib.import_module(f"benchmarks.{sys.argv[1]}").main(sys.argv[2:])
    else:
        for name in BENCHMARKS:
            importlib.import_module(f"benchmarks.{name}").main([])
