"""Serving soak benchmark: many small requests against ``ranker serve``, recording the server's RSS over time.

Starts the server (the default MMoE configuration unless ``--model-dir`` names
another export), sends ``--requests`` small ranking requests from a few
concurrent keep-alive connections (a pool of bodies of 1 to ``--candidates``
candidates, rows and columns, different ids, every tenth one invalid so the
400 path soaks too) and samples the server's resident memory
(``VmRSS``) every ``--sample-every`` requests. It prints the samples and the
growth over each quarter of the run, so a leak shows as steady growth in the
last quarters and a warm-up as growth that levels off::

    python -m benchmarks.bench_soak                                   # 100k requests of 10 candidates
    python -m benchmarks.bench_soak --model-dir work_dir/model --requests 200000 --json soak.json

Not part of the test run: 100k requests take a few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.bench_serving import build_default_model, free_port, start

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def rss_mb(pid: int) -> float:
    """The resident set size of process ``pid`` in MiB (Linux ``/proc``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def payload_pool(spec: Any, candidates: int, size: int = 200) -> list[bytes]:
    """``size`` request bodies of 1 to ``candidates`` candidates, rows and columns; every tenth one is a 400."""
    from serving.loadtest import synthetic_payload

    pool = []
    for index in range(size):
        body = synthetic_payload(spec, 1 + index % candidates, seed=index, columnar=index % 2 == 0)
        pool.append(body.replace(b'"instances"', b'"instance"') if index % 10 == 9 else body)
    return pool


async def soak(url: str, payloads: list[bytes], pid: int, args: argparse.Namespace) -> dict[str, Any]:
    """Send ``args.requests`` requests over ``args.concurrency`` connections; RSS samples and status counts."""
    import httpx

    samples: list[dict[str, float]] = []
    statuses: dict[int, int] = {}
    sent = 0
    started = time.perf_counter()
    headers = {"content-type": "application/json"}

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal sent
        while sent < args.requests:
            sent += 1
            if sent % args.sample_every == 0:
                samples.append({"requests": sent, "seconds": time.perf_counter() - started, "rss_mb": rss_mb(pid)})
            response = await client.post(url, content=payloads[sent % len(payloads)], headers=headers)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    samples.append({"requests": 0, "seconds": 0.0, "rss_mb": rss_mb(pid)})
    async with httpx.AsyncClient(timeout=30) as client:
        await asyncio.gather(*(worker(client) for _ in range(args.concurrency)))
    samples.append({"requests": sent, "seconds": time.perf_counter() - started, "rss_mb": rss_mb(pid)})
    return {"samples": samples, "statuses": statuses, "seconds": time.perf_counter() - started}


def quarter_growth(samples: list[dict[str, float]]) -> list[float]:
    """RSS growth (MiB) over each quarter of the run, from the samples nearest each quarter's bounds.

    >>> quarter_growth([{"requests": r, "rss_mb": 100 + min(r, 50)} for r in range(0, 101, 25)])
    [25, 25, 0, 0]
    """
    total = samples[-1]["requests"]

    def rss_at(requests: float) -> float:
        return min(samples, key=lambda sample: abs(sample["requests"] - requests))["rss_mb"]

    bounds = [rss_at(total * quarter / 4) for quarter in range(5)]
    return [after - before for before, after in itertools.pairwise(bounds)]


def run(model_dir: Path, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Start the server, soak it, stop it; the samples, statuses and quarter growth."""
    from ranker_core.schema import FeatureSpec

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "pipelines.cli", "serve", "--model-uri", str(model_dir), "--port", str(port)]
    process = start(command, {}, f"{base}/health", work / "server.log")
    payloads = payload_pool(FeatureSpec.load(model_dir), args.candidates)
    try:
        result = asyncio.run(soak(f"{base}/predict", payloads, process.pid, args))
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    result["quarter_growth_mb"] = quarter_growth(result["samples"])
    return result


def format_report(result: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [f"{args.requests} requests of 1 to {args.candidates} candidates, {args.concurrency} connections"]
    lines.append(f"{'requests':>9} {'seconds':>8} {'RSS MiB':>8}")
    for sample in result["samples"][:: max(1, len(result["samples"]) // 20)] + result["samples"][-1:]:
        lines.append(f"{sample['requests']:>9} {sample['seconds']:>8.1f} {sample['rss_mb']:>8.1f}")
    growth = ", ".join(f"{value:+.1f}" for value in result["quarter_growth_mb"])
    rate = result["samples"][-1]["requests"] / result["seconds"]
    lines.append(f"RSS growth per quarter (MiB): {growth}; {rate:.0f} req/s; statuses {result['statuses']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, help="an exported ranker (default: train the default config)")
    parser.add_argument("--requests", type=int, default=100_000, help="requests to send (default 100000)")
    parser.add_argument("--candidates", type=int, default=20, help="most candidates per request (default 20)")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight (default 4)")
    parser.add_argument("--sample-every", type=int, default=1000, help="requests between RSS samples")
    parser.add_argument("--json", type=Path, help="also write the samples here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as scratch:
        work = Path(scratch)
        result = run(args.model_dir or build_default_model(work), args, work)
    print(format_report(result, args))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if set(result["statuses"]) <= {200, 400} else 1


if __name__ == "__main__":
    sys.exit(main())
