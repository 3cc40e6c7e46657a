"""Batch ranking throughput: candidates scored per second by ``ranker batch-rank`` vs in-process ``Ranker.predict``.

Against the same exported model (the serving benchmark's default MMoE unless
``--model-dir`` names another export) and the same candidates (``--candidates``
random rows of its features, ``--per-user`` per user, written once as ``--files`` Parquet files):

* ``predict``: ``Ranker.predict`` over the candidates (read into memory first) in
  ``--batch-size`` chunks, in this process (the rate to match; best of 3);
* ``predict cold``: the same, with what a batch run pays too: loading the model (and its
  first, tracing call) and reading the Parquet files, timed (the like-for-like reference);
* ``beam <mode>``: the whole batch ranking pipeline (read Parquet, assemble
  features, RunInference, top-k per user, write Parquet) on the local runner,
  once with the candidates and once with twice as many, so the marginal rate
  (extra candidates / extra seconds) leaves out the pipeline's fixed start-up;
  ``shuffled`` ranks as for any table (every user through the GroupByKey), ``grouped``
  declares the table grouped by user (``--grouped-by-user``: only users at chunk edges
  are shuffled); the generated candidates are grouped by user either way; ``--op-threads``
  compares TensorFlow thread counts per worker process (0: the pipeline's automatic choice).

Each pipeline runs ``--repeats`` times and the fastest run counts. CPU seconds
(this process and its worker processes) are printed beside wall time: on a
shared machine they are the steadier measure::

    python -m benchmarks.bench_batch                                  # 200k candidates, 2 workers
    python -m benchmarks.bench_batch --candidates 400000 --modes in_memory multi_processing
    python -m benchmarks.bench_batch --modes in_memory --layouts grouped
    python -m benchmarks.bench_batch --candidates 4000000 --modes multi_processing --layouts grouped --op-threads 0 2
    python -m benchmarks.bench_batch --candidates 500000 --compare-coders 4     # pickle vs ChunkCoder, 1M grouped
"""

from __future__ import annotations

import argparse
import itertools
import os
import resource
import time
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pandas as pd

from benchmarks.bench_serving import build_default_model


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def write_candidates(model_dir: Path, rows: int, per_user: int, files: int, folder: Path) -> Path:
    """``rows`` random candidates of the model's features, ``per_user`` per user, in ``files`` Parquet files."""
    from trainer.storage import load_feature_spec
    from trainer.synthetic import synthetic_columns

    path = folder / f"candidates-{rows}-{files}"
    if not path.is_dir():
        spec = load_feature_spec(str(model_dir))
        frame = pd.DataFrame(synthetic_columns(spec, rows, seed=rows))
        frame[spec.roles["user_id"]] = [f"u{index // per_user}" for index in range(rows)]
        frame["module_name"] = "email_digest"
        path.mkdir(parents=True)
        for index, part in enumerate(np.array_split(np.arange(rows), files)):
            frame.iloc[part].to_parquet(path / f"part-{index}.parquet")
    return path


def predict_rate(model_dir: Path, candidates: Path, batch_size: int) -> tuple[float, float]:
    """(candidates per second, CPU seconds per 1,000 candidates) of ``Ranker.predict`` in this process."""
    from trainer.predict import load_ranker

    ranker = load_ranker(model_dir)
    frame = pd.read_parquet(candidates)
    chunks = [frame.iloc[start : start + batch_size] for start in range(0, len(frame), batch_size)]
    ranker.predict(chunks[0])  # the first call traces the signature
    best = (0.0, np.inf)
    for _ in range(3):
        started, cpu = time.perf_counter(), cpu_seconds()
        for chunk in chunks:
            ranker.predict(chunk)
        seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu
        best = max(best, (len(frame) / seconds, 1000 * cpu / len(frame)))
    return best


def cold_predict_run(model_dir: Path, candidates: Path, batch_size: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of loading the ranker, reading the candidates and scoring them, in this process."""
    from trainer.predict import load_ranker

    started, cpu = time.perf_counter(), cpu_seconds()
    ranker = load_ranker(model_dir)
    frame = pd.read_parquet(candidates)
    for start in range(0, len(frame), batch_size):
        ranker.predict(frame.iloc[start : start + batch_size])
    return time.perf_counter() - started, cpu_seconds() - cpu


def beam_run(
    model_dir: Path, candidates: Path, out: Path, variant: tuple[str, str, int], workers: int, batch_size: int
) -> tuple:
    """(wall seconds, CPU seconds, candidates scored) of one whole batch ranking run; ``variant``:
    (mode, layout, op_threads)."""
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    from batch.config import BatchRankConfig
    from batch.pipeline import batch_rank
    from components.features.options import BeamOptions

    mode, layout, op_threads = variant
    config = BatchRankConfig(
        candidates=str(candidates), model_uri=str(model_dir), out=str(out), batch_size=batch_size,
        grouped_by_user=layout == "grouped", op_threads=op_threads,
    )  # fmt: skip
    options = BeamOptions(runner="DirectRunner", direct_num_workers=workers, direct_running_mode=mode)
    started, cpu = time.perf_counter(), cpu_seconds()
    summary = batch_rank(config, options)
    return time.perf_counter() - started, cpu_seconds() - cpu, summary.scored


def compare_coders(model_dir: Path, candidates: Path, out: Path, batch_size: int, rounds: int) -> None:
    """Grouped runs alternating Beam's pickle coder and :class:`batch.coders.ChunkCoder` for the chunks
    (process CPU and wall seconds per run): what the chunk coder's size estimate saves."""
    import apache_beam as beam
    import pyarrow as pa
    from apache_beam.ml.inference.base import PredictionResult

    from batch.coders import ChunkCoder

    runs: dict[str, list[tuple[float, float]]] = {"pickle": [], "chunk": []}
    variant = ("in_memory", "grouped", 0)
    beam_run(model_dir, candidates, out, variant, 1, batch_size)  # warm: imports, first model load
    coders = (("pickle", beam.coders.PickleCoder), ("chunk", ChunkCoder))
    for _, (name, coder) in itertools.product(range(rounds), coders):
        for element_type in (pd.DataFrame, pa.Table, PredictionResult):
            beam.coders.registry.register_coder(element_type, coder)
        runs[name].append(beam_run(model_dir, candidates, out, variant, 1, batch_size)[:2])
    for name, timings in runs.items():
        walls, cpus = (sorted(round(timing[index], 2) for timing in timings) for index in (0, 1))
        print(f"chunk coder {name:<6}: CPU s {cpus} (median {np.median(cpus):.2f}); wall s {walls}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", default="", help="an exported ranker (default: train the demo MMoE)")
    parser.add_argument("--candidates", type=int, default=200_000, help="candidates of the smaller run (200000)")
    parser.add_argument("--per-user", type=int, default=50, help="candidates per user (50)")
    parser.add_argument("--files", type=int, default=8, help="Parquet files of the candidates table (8)")
    parser.add_argument("--batch-size", type=int, default=4096, help="candidates per model call (4096)")
    parser.add_argument("--modes", nargs="+", default=["multi_processing", "in_memory"], help="local runner modes")
    parser.add_argument("--layouts", nargs="+", default=["shuffled", "grouped"], choices=["shuffled", "grouped"],
                        help="rank as any table, or declared grouped by user (both)")  # fmt: skip
    parser.add_argument("--workers", type=int, default=2, help="local runner workers (2)")
    parser.add_argument("--op-threads", type=int, nargs="+", default=[0],
                        help="TensorFlow threads per worker process to compare (0: automatic)")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=3, help="runs of each pipeline; the fastest counts (3)")
    parser.add_argument("--work-dir", default="/tmp/bench_batch", help="model, candidates and outputs")
    parser.add_argument("--compare-coders", type=int, default=0, metavar="ROUNDS",
                        help="only alternate pickle and the chunk coder, ROUNDS runs each (larger table)")  # fmt: skip
    args = parser.parse_args(argv)

    work = Path(args.work_dir)
    model_dir = Path(args.model_dir) if args.model_dir else work / "model"
    if not (model_dir / "saved_model.pb").is_file():
        model_dir = build_default_model(work)
    sizes = (args.candidates, 2 * args.candidates)
    inputs = {size: write_candidates(model_dir, size, args.per_user, args.files, work) for size in sizes}
    if args.compare_coders:
        compare_coders(model_dir, inputs[sizes[1]], work / "out-coders", args.batch_size, args.compare_coders)
        return 0
    rate, cpu_per_k = predict_rate(model_dir, inputs[sizes[1]], args.batch_size)
    cold_wall, cold_cpu = min(cold_predict_run(model_dir, inputs[sizes[1]], args.batch_size) for _ in range(3))
    print(f"{os.cpu_count()} cores; model {model_dir}; batch size {args.batch_size}")
    print(f"{'variant':<34} {'candidates':>10} {'wall s':>7} {'cand/s':>9} {'CPU s/1k':>8} {'vs predict':>10}")
    print(
        f"{'predict (in process)':<34} {sizes[1]:>10} {sizes[1] / rate:>7.2f} {rate:>9.0f} {cpu_per_k:>8.3f} {1:>10.0%}"
    )
    print(f"{'predict cold (load, read, score)':<34} {sizes[1]:>10} {cold_wall:>7.2f} {sizes[1] / cold_wall:>9.0f} "
          f"{1000 * cold_cpu / sizes[1]:>8.3f} {sizes[1] / cold_wall / rate:>10.0%}")  # fmt: skip
    for variant in itertools.product(args.modes, args.layouts, args.op_threads):
        name = f"beam {' '.join(variant[:2])}" + (f" {variant[2]} threads" if variant[2] else "")
        runs = {size: min(beam_run(model_dir, path, work / f"out-{'-'.join(variant[:2])}-{size}", variant, args.workers,
                                   args.batch_size) for _ in range(args.repeats))
                for size, path in inputs.items()}  # fmt: skip
        for size, (wall, cpu, scored) in runs.items():
            assert scored == size, f"scored {scored} of {size}"
            print(f"{f'{name} (end to end)':<34} {size:>10} {wall:>7.2f} {size / wall:>9.0f} "
                  f"{1000 * cpu / size:>8.3f} {size / wall / rate:>10.0%}")  # fmt: skip
        extra = sizes[1] - sizes[0]
        wall, cpu = (runs[sizes[1]][index] - runs[sizes[0]][index] for index in (0, 1))
        print(f"{f'{name} (marginal)':<34} {extra:>10} {wall:>7.2f} {extra / wall:>9.0f} "
              f"{1000 * cpu / extra:>8.3f} {extra / wall / rate:>10.0%}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
