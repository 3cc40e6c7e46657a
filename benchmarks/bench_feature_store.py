"""What the online-store join adds to one ranking request: ``OnlineFeatures.assemble`` for N candidates.

Builds a small extraction (the test impressions), materializes it into the embedded
Feast repo (SQLite online store) and times assembling one ids-only request of
``--candidates`` listing ids (``--distinct`` different ones, repeated; ids past the
catalog are unknown ids, which are looked up and cached the same way), with the
in-memory cache warm and with it off (every request reads SQLite)::

    python -m benchmarks.bench_feature_store --candidates 1000 --repeats 1000
    python -m benchmarks.bench_feature_store --candidates 1000 --repeats 1000 --distinct 1000
    python -m benchmarks.bench_feature_store --history '{"sequences": [{"task": "click", "column": "listing_id"}]}'

``--history`` (JSON) updates the simulator spec's ``history`` section before extracting, so the
cost of other stored features (behaviour sequences and their match counts) can be compared.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def build_repo(work: Path, history: str = "{}") -> Path:
    from components.data.spec import spec_with_history
    from components.features.feature_store import MaterializeConfig, materialize
    from components.features.options import BeamOptions
    from components.features.pipeline import ExtractionConfig, extract_features
    from tests.data.impressions import impressions_frame, write_parquet

    raw = write_parquet(impressions_frame(n_requests=400, candidates=10, seed=0), work / "raw")
    beam = BeamOptions(runner="DirectRunner", direct_num_workers=1, direct_running_mode="in_memory")
    spec = spec_with_history(json.loads(history), work / "spec.yaml")
    extract_features(ExtractionConfig(str(raw), spec, str(work / "examples"), beam=beam))
    materialize(MaterializeConfig(examples=str(work / "examples"), repo=str(work / "repo"), model_version="bench"))
    return work / "repo"


def time_assemble(
    repo: Path, candidates: int, repeats: int, cache_seconds: float, distinct: int = 30
) -> dict[str, float]:
    """Milliseconds of ``OnlineFeatures.assemble`` (one warm-up call first): wall p50 / p90 / p99 / max, and
    the calling thread's CPU time p50 / p99 (which a preempted call on a shared machine does not inflate)."""
    from serving.feature_store import OnlineFeatures

    features = OnlineFeatures(str(repo), "listing_id", cache_seconds=cache_seconds)
    ids = [f"l{i % distinct}" for i in range(candidates)]
    context = {"module_name": "search", "user_id": "u1", "query_category": "toys"}
    features.assemble(context, {"listing_id": ids})  # warm-up (fills the cache when on)
    times, cpu = [], []
    for _ in range(repeats):
        started, started_cpu = time.perf_counter(), time.thread_time()
        features.assemble(context, {"listing_id": list(ids)})
        times.append((time.perf_counter() - started) * 1000)
        cpu.append((time.thread_time() - started_cpu) * 1000)
    p50, p90, p99 = np.percentile(times, [50, 90, 99]).tolist()
    cpu_p50, cpu_p99 = np.percentile(cpu, [50, 99]).tolist()
    return {
        "p50_ms": p50,
        "p90_ms": p90,
        "p99_ms": p99,
        "max_ms": max(times),
        "cpu_p50_ms": cpu_p50,
        "cpu_p99_ms": cpu_p99,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=1000)
    parser.add_argument("--distinct", type=int, default=30, help="different listing ids among the candidates")
    parser.add_argument("--history", default="{}", help="the simulator spec's `history` updated with this JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        repo = build_repo(Path(work), args.history)
        timing = {"candidates": args.candidates, "distinct": args.distinct}
        results = {
            "cache_warm": time_assemble(repo, repeats=args.repeats, cache_seconds=3600, **timing),
            "no_cache": time_assemble(repo, repeats=max(args.repeats // 4, 10), cache_seconds=0, **timing),
        }
    print(json.dumps({**timing, "history": json.loads(args.history), **results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
