"""Collection ids of the Sentinel imagery this project archives and synthesises."""

from __future__ import annotations

__all__ = ["S1_BACKSCATTER", "S1_COHERENCE", "S2_L2A"]

S2_L2A = "sentinel-2-l2a"
"""Sentinel-2 Level-2A surface reflectance (the Earth Search and archive id)."""

S1_BACKSCATTER = "sentinel-1-backscatter"
"""Sentinel-1 GRD backscatter on a UTM grid."""

S1_COHERENCE = "sentinel-1-coherence"
"""Sentinel-1 6-day interferometric coherence."""
