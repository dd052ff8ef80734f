"""SQLAlchemy 2 models of the cbm schema (the migrations in ``migrations/`` create it).

The migrations are the record of what is deployed; these models describe the same
schema for the code and for Alembic, and ``tests/test_schema.py`` fails when the two
disagree (``docs/decisions/0009-one-schema.md``).

Signatures are one row per parcel and image with every band's statistics and
the SCL histogram in arrays, partitioned LIST on ``dataset_id`` (one partition
per country-year dataset, created with the dataset) and each dataset partition
RANGE on the acquisition month (see ``docs/decisions/0003-signature-storage.md``).
The one-row-per-band view ``signature_bands`` and ``scl_histograms`` are views.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from geoalchemy2 import Geometry
from sqlalchemy import (
    REAL,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    SmallInteger,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "Base",
    "Dataset",
    "Parcel",
    "Image",
    "Extraction",
    "Signature",
    "Marker",
    "Decision",
    "User",
    "ApiKey",
    "EXTRACTION_STATES",
    "TRAFFIC_LIGHTS",
]

EXTRACTION_STATES = ("pending", "running", "extracted", "failed")
TRAFFIC_LIGHTS = ("green", "yellow", "red")

# The library writes with SQL and COPY, not the ORM: the database itself fills a
# JSON column an INSERT or COPY leaves out, as the migrations declare.
_EMPTY_JSON = text("'{}'::jsonb")


class Base(DeclarativeBase):
    """Declarative base of all cbm tables."""

    type_annotation_map = {dict[str, Any]: JSONB}


class Dataset(Base):
    """A set of declared parcels: one AOI (country/region) and declaration year."""

    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    aoi: Mapped[str | None] = mapped_column(Text)
    year: Mapped[int | None] = mapped_column(SmallInteger)
    srid: Mapped[int] = mapped_column(Integer)
    crs: Mapped[str] = mapped_column(Text)
    source_file: Mapped[str] = mapped_column(Text)
    layer: Mapped[str | None] = mapped_column(Text)
    column_mapping: Mapped[dict[str, Any]] = mapped_column(JSONB)
    parcel_count: Mapped[int] = mapped_column(Integer, server_default="0")
    load_report: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=_EMPTY_JSON)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class Parcel(Base):
    """A declared parcel; ``pid`` is the compact key every time series refers to.

    LIST-partitioned by dataset; ``pid`` comes from one sequence, so it is unique
    across datasets.
    """

    __tablename__ = "parcels"
    __table_args__ = (
        UniqueConstraint("dataset_id", "parcel_id", name="uq_parcels_dataset_parcel"),
        Index("ix_parcels_pid", "pid"),
        Index("ix_parcels_geom", "geom", postgresql_using="gist"),
        {"postgresql_partition_by": "LIST (dataset_id)"},
    )

    dataset_id: Mapped[int] = mapped_column(
        ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True
    )
    pid: Mapped[int] = mapped_column(Integer, primary_key=True)
    parcel_id: Mapped[str] = mapped_column(Text)
    crop_code: Mapped[str | None] = mapped_column(Text)
    crop_name: Mapped[str | None] = mapped_column(Text)
    scheme: Mapped[str | None] = mapped_column(Text)
    practice: Mapped[str | None] = mapped_column(Text)
    area_m2: Mapped[float] = mapped_column(Float)
    # Native CRS of the dataset (SRID per row, equal to datasets.srid); map and
    # catalogue queries transform their window or extent, not the parcels.
    geom: Mapped[Any] = mapped_column(Geometry("MULTIPOLYGON", srid=-1, spatial_index=False))
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=_EMPTY_JSON)


class Image(Base):
    """A catalogued Sentinel scene (the JRC ``dias_catalogue``)."""

    __tablename__ = "images"
    __table_args__ = (
        UniqueConstraint("collection", "item_id", name="uq_images_collection_item"),
        Index("ix_images_footprint", "footprint", postgresql_using="gist"),
        Index("ix_images_datetime", "datetime"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    collection: Mapped[str] = mapped_column(Text)
    item_id: Mapped[str] = mapped_column(Text)
    datetime: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    platform: Mapped[str | None] = mapped_column(Text)
    card: Mapped[str] = mapped_column(Text)  # s2, bs (S1 backscatter), c6 (S1 coherence)
    tile: Mapped[str | None] = mapped_column(Text)
    orbit: Mapped[int | None] = mapped_column(Integer)
    epsg: Mapped[int | None] = mapped_column(Integer)
    cloud_cover: Mapped[float | None] = mapped_column(REAL)
    processing_baseline: Mapped[str | None] = mapped_column(Text)
    footprint: Mapped[Any] = mapped_column(
        Geometry("MULTIPOLYGON", srid=4326, spatial_index=False)
    )
    assets: Mapped[dict[str, Any]] = mapped_column(JSONB)
    properties: Mapped[dict[str, Any]] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(Text, server_default="catalogued")
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class Extraction(Base):
    """Extraction status of one image for one dataset (the unit of work)."""

    __tablename__ = "extractions"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'running', 'extracted', 'failed')",
            name="ck_extractions_status",
        ),
        Index("ix_extractions_status", "status", "dataset_id"),
    )

    dataset_id: Mapped[int] = mapped_column(
        ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True
    )
    image_id: Mapped[int] = mapped_column(
        ForeignKey("images.id", ondelete="CASCADE"), primary_key=True
    )
    status: Mapped[str] = mapped_column(Text, server_default="pending")
    worker: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    claimed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    row_count: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    bands: Mapped[list[str] | None] = mapped_column(ARRAY(Text))


class Signature(Base):
    """Every band's statistics of one image over one parcel (partitioned, see module doc).

    ``count[b]`` and ``stats[b][k]`` refer to band ``b`` of ``Extraction.bands`` and
    statistic ``k`` of ``mean, std, min, max, p25, p50, p75``; ``scl[c + 1]`` counts
    the pixels of scene class ``c``.
    """

    __tablename__ = "signatures"
    __table_args__ = {"postgresql_partition_by": "LIST (dataset_id)"}

    # The partitioned table has no key of its own: each monthly leaf has the key
    # (pid, image_id), which a key on the parent would have to widen with the
    # partition columns.  The ORM identity of a row is still (dataset_id, pid, image_id).
    dataset_id: Mapped[int] = mapped_column(Integer)
    pid: Mapped[int] = mapped_column(Integer)
    image_id: Mapped[int] = mapped_column(Integer)
    acquired: Mapped[dt.date] = mapped_column(Date)
    count: Mapped[list[int]] = mapped_column(ARRAY(Integer))
    stats: Mapped[list[list[float]]] = mapped_column(ARRAY(REAL, dimensions=2))
    scl: Mapped[list[int] | None] = mapped_column(ARRAY(Integer))

    __mapper_args__ = {"primary_key": [dataset_id, pid, image_id]}


class Marker(Base):
    """A detected event or state in a parcel's time series (mowing, harvest ...)."""

    __tablename__ = "markers"
    __table_args__ = (
        ForeignKeyConstraint(
            ["dataset_id", "pid"], ["parcels.dataset_id", "parcels.pid"], ondelete="CASCADE"
        ),
        Index("ix_markers_parcel", "dataset_id", "pid", "marker"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    pid: Mapped[int] = mapped_column(Integer)
    marker: Mapped[str] = mapped_column(Text)
    date_start: Mapped[dt.date | None] = mapped_column(Date)
    date_main: Mapped[dt.date | None] = mapped_column(Date)
    date_end: Mapped[dt.date | None] = mapped_column(Date)
    confidence: Mapped[float | None] = mapped_column(REAL)
    values: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=_EMPTY_JSON)
    method: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class Decision(Base):
    """The traffic light for one parcel's declaration, with reasons and evidence."""

    __tablename__ = "decisions"
    __table_args__ = (
        CheckConstraint("light IN ('green', 'yellow', 'red')", name="ck_decisions_light"),
        ForeignKeyConstraint(
            ["dataset_id", "pid"], ["parcels.dataset_id", "parcels.pid"], ondelete="CASCADE"
        ),
        Index("ix_decisions_parcel", "dataset_id", "pid"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    pid: Mapped[int] = mapped_column(Integer)
    light: Mapped[str] = mapped_column(Text)
    reasons: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=_EMPTY_JSON)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=_EMPTY_JSON)
    rule_set: Mapped[str] = mapped_column(Text)
    decided_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class User(Base):
    """A person or service using the API."""

    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("role IN ('admin', 'analyst', 'viewer')", name="ck_users_role"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    email: Mapped[str | None] = mapped_column(Text)
    role: Mapped[str] = mapped_column(Text, server_default="viewer")
    active: Mapped[bool] = mapped_column(Boolean, server_default="true")
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class ApiKey(Base):
    """An API key; only its SHA-256 digest is stored."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    key_hash: Mapped[str] = mapped_column(Text, unique=True)
    prefix: Mapped[str] = mapped_column(Text)
    label: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
