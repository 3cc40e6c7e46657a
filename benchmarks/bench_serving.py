"""Serving benchmark: p99 latency at a fixed rate and the throughput ceiling, ranking N candidates per request.

Runs, in one go and against the same exported model (the default MMoE
configuration unless ``--model-dir`` names another export):

* ``ranker serve`` as deployed (``batched``: requests queued while the model is busy merged into one call),
* ``ranker serve --no-batching`` (``direct``: one model call per request),
* either with ``-<N>w``, ``ranker serve --workers N`` (``batched-2w``: two server processes on the port),
* either with ``-nofreeze`` last, ``ranker serve --no-gc-freeze`` (``batched-nofreeze``: the start-up heap
  left in the garbage collector's full passes; the table counts each phase's full collections),
* the plain approach: Keras ``model.predict`` per request behind a minimal
  ``http.server`` handler that turns the JSON rows into columns in Python,

each measured with the project's open-loop load tester: Poisson arrivals at
``--rate`` (latency from the intended send time), then a saturating rate with a
concurrency cap whose achieved throughput is the ceiling::

    python -m benchmarks.bench_serving                      # 1000 candidates, 50 req/s, 20 s phases
    python -m benchmarks.bench_serving --model-dir work_dir/model --duration 60
    python -m benchmarks.bench_serving --variants batched,batched-2w      # one server process against two
    taskset -c 0 python -m benchmarks.bench_serving --model-dir work_dir/model --stages   # in process, no HTTP
    python -m benchmarks.bench_serving --feature-store      # ids only through the Feast store vs features sent

``--feature-store`` trains the default MMoE on the test impressions' extraction,
materializes it (embedded SQLite store), starts ``ranker serve --feature-store``
and ``ranker serve`` side by side and alternates fixed-rate phases between an
ids-only request and the same request with every stored feature sent (what the
store adds, as JSON). ``--stages`` then also times the two in process.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
BENCH_MODULES = ("home_feed", "item_page", "search", "cart", "email")


def demo_spec() -> Any:
    """A marketplace-shaped feature spec: ids, a category, tags, prices and rates, five modules."""
    from ranker_core.schema import DEFAULT_TASKS, Feature, FeatureSpec

    return FeatureSpec(
        tasks=list(DEFAULT_TASKS),
        features=[
            Feature("user_id", "hashed", hash_buckets=100_000),
            Feature("listing_id", "hashed", hash_buckets=1_000_000),
            Feature("shop_id", "hashed", hash_buckets=50_000),
            Feature("category", "categorical", vocabulary=[f"category_{i}" for i in range(50)]),
            Feature("tags", "list", vocabulary=[f"tag_{i}" for i in range(30)]),
            Feature("price", "numeric", transform="log1p", encoding="pwl", mean=3.0, std=1.0, max=9.0,
                    quantiles=[1.5, 2.5, 3.0, 3.5, 4.5]),
            Feature("listing_ctr", "numeric", encoding="quantile", mean=0.05, std=0.03, max=0.5,
                    quantiles=[0.01, 0.03, 0.05, 0.07, 0.1]),
            Feature("user_category_affinity", "numeric", mean=0.0, std=1.0, min=-4.0, max=4.0),
        ],
        modules=list(BENCH_MODULES),
        roles={"user_id": "user_id", "item_id": "listing_id"},
        dataset="bench_serving",
    )  # fmt: skip


def build_default_model(folder: Path) -> Path:
    """Train the default TrainerConfig for one epoch on random examples of :func:`demo_spec`; the export dir."""
    import numpy as np

    from ranker_core.schema import SplitStats, label_key
    from trainer.config import TrainerConfig
    from trainer.examples import write_shards
    from trainer.train import train_and_export

    spec = demo_spec()
    rng = np.random.default_rng(0)
    for split, rows_count in (("train", 4096), ("eval", 1024)):
        rows = []
        for row in range(rows_count):
            clicked = int(rng.random() < 0.2)
            rows.append(
                {
                    "request_id": f"{split}-{row // 20}",
                    "module_name": BENCH_MODULES[row % len(BENCH_MODULES)],
                    "user_id": f"u{rng.integers(5000)}",
                    "listing_id": f"l{rng.integers(100_000)}",
                    "shop_id": f"s{rng.integers(2000)}",
                    "category": f"category_{rng.integers(50)}",
                    "tags": f"tag_{rng.integers(30)}|tag_{rng.integers(30)}",
                    "price": float(np.expm1(rng.normal(3, 1))),
                    "listing_ctr": float(rng.beta(2, 30)),
                    "user_category_affinity": float(rng.normal()),
                    **{label_key(task): clicked * int(rng.random() < 0.3) for task in spec.task_names[1:]},
                    label_key(spec.task_names[0]): clicked,
                }
            )
        write_shards(rows, folder / "examples", split, spec)
        positives = {task: sum(row[label_key(task)] for row in rows) for task in spec.task_names}
        spec.splits[split] = SplitStats(rows=rows_count, requests=rows_count // 20, positives=positives)
    spec.save(folder / "examples" / "feature_spec.json")
    train_and_export(folder / "examples", folder / "model", TrainerConfig(epochs=1))
    return folder / "model"


# -- the plain approach ----------------------------------------------------------------------------------------


def plain_server(model_dir: Path, port: int) -> None:
    """Keras ``model.predict`` per request behind ``http.server``: what a first serving script looks like."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import numpy as np
    import tensorflow as tf

    from ranker_core.schema import MODULE, FeatureSpec
    from trainer.config import load_config
    from trainer.model import build_model

    spec = FeatureSpec.load(model_dir)
    model = build_model(spec, load_config(model_dir))
    # The Keras model is the checkpoint's root in a SavedModel (``Checkpoint(model=...)`` would match nothing).
    # An export from older code whose layers differ (e.g. per-feature numeric encoders) restores only in part.
    tf.train.Checkpoint(model).restore(str(model_dir / "variables" / "variables")).expect_partial()
    numeric = {feature.name for feature in spec.features if not feature.is_string}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            request = json.loads(self.rfile.read(int(self.headers["content-length"])))
            predictions = []
            for instance in request["instances"]:
                candidates = instance["candidates"]
                if isinstance(candidates, dict):  # columns: one list per feature
                    size = len(next(iter(candidates.values())))
                    candidates = [{name: values[i] for name, values in candidates.items()} for i in range(size)]
                rows = [{**instance["context"], **candidate} for candidate in candidates]
                features = {
                    name: np.array(
                        [row.get(name, np.nan if name in numeric else "") for row in rows],
                        dtype=np.float32 if name in numeric else object,
                    )
                    for name in (MODULE, *spec.feature_names)
                }
                outputs = model.predict(features, batch_size=len(rows), verbose=0)
                predictions.append({name: np.asarray(values).reshape(-1).tolist() for name, values in outputs.items()})
            body = json.dumps({"predictions": predictions}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


# -- payloads ----------------------------------------------------------------------------------------------------

PAYLOADS = ("v1", "v2", "v2-binary", "v2-mixed")
V2_ROUTE = "/v2/models/mmoe-ranker/infer"


def encoded_payload(spec: Any, candidates: int, kind: str, columnar: bool) -> tuple[bytes, dict[str, str]]:
    """The body of one request of ``kind`` (see :data:`PAYLOADS`) and the headers it needs."""
    from serving.loadtest import synthetic_request

    return synthetic_request(spec, candidates, ("columns" if columnar else "rows") if kind == "v1" else kind)


# -- running servers and load ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(command: list[str], env: dict[str, str], health_url: str, log: Path) -> subprocess.Popen:
    import httpx

    process = subprocess.Popen(
        command, cwd=REPO, env={**os.environ, **env}, stdout=log.open("w"), stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{command} exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(health_url, timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    process.kill()
    raise TimeoutError(f"{command} not ready:\n{log.read_text()[-3000:]}")


def server_variant(name: str) -> tuple[bool, int, bool]:
    """``batched`` or ``direct``, then ``-<N>w`` for N worker processes and ``-nofreeze`` for a server that leaves
    its start-up heap in the garbage collector's full passes: (batching, workers, gc_freeze).

    >>> server_variant("batched-2w")
    (True, 2, True)
    >>> server_variant("direct-nofreeze")
    (False, 1, False)
    """
    match = re.fullmatch(r"(batched|direct)(?:-([1-9]\d*)w)?(-nofreeze)?", name)
    if match is None:
        raise ValueError(
            f"unknown variant {name!r}: batched, direct or plain, the first two with -<N>w for N workers "
            "and then -nofreeze for no start-up heap freeze"
        )
    base, workers, no_freeze = match.groups()
    return base == "batched", int(workers or 1), no_freeze is None


THREAD_KINDS = ("main", "python", "tensorflow")
"""The server's threads by what they run: ``main`` the event loop (HTTP, decoding, parsing, answering),
``python`` the other Python threads (the model runner's: tensors and the signature call), ``tensorflow``
TensorFlow's own pools (``tf_*``: the kernels)."""


def thread_kind(tid: int, pid: int, name: str) -> str:
    """Which of :data:`THREAD_KINDS` thread ``tid`` of process ``pid``, named ``name`` by the OS, is."""
    if tid == pid:
        return "main"
    return "tensorflow" if name.startswith("tf_") else "python"


def cpu_seconds(pid: int) -> dict[str, float]:
    """User + system CPU seconds process ``pid`` and its child processes (a server's workers) have used, in all
    (``total``, from each process's own count, which keeps the threads that ended) and per live thread kind
    (:data:`THREAD_KINDS`; ``/proc/<pid>/task/<tid>/stat``; Linux)."""
    seconds = dict.fromkeys(("total", *THREAD_KINDS), 0.0)
    for process in Path("/proc").glob("[0-9]*"):
        fields = _stat_fields(process / "stat")
        if fields is None or (process.name != str(pid) and fields[1] != str(pid)):
            continue
        seconds["total"] += _cpu(fields)
        for task in process.glob("task/[0-9]*"):
            try:
                name = (task / "comm").read_text().strip()
            except OSError:  # the thread ended meanwhile
                continue
            if (task_fields := _stat_fields(task / "stat")) is not None:
                seconds[thread_kind(int(task.name), int(process.name), name)] += _cpu(task_fields)
    return seconds


def _stat_fields(stat: Path) -> list[str] | None:
    """The fields after the command name of a ``/proc`` stat file; None when the process or thread has ended."""
    try:
        return stat.read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _cpu(fields: list[str]) -> float:
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def full_collections(metrics: str) -> tuple[int, float]:
    """How many full (generation 2) garbage collections a server's ``/metrics`` text counts, and their milliseconds.

    >>> full_collections('ranker_gc_pause_seconds_count{generation="2"} 3.0\\n'
    ...                  'ranker_gc_pause_seconds_sum{generation="2"} 0.5')
    (3, 500.0)
    """

    def value(kind: str) -> float:
        found = re.search(rf'^ranker_gc_pause_seconds_{kind}{{generation="2"}} (\S+)$', metrics, re.M)
        return float(found.group(1)) if found else 0.0

    return int(value("count")), value("sum") * 1000


def measure(
    url: str, payload: bytes, headers: dict[str, str], args: argparse.Namespace, pid: int, metrics_url: str | None
) -> dict[str, dict[str, Any]]:
    """p99 at ``args.rate`` (Poisson), with the server's CPU per request, and the ceiling (throughput when saturated).

    The server's CPU milliseconds per answered request (warm-up included) do not
    depend on what else runs on a shared machine, unlike the latencies. With
    ``metrics_url`` the fixed-rate phase also counts the server's full garbage
    collections (:func:`phase_with_collections`).
    """
    from serving.loadtest import LoadTestConfig, run_load_test

    # One untimed request so no server pays for lazy initialisation inside the warm-up.
    first = LoadTestConfig(url=url, rate=1, duration_s=1, warmup_s=0, max_requests=1, timeout_s=120, headers=headers)
    run_load_test(first, payload)
    fixed = LoadTestConfig(
        url=url, rate=args.rate, duration_s=args.duration, warmup_s=args.warmup, timeout_s=30, headers=headers
    )
    saturated = LoadTestConfig(
        url=url, rate=args.saturation_rate, duration_s=args.duration, warmup_s=args.warmup,
        concurrency=args.saturation_concurrency, timeout_s=30, headers=headers,
    )  # fmt: skip
    started = cpu_seconds(pid)
    summary = phase_with_collections(fixed, payload, metrics_url)
    answered = summary["warmup_requests"] + summary["scheduled"] - summary["dropped"]
    ended = cpu_seconds(pid)
    summary["server_cpu_ms"] = (ended["total"] - started["total"]) * 1000 / max(answered, 1)
    for kind in THREAD_KINDS:
        summary[f"server_cpu_ms_{kind}"] = (ended[kind] - started[kind]) * 1000 / max(answered, 1)
    return {"fixed": summary, "ceiling": run_load_test(saturated, payload).summary()}


def phase_with_collections(config: Any, payload: bytes, metrics_url: str | None) -> dict[str, Any]:
    """One load-test phase's summary; with ``metrics_url``, also the server's full garbage collections meanwhile
    (``full_gcs``, ``full_gc_ms``: every thread of the server stopped)."""
    import httpx

    from serving.loadtest import run_load_test

    if metrics_url is None:
        return run_load_test(config, payload).summary()
    before = full_collections(httpx.get(metrics_url, timeout=10).text)
    summary = run_load_test(config, payload).summary()
    after = full_collections(httpx.get(metrics_url, timeout=10).text)
    summary["full_gcs"], summary["full_gc_ms"] = after[0] - before[0], after[1] - before[1]
    return summary


def run_variant(
    name: str, model_dir: Path, payloads: dict[str, tuple[bytes, dict[str, str]]], args: argparse.Namespace, work: Path
) -> dict[str, dict[str, Any]]:
    """Each payload kind measured against one server of variant ``name`` (the plain server takes v1 only).

    With ``args.rounds`` > 1 the kinds take turns, round after round (keys ``<kind> #<round>``), so that
    a shared machine's changing load falls on every kind alike.
    """
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    if name == "plain":
        command = [
            sys.executable,
            "-m",
            "benchmarks.bench_serving",
            "--plain-server",
            str(port),
            "--model-dir",
            str(model_dir),
        ]
        env, url = {}, f"{base}/predict"
    else:
        command = [sys.executable, "-m", "pipelines.cli", "serve", "--model-uri", str(model_dir), "--port", str(port)]
        batching, workers, gc_freeze = server_variant(name)
        env = {"RANKER_BATCHING": str(batching), "RANKER_BATCH_WAIT_MS": str(args.batch_wait_ms)}
        env["RANKER_WORKERS"], env["RANKER_GC_FREEZE"] = str(workers), str(gc_freeze)
        env["RANKER_MAX_CANDIDATES"] = str(max(args.candidates, 1000))
        url = f"{base}/predict"
    process = start(command, env, f"{base}/health", work / f"{name}.log")
    try:
        return {
            kind + (f" #{round_}" if args.rounds > 1 else ""): measure(
                url if kind == "v1" else base + V2_ROUTE,
                body,
                headers,
                args,
                process.pid,
                None if name == "plain" else f"{base}/metrics",
            )
            for round_ in range(1, args.rounds + 1)
            for kind, (body, headers) in payloads.items()
            if kind == "v1" or name != "plain"
        }
    finally:
        stop(process)


def stop(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 60 s."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()


# -- with and without the feature store -------------------------------------------------------------------------

STORE_CONTEXT = {"module_name": "search", "user_id": "u1", "query_category": "toys"}


def build_store_model(work: Path) -> tuple[Path, Path]:
    """The test impressions extracted and materialized (``bench_feature_store``), the default MMoE trained on them."""
    from benchmarks.bench_feature_store import build_repo
    from trainer.config import TrainerConfig
    from trainer.train import train_and_export

    repo = build_repo(work)
    train_and_export(work / "examples", work / "model", TrainerConfig(epochs=1))
    return work / "model", repo


def store_payloads(repo: Path, candidates: int) -> dict[str, bytes]:
    """One request twice: ``store`` with listing ids only, ``sent`` with every stored feature sent as JSON."""
    import numpy as np
    import orjson
    import pandas as pd

    from serving.feature_store import OnlineFeatures

    listings = pd.read_parquet(repo.parent / "examples" / "entities" / "listing_id.parquet")["listing_id"].tolist()
    ids = [listings[index % len(listings)] for index in range(candidates)]
    columns = OnlineFeatures(str(repo), "listing_id", cache_seconds=0).assemble(STORE_CONTEXT, {"listing_id": ids})
    sent = {
        name: [None if value != value else value for value in np.asarray(values).tolist()]  # NaN -> null
        for name, values in columns.items()
    }
    return {
        "store": orjson.dumps({"instances": [{"context": STORE_CONTEXT, "candidates": {"listing_id": ids}}]}),
        "sent": orjson.dumps({"instances": [{"context": STORE_CONTEXT, "candidates": sent}]}),
    }


def compare_store(
    args: argparse.Namespace, model_dir: Path, repo: Path, payloads: dict[str, bytes], work: Path
) -> dict[str, list[dict[str, Any]]]:
    """Both servers up at once; ``args.rounds`` fixed-rate phases each, alternating (the machine's drift hits both)."""
    from serving.loadtest import LoadTestConfig, run_load_test

    servers: dict[str, tuple[subprocess.Popen, str]] = {}
    try:
        for name in payloads:
            port = free_port()
            command = [sys.executable, "-m", "pipelines.cli", "serve", "--model-uri", str(model_dir)]
            env = {"AIP_HTTP_PORT": str(port), "RANKER_MAX_CANDIDATES": str(max(args.candidates, 1000))}
            if name == "store":
                env["RANKER_FEATURE_STORE"] = str(repo)
            base = f"http://127.0.0.1:{port}"
            servers[name] = (start(command, env, f"{base}/health", work / f"{name}.log"), base)
        for name, (_, base) in servers.items():  # untimed: lazy initialisation, the cache's first fill
            first = LoadTestConfig(url=f"{base}/predict", rate=1, duration_s=1, warmup_s=0, max_requests=1)
            run_load_test(first, payloads[name])
        fixed = {"rate": args.rate, "duration_s": args.duration, "warmup_s": args.warmup, "timeout_s": 30}
        results: dict[str, list[dict[str, Any]]] = {name: [] for name in payloads}
        for _ in range(args.rounds):
            for name, (_, base) in servers.items():
                phase = LoadTestConfig(url=f"{base}/predict", **fixed)
                results[name].append(phase_with_collections(phase, payloads[name], f"{base}/metrics"))
        return results
    finally:
        for process, _ in servers.values():
            stop(process)


def store_stages(repo: Path, payloads: dict[str, bytes], repeats: int = 500) -> dict[str, list[float]]:
    """p50 and p99 ms in process: decode + features from the warm cache + parse (ids), decode + parse (sent)."""
    import orjson

    from ranker_core.schema import FeatureSpec
    from serving.feature_store import OnlineFeatures
    from serving.request import RequestParser

    parser = RequestParser(FeatureSpec.load(repo.parent / "examples"), max_candidates=1 << 20)
    features = OnlineFeatures(str(repo), "listing_id", cache_seconds=3600)
    steps = {
        "store": lambda: parser.parse(features.fill(orjson.loads(payloads["store"]))),
        "sent": lambda: parser.parse(orjson.loads(payloads["sent"])),
    }
    return {name: percentiles(step, repeats) for name, step in steps.items()}


def percentiles(step: Any, repeats: int) -> list[float]:
    """p50 and p99 milliseconds of ``step()`` over ``repeats`` calls, after 10 untimed ones."""
    import numpy as np

    for _ in range(10):
        step()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        times.append((time.perf_counter() - started) * 1000)
    return np.percentile(times, [50, 99]).tolist()


def format_store_table(
    results: dict[str, list[dict[str, Any]]], stages: dict[str, list[float]], args: argparse.Namespace
) -> str:
    """Each phase's p50/p99 per variant, their medians, and what the store adds."""
    lines = [
        f"{args.candidates} candidates/request, Poisson {args.rate:g} req/s for {args.duration:g} s, "
        f"{args.rounds} alternating phases per variant",
        f"{'variant':<7} {'phase p50 ms':<28} {'phase p99 ms':<28} {'median p50':>10} {'median p99':>10} {'errors':>7} "
        "full GC n/ms per phase",
    ]
    medians = {}
    for name, phases in results.items():
        p50s, p99s = [phase["p50_ms"] for phase in phases], [phase["p99_ms"] for phase in phases]
        medians[name] = (statistics.median(p50s), statistics.median(p99s))
        errors = max(phase["error_rate"] for phase in phases)
        lines.append(
            f"{name:<7} {' '.join(f'{v:.1f}' for v in p50s):<28} {' '.join(f'{v:.1f}' for v in p99s):<28} "
            f"{medians[name][0]:>10.1f} {medians[name][1]:>10.1f} {errors:>7.3f} "
            + " ".join(full_gc_column(phase) for phase in phases)
        )
    added = [medians["store"][i] - medians["sent"][i] for i in (0, 1)]
    lines.append(f"the store adds (medians over phases): p50 {added[0]:+.1f} ms, p99 {added[1]:+.1f} ms")
    lines.append(
        "in process (decode + [store] + parse), p50 / p99 ms: "
        + ", ".join(f"{name} {p50:.2f} / {p99:.2f}" for name, (p50, p99) in stages.items())
    )
    return "\n".join(lines)


def request_stages(model_dir: Path, payloads: dict[str, tuple[bytes, dict[str, str]]], repeats: int = 200) -> dict:
    """Per payload kind, median milliseconds of each step one request takes in the server (in process, no HTTP)."""
    from serving.config import ServerConfig
    from serving.request import RequestParser, TypedBodyDecoder
    from trainer.predict import load_ranker, set_op_threads

    set_op_threads(ServerConfig().op_threads)  # as the server runs the model
    ranker = load_ranker(model_dir)
    parser = RequestParser(ranker.feature_spec, max_candidates=1 << 20, max_instances=1 << 10)
    decoder = TypedBodyDecoder(ranker.feature_spec)
    return {
        kind: median_ms(
            v1_steps(ranker, parser, decoder, body) if kind == "v1" else v2_steps(ranker, parser, body, headers),
            repeats,
        )
        for kind, (body, headers) in payloads.items()
    }


def v1_steps(ranker: Any, parser: Any, decoder: Any, payload: bytes) -> dict[str, Callable[[], Any]]:
    """The v1 route's steps: the typed decoder, the request parser, the model, the columnar response."""
    import orjson

    from serving.request import build_response

    body = decoder.decode(payload)
    batch = parser.parse(body)
    outputs = ranker.predict(batch.columns)
    return {
        "decode request": lambda: decoder.decode(payload),
        "parse into columns": lambda: parser.parse(body),
        "columns to tensors": lambda: ranker.to_tensors(batch.columns),
        "predict (tensors + model)": lambda: ranker.predict(batch.columns),
        "build + encode response": lambda: orjson.dumps(
            build_response(batch, outputs, parser.task_names), option=orjson.OPT_SERIALIZE_NUMPY
        ),
    }


def v2_steps(ranker: Any, parser: Any, payload: bytes, headers: dict[str, str]) -> dict[str, Callable[[], Any]]:
    """The v2 route's steps (``serving.open_inference``): the decoder (JSON, or the JSON header and raw tensors),
    the tensors through the request parser, the model, the response encoded (JSON, or raw FP32 when asked)."""
    from serving.open_inference import (
        HEADER_LENGTH,
        INPUTS,
        SCORE,
        decode_request,
        encode_response,
        input_datatypes,
        output_plan,
        tensors_to_instance,
    )

    datatypes, names, length = (
        input_datatypes(ranker.feature_spec),
        (*parser.task_names, SCORE),
        headers.get(HEADER_LENGTH),
    )
    request = decode_request(payload, length)
    batch = parser.parse_single(tensors_to_instance(request, datatypes), INPUTS)
    outputs = ranker.predict(batch.columns)
    plan = output_plan(request, names)
    return {
        "decode request": lambda: decode_request(payload, length),
        "parse into columns": lambda: parser.parse_single(tensors_to_instance(request, datatypes), INPUTS),
        "columns to tensors": lambda: ranker.to_tensors(batch.columns),
        "predict (tensors + model)": lambda: ranker.predict(batch.columns),
        "build + encode response": lambda: encode_response(request.id, outputs, plan, "mmoe-ranker", None),
    }


def median_ms(steps: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Each step's median wall time in milliseconds over ``repeats`` runs (after 5 untimed ones)."""
    import numpy as np

    medians = {}
    for name, step in steps.items():
        for _ in range(5):
            step()
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            step()
            times.append(time.perf_counter() - started)
        medians[name] = float(np.median(times) * 1000)
    return medians


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, help="an exported ranker (default: train the default config)")
    parser.add_argument("--candidates", type=int, default=1000, help="candidates per request (default 1000)")
    parser.add_argument("--rate", type=float, default=50.0, help="requests/s of the latency phase (default 50)")
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds per phase (default 20)")
    parser.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds per phase (default 3)")
    parser.add_argument("--saturation-rate", type=float, default=400.0, help="offered req/s of the ceiling phase")
    parser.add_argument("--saturation-concurrency", type=int, default=8, help="requests in flight when saturating")
    parser.add_argument("--batch-wait-ms", type=float, default=0.0, help="batching wait of the batched variant")
    parser.add_argument("--variants", default="batched,direct,plain", help="comma-separated subset to run")
    parser.add_argument(
        "--columnar", action="store_true", help="send the candidates as columns (one list per feature), not rows"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--stages", action="store_true", help="only time each step of one request in process (no server, no HTTP)"
    )
    parser.add_argument(
        "--payloads",
        default="v1",
        help=f"comma-separated payload kinds, each measured on the same servers: {', '.join(PAYLOADS)} (default v1; "
        "v2 sends the columnar payload's values as KServe v2 JSON tensors, v2-binary as binary tensor data, "
        "v2-mixed strings as JSON and numbers as binary data)",
    )
    parser.add_argument(
        "--feature-store", action="store_true", help="ids only through the Feast store vs the same features sent"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        help="phases per variant taking turns: the payload kinds (default 1), or with --feature-store the two "
        "servers (default 3)",
    )
    parser.add_argument(
        "--max-p99",
        type=float,
        metavar="MS",
        help="exit 1 when a variant of the server (not the plain one) has a fixed-rate p99 over MS, as "
        "`ranker loadtest --max-p99` does (issue 13's goal: 25)",
    )
    parser.add_argument("--plain-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (3 if args.feature_store else 1)
    if args.plain_server:
        plain_server(args.model_dir, args.plain_server)
        return 0

    from ranker_core.schema import FeatureSpec

    kinds = args.payloads.split(",")
    if set(kinds) - set(PAYLOADS):
        parser.error(f"--payloads: unknown kind(s) {sorted(set(kinds) - set(PAYLOADS))}; known: {', '.join(PAYLOADS)}")
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as scratch:
        work = Path(scratch)
        if args.feature_store:
            model_dir, repo = build_store_model(work)
            payloads = store_payloads(repo, args.candidates)
            stages = store_stages(repo, payloads)
            print(format_store_table(compare_store(args, model_dir, repo, payloads, work), stages, args))
            return 0
        model_dir = args.model_dir or build_default_model(work)
        spec = FeatureSpec.load(model_dir)
        payloads = {kind: encoded_payload(spec, args.candidates, kind, args.columnar) for kind in kinds}
        if args.stages:
            print(format_stages(request_stages(model_dir, payloads), payloads))
            return 0
        results = {
            name if kind == "v1" else f"{name}/{kind}": result
            for name in args.variants.split(",")
            for kind, result in run_variant(name, model_dir, payloads, args, work).items()
        }
    print(format_table(results, args))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    missed = budget_misses(results, args.max_p99)
    for sentence in missed:
        print(f"budget missed: {sentence}")
    return 1 if missed else 0


def budget_misses(results: dict[str, dict[str, Any]], max_p99_ms: float | None) -> list[str]:
    """Each of our servers' fixed-rate phases over ``max_p99_ms``, in :func:`serving.loadtest.check_budget`'s words.

    >>> budget_misses({"batched": {"fixed": {"p99_ms": 31.0}}, "plain": {"fixed": {"p99_ms": 900.0}}}, 25)
    ['batched: p99 latency 31.0 ms exceeds the budget of 25 ms']
    """
    from serving.loadtest import check_budget

    return [
        f"{name}: {sentence}"
        for name, result in results.items()
        if not name.startswith("plain")
        for sentence in check_budget(result["fixed"], max_p99_ms, None)
    ]


def format_stages(stages: dict[str, dict[str, float]], payloads: dict[str, tuple[bytes, dict]]) -> str:
    """One column of step medians per payload kind, with each body's size and the total."""
    kinds = list(stages)
    lines = [f"{'step':<26}" + "".join(f"{kind:>12}" for kind in kinds)]
    lines.append(f"{'body KB':<26}" + "".join(f"{len(payloads[kind][0]) / 1000:>12.0f}" for kind in kinds))
    for step in stages[kinds[0]]:
        lines.append(f"{step:<26}" + "".join(f"{stages[kind][step]:>9.2f} ms" for kind in kinds))
    lines.append(f"{'total':<26}" + "".join(f"{sum(stages[kind].values()):>9.2f} ms" for kind in kinds))
    return "\n".join(lines)


def thread_split(summary: dict[str, Any]) -> str:
    """The server's CPU ms per request on its main, Python and TensorFlow threads: ``"4.3/1.3/3.0"``."""
    return "/".join(f"{summary['server_cpu_ms_' + kind]:.1f}" for kind in THREAD_KINDS)


def full_gc_column(summary: dict[str, Any]) -> str:
    """A phase's full garbage collections and their total milliseconds: ``"1/276"``; ``-`` unknown."""
    return f"{summary['full_gcs']}/{summary['full_gc_ms']:.0f}" if "full_gcs" in summary else "-"


def format_table(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        f"{args.candidates} candidates/request ({'columns' if args.columnar else 'rows'}), "
        f"Poisson {args.rate:g} req/s for {args.duration:g} s; "
        f"ceiling: {args.saturation_rate:g} req/s offered, {args.saturation_concurrency} in flight",
        f"{'variant':<22} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} {'errors':>7} "
        f"{'CPU ms/req':>10} {'main/py/TF':>15} {'full GC n/ms':>13} {'ceiling rps':>12}",
    ]
    for name, result in results.items():
        fixed, ceiling = result["fixed"], result["ceiling"]
        lines.append(
            f"{name:<22} {fixed['p50_ms']:>8.1f} {fixed['p90_ms']:>8.1f} {fixed['p99_ms']:>8.1f} "
            f"{fixed['p99.9_ms']:>9.1f} {fixed['error_rate']:>7.3f} {fixed['server_cpu_ms']:>10.2f} "
            f"{thread_split(fixed):>15} {full_gc_column(fixed):>13} "
            f"{ceiling['achieved_rps']:>12.1f}"
        )
    for name in ("batched", "direct"):
        if "plain" in results and name in results:
            plain, ours = results["plain"], results[name]
            lines.append(
                f"plain vs {name}: p99 x{plain['fixed']['p99_ms'] / ours['fixed']['p99_ms']:.1f} higher, "
                f"ceiling x{ours['ceiling']['achieved_rps'] / max(plain['ceiling']['achieved_rps'], 1e-9):.1f} lower"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
