"""The model call alone: CPU milliseconds per call of several exported rankers, taking turns on the same candidates.

    taskset -c 0 python -m benchmarks.bench_model_call --model-dirs work/before/model work/after/model
    taskset -c 0 python -m benchmarks.bench_model_call      # bench_serving's model, trained for the run

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

``--ops N`` prints, per model, where one call's time goes: the N costliest op
types and layers of the serving signature, from TensorFlow's own step stats
(the SavedModel's graph run in a v1 session with a full trace, on the same
tensors and op threads; the kernels are the ones the server runs)::

    taskset -c 0 python -m benchmarks.bench_model_call --model-dirs work/model --ops 15
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def model_calls(model_dir: Path, columns: dict[str, Any]) -> dict[str, Callable[[], Any]]:
    """``predict``: the server's model step; ``signature``: the serving signature on ready tensors as ``predict``
    calls it (two matrices); ``signature by name``: the SavedModel's signature called with one keyword per input."""
    import tensorflow as tf

    from ranker_core.schema import serving_input_name
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


@dataclass
class OpTimes:
    """Mean microseconds per call by op type and by layer (``features/numeric``, ``mmoe/expert_3_cross``, ...)."""

    by_op: Counter
    by_layer: Counter
    ops_per_call: float
    session_cpu_ms: float

    def format(self, top: int) -> str:
        total = sum(self.by_op.values())
        lines = [
            f"  {self.ops_per_call:.0f} ops per call, their kernels {total / 1000:.2f} ms "
            f"(the whole session call {self.session_cpu_ms:.2f} ms of CPU)"
        ]
        for title, times in (("op type", self.by_op), ("layer", self.by_layer)):
            lines.append(f"  {title:<44} {'ms':>7} {'share':>6}")
            lines += [
                f"  {key:<44} {micros / 1000:>7.3f} {micros / total:>6.1%}" for key, micros in times.most_common(top)
            ]
        return "\n".join(lines)


def layer_of(node_name: str) -> str:
    """A graph node's layer: the two scopes below the Keras model's (``ranker_model/mmoe/gate_click/...`` ->
    ``mmoe/gate_click``; Keras numbers the model ``ranker_model_1``, ... when a process built several), or
    ``(signature)`` for the nodes around the model."""
    inside = re.search(r"(?:^|/)ranker_model(?:_\d+)?/(.+)", node_name)
    return "/".join(inside.group(1).split("/")[:2]) if inside else "(signature)"


def op_times(model_dir: Path, columns: dict[str, Any], calls: int, op_threads: int) -> OpTimes:
    """Where a serving call's time goes: kernel times averaged over ``calls`` traced calls, and the CPU of a whole
    untraced session call averaged over as many (after three for warm-up)."""
    import tensorflow as tf

    from ranker_core.schema import serving_input_name
    from trainer.export import SIGNATURE
    from trainer.predict import load_ranker

    ranker = load_ranker(model_dir)
    strings, numbers = (tensor.numpy() for tensor in ranker.to_tensors(columns))
    config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=op_threads, inter_op_parallelism_threads=op_threads)
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph, config=config) as session:
        signature = tf.compat.v1.saved_model.load(session, ["serve"], str(model_dir)).signature_def[SIGNATURE]
        feed = {
            signature.inputs[serving_input_name(name)].name: values
            for names, matrix in ((ranker.string_inputs, strings), (ranker.number_inputs, numbers))
            for name, values in zip(names, matrix, strict=True)
        }
        fetches = [output.name for output in signature.outputs.values()]
        cpu_ms(lambda: session.run(fetches, feed), 3)  # warm-up
        session_cpu_ms = cpu_ms(lambda: session.run(fetches, feed), calls)
        options = tf.compat.v1.RunOptions(trace_level=tf.compat.v1.RunOptions.FULL_TRACE)
        by_op, by_layer, ops = Counter(), Counter(), 0
        for _ in range(calls):
            metadata = tf.compat.v1.RunMetadata()
            session.run(fetches, feed, options=options, run_metadata=metadata)
            for node in (node for device in metadata.step_stats.dev_stats for node in device.node_stats):
                micros = (node.op_end_rel_micros - node.op_start_rel_micros) / calls
                # timeline_label: "<node> = <OpType>(<inputs>)"
                by_op[node.timeline_label.partition(" = ")[2].partition("(")[0] or node.node_name] += micros
                by_layer[layer_of(node.node_name)] += micros
                ops += 1
    return OpTimes(by_op, by_layer, ops / calls, session_cpu_ms)


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


def synthetic_columns(model_dir: Path, candidates: int) -> dict[str, Any]:
    """The columns the server parses from a synthetic ``candidates``-candidate request for the model's spec."""
    import orjson

    from serving.loadtest import synthetic_payload
    from serving.request import RequestParser
    from trainer.storage import load_feature_spec

    spec = load_feature_spec(str(model_dir))
    body = orjson.loads(synthetic_payload(spec, candidates, columnar=True))
    return RequestParser(spec, max_candidates=1 << 20, max_instances=1 << 10).parse(body).columns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model-dirs", nargs="+", type=Path, help="exported rankers to compare (default: bench_serving's model)"
    )
    parser.add_argument("--candidates", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--block", type=int, default=30, help="calls per model and step in each round")
    parser.add_argument(
        "--ops", type=int, metavar="N", help="instead: the N costliest op types and layers of each model's call"
    )
    args = parser.parse_args()

    from benchmarks.bench_serving import build_default_model

    with tempfile.TemporaryDirectory(prefix="bench-model-call-") as scratch:
        report(args.model_dirs or [build_default_model(Path(scratch))], args)


def report(model_dirs: list[Path], args: argparse.Namespace) -> None:
    """Print the CPU per call of each model (or with ``args.ops``, where each one's call goes)."""
    from benchmarks.bench_baseline import cpu_model
    from serving.config import ServerConfig
    from trainer.predict import set_op_threads

    op_threads = ServerConfig().op_threads
    set_op_threads(op_threads)  # as the server runs the model
    columns = synthetic_columns(model_dirs[0], args.candidates)
    print(f"{cpu_model()}, load average {os.getloadavg()[0]:.2f}; {args.candidates} candidates, CPU ms per call")
    if args.ops:
        for model_dir in model_dirs:
            print(f"{model_dir}:\n{op_times(model_dir, columns, args.block, op_threads).format(args.ops)}")
        return
    models = {str(model_dir): model_calls(model_dir, columns) for model_dir in model_dirs}
    figures = take_turns(models, args.rounds, args.block)
    for key, values in figures.items():
        print(f"{key}: median {statistics.median(values):.2f}, min {min(values):.2f}, max {max(values):.2f}")


if __name__ == "__main__":
    main()
