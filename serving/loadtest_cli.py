"""Open-loop load test of a prediction endpoint (``ranker loadtest``).

Requests go out at their scheduled time whatever the server does, and latency
counts from that time, so the percentiles include any queueing the server
causes. Arrivals beyond ``--concurrency`` in flight are dropped and counted as
errors. Examples::

    ranker loadtest --url http://localhost:8080/predict --model-dir work_dir/model \\
        --candidates 1000 --rate 50 --duration 30 --max-p99 50 --out work_dir/loadtest
    ranker loadtest --url https://REGION-aiplatform.googleapis.com/v1/projects/P/locations/REGION/endpoints/E:predict \\
        --payload request.json --arrival bursty --rate 100 \\
        --token-command "gcloud auth print-access-token"
    ranker loadtest --url http://localhost:8080/v2/models/mmoe-ranker/infer --model-dir work_dir/model \\
        --format v2-mixed --max-p99 25

Exits 1 when ``--max-p99`` or ``--max-error-rate`` is missed.
"""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

from ranker_core.serving import MODEL_NAME
from serving.loadtest import BODY_FORMATS

HELP = "open-loop load test of a prediction endpoint with latency percentiles"

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", required=True, help="the predict URL (local server, KServe or Vertex AI endpoint)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--payload", type=Path, help="a request body to send as is (JSON unless --header says not)")
    source.add_argument("--model-dir", type=Path, help="generate the request from this model's feature_spec.json")
    parser.add_argument("--candidates", type=int, default=1000, help="candidates per generated request (default 1000)")
    parser.add_argument(
        "--format",
        choices=BODY_FORMATS,
        default="columns",
        help="generated body: v1 JSON with the candidates as columns (default) or rows; KServe v2 tensors in JSON "
        "(v2), binary (v2-binary), or strings in JSON and numbers binary (v2-mixed), for a /v2/models/NAME/infer URL",
    )
    parser.add_argument("--rows", dest="format", action="store_const", const="rows", help="the same as --format rows")
    parser.add_argument(
        "--header",
        action="append",
        type=header,
        default=[],
        metavar="'NAME: VALUE'",
        help="send this header too (repeatable), e.g. with --payload a binary v2 body's content type and "
        "Inference-Header-Content-Length",
    )
    parser.add_argument(
        "--arrival",
        choices=("constant", "poisson", "bursty"),
        default="poisson",
        help="arrival process of the requests (default: poisson)",
    )
    parser.add_argument("--rate", type=float, default=50.0, help="requests/s (during on-windows when bursty)")
    parser.add_argument("--burst-on", type=float, default=1.0, help="bursty: seconds of traffic per cycle")
    parser.add_argument("--burst-off", type=float, default=1.0, help="bursty: seconds of silence per cycle")
    parser.add_argument("--duration", type=float, default=30.0, help="measured seconds (default 30)")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of traffic before measuring (default 5)")
    parser.add_argument("--max-requests", type=int, help="stop the measured phase after this many requests")
    parser.add_argument("--concurrency", type=int, default=64, help="most requests in flight; more are dropped")
    parser.add_argument("--timeout", type=float, default=10.0, help="per-request timeout in seconds")
    parser.add_argument("--seed", type=int, default=0, help="seed of the arrivals and the requests (default: 0)")
    parser.add_argument("--bearer-token", help="send 'Authorization: Bearer TOKEN'")
    parser.add_argument(
        "--token-command", help='command printing a bearer token, e.g. "gcloud auth print-access-token"'
    )
    parser.add_argument("--out", type=Path, help="write summary.json, the PNG charts and report.html here")
    parser.add_argument("--max-p99", type=float, metavar="MS", help="fail when p99 latency exceeds MS milliseconds")
    parser.add_argument("--max-error-rate", type=float, metavar="R", help="fail when the error rate exceeds R")


def header(text: str) -> tuple[str, str]:
    """A ``--header`` value, ``NAME: VALUE``, as a lower-case name and its value.

    >>> header("Inference-Header-Content-Length: 1204")
    ('inference-header-content-length', '1204')
    """
    name, colon, value = text.partition(":")
    if not colon or not name.strip():
        raise argparse.ArgumentTypeError(f"expected 'NAME: VALUE', got {text!r}")
    return name.strip().lower(), value.strip()


def v2_model_name(url: str) -> str:
    """The model a KServe v2 URL names (``.../v2/models/<name>/infer``), or the server's default name.

    >>> v2_model_name("http://localhost:8080/v2/models/ranker-b/infer")
    'ranker-b'
    """
    match = re.search(r"/v2/models/([^/]+)/", url)
    return match.group(1) if match else MODEL_NAME


def main(args: argparse.Namespace) -> int:
    from ranker_core.schema import FeatureSpec
    from serving.loadtest import LoadTestConfig, auth_headers, check_budget, run_load_test, synthetic_request
    from serving.loadtest_report import format_summary, write_report

    if args.payload:
        payload, headers = args.payload.read_bytes(), {}
    else:
        spec = FeatureSpec.load(args.model_dir)
        payload, headers = synthetic_request(spec, args.candidates, args.format, args.seed, v2_model_name(args.url))
    headers.update(args.header)
    config = LoadTestConfig(
        url=args.url,
        rate=args.rate,
        arrival=args.arrival,
        duration_s=args.duration,
        warmup_s=args.warmup,
        max_requests=args.max_requests,
        concurrency=args.concurrency,
        timeout_s=args.timeout,
        burst_on_s=args.burst_on,
        burst_off_s=args.burst_off,
        seed=args.seed,
        headers={**headers, **auth_headers(args.bearer_token, args.token_command)},
    )
    result = run_load_test(config, payload)
    summary = result.summary()
    print(format_summary(summary))
    if args.out:
        paths = write_report(result, args.out)
        print(f"report: {paths['html']}")
    missed = check_budget(summary, args.max_p99, args.max_error_rate)
    for sentence in missed:
        logger.error("budget missed: %s", sentence)
    return 1 if missed else 0
