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

The same grouping checks two more things a ranked list needs: a request is one list on one surface, so
every row of a request whose rows name two or more modules is a dead letter (:func:`split_module_requests`;
a session or visit id used as the request id), and a (request, item) pair that repeats without being an
exact copy (the same item shown twice in one list) is counted (:func:`repeated_items`) and reported::

    mixed = split_module_requests(found.rows, plan.source_name)
    mixed.count          # requests in two or more modules; mixed.dead_letters: one per row of theirs
    repeated_items(mixed.rows, "listing_id")   # rows whose (request, item) an earlier row of the request has
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd

from components.data.readers import file_name
from components.data.rows import FILE_INDEX, UID, dead_letter, row_origin
from ranker_core.schema import MODULE, REQUEST_ID

DUPLICATE_REASON = "duplicate"
MIXED_MODULES_REASON = "request spans modules"


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


def split_module_requests(
    rows: pd.DataFrame,
    source_name: Callable[[int], str],
    ignore: Sequence[str] = (),
    raw_names: Mapping[str, str] | None = None,
) -> Duplicates:
    """Dead-letter every row of a request whose rows name two or more modules; ``count`` is such requests.

    A request is one ranked list on one surface: NDCG, the per-module baselines and the module veto would
    otherwise judge its rows as one list of one module (the first row's). Records as :func:`find_duplicates`'.
    """
    modules_per_request = rows.groupby(REQUEST_ID, sort=False)[MODULE].transform("nunique")
    mixed = (modules_per_request > 1).to_numpy()
    if not mixed.any():
        return Duplicates(rows, 0, [])
    bad = rows[mixed]
    records = bad.drop(columns=[UID, FILE_INDEX, *ignore])
    records = records.rename(columns=_unclashing(raw_names or {}, records.columns))
    modules = bad.groupby(REQUEST_ID, sort=False)[MODULE].agg(lambda values: ", ".join(sorted(set(values))))
    sizes = bad.groupby(REQUEST_ID, sort=False).size()
    letters = []
    for index in bad.index:
        request = bad.at[index, REQUEST_ID]
        reason = (
            f"{MIXED_MODULES_REASON}: request {request!r} has rows in modules {modules[request]}; a request is one "
            f"ranked list on one surface, so its {sizes[request]} rows are left out (make columns.request_id name "
            "a column unique per list, e.g. the session and the surface)"
        )
        file_index, row = row_origin(int(bad.at[index, UID]))
        letters.append(dead_letter(source_name(file_index), row, reason, records.loc[index]))
    return Duplicates(rows[~mixed], len(modules), letters)


def repeated_items(rows: pd.DataFrame, item_column: str | None) -> int:
    """Rows whose (request, item) pair an earlier row of the request already has (0 without an item column)."""
    if not item_column or item_column not in rows.columns:
        return 0
    return int(rows.duplicated(subset=[REQUEST_ID, item_column]).sum())
