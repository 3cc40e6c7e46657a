"""The end-of-run summary: the primary metric per module and task of every model, the verdict, the paths.

It reads the evaluation's ``metrics.json`` (NDCG rows of ``model``, ``subset``,
``target``, ``metric``, ``value``, ``lift``; AUC rows of ``model``, ``subset``,
``task``, ``metric``, ``value``) and ``blessing.json``. Data without request
groups is judged on AUC, so its table shows AUC::

    print(format_summary(result))     # result: a LocalRunResult
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipelines.local_run import LocalRunResult, format_duration, materialized_repo, tuning_file
from ranker_core.cli_support import first_few
from ranker_core.ranking_metrics import EXPECTED_PREFIX
from ranker_core.schema import FEATURE_SPEC_FILE
from ranker_core.stats import NO_BOUND


def metric_table(report: dict[str, Any], metric: str, split: str = "test") -> list[list[str]]:
    """Rows ``module, task, <one column per model>, lift vs per-module, lift vs global`` of one metric
    (an NDCG cut-off such as ``ndcg@10``, or ``auc``).

    Example::

        metric_table(json.load(open("metrics.json")), "ndcg@10")[0]
        # ["module", "task", "mmoe", "gbdt_per_module", "gbdt_global", "random", "oracle",
        #  "mmoe lift", "vs global"]
    """
    models, cells = _cells(report, metric, split)
    candidate = report.get("candidate")
    references = (report.get("baseline"), (report.get("blessing") or {}).get("global_name", "gbdt_global"))
    table = [["module", "task", *models, f"{candidate} lift" if candidate else "lift", "vs global"]]
    unseen = set(report.get("unseen_modules") or []) if split == "test" else set()
    for (subset, target), by_model in cells.items():
        values = [_number(by_model.get(model, {}).get("value")) for model in models]
        if all(value == "-" for value in values):
            continue  # a task without positives in that module: unmeasured_note names it
        label = f"{subset} (unseen)" if subset in unseen else subset  # unseen_note says what that means
        table.append([label, target, *values, *_lifts(by_model, candidate, references)])
    return table


def unseen_note(report: dict[str, Any]) -> str:
    """The test modules that no training row has, in one line; empty when there are none."""
    unseen = report.get("unseen_modules") or []
    if not unseen:
        return ""
    return (
        f"Unseen in training: {', '.join(unseen)} (in no training row: {report.get('candidate') or 'the candidate'} "
        "ranks it through its unseen-module path, and the per-module GBDT falls back to the global model there)"
    )


def unmeasured_note(report: dict[str, Any], metric: str, split: str = "test") -> str:
    """The module and task cells that :func:`metric_table` leaves out because no model could be measured there
    (no request with a positive), in one line; empty when there are none."""
    models, cells = _cells(report, metric, split)
    missing = [
        f"{subset} {target}"
        for (subset, target), by_model in cells.items()
        if all(by_model.get(model, {}).get("value") is None for model in models)
    ]
    if not missing:
        return ""
    return f"Not shown, no request with a positive: {first_few(missing, 10)} (report.html lists them)"


def _cells(report: dict[str, Any], metric: str, split: str) -> tuple[list[str], dict[tuple[str, str], dict]]:
    """The models with rows of ``metric`` in ``split``, and (module, task) -> model -> row, "all" first."""
    rows = _metric_rows(report.get(split) or {}, metric)
    models = [name for name in report.get("models", []) if any(row["model"] == name for row in rows)]
    cells: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        cells.setdefault((row["subset"], row["target"]), {})[row["model"]] = row
    return models, dict(sorted(cells.items(), key=lambda item: (item[0][0] != "all", item[0])))


def _metric_rows(section: dict[str, Any], metric: str) -> list[dict[str, Any]]:
    """One split's rows of ``metric``; AUC rows name their task ``target`` like the NDCG rows."""
    if metric == "auc":
        return [{**row, "target": row["task"]} for row in section.get("auc", [])]
    return [row for row in section.get("ndcg", []) if row.get("metric") == metric]


def _lifts(by_model: dict[str, dict[str, Any]], candidate: str | None, references: tuple[str | None, str]) -> list[str]:
    """The candidate's lift over the per-module and the global GBDT: the report's (NDCG), or the ratio of the
    values (AUC rows carry none)."""
    row = by_model.get(candidate) or {}
    lifts = []
    for key, reference in zip(("lift", "global_lift"), references, strict=True):
        lift = row[key] if key in row else _ratio(row.get("value"), (by_model.get(reference) or {}).get("value"))
        lifts.append(_percent(lift))
    return lifts


def _ratio(value: float | None, reference: float | None) -> float | None:
    return None if value is None or not reference else value / reference - 1


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
        f"Test split, {metric} per module and task ({_judged_on(report.get('test') or {}, metric)}; "
        f"primary: {primary.get('task', '?')} {metric}):",
        format_table(metric_table(report, metric)),
        unmeasured_note(report, metric),
        unseen_note(report),
        heldout_table(report, metric),
        verdict_text(blessing),
        expected_text(report, primary.get("task", ""), metric),
        tuning_text(result),
        _registration(result),
        _tracking(result),
        dead_letter_text(result),
        "Steps:",
        format_table(
            [["step", "status", "duration"]]
            + [[step.name, step.status, format_duration(step.seconds)] for step in result.steps]
        ),
        f"Total: {format_duration(result.seconds)}",
        "\n".join(
            [
                f"Report:    {result.latest_dir / 'report.html'} (also blessing.json, metrics.json there)",
                f"Model:     {result.artifact_path('model')} (linked in {result.latest_dir}: {linked_folders(result)})",
                f"Artifacts: {result.settings.pipeline_root_local}",
                *([f"Step logs: {result.log_path}"] if result.log_path else []),
            ]
        ),
    ]
    return "\n\n".join(section for section in sections if section)


def dead_letter_text(result: LocalRunResult) -> str:
    """How many rows extraction could not use, by reason, and where each one is (file, row, reason)."""
    spec_path = Path(result.artifact_path("examples")) / FEATURE_SPEC_FILE
    source = json.loads(spec_path.read_text()).get("source", {}) if spec_path.exists() else {}
    if not source.get("dead_letters"):
        return ""
    reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(source.get("dead_letter_reasons", {}).items()))
    return (
        f"Dead letters: {source['dead_letters']} of {source.get('rows_read', '?')} rows were not used ({reasons}); "
        f"each with its file, row and reason in {result.artifact_path('dead_letters')}"
    )


def tuning_text(result: LocalRunResult) -> str:
    """What the ``tune-mmoe`` step chose, in one line (empty when the run had no tune step), e.g.
    ``Tuning: 8 trials on eval ndcg@10 in 3m12s: trial 3 scored highest, ... chosen; trained with
    learning_rate=0.003, num_experts=6 (eval ndcg@10 0.4512)``."""
    path = tuning_file(result.outputs, result.started_at) if result.settings.tuning.trials else None
    if path is None:
        return ""
    try:
        record = json.loads(path.read_text())
        best, metric = record["best"], record["metric"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"Tuning: see {path}"
    values = ", ".join(f"{name}={_value(value)}" for name, value in sorted((best.get("values") or {}).items()))
    score = best.get("eval_score")
    scored = f" (eval {metric} {score:.4f})" if isinstance(score, int | float) else ""
    took = f" in {format_duration(record['seconds'])}" if isinstance(record.get("seconds"), int | float) else ""
    return (
        f"Tuning: {_trials(len(record.get('trials') or []))} on eval {metric}{took}: {record.get('choice', '')}; "
        f"trained with {values or 'the configuration as given'}{scored}"
    )


def _value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def heldout_table(report: dict[str, Any], metric: str) -> str:
    """The held-out (never trained on) module's rows, when the run held one out."""
    heldout = report.get("heldout")
    if not heldout or not _metric_rows(heldout, metric):
        return ""
    rows = metric_table(report, metric, split="heldout")
    title = f"Held-out module {', '.join(heldout.get('modules', []))} ({_judged_on(heldout, metric)}, "
    title += f"never trained on; the GBDT falls back to its global model), {metric}"
    if len(rows) == 1:
        return f"{title}: not measured, no request with a positive for any task"
    note = unmeasured_note(report, metric, split="heldout")
    return f"{title}:\n{format_table(rows)}" + (f"\n{note}" if note else "")


def _judged_on(section: dict[str, Any], metric: str) -> str:
    """``1967 requests`` (NDCG is per request) or ``50 impressions`` (AUC is over impressions)."""
    if metric == "auc":
        return f"{section.get('impressions', '?')} impressions"
    return f"{section.get('requests', '?')} requests"


def _judged_rows(blessing: dict[str, Any]) -> str:
    """What the primary metric's test saw: requests with a positive (NDCG), or impressions and positives (AUC)."""
    if blessing.get("primary", {}).get("metric") == "auc":
        return f"{blessing.get('requests')} impressions, {blessing.get('positives')} of them positive"
    return f"{blessing.get('requests')} requests with a positive"


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
    lift, global_lift = blessing.get("lift"), blessing.get("global_lift")
    if lift is None:  # a blessing written before AUC rows had intervals: the values' ratio
        lift = _ratio(blessing.get("candidate"), blessing.get("baseline"))
        global_lift = _ratio(blessing.get("candidate"), blessing.get("global_value"))
    lines = [
        _lift_line(f"{primary} lift over the per-module GBDT", lift, blessing.get("lift_ci")),
        _lift_line(f"{primary} lift over the global LightGBM", global_lift, blessing.get("global_lift_ci")),
    ]
    if blessing.get("mde_relative") is not None:
        lines.append(
            f"  judged on {_judged_rows(blessing)}; smallest detectable lift "
            f"({blessing.get('power', 0.8):.0%} power): {blessing['mde_relative']:.1%}"
        )
    heldout = blessing.get("heldout") or {}
    if heldout:
        where = f"{primary} on held-out {', '.join(heldout.get('modules', []))} vs the GBDT fallback"
        if heldout.get("not_judged_reason"):
            lines.append(f"  {where}: not judged, {heldout['not_judged_reason']}")
        else:
            lines.append(_lift_line(where, heldout.get("lift"), heldout.get("lift_ci")))
    if blessing.get("champion_note"):
        lines.append(f"  {blessing['champion_note']}")
    return [line for line in lines if line]


def expected_text(report: dict[str, Any], task: str, metric: str) -> str:
    """The candidate's lifts against the expected relevance (the evaluation's ``EXPECTED_PREFIX`` rows, present
    when the oracle had position-free probabilities), overall and on the held-out module; reported, not gated."""
    expected = EXPECTED_PREFIX + metric
    candidate = report.get("candidate")
    overall = _candidate_row(report.get("test"), candidate, task, expected)
    if not overall:
        return ""
    what = f"{task} {expected} lift over the"
    lines = [
        _lift_line(f"{what} per-module GBDT", overall.get("lift"), _ci(overall, "")),
        _lift_line(f"{what} global LightGBM", overall.get("global_lift"), _ci(overall, "global_")),
    ]
    heldout = report.get("heldout") or {}
    heldout_row = _candidate_row(heldout, candidate, task, expected)
    if heldout_row:
        where = f"{task} {expected} on held-out {', '.join(heldout.get('modules', []))} vs the GBDT fallback"
        lines.append(_lift_line(where, heldout_row.get("lift"), _ci(heldout_row, "")))
    if overall.get("gain_captured") is not None:
        lines.append(f"  share of the random -> position-free oracle gap: {overall['gain_captured']:.1%}")
    title = "Against the expected relevance (the position-free oracle's probabilities as gains; reported, not gated):"
    return "\n".join([title, *(line for line in lines if line)])


def _candidate_row(section: dict[str, Any] | None, candidate: str | None, task: str, metric: str) -> dict[str, Any]:
    """The candidate's row of ``metric`` over all of the split's requests (``{}`` when there is none)."""
    rows = _metric_rows(section or {}, metric)
    return next((row for row in rows if (row["model"], row["subset"], row["target"]) == (candidate, "all", task)), {})


def _ci(row: dict[str, Any], prefix: str) -> list[float | None]:
    return [row.get(f"{prefix}lift_ci_low"), row.get(f"{prefix}lift_ci_high")]


def _lift_line(what: str, lift: float | None, interval: list[float | None] | None) -> str:
    if lift is None:
        return ""
    low, high = interval or (None, None)
    if low is None and high is None:
        return f"  {what}: {_percent(lift)} (no interval)"
    half_width = "" if low is None or high is None else f", half-width {(high - low) / 2 * 100:.1f} points"
    return f"  {what}: {_percent(lift)} (95% CI [{_bound(low)}, {_bound(high)}]{half_width})"


def _bound(value: float | None) -> str:
    return NO_BOUND if value is None else _percent(value)


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
    repo = feature_repo(result)
    if repo:
        lines.append(f"  features:  {repo} (Feast; ranker serve / ranker batch-rank --feature-store {repo})")
    return "\n".join(lines)


def feature_repo(result: LocalRunResult) -> Path | None:
    """The Feast repo the run's ``materialize-features`` step wrote, if it did."""
    return materialized_repo(result.outputs)


def _tracking(result: LocalRunResult) -> str:
    """Where the run's MLflow record is (params, curves, report, verdict), blessed or refused."""
    run_id = result.outputs.get("tracking_run_id")
    if not run_id:
        return ""
    registry = result.settings.registry
    return (
        f"Tracked:  MLflow run {run_id} in experiment {registry.model_name} (params, curves, report, verdict)\n"
        f"  list runs: ranker runs --work-dir {result.settings.work_dir}"
    )


def _number(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}"


def _percent(value: Any) -> str:
    return "-" if value is None else f"{value:+.1%}"


def linked_folders(result: LocalRunResult) -> str:
    """The folders linked in ``latest`` (``feature_repo`` only when the run materialized features)."""
    return ", ".join(name for name in ("model", "examples", "feature_repo") if (result.latest_dir / name).is_symlink())


def _trials(count: int) -> str:
    return "1 trial" if count == 1 else f"{count} trials"
