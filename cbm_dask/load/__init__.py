"""Loading Sentinel imagery as lazy, Dask-backed xarray cubes on the native pixel grid."""
