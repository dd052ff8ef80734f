"""Parcels as zones: reading declaration files, deciding column roles, repairing geometries."""

from cbm_dask.zones.columns import FEATURE_ID, ColumnMapping, detect_columns
from cbm_dask.zones.read import read_parcels
from cbm_dask.zones.validate import PreparedParcels, Rejection, prepare_parcels

__all__ = [
    "FEATURE_ID",
    "ColumnMapping",
    "PreparedParcels",
    "Rejection",
    "detect_columns",
    "prepare_parcels",
    "read_parcels",
]
