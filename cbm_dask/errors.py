"""The one exception hierarchy of cbm_dask.

Every message says what went wrong *and* how to fix it, so that a command line
user sees a single actionable line rather than a traceback.

Messages speak the library's language: a parameter is written ``name=`` (followed
by its value or an example), e.g. ``start='30/04/2023': not a date``.  A
:class:`CbmError` lists the parameters its message names in
:attr:`CbmError.parameters`, so that a front end can spell them its own way:
the command line shows its flags (``--start '30/04/2023': not a date``) with
:meth:`CbmError.respelled`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

__all__ = [
    "CbmError",
    "ConfigError",
    "DatabaseError",
    "DatasetExistsError",
    "DatasetNotFoundError",
    "InputError",
    "ItemError",
    "ColumnDetectionError",
    "ServiceError",
]


class CbmError(Exception):
    """Base class of all errors raised on purpose by cbm_dask.

    Parameters
    ----------
    message
        What is wrong and how to fix it; each parameter in ``parameter`` is written
        ``name=`` in it.
    parameter
        Name(s) of the parameter(s) the message is about, as the raising function
        spells them (``"start"``, ``("dataset", "bbox")``); empty when the message
        names none (a file, a configuration value ...).
    """

    def __init__(self, message: str, *, parameter: str | Sequence[str] = ()) -> None:
        super().__init__(message)
        self.parameters: tuple[str, ...] = (
            (parameter,) if isinstance(parameter, str) else tuple(parameter)
        )

    def __reduce__(self) -> tuple[object, ...]:
        # keep the parameters when the error crosses a process boundary (Dask workers)
        return (_rebuild, (type(self), str(self), self.parameters))

    def respelled(self, spellings: Mapping[str, str]) -> str:
        """Return the message with its parameters spelled by ``spellings``.

        Parameters
        ----------
        spellings
            Replacement text per library spelling: ``{"start=": "--start ",
            "replace=True": "--replace"}``.  Only the spellings of this error's
            :attr:`parameters` are replaced, the longest first, and only where they
            begin a word; a replacement ending in a space loses it before
            punctuation or a space (``dataset= (a name)`` → ``--dataset (a name)``).
        """
        message = str(self)
        keys = sorted(
            (key for key in spellings if key.split("=", 1)[0] in self.parameters),
            key=len, reverse=True,
        )
        if not keys:
            return message
        pattern = re.compile(r"(?<![\w.-])(" + "|".join(map(re.escape, keys)) + r")(\s?)")

        def spell(found: re.Match[str]) -> str:
            text = spellings[found.group(1)]
            end = found.end()
            if text.endswith(" ") and (found.group(2) or end == len(message)
                                       or message[end] in ",;:)"):
                text = text.rstrip(" ")
            return text + found.group(2)

        return pattern.sub(spell, message)


def _rebuild(cls: type[CbmError], message: str, parameters: tuple[str, ...]) -> CbmError:
    return cls(message, parameter=parameters)


class ConfigError(CbmError):
    """A configuration value is missing or malformed."""


class ServiceError(CbmError):
    """A local service (database, object store, STAC API) could not be started or reached."""


class DatabaseError(ServiceError):
    """The database is unreachable, not initialised, or refused an operation."""


class InputError(CbmError, ValueError):
    """A user-supplied file or parameter cannot be used as given."""


class ItemError(InputError):
    """A STAC item cannot be catalogued or loaded as given (message names the item)."""


class ColumnDetectionError(InputError):
    """The role of an attribute column (parcel id, crop code ...) could not be decided."""


class DatasetExistsError(InputError):
    """A dataset of that name is already loaded."""


class DatasetNotFoundError(InputError):
    """No dataset of that name is loaded."""
