"""The load test's report: a text table, ``summary.json``, two PNG charts and an HTML page embedding them.

::

    print(format_summary(result.summary()))
    paths = write_report(result, "work_dir/loadtest")   # {"html": ..., "json": ..., "timeline": ..., "histogram": ...}
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from serving.loadtest import DROPPED, PERCENTILES, LoadTestResult

_ROWS = (
    ("url", "{}"),
    ("arrival", "{}"),
    ("offered_rps", "{:.1f} req/s"),
    ("achieved_rps", "{:.1f} req/s"),
    ("scheduled", "{}"),
    ("ok", "{}"),
    ("failed", "{}"),
    ("dropped", "{}"),
    ("error_rate", "{:.4f}"),
    *((f"p{p:g}_ms", "{:.2f} ms") for p in PERCENTILES),
    ("mean_ms", "{:.2f} ms"),
    ("max_ms", "{:.2f} ms"),
    ("measured_s", "{:.1f} s"),
    ("warmup_requests", "{}"),
)


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as an aligned two-column text table, ending with the first error's text when a request failed."""
    width = max(len(name) for name, _ in _ROWS)
    lines = []
    for name, template in _ROWS:
        value = summary[name]
        text = "n/a" if isinstance(value, float) and math.isnan(value) else template.format(value)
        lines.append(f"{name:<{width}}  {text}")
    lines.append(f"{'statuses':<{width}}  {json.dumps(summary['statuses'], sort_keys=True)}")
    if summary.get("first_error"):
        lines.append(f"{'first_error':<{width}}  {summary['first_error']}")
    return "\n".join(lines)


def write_report(result: LoadTestResult, out_dir: str | Path) -> dict[str, Path]:
    """Write ``summary.json``, ``latency_over_time.png``, ``latency_histogram.png`` and ``report.html``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = result.summary()
    paths = {
        "json": out / "summary.json",
        "timeline": out / "latency_over_time.png",
        "histogram": out / "latency_histogram.png",
        "html": out / "report.html",
    }
    paths["json"].write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    _plot_timeline(result, paths["timeline"])
    _plot_histogram(result, paths["histogram"])
    paths["html"].write_text(_html(summary, paths["timeline"], paths["histogram"]))
    return paths


def _plot_timeline(result: LoadTestResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(10, 4))
    ok = [(s.intended_s, s.latency_s * 1000) for s in result.samples if s.ok]
    failed = [(s.intended_s, s.latency_s * 1000) for s in result.samples if not s.ok and s.status != DROPPED]
    dropped = [s.intended_s for s in result.samples if s.status == DROPPED]
    if ok:
        axis.scatter(*zip(*ok, strict=True), s=4, label="ok", color="tab:blue")
    if failed:
        axis.scatter(*zip(*failed, strict=True), s=8, label="error", color="tab:red", marker="x")
    if dropped:
        axis.scatter(dropped, np.zeros(len(dropped)), s=8, label="dropped", color="black", marker="|")
    if result.config.warmup_s:
        axis.axvspan(0, result.config.warmup_s, color="grey", alpha=0.15, label="warm-up (excluded)")
    axis.set_xlabel("intended send time (s)")
    axis.set_ylabel("latency from intended send (ms)")
    axis.set_title(f"{result.config.arrival} arrivals at {result.config.rate:g} req/s")
    axis.legend(loc="upper right")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _plot_histogram(result: LoadTestResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    latencies = np.array([s.latency_s * 1000 for s in result.samples if s.ok and not s.warmup])
    figure, axis = plt.subplots(figsize=(10, 4))
    if len(latencies):
        axis.hist(latencies, bins=min(100, max(10, len(latencies) // 10)), color="tab:blue")
        for percentile in PERCENTILES:
            value = float(np.percentile(latencies, percentile))
            axis.axvline(value, color="tab:red", linestyle="--", linewidth=1)
            axis.text(value, axis.get_ylim()[1] * 0.9, f"p{percentile:g}", rotation=90, color="tab:red")
    axis.set_xlabel("latency (ms)")
    axis.set_ylabel("requests")
    axis.set_title("latency of successful requests (measured phase)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _html(summary: dict[str, Any], timeline: Path, histogram: Path) -> str:
    rows = "".join(
        f"<tr><th>{html.escape(line.split('  ', 1)[0])}</th><td>{html.escape(line.split('  ', 1)[1].strip())}</td></tr>"
        for line in format_summary(summary).splitlines()
    )
    images = "".join(
        f'<p><img alt="{name}" src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}"></p>'
        for name, path in (("latency over time", timeline), ("latency histogram", histogram))
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Load test report</title>"
        "<style>body{font-family:sans-serif;margin:2em}th{text-align:left;padding-right:2em}</style></head>"
        f"<body><h1>Load test report</h1><table>{rows}</table>{images}</body></html>\n"
    )
