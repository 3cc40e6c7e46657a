"""What the online-store join adds to one ranking request: ``OnlineFeatures.assemble`` for N candidates.

Builds a small extraction (the test impressions), materializes it into the embedded
Feast repo (SQLite online store) and times assembling one ids-only request of
``--candidates`` listing ids (known ids, repeated), with the in-memory cache warm
and with it off (every request reads SQLite)::

    python -m benchmarks.bench_feature_store --candidates 1000 --repeats 200
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def build_repo(work: Path) -> Path:
    from components.features.feature_store import MaterializeConfig, materialize
    from components.features.options import BeamOptions
    from components.features.pipeline import ExtractionConfig, extract_features
    from tests.data.impressions import impressions_frame, write_parquet

    raw = write_parquet(impressions_frame(n_requests=400, candidates=10, seed=0), work / "raw")
    beam = BeamOptions(runner="DirectRunner", direct_num_workers=1, direct_running_mode="in_memory")
    extract_features(ExtractionConfig(str(raw), "simulator", str(work / "examples"), beam=beam))
    materialize(MaterializeConfig(examples=str(work / "examples"), repo=str(work / "repo"), model_version="bench"))
    return work / "repo"


def time_assemble(repo: Path, candidates: int, repeats: int, cache_seconds: float) -> dict[str, float]:
    from serving.feature_store import OnlineFeatures

    features = OnlineFeatures(str(repo), "listing_id", cache_seconds=cache_seconds)
    ids = [f"l{i % 30}" for i in range(candidates)]
    context = {"module_name": "search", "user_id": "u1", "query_category": "toys"}
    features.assemble(context, {"listing_id": ids})  # warm-up (fills the cache when on)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        features.assemble(context, {"listing_id": list(ids)})
        times.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        repo = build_repo(Path(work))
        results = {
            "cache_warm": time_assemble(repo, args.candidates, args.repeats, cache_seconds=3600),
            "no_cache": time_assemble(repo, args.candidates, max(args.repeats // 4, 10), cache_seconds=0),
        }
    print(json.dumps({"candidates": args.candidates, **results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
