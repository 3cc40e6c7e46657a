"""The model call alone: CPU milliseconds per call of several exported rankers, taking turns on the same candidates.

    taskset -c 0 python -m benchmarks.bench_model_call --model-dirs work/before/model work/after/model

For each model: ``Ranker.predict`` (columns to tensors + the serving signature,
the server's "predict" step), the signature alone on tensors made once (as
``predict`` calls it, and called with one keyword argument per input),
both on the columns the server would parse from a ``--candidates`` request of
synthetic values (``serving.loadtest.synthetic_payload``). The models take
turns in blocks of ``--block`` calls for ``--rounds`` rounds, so a change in
the machine's load hits them alike; the figures are process CPU time
(``time.process_time``), the least moved by other processes, with TensorFlow
on the server's thread settings. The models must share one feature spec's
inputs (the candidates come from the first model's spec).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def model_calls(model_dir: Path, columns: dict[str, Any]) -> dict[str, Callable[[], Any]]:
    """``predict``: the server's model step; ``signature``: the serving signature on ready tensors as ``predict``
    calls it (two matrices); ``signature by name``: the SavedModel's signature called with one keyword per input."""
    import tensorflow as tf

    from trainer.export import serving_input_name
    from trainer.predict import load_ranker

    ranker = load_ranker(model_dir)
    tensors = ranker.to_tensors(columns)
    by_name = ranker._serve  # the loaded signature that Ranker.predict wraps: no second load of the SavedModel
    named = dict(zip(map(serving_input_name, ranker.string_inputs), tf.unstack(tensors[0]), strict=True))
    named.update(zip(map(serving_input_name, ranker.number_inputs), tf.unstack(tensors[1]), strict=True))
    return {
        "predict": lambda: ranker.predict(columns),
        "signature": lambda: ranker.predict_tensors(*tensors),
        "signature by name": lambda: by_name(**named),
    }


def cpu_ms(call: Callable[[], Any], calls: int) -> float:
    """Mean process CPU milliseconds of one call over ``calls`` calls."""
    started = time.process_time()
    for _ in range(calls):
        call()
    return (time.process_time() - started) / calls * 1000


def take_turns(models: dict[str, dict[str, Callable[[], Any]]], rounds: int, block: int) -> dict[str, list[float]]:
    """Per ``model/step``, one CPU ms figure per round; every model and step runs once per round, in turn."""
    for calls in models.values():
        for call in calls.values():
            cpu_ms(call, 3)  # warm-up: tracing, first allocations
    figures: dict[str, list[float]] = {}
    for _ in range(rounds):
        for name, calls in models.items():
            for step, call in calls.items():
                figures.setdefault(f"{name}/{step}", []).append(cpu_ms(call, block))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dirs", nargs="+", type=Path, required=True, help="exported rankers to compare")
    parser.add_argument("--candidates", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--block", type=int, default=30, help="calls per model and step in each round")
    args = parser.parse_args()

    import orjson

    from benchmarks.bench_baseline import cpu_model
    from serving.config import ServerConfig
    from serving.loadtest import synthetic_payload
    from serving.request import RequestParser
    from trainer.predict import set_op_threads
    from trainer.storage import load_feature_spec

    set_op_threads(ServerConfig().op_threads)  # as the server runs the model
    spec = load_feature_spec(str(args.model_dirs[0]))
    body = orjson.loads(synthetic_payload(spec, args.candidates, columnar=True))
    columns = RequestParser(spec, max_candidates=1 << 20, max_instances=1 << 10).parse(body).columns
    models = {str(model_dir): model_calls(model_dir, columns) for model_dir in args.model_dirs}
    figures = take_turns(models, args.rounds, args.block)
    print(f"{cpu_model()}, load average {os.getloadavg()[0]:.2f}; {args.candidates} candidates, CPU ms per call")
    for key, values in figures.items():
        print(f"{key}: median {statistics.median(values):.2f}, min {min(values):.2f}, max {max(values):.2f}")


if __name__ == "__main__":
    main()
