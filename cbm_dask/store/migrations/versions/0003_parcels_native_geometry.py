"""Parcels keep one geometry, in the dataset's native CRS, with the GiST index on it.

The stored EPSG:4326 copy is dropped (queries transform their window into the
dataset's CRS instead) and the GiST index moves to ``geom``; existing partitions
are indexed by the CREATE INDEX on the parent.  The (dataset_id, crop_code) index
is dropped: nothing filters parcels by crop through an index (a dataset's crop
histogram is one scan).  See ``docs/decisions/0007-parcel-geometry-and-bulk-load.md``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_parcels_geom_4326, ix_parcels_dataset_crop")
    op.execute("ALTER TABLE parcels DROP COLUMN geom_4326")
    op.execute("CREATE INDEX ix_parcels_geom ON parcels USING gist (geom)")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_parcels_geom")
    op.execute("ALTER TABLE parcels ADD COLUMN geom_4326 geometry(MultiPolygon, 4326)")
    op.execute("UPDATE parcels SET geom_4326 = ST_Transform(geom, 4326)")
    op.execute("ALTER TABLE parcels ALTER COLUMN geom_4326 SET NOT NULL")
    op.execute("CREATE INDEX ix_parcels_geom_4326 ON parcels USING gist (geom_4326)")
    op.execute("CREATE INDEX ix_parcels_dataset_crop ON parcels (dataset_id, crop_code)")
