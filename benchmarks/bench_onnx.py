"""ONNX Runtime against TensorFlow for the served model: issue 13's "faster runtime for the dense part" lever.

    pip install -c constraints.txt -e '.[onnx]'
    taskset -c 0 python -m benchmarks.bench_onnx --model-dir work/model   # default: bench_serving's model

The SavedModel's serving signature is converted with tf2onnx; its string ops
(vocabulary lookups, id hashing, list splitting) become ONNX's ``CategoryMapper``
and onnxruntime-extensions' contrib ops. The ONNX graph is then cut where the
strings end: the *string part* turns the string inputs into ids, the *dense
part* (embeddings, numeric encoders, experts, gates, towers, score) takes those
ids and the numeric inputs. On the columns of one synthetic ``--candidates``
request (as the server parses them), it reports:

* equality with the SavedModel, per output: the whole ONNX graph, and the dense
  part fed with TensorFlow's own hashes of the hashed ids (onnxruntime-extensions'
  ``StringToHashBucketFast`` does not compute TensorFlow's Fingerprint64 buckets,
  so a whole-graph conversion scores other embedding rows);
* CPU milliseconds per call, the runtimes taking turns (``bench_model_call``'s
  method): TensorFlow's signature (the server's model call), ONNX Runtime's whole
  graph, its string part and its dense part;
* ONNX Runtime's kernel time by op type (its profiler), to set beside
  ``bench_model_call --ops``.

Both runtimes get ``--threads`` intra-op threads (default 1: run it under ``taskset -c 0``).
The server does not use ONNX Runtime (docs/benchmarks.md, "ONNX Runtime"); this
command is how that was measured and how to measure it again.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bench_model_call import synthetic_columns, take_turns

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

OPSET = 17
CONTRIB = "ai.onnx.contrib"
# ops that read strings and write numbers: where the string part ends
STRING_TO_NUMBER_OPS = {"CategoryMapper", "StringToHashBucketFast", "StringLength", "Shape", "Size", "Equal"}


def convert(model_dir: Path) -> Any:
    """The SavedModel's serving signature as an ONNX model (string ops as onnxruntime-extensions contrib ops)."""
    import tensorflow as tf
    from onnx import helper
    from tf2onnx import tf_loader
    from tf2onnx.convert import _convert_common  # the saved-model path of tf2onnx's CLI: it keeps lookup tables

    _register_missing_ops()
    graph_def, inputs, outputs, tables, renames = tf_loader.from_saved_model(
        str(model_dir), None, None, None, ["serving_default"], None, False,
        return_initialized_tables=True, return_tensors_to_rename=True,
    )  # fmt: skip
    with tf.device("/cpu:0"):
        model, _ = _convert_common(
            graph_def,
            name=str(model_dir),
            opset=OPSET,
            extra_opset=[helper.make_opsetid(CONTRIB, 1)],
            input_names=inputs,
            output_names=outputs,
            tensors_to_rename=renames,
            initialized_tables=tables,
        )
    return model


def _register_missing_ops() -> None:
    """Handlers for the two ops of the ranker's graph that tf2onnx 1.17 cannot convert."""
    from onnx import TensorProto
    from tf2onnx import utils
    from tf2onnx.handler import tf_op

    @tf_op("Log1p")
    class Log1p:  # the numeric encoder's sign-symmetric log1p transform: log(1 + x), ONNX has no log1p
        @classmethod
        def version_1(cls, ctx, node, **kwargs) -> None:
            one = ctx.make_const(utils.make_name("one"), np.array(1, np.float32))
            plus_one = ctx.make_node("Add", [node.input[0], one.output[0]])
            ctx.replace_inputs(node, [plus_one.output[0]])
            node.type = "Log"

    @tf_op("StringLength", domain=CONTRIB)
    class StringLength:  # list features' empty-token test (length > 0): the contrib op counts characters
        @classmethod
        def version_1(cls, ctx, node, **kwargs) -> None:
            dtype = ctx.get_dtype(node.output[0])
            node.domain = CONTRIB
            for name in list(node.attr):
                del node.attr[name]
            ctx.set_dtype(node.output[0], TensorProto.INT64)
            cast = ctx.insert_new_node_on_output("Cast", node.output[0], to=dtype)
            ctx.copy_shape(node.output[0], cast.output[0])


@dataclass
class Parts:
    """The ONNX graph cut where strings end. ``ids``: the string part's numeric outputs (the dense part's
    inputs besides the numeric features); ``hashes``: hashed-id output -> (its string tensor, buckets)."""

    string_part: Any
    dense_part: Any
    ids: list[str]
    hashes: dict[str, tuple[str, int]]


def split_at_strings(model: Any) -> Parts:
    """The string part (string inputs -> ids, plus the hashes' string tensors) and the dense part of ``model``."""
    import onnx
    from onnx import TensorProto, numpy_helper

    graph = model.graph
    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    strings = {tensor.name for tensor in graph.input if tensor.type.tensor_type.elem_type == TensorProto.STRING}
    string_inputs = sorted(strings)
    ids: list[str] = []
    hashes: dict[str, tuple[str, int]] = {}
    for node in graph.node:  # topologically sorted
        if not any(name in strings for name in node.input):
            continue
        for index, output in enumerate(node.output):
            # StringSplit: (indices, tokens, shape); only the tokens stay strings
            numeric = node.op_type in STRING_TO_NUMBER_OPS or (node.op_type == "StringSplit" and index != 1)
            if numeric:
                ids.append(output)
            else:
                strings.add(output)
        if node.op_type == "StringToHashBucketFast":
            hashes[node.output[0]] = (node.input[0], int(constants[node.input[1]].reshape(-1)[0]))
    numeric_inputs = [tensor.name for tensor in graph.input if tensor.name not in strings]
    outputs = [tensor.name for tensor in graph.output]
    hashed_strings = sorted({source for source, _ in hashes.values()} - set(string_inputs))
    with tempfile.TemporaryDirectory() as folder:
        whole, string_part, dense_part = (Path(folder) / name for name in ("whole", "string", "dense"))
        onnx.save(model, whole)
        onnx.utils.extract_model(str(whole), str(string_part), string_inputs, ids + hashed_strings, check_model=False)
        onnx.utils.extract_model(str(whole), str(dense_part), numeric_inputs + ids, outputs, check_model=False)
        return Parts(onnx.load(string_part), onnx.load(dense_part), ids, hashes)


def session(model: Any, threads: int, profile: bool = False) -> Any:
    """An ONNX Runtime CPU session with onnxruntime-extensions' ops and ``threads`` intra-op threads."""
    import onnxruntime
    import onnxruntime_extensions

    options = onnxruntime.SessionOptions()
    options.register_custom_ops_library(onnxruntime_extensions.get_library_path())
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.enable_profiling = profile
    if profile:  # ONNX Runtime writes the profile to the working directory unless told otherwise
        options.profile_file_prefix = str(Path(tempfile.gettempdir()) / "bench_onnx_profile")
    return onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def run(runtime: Any, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every output of an ONNX Runtime session, by name, on the inputs it takes from ``feeds``."""
    names = [output.name for output in runtime.get_outputs()]
    inputs = {tensor.name: feeds[tensor.name] for tensor in runtime.get_inputs()}
    return dict(zip(names, runtime.run(names, inputs), strict=True))


def onnx_feeds(ranker: Any, columns: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The ONNX graph's inputs (the signature's arguments) from the columns the server parsed."""
    from trainer.export import serving_input_name

    strings, numbers = (tensor.numpy() for tensor in ranker.to_tensors(columns))
    # TensorFlow hands strings out as bytes; ONNX Runtime takes str (it would feed bytes as "b'...'")
    feeds = {
        serving_input_name(name): np.char.decode(column.astype(bytes), "utf-8").astype(object)
        for name, column in zip(ranker.string_inputs, strings, strict=True)
    }
    feeds.update({serving_input_name(name): column for name, column in zip(ranker.number_inputs, numbers, strict=True)})
    return feeds


def tensorflow_ids(parts: Parts, string_feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``string_feeds`` (the inputs and the string part's outputs) with every hashed id computed by TensorFlow's
    ``StringToHashBucketFast`` instead."""
    import tensorflow as tf

    ids = dict(string_feeds)
    for output, (source, buckets) in parts.hashes.items():
        ids[output] = tf.strings.to_hash_bucket_fast(ids[source].astype(str), buckets).numpy()
    return ids


def largest_differences(expected: Mapping[str, np.ndarray], actual: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Per output of ``expected``, the largest absolute difference of ``actual``."""
    return {name: float(np.max(np.abs(actual[name] - values))) for name, values in expected.items()}


def kernel_ms_by_op(runtime: Any, call: Callable[[], Any], calls: int) -> Counter:
    """Mean kernel milliseconds per call by ONNX op type, from ONNX Runtime's profiler (``runtime`` profiling)."""
    for _ in range(calls):
        call()
    profile = Path(runtime.end_profiling())
    events = json.loads(profile.read_text())
    profile.unlink()
    by_op: Counter = Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            by_op[event["args"]["op_name"]] += event["dur"] / 1000 / calls
    return Counter(dict(by_op.most_common()))


def measure(model_dir: Path, candidates: int, threads: int, rounds: int, block: int) -> dict[str, Any]:
    """Conversion, equality and CPU per call of both runtimes on one synthetic request."""
    from trainer.predict import load_ranker, set_op_threads

    set_op_threads(threads)
    ranker = load_ranker(model_dir)
    columns = synthetic_columns(model_dir, candidates)
    tensors = ranker.to_tensors(columns)
    expected = ranker.predict_tensors(*tensors)
    model = convert(model_dir)
    parts = split_at_strings(model)
    feeds = onnx_feeds(ranker, columns)
    whole, string_part, dense_part = (session(m, threads) for m in (model, parts.string_part, parts.dense_part))
    string_feeds = {**feeds, **run(string_part, feeds)}
    ids = tensorflow_ids(parts, string_feeds)
    turns = {
        "tensorflow": {"signature": lambda: ranker.predict_tensors(*tensors)},
        "onnxruntime": {
            "whole graph": lambda: run(whole, feeds),
            "string part": lambda: run(string_part, feeds),
            "dense part": lambda: run(dense_part, string_feeds),
        },
    }
    figures = take_turns(turns, rounds, block)
    profiled = session(model, threads, profile=True)
    return {
        "onnx_nodes": {"whole": len(model.graph.node), "dense part": len(parts.dense_part.graph.node)},
        "hashed_id_tensors": len(parts.hashes),
        "max_abs_difference": {
            "whole graph": largest_differences(expected, run(whole, feeds)),
            "dense part, TensorFlow's hashes": largest_differences(expected, run(dense_part, ids)),
        },
        "cpu_ms_per_call": {key: statistics.median(values) for key, values in figures.items()},
        "onnxruntime_kernel_ms_by_op": dict(kernel_ms_by_op(profiled, lambda: run(profiled, feeds), block)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, help="an exported ranker (default: bench_serving's model)")
    parser.add_argument("--candidates", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads of both runtimes")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--block", type=int, default=30, help="calls per runtime and step in each round")
    parser.add_argument("--out", type=Path, help="also write the figures here as JSON")
    args = parser.parse_args()

    from benchmarks.bench_baseline import cpu_model
    from benchmarks.bench_serving import build_default_model

    print(f"{cpu_model()}, load average {os.getloadavg()[0]:.2f}; {args.candidates} candidates")
    with tempfile.TemporaryDirectory(prefix="bench-onnx-") as scratch:
        model_dir = args.model_dir or build_default_model(Path(scratch))
        result = measure(model_dir, args.candidates, args.threads, args.rounds, args.block)
    result |= {"cpu": cpu_model(), "candidates": args.candidates, "threads": args.threads}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
