"""Tiny impression logs with the simulator's columns, for tests that must not depend on the simulator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

MODULES = ("home_feed", "item_page", "search", "email_digest")
CATEGORIES = ("art", "toys", "jewelry", "home")


def impressions_frame(n_requests: int = 40, candidates: int = 5, seed: int = 0) -> pd.DataFrame:
    """Requests one minute apart (two share each timestamp), a funnel of labels, every feature kind."""
    rng = np.random.default_rng(seed)
    rows = []
    for request in range(n_requests):
        module = MODULES[request % len(MODULES)]
        user = f"u{int(rng.integers(0, 8))}"
        for position in range(candidates):
            listing = int(rng.integers(0, 30))
            category = CATEGORIES[listing % len(CATEGORIES)]
            clicked = int(rng.random() < 0.3)
            carted = clicked * int(rng.random() < 0.4)
            rows.append(
                {
                    "request_id": f"r{request:04d}",
                    "timestamp": 1_700_000_000 + 60 * (request // 2),
                    "user_id": user,
                    "listing_id": f"l{listing}",
                    "module_name": module,
                    "position": position,
                    "clicked": clicked,
                    "favorited": clicked * int(rng.random() < 0.3),
                    "added_to_cart": carted,
                    "purchased": carted * int(rng.random() < 0.5),
                    "user_country": ("US", "GB", "DE")[int(rng.integers(0, 3))],
                    "device": ("ios", "web")[int(rng.integers(0, 2))],
                    "category": category,
                    "subcategory": f"{category}/{listing % 3}",
                    "shop_id": f"s{listing % 7}",
                    "price": float(np.round(np.exp(rng.normal(3, 1)), 2)),
                    "listing_age_days": float(rng.integers(1, 400)),
                    "rating": float(np.round(rng.uniform(3, 5), 1)) if listing % 5 else np.nan,
                    "num_reviews": int(rng.integers(0, 100)),
                    "tags": ["vintage", "gift"][: 1 + listing % 2] if listing % 3 else [],
                    "query_category": CATEGORIES[request % 4] if module == "search" else "",
                    "anchor_listing_id": f"l{request % 30}" if module == "item_page" else "",
                    "anchor_category": CATEGORIES[request % 4] if module == "item_page" else "",
                }
            )
    frame = pd.DataFrame(rows)
    for column in ("clicked", "favorited", "added_to_cart", "purchased"):
        frame[column] = frame[column].astype(np.int8)
    frame["position"] = frame["position"].astype(np.int32)
    return frame


def write_parquet(frame: pd.DataFrame, folder: Path, parts: int = 2) -> Path:
    """Write a frame as ``part-NNNNN.parquet`` files (split by request, like the simulator)."""
    folder.mkdir(parents=True, exist_ok=True)
    requests = frame["request_id"].unique()
    for index, chunk in enumerate(np.array_split(requests, parts)):
        frame[frame["request_id"].isin(chunk)].to_parquet(folder / f"part-{index:05d}.parquet", index=False)
    return folder


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    """CSV with list columns joined by "|" (the spec's list_separator)."""
    frame = frame.copy()
    frame["tags"] = frame["tags"].map("|".join)
    frame.to_csv(path, index=False)
    return path


def write_jsonl(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_json(path, orient="records", lines=True)
    return path


SEQUENCES = [{"task": "click", "column": "listing_id", "length": 3}, {"task": "favorite", "column": "category"}]
"""Behaviour sequences for the simulator's spec (``history.sequences``): clicked listings and favorited categories."""


def simulator_spec_with(folder: Path, **history) -> str:
    """The simulator's spec with other ``history`` settings, written to ``folder/history.yaml``."""
    from components.data.spec import write_spec_with_history

    return write_spec_with_history(history, Path(folder) / "history.yaml")
