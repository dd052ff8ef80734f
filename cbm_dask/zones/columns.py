"""Which attribute column plays which role (parcel id, crop code, crop name ...).

Pure functions over a DataFrame; the candidate names come from the
``cbm.parcels.*-columns`` configuration lists.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cbm_dask import config
from cbm_dask.errors import ColumnDetectionError

__all__ = ["FEATURE_ID", "ColumnMapping", "as_text", "detect_columns", "parcel_ids"]

#: Pseudo column: use the feature ids of the source file as parcel ids.
FEATURE_ID = "@fid"

_ID_SEPARATOR = "/"


@dataclass(frozen=True)
class ColumnMapping:
    """Roles of the source columns.

    Attributes
    ----------
    id
        Column(s) whose values, joined with ``/``, form the parcel id; or
        ``("@fid",)`` for the source file's feature ids.
    crop_code, crop_name, scheme, practice
        Column holding that declared attribute, or None when the file has none.
    """

    id: tuple[str, ...]
    crop_code: str | None = None
    crop_name: str | None = None
    scheme: str | None = None
    practice: str | None = None
    detected: tuple[str, ...] = field(default=(), compare=False)

    def as_dict(self) -> dict[str, object]:
        """Return a JSON-able description (stored with the dataset)."""
        return {
            "id": list(self.id),
            "crop_code": self.crop_code,
            "crop_name": self.crop_name,
            "scheme": self.scheme,
            "practice": self.practice,
            "detected": list(self.detected),
        }


def _split(value: str | Sequence[str] | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    parts = [value] if isinstance(value, str) else list(value)
    return tuple(p.strip() for part in parts for p in part.split(",") if p.strip()) or None


def _resolve(columns: Sequence[str], name: str, parameter: str) -> str:
    """Return the actual spelling of ``name`` in ``columns`` (case-insensitive).

    ``parameter`` is the argument ``name`` was given as, for the message.
    """
    if name in columns:
        return name
    folded = {c.casefold(): c for c in columns}
    if name.casefold() in folded:
        return folded[name.casefold()]
    raise ColumnDetectionError(
        f"{parameter}={name!r}: no such column; the file has: {', '.join(columns)}",
        parameter=parameter,
    )


def _is_unique_key(values: pd.Series) -> bool:
    return bool(values.notna().all() and values.astype(str).str.strip().ne("").all()
                and values.is_unique)


def _detect_id(frame: pd.DataFrame, candidates: Sequence[str]) -> str:
    columns = [c for c in frame.columns if c != frame.geometry.name] if hasattr(
        frame, "geometry") else list(frame.columns)
    folded = {c.casefold(): c for c in columns}
    named = [folded[n.casefold()] for n in candidates if n.casefold() in folded]
    for column in named:
        if _is_unique_key(frame[column]):
            return column
    unique = [c for c in columns if _is_unique_key(frame[c])]
    id_like = [c for c in unique if c.casefold().endswith("id")]
    if len(id_like) == 1:
        return id_like[0]
    hint = (
        f"pass id_column='NAME', several columns as id_column='A,B' (joined with "
        f"'{_ID_SEPARATOR}'), or id_column='{FEATURE_ID}' to use the file's feature ids"
    )
    if named:
        dupes = {c: int(frame[c].duplicated(keep=False).sum()) for c in named}
        detail = ", ".join(f"{c} ({n} rows share a value)" for c, n in dupes.items())
        raise ColumnDetectionError(
            f"no unique parcel id column: {detail}; columns with unique values: "
            f"{', '.join(unique) or 'none'}; {hint}", parameter="id_column",
        )
    raise ColumnDetectionError(
        f"cannot tell which column is the parcel id; columns with unique values: "
        f"{', '.join(id_like or unique) or 'none'}; {hint}", parameter="id_column",
    )


def _detect_optional(
    columns: Sequence[str], candidates: Sequence[str]
) -> str | None:
    folded = {c.casefold(): c for c in columns}
    for name in candidates:
        if name.casefold() in folded:
            return folded[name.casefold()]
    return None


def detect_columns(
    frame: pd.DataFrame,
    *,
    id_column: str | Sequence[str] | None = None,
    crop_code_column: str | None = None,
    crop_name_column: str | None = None,
    scheme_column: str | None = None,
    practice_column: str | None = None,
) -> ColumnMapping:
    """Decide the column roles, honouring explicit choices and detecting the rest.

    Detection compares column names case-insensitively with the configured
    candidate lists (``cbm.parcels.id-columns`` ...), in order.  The parcel id
    must be unique and non-empty: a candidate with duplicates is not chosen.

    Raises
    ------
    ColumnDetectionError
        When a named column does not exist, or the parcel id cannot be decided;
        the message names the candidate columns and the parameter to use.
    """
    columns = [c for c in frame.columns if c != "geometry"]
    detected: list[str] = []

    ids = _split(id_column)
    if ids is None:
        ids = (_detect_id(frame, config.get("parcels.id-columns")),)
        detected.append("id")
    elif ids != (FEATURE_ID,):
        ids = tuple(_resolve(columns, name, "id_column") for name in ids)

    def role(explicit: str | None, key: str, parameter: str, name: str) -> str | None:
        if explicit:
            return _resolve(columns, explicit, parameter)
        found = _detect_optional(columns, config.get(f"parcels.{key}"))
        if found:
            detected.append(name)
        return found

    return ColumnMapping(
        id=ids,
        crop_code=role(crop_code_column, "crop-code-columns", "crop_code_column", "crop_code"),
        crop_name=role(crop_name_column, "crop-name-columns", "crop_name_column", "crop_name"),
        scheme=role(scheme_column, "scheme-columns", "scheme_column", "scheme"),
        practice=role(practice_column, "practice-columns", "practice_column", "practice"),
        detected=tuple(detected),
    )


def parcel_ids(frame: pd.DataFrame, mapping: ColumnMapping, feature_ids: pd.Series) -> pd.Series:
    """Return the parcel id of every row as text (None where a part is missing)."""
    if mapping.id == (FEATURE_ID,):
        return feature_ids.astype("int64").astype(str).set_axis(frame.index)
    parts = [as_text(frame[c]) for c in mapping.id]
    result = parts[0]
    for part in parts[1:]:
        result = result + _ID_SEPARATOR + part
    return result.where(pd.concat(parts, axis=1).notna().all(axis=1), None)


def as_text(values: pd.Series) -> pd.Series:
    """Text form of a column (object dtype, None for missing or blank values).

    Integral floats lose their '.0', as shapefiles store integer ids as reals.
    """
    if pd.api.types.is_float_dtype(values) and values.dropna().mod(1).eq(0).all():
        values = values.astype("Int64")
    text = values.astype("string").str.strip()
    keep = (values.notna() & text.ne("")).fillna(False).to_numpy(dtype=bool)
    result = np.array(text.astype(object), dtype=object)  # missing ones set below
    result[~keep] = None
    return pd.Series(result, index=values.index, dtype=object)

