"""Initial schema: datasets, parcels, catalogue, extraction status, signatures,
SCL histograms, markers, decisions, users and API keys.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

UPGRADE = """
CREATE EXTENSION IF NOT EXISTS postgis;

CREATE TABLE datasets (
    id             serial PRIMARY KEY,
    name           text NOT NULL UNIQUE,
    aoi            text,
    year           smallint,
    srid           integer NOT NULL,
    crs            text NOT NULL,
    source_file    text NOT NULL,
    layer          text,
    column_mapping jsonb NOT NULL,
    parcel_count   integer NOT NULL DEFAULT 0,
    load_report    jsonb NOT NULL DEFAULT '{}',
    created_at     timestamptz NOT NULL DEFAULT now()
);

-- One LIST partition per dataset: a load COPYs into a fresh table and attaches
-- it, so indexes are built in bulk and a dataset is dropped in one statement.
-- pid is unique across datasets (one sequence) and is what time series refer to.
CREATE SEQUENCE parcels_pid_seq AS integer;
CREATE TABLE parcels (
    pid        integer NOT NULL DEFAULT nextval('parcels_pid_seq'),
    dataset_id integer NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
    parcel_id  text NOT NULL,
    crop_code  text,
    crop_name  text,
    scheme     text,
    practice   text,
    area_m2    double precision NOT NULL,
    geom       geometry(MultiPolygon) NOT NULL,
    geom_4326  geometry(MultiPolygon, 4326) NOT NULL,
    attributes jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (dataset_id, pid),
    CONSTRAINT uq_parcels_dataset_parcel UNIQUE (dataset_id, parcel_id)
) PARTITION BY LIST (dataset_id);
ALTER SEQUENCE parcels_pid_seq OWNED BY parcels.pid;
CREATE INDEX ix_parcels_pid ON parcels (pid);
CREATE INDEX ix_parcels_geom_4326 ON parcels USING gist (geom_4326);
CREATE INDEX ix_parcels_dataset_crop ON parcels (dataset_id, crop_code);

CREATE TABLE images (
    id                  serial PRIMARY KEY,
    collection          text NOT NULL,
    item_id             text NOT NULL,
    datetime            timestamptz NOT NULL,
    platform            text,
    card                text NOT NULL,
    tile                text,
    orbit               integer,
    epsg                integer,
    cloud_cover         real,
    processing_baseline text,
    footprint           geometry(MultiPolygon, 4326) NOT NULL,
    assets              jsonb NOT NULL,
    properties          jsonb NOT NULL,
    status              text NOT NULL DEFAULT 'catalogued',
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT uq_images_collection_item UNIQUE (collection, item_id)
);
CREATE INDEX ix_images_footprint ON images USING gist (footprint);
CREATE INDEX ix_images_datetime ON images (datetime);

CREATE TABLE extractions (
    dataset_id  integer NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
    image_id    integer NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    status      text NOT NULL DEFAULT 'pending',
    worker      text,
    attempts    integer NOT NULL DEFAULT 0,
    claimed_at  timestamptz,
    finished_at timestamptz,
    row_count   integer,
    error       text,
    PRIMARY KEY (dataset_id, image_id),
    CONSTRAINT ck_extractions_status
        CHECK (status IN ('pending', 'running', 'extracted', 'failed'))
);
CREATE INDEX ix_extractions_status ON extractions (status, dataset_id);

-- One LIST partition per dataset, each HASH-partitioned on pid: created by
-- cbm_dask.store._partitions when a dataset is loaded, with the primary key
-- (pid, image_id, band) on each leaf (a parent-level key would have to lead
-- with dataset_id and measured ~20 % slower COPY).
CREATE TABLE signatures (
    dataset_id integer NOT NULL,
    pid        integer NOT NULL,
    image_id   integer NOT NULL,
    band       text NOT NULL,
    count      integer NOT NULL,
    mean       real,
    std        real,
    min        real,
    max        real,
    p25        real,
    p50        real,
    p75        real
) PARTITION BY LIST (dataset_id);
-- BRIN: images are extracted roughly in date order, so per-image block ranges
-- stay narrow; a b-tree here halved COPY throughput (docs/decisions/0003).
CREATE INDEX ix_signatures_image ON signatures USING brin (image_id);

CREATE TABLE scl_histograms (
    dataset_id integer NOT NULL,
    pid        integer NOT NULL,
    image_id   integer NOT NULL,
    hist       jsonb NOT NULL
) PARTITION BY LIST (dataset_id);
CREATE INDEX ix_scl_histograms_image ON scl_histograms USING brin (image_id);

CREATE TABLE markers (
    id         serial PRIMARY KEY,
    dataset_id integer NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
    pid        integer NOT NULL,
    marker     text NOT NULL,
    date_start date,
    date_main  date,
    date_end   date,
    confidence real,
    "values"   jsonb NOT NULL DEFAULT '{}',
    method     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (dataset_id, pid) REFERENCES parcels (dataset_id, pid) ON DELETE CASCADE
);
CREATE INDEX ix_markers_parcel ON markers (dataset_id, pid, marker);

CREATE TABLE decisions (
    id         serial PRIMARY KEY,
    dataset_id integer NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
    pid        integer NOT NULL,
    light      text NOT NULL,
    reasons    jsonb NOT NULL DEFAULT '{}',
    evidence   jsonb NOT NULL DEFAULT '{}',
    rule_set   text NOT NULL,
    decided_at timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (dataset_id, pid) REFERENCES parcels (dataset_id, pid) ON DELETE CASCADE,
    CONSTRAINT ck_decisions_light CHECK (light IN ('green', 'yellow', 'red'))
);
CREATE INDEX ix_decisions_parcel ON decisions (dataset_id, pid);

CREATE TABLE users (
    id         serial PRIMARY KEY,
    name       text NOT NULL UNIQUE,
    email      text,
    role       text NOT NULL DEFAULT 'viewer',
    active     boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ck_users_role CHECK (role IN ('admin', 'analyst', 'viewer'))
);

CREATE TABLE api_keys (
    id           serial PRIMARY KEY,
    user_id      integer NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key_hash     text NOT NULL UNIQUE,
    prefix       text NOT NULL,
    label        text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    revoked_at   timestamptz,
    last_used_at timestamptz
);
"""

DOWNGRADE = """
DROP TABLE IF EXISTS api_keys, users, decisions, markers, scl_histograms, signatures,
    extractions, images, parcels, datasets CASCADE;
DROP SEQUENCE IF EXISTS parcels_pid_seq;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
