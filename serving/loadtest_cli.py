"""Open-loop load test of a prediction endpoint (``ranker loadtest``).

Requests go out at their scheduled time whatever the server does, and latency
counts from that time, so the percentiles include any queueing the server
causes. Arrivals beyond ``--concurrency`` in flight are dropped and counted as
errors. Examples::

    ranker loadtest --url http://localhost:8080/predict --model-dir work_dir/latest/model \\
        --candidates 1000 --rate 50 --duration 30 --max-p99 50 --out work_dir/loadtest
    ranker loadtest --url https://REGION-aiplatform.googleapis.com/v1/projects/P/locations/REGION/endpoints/E:predict \\
        --payload request.json --arrival bursty --rate 100 \\
        --token-command "gcloud auth print-access-token"
    ranker loadtest --url http://localhost:8080/v2/models/mmoe-ranker/infer --model-dir work_dir/latest/model \\
        --format v2-mixed --max-p99 25
    ranker loadtest --url http://localhost:8080/predict --model-dir work_dir/latest/model \\
        --feature-store work_dir/latest/feature_repo

With ``--feature-store`` (the repo a ``ranker serve --feature-store`` server reads) the generated
request carries ids only: the module, the user id and the item ids, drawn from the ids the store
holds, and the features the store does not keep.

One request goes first, outside the test: when it fails (no server at the URL,
a wrong route, a body the server refuses) no test runs. Exits 1 when no request
succeeded (with the first one's error) or ``--max-p99`` or ``--max-error-rate``
is missed; 2, before sending anything, on a flag's bad value.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import re
import urllib.parse
from pathlib import Path

import orjson

from ranker_core.cli_support import UserError, require_folder
from ranker_core.schema import FEATURE_SPEC_FILE
from ranker_core.serving import MODEL_NAME
from serving.loadtest import BODY_FORMATS, InvalidSettingError, LoadTestConfig, LoadTestResult

HELP = "open-loop load test of a prediction endpoint with latency percentiles"
ARRIVALS = ("constant", "poisson", "bursty")

logger = logging.getLogger(__name__)

# The flag of each LoadTestConfig field.
FLAGS = {
    "url": "--url",
    "arrival": "--arrival",
    "rate": "--rate",
    "duration_s": "--duration",
    "warmup_s": "--warmup",
    "max_requests": "--max-requests",
    "concurrency": "--concurrency",
    "timeout_s": "--timeout",
    "burst_on_s": "--burst-on",
    "burst_off_s": "--burst-off",
    "seed": "--seed",
}


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
    parser.add_argument(
        "--feature-store",
        metavar="REPO",
        help="with --model-dir: the Feast repo of a `ranker serve --feature-store` server; the generated request "
        "sends ids only (the module, a user and items the store holds, the features it does not keep)",
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
        choices=ARRIVALS,
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
    from serving.loadtest import auth_headers, run_load_test, send_one

    config = load_test_config(args)
    check_arguments(args)
    payload, headers = request_body(args)
    config = dataclasses.replace(config, headers={**headers, **auth_headers(args.bearer_token, args.token_command)})
    first = send_one(config, payload)
    if not first.ok:
        return no_request_succeeded(f"{first.error} (the request sent before the test; the test did not run)")
    return report(run_load_test(config, payload), args)


def load_test_config(args: argparse.Namespace) -> LoadTestConfig:
    """The test's settings from the flags, without headers; a :class:`UserError` naming a flag out of range."""
    try:
        return LoadTestConfig(
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
        )
    except InvalidSettingError as error:
        raise UserError(f"{FLAGS[error.field]} {error.shown}: {error.requirement}") from None


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse, as a :class:`UserError` naming the flag, what :class:`LoadTestConfig` does not check."""
    check_url(args.url)
    check_model_dir(args.model_dir)
    if args.feature_store and not args.model_dir:
        raise UserError(f"--feature-store {args.feature_store}: generates the request, so it needs --model-dir")
    if args.candidates < 1:
        raise UserError(f"--candidates {args.candidates}: must be at least 1")
    if args.max_p99 is not None and not args.max_p99 > 0:
        raise UserError(f"--max-p99 {args.max_p99:g}: must be a positive number of milliseconds")
    if args.max_error_rate is not None and not 0 <= args.max_error_rate <= 1:
        raise UserError(f"--max-error-rate {args.max_error_rate:g}: must be between 0 and 1")
    check_out(args.out)


def check_url(url: str) -> None:
    """Refuse a ``--url`` that is not an absolute http(s) URL.

    >>> check_url("localhost:8080/predict")
    Traceback (most recent call last):
    ranker_core.cli_support.UserError: --url localhost:8080/predict: not an http:// or https:// URL
    """
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise UserError(f"--url {url}: not an http:// or https:// URL")


def check_model_dir(model_dir: Path | None) -> None:
    """Refuse a ``--model-dir`` that is not a folder holding a model's ``feature_spec.json`` (what the request is
    generated from)."""
    if model_dir is None:
        return
    require_folder(model_dir, "--model-dir")
    if not (model_dir / FEATURE_SPEC_FILE).is_file():
        raise UserError(
            f"--model-dir {model_dir}: holds no model (no {FEATURE_SPEC_FILE}): give the folder `ranker train` "
            "exported the model to"
        )


def check_out(out: Path | None) -> None:
    """Refuse an ``--out`` folder that cannot be made: a file in its place or on its path, or no write permission."""
    if out is None:
        return
    existing = next(path for path in (out, *out.parents) if path.exists())  # a relative path ends in ".", absolute "/"
    if not existing.is_dir():
        raise UserError(f"--out {out}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"--out {out}: {existing} is not writable")


def request_body(args: argparse.Namespace) -> tuple[bytes, dict[str, str]]:
    """The body to send and its headers: ``--payload`` or one generated from ``--model-dir`` (ids only with
    ``--feature-store``), then ``--header``."""
    from ranker_core.schema import FeatureSpec
    from serving.loadtest import ids_only, synthetic_request

    headers = dict(args.header)
    if args.payload:
        return read_payload(args.payload, headers.get("content-type", "application/json")), headers
    spec = FeatureSpec.load(args.model_dir)
    ids = ids_only(args.feature_store, spec) if args.feature_store else None
    payload, generated = synthetic_request(spec, args.candidates, args.format, args.seed, v2_model_name(args.url), ids)
    return payload, {**generated, **headers}


def read_payload(path: Path, content_type: str) -> bytes:
    """The ``--payload`` file's bytes; a :class:`UserError` when it cannot be read or, sent as JSON, is not JSON."""
    try:
        payload = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"--payload {path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"--payload {path}: is a folder, not a file") from None
    except OSError as error:
        raise UserError(f"--payload {path}: {error.strerror or error}") from None
    if "json" in content_type:
        try:
            orjson.loads(payload)
        except orjson.JSONDecodeError as error:
            raise UserError(f"--payload {path}: not valid JSON ({error})") from None
    return payload


def report(result: LoadTestResult, args: argparse.Namespace) -> int:
    """Print the summary, write ``--out``; the exit status: 1 when no request succeeded or a budget is missed."""
    from serving.loadtest import check_budget
    from serving.loadtest_report import format_summary, write_report

    summary = result.summary()
    print(format_summary(summary))
    if args.out:
        paths = write_report(result, args.out)
        print(f"report: {paths['html']}")
    if not summary["ok"]:
        return no_request_succeeded(summary["first_error"])
    missed = check_budget(summary, args.max_p99, args.max_error_rate)
    for sentence in missed:
        logger.error("budget missed: %s", sentence)
    return 1 if missed else 0


def no_request_succeeded(first_error: str) -> int:
    """Log that no request succeeded, and why; the exit status, 1."""
    logger.error("no request succeeded: %s", first_error)
    return 1
