"""The end-of-run summary: NDCG per module and task for every model, the verdict, the version, the paths.

It reads the evaluation's ``metrics.json`` (rows of ``model``, ``subset``,
``target``, ``metric``, ``value``, ``lift``) and ``blessing.json``::

    print(format_summary(result))     # result: a LocalRunResult
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipelines.local_run import LocalRunResult, format_duration


def ndcg_table(report: dict[str, Any], metric: str, split: str = "test") -> list[list[str]]:
    """Rows ``module, task, <one column per model>, lift vs per-module, lift vs global`` of one metric.

    Example::

        ndcg_table(json.load(open("metrics.json")), "ndcg@10")[0]
        # ["module", "task", "mmoe", "gbdt_per_module", "gbdt_global", "random", "oracle",
        #  "mmoe lift", "vs global"]
    """
    rows = [row for row in (report.get(split) or {}).get("ndcg", []) if row.get("metric") == metric]
    models = [name for name in report.get("models", []) if any(row["model"] == name for row in rows)]
    candidate = report.get("candidate")
    cells: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        cells.setdefault((row["subset"], row["target"]), {})[row["model"]] = row
    table = [["module", "task", *models, f"{candidate} lift" if candidate else "lift", "vs global"]]
    for (subset, target), by_model in sorted(cells.items(), key=lambda item: (item[0][0] != "all", item[0])):
        values = [_number(by_model.get(model, {}).get("value")) for model in models]
        if all(value == "-" for value in values):
            continue  # a task without positives in that module
        candidate_row = by_model.get(candidate) or {}
        table.append(
            [subset, target, *values, _percent(candidate_row.get("lift")), _percent(candidate_row.get("global_lift"))]
        )
    return table


def format_table(rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned text columns, the first row as the header."""
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


def format_summary(result: LocalRunResult) -> str:
    """The text printed at the end of ``ranker run``."""
    report = json.loads(Path(result.artifact_path("report_json")).read_text())
    blessing = json.loads(Path(result.artifact_path("blessing")).read_text())
    primary = blessing.get("primary", {})
    metric = primary.get("metric", "ndcg@10")
    sections = [
        f"Test split, {metric} per module and task ({report.get('test', {}).get('requests', '?')} requests; "
        f"primary: {primary.get('task', '?')} {metric}):",
        format_table(ndcg_table(report, metric)),
        heldout_table(report, metric),
        verdict_text(blessing),
        _registration(result),
        "Steps:",
        format_table(
            [["step", "status", "duration"]]
            + [[step.name, step.status, format_duration(step.seconds)] for step in result.steps]
        ),
        f"Total: {format_duration(result.seconds)}",
        "\n".join(
            [
                f"Report:    {result.latest_dir / 'report.html'} (also blessing.json, metrics.json there)",
                f"Model:     {result.artifact_path('model')}",
                f"Artifacts: {result.settings.pipeline_root_local}",
                *([f"Step logs: {result.log_path}"] if result.log_path else []),
            ]
        ),
    ]
    return "\n\n".join(section for section in sections if section)


def heldout_table(report: dict[str, Any], metric: str) -> str:
    """The held-out (never trained on) module's rows, when the run held one out."""
    heldout = report.get("heldout")
    if not heldout or not heldout.get("ndcg"):
        return ""
    rows = ndcg_table(report, metric, split="heldout")
    title = f"Held-out module {', '.join(heldout.get('modules', []))} ({heldout.get('requests', '?')} requests, "
    return title + f"never trained on; the GBDT falls back to its global model), {metric}:\n" + format_table(rows)


def verdict_text(blessing: dict[str, Any]) -> str:
    evidence = "\n".join(_evidence(blessing))
    if blessing.get("blessed"):
        beaten = " and the champion" if blessing.get("champion_name") else ""
        return f"Blessed: yes, the candidate beats the per-module GBDT{beaten}\n{evidence}".rstrip()
    reasons = "\n".join(f"  - {reason}" for reason in blessing.get("reasons", []))
    return f"Blessed: no, so nothing was registered:\n{reasons}\n{evidence}".rstrip()


def _evidence(blessing: dict[str, Any]) -> list[str]:
    """The lifts behind the verdict, each with its interval: over both GBDTs and on the held-out module."""
    primary = blessing.get("primary_metric", "")
    lines = [
        _lift_line(f"{primary} lift over the per-module GBDT", blessing.get("lift"), blessing.get("lift_ci")),
        _lift_line(
            f"{primary} lift over the global LightGBM", blessing.get("global_lift"), blessing.get("global_lift_ci")
        ),
    ]
    if blessing.get("mde_relative") is not None:
        lines.append(
            f"  judged on {blessing.get('requests')} requests with a positive; smallest detectable lift "
            f"(80% power): {blessing['mde_relative']:.1%}"
        )
    heldout = blessing.get("heldout") or {}
    if heldout:
        where = f"{primary} on held-out {', '.join(heldout.get('modules', []))} vs the GBDT fallback"
        lines.append(_lift_line(where, heldout.get("lift"), heldout.get("lift_ci")))
    if blessing.get("champion_note"):
        lines.append(f"  {blessing['champion_note']}")
    return [line for line in lines if line]


def _lift_line(what: str, lift: float | None, interval: list[float | None] | None) -> str:
    if lift is None:
        return ""
    low, high = interval or (None, None)
    half_width = "" if low is None or high is None else f", half-width {(high - low) / 2 * 100:.1f} points"
    return f"  {what}: {_percent(lift)} (95% CI [{_percent(low)}, {_percent(high)}]{half_width})"


def _registration(result: LocalRunResult) -> str:
    registry = result.settings.registry
    if result.registered is None:
        return ""
    version = result.registered
    lines = [f"Registered: {version.model_name} version {version.version} ({', '.join(version.aliases) or 'no alias'})"]
    if registry.backend == "mlflow":
        lines.append(f"  browse it: mlflow ui --backend-store-uri {registry.resolved_tracking_uri}")
        lines.append(
            f"  serve it:  MLFLOW_TRACKING_URI={registry.resolved_tracking_uri} "
            f"ranker serve --model-uri models:/{version.model_name}@champion"
        )
    return "\n".join(lines)


def _number(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}"


def _percent(value: Any) -> str:
    return "-" if value is None else f"{value:+.1%}"
