"""Exact duplicate rows: counted always, sent to the dead letters unless the dataset spec keeps them.

Two rows are duplicates when every column the spec reads is equal after parsing
(request, item, time, position, every label and feature). A copy inflates its
request and repeats its (request, item) pair, which the ranking metrics and the
oracle join take to be unique, so ``source.duplicates: drop`` is the default.
Extraction groups rows by request shard before anything is computed from them,
so every copy of a row is in the same group and the check is exact::

    found = find_duplicates(shard_rows, drop=True, source_name=lambda index: files[index])
    found.rows           # the rows, without the copies
    found.count          # copies found (rows equal to an earlier one)
    found.dead_letters   # [{"file": ..., "row": 9, "reason": "duplicate: ... row 4 of a.csv, which is kept", ...}]

The copy kept is the first by file and row, whatever order the rows arrive in.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd

from components.data.readers import file_name
from components.data.rows import FILE_INDEX, UID, dead_letter, row_origin

DUPLICATE_REASON = "duplicate"


@dataclasses.dataclass
class Duplicates:
    """Rows after the duplicate check, and what it found."""

    rows: pd.DataFrame
    count: int
    dead_letters: list[dict[str, Any]]


def find_duplicates(
    rows: pd.DataFrame,
    drop: bool,
    source_name: Callable[[int], str],
    ignore: Sequence[str] = (),
    raw_names: Mapping[str, str] | None = None,
) -> Duplicates:
    """Count the copies among ``rows`` (compared on every column but ``UID``, ``FILE_INDEX`` and ``ignore``);
    with ``drop``, remove them and return one dead letter per copy.

    A copy's record holds its parsed values (timestamps in epoch seconds) under the data's own column names
    where ``raw_names`` (:func:`~components.data.rows.raw_column_names`) gives them, as other dead letters do.
    """
    rows = rows.reset_index(drop=True)
    bookkeeping = [UID, FILE_INDEX, *ignore]
    compare = [column for column in rows.columns if column not in bookkeeping]
    involved = rows[rows.duplicated(subset=compare, keep=False).to_numpy()].sort_values(UID)
    copies = involved[involved.duplicated(subset=compare, keep="first").to_numpy()]
    if copies.empty or not drop:
        return Duplicates(rows, len(copies), [])
    kept = involved.groupby(compare, dropna=False, sort=False)[UID].transform("first")
    records = copies.drop(columns=bookkeeping)
    records = records.rename(columns=_unclashing(raw_names or {}, records.columns))
    letters = [
        _letter(int(copies.at[index, UID]), int(kept[index]), records.loc[index], source_name) for index in copies.index
    ]
    return Duplicates(rows.drop(index=copies.index), len(copies), letters)


def _unclashing(raw_names: Mapping[str, str], columns: Sequence[str]) -> dict[str, str]:
    """The renames whose raw name no other column has (one raw column may serve two roles, or be a feature too:
    those keep their parsed names)."""
    targets = [raw_names[column] for column in columns if column in raw_names]
    return {
        column: raw
        for column, raw in raw_names.items()
        if column in columns and raw not in columns and targets.count(raw) == 1
    }


def _letter(uid: int, kept_uid: int, record: pd.Series, source_name: Callable[[int], str]) -> dict[str, Any]:
    file_index, row = row_origin(uid)
    kept_file, kept_row = row_origin(kept_uid)
    kept = f"row {kept_row} of {file_name(source_name(kept_file))}"
    reason = f"{DUPLICATE_REASON}: every column equals {kept}, which is kept"
    return dead_letter(source_name(file_index), row, reason, record)
