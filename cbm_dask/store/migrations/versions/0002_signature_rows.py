"""Signatures: one row per parcel and image holding every band's statistics and the
SCL histogram, partitioned by dataset and month; per-band and histogram views.

Existing rows (one per parcel, image and band; histograms as JSON) are moved
into the new layout dataset by dataset, and the old tables are dropped.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

STATISTICS = ("mean", "std", "min", "max", "p25", "p50", "p75")

CREATE = """
ALTER TABLE extractions ADD COLUMN IF NOT EXISTS bands text[];

-- count[b], stats[b][k] for band b of extractions.bands and statistic k of
-- (mean, std, min, max, p25, p50, p75), NaN where missing; scl[c + 1] pixels of
-- scene class c (Sentinel-2; NULL otherwise).  Leaves: one per dataset and
-- month, created by the writer (cbm_dask.store.signatures).
CREATE TABLE signatures (
    dataset_id integer NOT NULL,
    pid        integer NOT NULL,
    image_id   integer NOT NULL,
    acquired   date NOT NULL,
    count      integer[] NOT NULL,
    stats      real[] NOT NULL,
    scl        integer[]
) PARTITION BY LIST (dataset_id);

-- The JRC layout: one row per parcel, image and band.
CREATE VIEW signature_bands AS
SELECT s.dataset_id, s.pid, s.image_id, s.acquired, b.band,
       s.count[b.i] AS count,
       NULLIF(s.stats[b.i][1], 'NaN') AS mean,
       NULLIF(s.stats[b.i][2], 'NaN') AS std,
       NULLIF(s.stats[b.i][3], 'NaN') AS min,
       NULLIF(s.stats[b.i][4], 'NaN') AS max,
       NULLIF(s.stats[b.i][5], 'NaN') AS p25,
       NULLIF(s.stats[b.i][6], 'NaN') AS p50,
       NULLIF(s.stats[b.i][7], 'NaN') AS p75
FROM signatures s
JOIN extractions e ON e.dataset_id = s.dataset_id AND e.image_id = s.image_id
CROSS JOIN LATERAL unnest(e.bands) WITH ORDINALITY AS b(band, i);

-- The JRC histogram: {"4": 120, "8": 3} (classes with pixels only).
CREATE VIEW scl_histograms AS
SELECT s.dataset_id, s.pid, s.image_id, s.acquired,
       (SELECT jsonb_object_agg((c - 1)::text, s.scl[c])
        FROM generate_subscripts(s.scl, 1) AS c WHERE s.scl[c] > 0) AS hist
FROM signatures s
WHERE s.scl IS NOT NULL;
"""


def _leaf_ddl(dataset_id: int, month: str, following: str) -> str:
    name = f"signatures_d{dataset_id}_{month[:4]}{month[5:7]}"
    return (
        f"CREATE TABLE {name} (LIKE signatures INCLUDING DEFAULTS, CHECK (dataset_id = "
        f"{dataset_id} AND acquired >= '{month}' AND acquired < '{following}'));"
        f"ALTER TABLE {name} ADD PRIMARY KEY (pid, image_id);"
        f"CREATE INDEX {name}_image ON {name} USING brin (image_id int4_minmax_multi_ops);"
        f"ALTER TABLE signatures_d{dataset_id} ATTACH PARTITION {name} "
        f"FOR VALUES FROM ('{month}') TO ('{following}');"
    )


def _old_leaves(conn: sa.Connection, parent: str) -> list[str]:
    return list(conn.execute(sa.text(
        "WITH RECURSIVE t AS (SELECT inhrelid FROM pg_inherits "
        "WHERE inhparent = CAST(:p AS regclass) UNION ALL SELECT i.inhrelid FROM pg_inherits i "
        "JOIN t ON i.inhparent = t.inhrelid) SELECT relname FROM pg_class "
        "WHERE oid IN (SELECT inhrelid FROM t)"), {"p": parent}).scalars())


def upgrade() -> None:
    conn = op.get_bind()
    # Move the old tables aside (their partitions use the names the new ones take).
    for table in ("signatures", "scl_histograms"):
        for leaf in _old_leaves(conn, table):
            op.execute(f'ALTER TABLE "{leaf}" RENAME TO "{leaf}_v1"')
        op.execute(f"ALTER TABLE {table} RENAME TO {table}_v1")
    op.execute("DROP INDEX IF EXISTS ix_signatures_image, ix_scl_histograms_image")
    op.execute(CREATE)
    for dataset_id in conn.execute(sa.text("SELECT id FROM datasets ORDER BY id")).scalars():
        op.execute(
            f"CREATE TABLE signatures_d{dataset_id} PARTITION OF signatures "
            f"FOR VALUES IN ({dataset_id}) PARTITION BY RANGE (acquired)"
        )
        months = conn.execute(sa.text(
            "SELECT DISTINCT date_trunc('month', i.datetime AT TIME ZONE 'UTC')::date AS m "
            "FROM images i WHERE i.id IN (SELECT DISTINCT image_id FROM signatures_v1 "
            "WHERE dataset_id = :d) ORDER BY m"), {"d": dataset_id}).scalars().all()
        for month in months:
            following = conn.execute(sa.text(
                "SELECT CAST(CAST(:m AS date) + interval '1 month' AS date)"), {"m": month}
            ).scalar_one()
            op.execute(_leaf_ddl(dataset_id, month.isoformat(), following.isoformat()))
        conn.execute(sa.text(
            "INSERT INTO extractions (dataset_id, image_id, status) "
            "SELECT DISTINCT dataset_id, image_id, 'extracted' FROM signatures_v1 "
            "WHERE dataset_id = :d ON CONFLICT DO NOTHING"), {"d": dataset_id})
        conn.execute(sa.text(
            "UPDATE extractions e SET bands = b.bands FROM (SELECT image_id, "
            "array_agg(DISTINCT band ORDER BY band) AS bands FROM signatures_v1 "
            "WHERE dataset_id = :d GROUP BY image_id) b "
            "WHERE e.dataset_id = :d AND e.image_id = b.image_id"), {"d": dataset_id})
        stats = ", ".join(f"coalesce(v.{name}, 'NaN')" for name in STATISTICS)
        conn.execute(sa.text(
            "INSERT INTO signatures (dataset_id, pid, image_id, acquired, count, stats, scl) "
            "SELECT k.dataset_id, k.pid, k.image_id, (i.datetime AT TIME ZONE 'UTC')::date, "
            "array_agg(coalesce(v.count, 0) ORDER BY b.i), "
            f"array_agg(ARRAY[{stats}]::real[] ORDER BY b.i), "
            "(SELECT ARRAY(SELECT coalesce((h.hist ->> c::text)::int, 0) "
            " FROM generate_series(0, 11) c) FROM scl_histograms_v1 h "
            " WHERE h.dataset_id = k.dataset_id AND h.pid = k.pid AND h.image_id = k.image_id) "
            "FROM (SELECT DISTINCT dataset_id, pid, image_id FROM signatures_v1 "
            "      WHERE dataset_id = :d) k "
            "JOIN images i ON i.id = k.image_id "
            "JOIN extractions e ON e.dataset_id = k.dataset_id AND e.image_id = k.image_id "
            "CROSS JOIN LATERAL unnest(e.bands) WITH ORDINALITY AS b(band, i) "
            "LEFT JOIN signatures_v1 v ON v.dataset_id = k.dataset_id AND v.pid = k.pid "
            " AND v.image_id = k.image_id AND v.band = b.band "
            "GROUP BY k.dataset_id, k.pid, k.image_id, i.datetime "
            "ORDER BY k.image_id, k.pid"), {"d": dataset_id})
    op.execute("DROP TABLE signatures_v1, scl_histograms_v1 CASCADE")


def downgrade() -> None:
    conn = op.get_bind()
    op.execute("ALTER VIEW signature_bands RENAME TO signature_bands_v2")
    op.execute("ALTER VIEW scl_histograms RENAME TO scl_histograms_v2")
    op.execute(
        "CREATE TABLE signatures_long (dataset_id integer NOT NULL, pid integer NOT NULL, "
        "image_id integer NOT NULL, band text NOT NULL, count integer NOT NULL, mean real, "
        "std real, min real, max real, p25 real, p50 real, p75 real) "
        "PARTITION BY LIST (dataset_id);"
        "CREATE TABLE scl_histograms_long (dataset_id integer NOT NULL, pid integer NOT NULL, "
        "image_id integer NOT NULL, hist jsonb NOT NULL) PARTITION BY LIST (dataset_id);"
    )
    datasets = conn.execute(sa.text("SELECT id FROM datasets ORDER BY id")).scalars().all()
    for dataset_id in datasets:
        op.execute(
            f"CREATE TABLE signatures_long_d{dataset_id} PARTITION OF signatures_long "
            f"FOR VALUES IN ({dataset_id});"
            f"ALTER TABLE signatures_long_d{dataset_id} ADD PRIMARY KEY (pid, image_id, band);"
            f"CREATE TABLE scl_histograms_long_d{dataset_id} PARTITION OF scl_histograms_long "
            f"FOR VALUES IN ({dataset_id});"
            f"ALTER TABLE scl_histograms_long_d{dataset_id} ADD PRIMARY KEY (pid, image_id);"
        )
    op.execute(
        "INSERT INTO signatures_long SELECT dataset_id, pid, image_id, band, count, mean, std, "
        "min, max, p25, p50, p75 FROM signature_bands_v2;"
        "INSERT INTO scl_histograms_long SELECT dataset_id, pid, image_id, hist "
        "FROM scl_histograms_v2 WHERE hist IS NOT NULL;"
        "DROP VIEW signature_bands_v2, scl_histograms_v2;"
        "DROP TABLE signatures CASCADE;"
        "ALTER TABLE extractions DROP COLUMN bands;"
        "ALTER TABLE signatures_long RENAME TO signatures;"
        "ALTER TABLE scl_histograms_long RENAME TO scl_histograms;"
        "CREATE INDEX ix_signatures_image ON signatures USING brin (image_id);"
        "CREATE INDEX ix_scl_histograms_image ON scl_histograms USING brin (image_id);"
    )
    for dataset_id in datasets:
        op.execute(
            f"ALTER TABLE signatures_long_d{dataset_id} RENAME TO signatures_d{dataset_id};"
            f"ALTER TABLE scl_histograms_long_d{dataset_id} "
            f"RENAME TO scl_histograms_d{dataset_id};"
        )
