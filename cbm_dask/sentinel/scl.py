"""Sentinel-2 L2A scene classification (SCL): the class table and the classes masked."""

from __future__ import annotations

from collections.abc import Mapping

from cbm_dask import config

__all__ = ["SCL_CLASSES", "SCL_CLASS_COUNT", "scl_invalid"]

SCL_CLASSES: Mapping[int, str] = {
    0: "no_data",
    1: "saturated_or_defective",
    2: "dark_area_pixels",
    3: "cloud_shadows",
    4: "vegetation",
    5: "not_vegetated",
    6: "water",
    7: "unclassified",
    8: "cloud_medium_probability",
    9: "cloud_high_probability",
    10: "thin_cirrus",
    11: "snow",
}
"""Sentinel-2 L2A scene classification (Sen2Cor) class code -> name."""

SCL_CLASS_COUNT = len(SCL_CLASSES)
"""Number of SCL classes: codes run from 0 to ``SCL_CLASS_COUNT - 1``."""


def scl_invalid() -> tuple[int, ...]:
    """Return the SCL classes masked by default, from ``cbm.load.scl-invalid``.

    The shipped default (``cbm_dask/cbm.yaml``) masks no data, defective pixels,
    cloud shadows, medium and high probability clouds, thin cirrus and snow.
    """
    return tuple(int(v) for v in config.get("load.scl-invalid"))
