"""Synthetic but realistic worlds: parcels, ground truth, Sentinel-2/-1 COGs and STAC.

``build_world(out, WorldParams(...))`` writes a world directory; ``read_world(dir)``
returns its summary.  The model is described in ``docs/world-model.md``.
"""

from cbm_dask.sentinel.collections import S1_BACKSCATTER, S1_COHERENCE, S2_L2A
from cbm_dask.world.build import ProgressCallback, build_world, read_world
from cbm_dask.world.params import WorldParams, WorldSummary

__all__ = [
    "S1_BACKSCATTER",
    "S1_COHERENCE",
    "S2_L2A",
    "ProgressCallback",
    "WorldParams",
    "WorldSummary",
    "build_world",
    "read_world",
]
