# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Batch reduction from a notebook
#
# Runs against the services `make demo` starts (embedded PostGIS, S3, STAC API)
# and the `demo_world` dataset it loads.

# %%
from distributed import Client, LocalCluster

from cbm_dask.extract import extract
from cbm_dask.store import parcel_time_series

client = Client(LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None))
client

# %% [markdown]
# ## 1. Extract into the database (incremental, shared with other runs)

# %%
report = extract(["demo_world"], client=client)
report.as_dict()

# %%
series = parcel_time_series("demo_world", "31UFS-000002", bands=["B04", "B08"])
wide = series[series["count"] > 0].pivot_table(index="datetime", columns="band", values="mean")
ndvi = (wide["B08"] - wide["B04"]) / (wide["B08"] + wide["B04"])
ndvi.round(3)

# %% [markdown]
# ## 2. Reduce a cube directly (nothing stored)

# %%
from cbm_dask.catalogue import read_images
from cbm_dask.load import capture_gdal_env, load_cube
from cbm_dask.reduce import build_labels, zonal_stats
from cbm_dask.store import read_dataset_parcels

parcels = read_dataset_parcels("demo_world")
images = read_images(dataset="demo_world", collection="sentinel-2-l2a")
cube = load_cube(images, parcels=parcels, time=("2024-05-01", "2024-07-31"),
                 gdal_env=capture_gdal_env())
labels = build_labels(parcels, cube.groups[10], id_column="pid")
stats = zonal_stats(cube.groups[10], labels)
stats.head()

# %%
client.close()
