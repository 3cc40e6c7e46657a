"""The self-contained HTML report (inline PNG plots, plain CSS tables).

Vertex AI and Kubeflow Pipelines render an HTML artifact as is, so the report
carries everything inline: no script, no external stylesheet or image::

    Path("report.html").write_text(render_html(result))
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from components.evaluation.blessing import ALL_MODULES
from ranker_core.ranking_metrics import EXPECTED_PREFIX
from ranker_core.stats import NO_BOUND

if TYPE_CHECKING:
    from components.evaluation.evaluate import EvaluationResult, SplitEvaluation

STYLE = """
body { font-family: -apple-system, Segoe UI, Helvetica, Arial, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th { background: #f3f3f3; } td.name, th.name { text-align: left; }
.verdict { padding: 1em; border-radius: 6px; font-size: 1.1em; }
.blessed { background: #e6f4ea; border: 1px solid #34a853; }
.refused { background: #fce8e6; border: 1px solid #d93025; }
.small { color: #666; font-size: 0.85em; }
"""


def render_html(result: EvaluationResult) -> str:
    """The whole report as one HTML string."""
    primary = result.blessing.primary
    sections = [
        f"<h1>Ranker evaluation: {_e(result.candidate)} vs {_e(result.baseline)}</h1>",
        _verdict(result),
        "<h2>Primary metric</h2>",
        _primary_table(result),
        _expected_table(result),
        _module_check_table(result),
        _bar_plot(result.test, primary.task, primary.metric),
        "<h2>Lift over the per-module GBDT and the global LightGBM</h2>",
        _lift_table(result),
        *_ndcg_tables(result.test, result.models),
        "<h2>AUC</h2>",
        _auc_table(result.test, result.models),
        "<h2>Calibration</h2>",
        _calibration(result.test),
        _gate_usage(result.gate_usage),
        _heldout(result),
        _baseline_models(result),
        "<h2>Notes</h2>",
        _list([*result.notes, *_fallback_notes(result.baseline_fallbacks), _timings(result.test)]),
    ]
    body = "\n".join(section for section in sections if section)
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>Ranker evaluation</title>'
        f"<style>{STYLE}</style></head><body>\n{body}\n</body></html>\n"
    )


def _verdict(result: EvaluationResult) -> str:
    blessing = result.blessing
    summary = headline_sentence(result)
    if blessing.champion_note:
        summary += f" {blessing.champion_note}"
    if blessing.blessed:
        return f'<div class="verdict blessed"><b>Blessed.</b> {_e(summary)}</div>'
    return f'<div class="verdict refused"><b>Not blessed.</b> {_e(summary)}{_list(blessing.reasons)}</div>'


def headline_sentence(result: EvaluationResult) -> str:
    """Who won, where and by how much, in one sentence."""
    blessing = result.blessing
    if blessing.candidate is None or blessing.baseline is None:
        return f"{blessing.primary} could not be measured for {result.candidate}."
    words = [f"{result.candidate} {blessing.primary} = {blessing.candidate:.4f} vs {result.baseline} "]
    words.append(f"{blessing.baseline:.4f}")
    words.append(_lift_words(blessing.lift, blessing.lift_ci, blessing.p_value))
    if blessing.global_value is not None:
        words.append(f"; vs {blessing.global_name} {blessing.global_value:.4f}")
        words.append(_lift_words(blessing.global_lift, blessing.global_lift_ci, blessing.global_p_value))
    changes = {module: change["relative_change"] for module, change in blessing.modules.items()}
    measured = {module: change for module, change in changes.items() if change is not None}
    regressed = [module for module, change in measured.items() if change < 0]
    won = [module for module, change in measured.items() if change > 0]
    words.append(f"; ahead on {len(won)} of {len(measured)} measured modules")
    if regressed:
        words.append(f", behind on {', '.join(regressed)}")
    if blessing.heldout and blessing.heldout.get("lift") is not None:
        heldout = blessing.heldout
        words.append(f"; held-out {', '.join(heldout['modules'])}")
        words.append(_lift_words(heldout["lift"], heldout["lift_ci"], heldout["p_value"]))
    if blessing.champion is not None:
        words.append(f"; champion {blessing.champion:.4f}")
    return "".join(words) + "."


def _lift_words(lift: float | None, interval: Sequence[float | None], p_value: float | None) -> str:
    """`` (+6.5%, 95% CI [+2.5%, +11.0%], p = 0.001)``, or nothing when the lift was not measured."""
    if lift is None:
        return ""
    return f" ({lift:+.1%}, 95% CI {_interval(*interval, _pct)}" + (
        f", p = {p_value:.3g})" if p_value is not None else ")"
    )


def _primary_table(result: EvaluationResult) -> str:
    primary = result.blessing.primary
    caption = f"{primary}, all modules, {result.test.split} split ({judged_count(result)})"
    return f'<p class="small">{_e(caption)}</p>' + _table(*_primary_rows(result))


def judged_count(result: EvaluationResult) -> str:
    """What the primary metric is computed over: requests with a positive (NDCG; out of all the split's
    requests), or impressions and their positives (AUC)."""
    blessing = result.blessing
    if blessing.requests is None:
        return f"{result.test.requests} requests, none measured"
    if blessing.primary.metric == "auc":
        return f"{blessing.requests} impressions, {blessing.positives} of them positive"
    return f"{blessing.requests} requests with a positive, of {result.test.requests}"


def _expected_table(result: EvaluationResult) -> str:
    """The primary target judged against the expected relevance, when the evaluation had a position-free oracle."""
    header, rows = _primary_rows(result, expected_metric(result))
    if not rows:
        return ""
    caption = (
        "The same models and requests, judged with the position-free oracle's probabilities as graded gains "
        "instead of the logged labels: every request counts, and no model gains from the logged order. "
        "Reported, not gated: the blessing judges the logged labels."
    )
    return f"<h2>Against the expected relevance</h2><p class='small'>{_e(caption)}</p>" + _table(header, rows)


def expected_metric(result: EvaluationResult) -> str:
    """The primary metric's name against the expected relevance (``expected_ndcg@10``)."""
    return EXPECTED_PREFIX + result.blessing.primary.metric


def _primary_rows(result: EvaluationResult, metric: str | None = None) -> tuple[list[str], list[list[str]]]:
    """A metric of every model overall (the primary one by default): intervals, lifts over both GBDTs,
    p-value, MDE, oracle share."""
    primary = result.blessing.primary
    metric = metric or primary.metric
    header = [
        "model",
        f"{primary.task} {metric}",
        "95% CI",
        "lift vs per-module GBDT [95% CI]",
        "p-value",
        "lift vs global LightGBM [95% CI]",
        f"MDE ({result.config.power:.0%} power)",
        "share of oracle gain",
    ]
    rows = []
    for model in result.models:
        row = result.test.find(model, ALL_MODULES, primary.task, metric)
        if row is None:
            continue
        interval = _interval(row.get("ci_low"), row.get("ci_high"))
        lift = _lift_cell(row, "")
        global_lift = _lift_cell(row, "global_")
        cells = [_num(row["value"]), interval, lift, _num(row.get("p_value")), global_lift]
        rows.append([model, *cells, _pct(row.get("mde_relative"), sign=False), _oracle_share(row)])
    return header, rows


def _lift_cell(row: dict[str, Any], prefix: str) -> str:
    if row.get(prefix + "lift") is None:
        return "-"
    low, high = row.get(prefix + "lift_ci_low"), row.get(prefix + "lift_ci_high")
    return f"{_pct(row[prefix + 'lift'])} {_interval(low, high, _pct)}"


def _oracle_share(row: dict[str, Any]) -> str:
    """The share of the (position-free) oracle's gain, and of the position-including one's when both exist."""
    share = _pct(row.get("gain_captured"), sign=False)
    with_position = row.get("gain_captured_with_position")
    if with_position is None or with_position == row.get("gain_captured"):
        return share  # no position-free oracle: one share
    return f"{share} ({_pct(with_position, sign=False)} of the oracle with position)"


def _module_check_table(result: EvaluationResult) -> str:
    """The blessing's per-module regression check, with the evidence behind each module."""
    blessing = result.blessing
    interval = f"{result.config.confidence_level:.0%} CI"
    header = ["module", "requests", "positives", result.candidate, result.baseline, "change", interval]
    header += ["corrected p", "MDE", "gated"]
    rows = [
        [
            f"{module} (unseen in training)" if module in result.unseen_modules else module,
            _count(change.get("requests")),
            _count(change.get("positives")),
            _num(change["candidate"]),
            _num(change["baseline"]),
            _pct(change["relative_change"]),
            _interval(*change["lift_ci"], _pct),
            _num(change.get("p_value_corrected")),
            _pct(change.get("mde_relative"), sign=False),
            "yes" if change.get("gated") else f"no: {change.get('not_gated_reason', '')}",
        ]
        for module, change in blessing.modules.items()
    ]
    caption = (
        f"Per-module check: no gated module may fall more than {blessing.tolerance:.1%} below {result.baseline}"
        f" ({result.config.module_veto} rule: see docs/evaluation.md). MDE: the smallest relative change the "
        f"module's paired test detects with {result.config.power:.0%} power at the Bonferroni-corrected level."
    )
    return f'<p class="small">{_e(caption)}</p>' + _table(header, rows)


def _lift_table(result: EvaluationResult) -> str:
    metric = result.blessing.primary.metric
    # AUC rows name their task "task"; only the primary task's AUC rows are compared.
    measured, target = (result.test.auc, "task") if metric == "auc" else (result.test.ndcg, "target")
    header = ["model", "target", "module", f"{metric} delta", "delta 95% CI", "lift", "lift 95% CI", "p-value"]
    rows = []
    for row in measured:
        if row["metric"] != metric or row.get("delta") is None:
            continue
        if row["subset"] != ALL_MODULES and row["model"] != result.candidate:
            continue  # per module, the candidate only: the full grid is in metrics.json
        rows.append(
            [
                row["model"],
                row[target],
                row["subset"],
                _num(row.get("delta")),
                _interval(row.get("delta_ci_low"), row.get("delta_ci_high")),
                _pct(row.get("lift")),
                _interval(row.get("lift_ci_low"), row.get("lift_ci_high"), _pct),
                _num(row.get("p_value")),
            ]
        )
    return _table(header, rows)


def _ndcg_tables(test: SplitEvaluation, models: Sequence[str]) -> list[str]:
    sections = []
    for metric in dict.fromkeys(row["metric"] for row in test.ndcg):
        header = ["target", "module", "requests (excluded)", *models]
        cells: dict[tuple[str, str], dict[str, str]] = {}
        counts: dict[tuple[str, str], str] = {}
        for row in test.ndcg:
            if row["metric"] != metric:
                continue
            key = (row["target"], row["subset"])
            counts[key] = f"{row['requests']} ({row['excluded_requests']})"
            interval = _interval(row["ci_low"], row["ci_high"])
            cells.setdefault(key, {})[row["model"]] = f"{_num(row['value'])} {interval}"
        rows = [[*key, counts[key], *(values.get(model, "") for model in models)] for key, values in cells.items()]
        sections += [f"<h2>{_e(metric)} per target and module (95% CI)</h2>", _table(header, rows)]
    return sections


def _auc_table(test: SplitEvaluation, models: Sequence[str]) -> str:
    cells: dict[tuple[str, str], dict[str, str]] = {}
    for row in test.auc:
        interval = f" {_interval(row['ci_low'], row['ci_high'])}" if "ci_low" in row else ""
        cells.setdefault((row["task"], row["subset"]), {})[row["model"]] = _num(row["value"]) + interval
    rows = [[*key, *(values.get(model, "") for model in models)] for key, values in cells.items()]
    caption = (
        '<p class="small">With AUC as the primary metric, its task has intervals from DeLong\'s covariance '
        "(at the confidence level of the lifts).</p>"
    )
    return caption + _table(["task", "module", *models], rows)


def _calibration(test: SplitEvaluation) -> str:
    if not test.calibration:
        return "<p>No model outputs probabilities.</p>"
    rows = [[row["model"], row["task"], _num(row["ece"])] for row in test.calibration]
    tasks = list(dict.fromkeys(row["task"] for row in test.calibration))
    figure, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks), 3.2), squeeze=False)
    for axis, task in zip(axes[0], tasks, strict=True):
        axis.plot([0, 1], [0, 1], color="#bbb", linestyle="--", linewidth=1)
        top = 0.01
        for row in test.calibration:
            if row["task"] != task:
                continue
            points = [
                (p, r) for p, r in zip(row["mean_prediction"], row["positive_rate"], strict=True) if p is not None
            ]
            axis.plot(*zip(*points, strict=True), marker="o", markersize=3, label=row["model"])
            top = max(top, *(max(point) for point in points))
        # Zoomed to the data: rare tasks' predictions and rates sit far below 1.
        limit = min(1.0, 1.1 * top)
        axis.set(
            title=task, xlabel="mean predicted probability", ylabel="observed rate", xlim=(0, limit), ylim=(0, limit)
        )
    axes[0][0].legend(fontsize=7)
    return _table(["model", "task", "ECE"], rows) + _image(figure)


def _bar_plot(test: SplitEvaluation, target: str, metric: str) -> str:
    rows = [
        row for row in (test.ndcg if metric != "auc" else []) if row["target"] == target and row["metric"] == metric
    ]
    if not rows:
        return ""
    subsets = list(dict.fromkeys(row["subset"] for row in rows))
    models = list(dict.fromkeys(row["model"] for row in rows))
    width = 0.8 / len(models)
    figure, axis = plt.subplots(figsize=(max(6, 1.4 * len(subsets) * len(models) / 3), 3.5))
    for j, model in enumerate(models):
        found = {row["subset"]: row for row in rows if row["model"] == model}
        values = np.array([_or_nan(found.get(s, {}).get("value")) for s in subsets])
        low = np.array([_or_nan(found.get(s, {}).get("ci_low")) for s in subsets])
        high = np.array([_or_nan(found.get(s, {}).get("ci_high")) for s in subsets])
        # A tiny bootstrap (1 or 2 samples) can give an interval on one side of the value: draw no bar there.
        errors = np.clip(np.nan_to_num(np.vstack([values - low, high - values])), 0, None)
        axis.bar(np.arange(len(subsets)) + j * width, values, width, yerr=errors, capsize=2, label=model)
    axis.set_xticks(np.arange(len(subsets)) + 0.4 - width / 2, subsets)
    axis.set(ylabel=f"{target} {metric}", title=f"{target} {metric} per module (95% CI)")
    axis.legend(fontsize=7, ncol=3)
    return _image(figure)


def _gate_usage(usage: dict[str, Any] | None) -> str:
    """The gate-usage section: :func:`gate_usage_figure` and its caption, or nothing without gates."""
    figure = gate_usage_figure(usage)
    if figure is None:
        return ""
    caption = "Mean gate weight per expert, module and task, measured at training (gate_usage.json)."
    return f"<h2>Gate usage</h2><p class='small'>{caption}</p>" + _image(figure)


def gate_usage_figure(usage: Mapping[str, Any] | None) -> Any:
    """One heatmap per task: the mean gate weight of each expert (columns) per module (rows); None without gates."""
    if not usage or not usage.get("weights"):
        return None
    experts, tasks = usage.get("experts", []), usage.get("tasks", [])
    modules = list(usage["weights"])
    figure, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks), 0.5 * len(modules) + 1.8), squeeze=False)
    for axis, task in zip(axes[0], tasks, strict=True):
        weights = np.array([usage["weights"][module].get(task, [np.nan] * len(experts)) for module in modules])
        image = axis.imshow(weights, cmap="viridis", vmin=0, vmax=1, aspect="auto")
        axis.set_xticks(range(len(experts)), experts, rotation=60, fontsize=7)
        axis.set_yticks(range(len(modules)), modules, fontsize=7)
        axis.set_title(task)
        figure.colorbar(image, ax=axis, fraction=0.046)
    return figure


def _heldout(result: EvaluationResult) -> str:
    """The held-out split's primary metric per model, and the same against the expected relevance when measured."""
    if result.heldout is None:
        return ""
    primary = result.blessing.primary
    metrics = [primary.metric, expected_metric(result)] if primary.metric != "auc" else []
    heldout = result.heldout
    measured = [metric for metric in metrics if heldout.find(result.candidate, ALL_MODULES, primary.task, metric)]
    rows = []
    for model in result.models:
        found = [heldout.find(model, ALL_MODULES, primary.task, metric) for metric in measured]
        if found and found[0] is not None:
            rows.append([model, *(cell for row in found for cell in _heldout_cells(row))])
    check = result.blessing.heldout or {}
    outcome = check.get("reason") or f"passes the {check.get('rule', 'off')!r} rule"
    if check.get("not_judged_reason") and not check.get("reason"):
        outcome = f"not judged, {check['not_judged_reason']}"
    caption = (
        f"Modules {', '.join(result.heldout.modules)} were held out of training; {result.heldout.requests} "
        "requests. The per-module GBDT has no model for them and falls back to the global one. "
        f"Blessing rule {check.get('rule', 'off')!r}: {outcome}."
    )
    header = ["model"]
    for metric in measured:
        header += [metric, "95% CI", "lift vs GBDT fallback [95% CI]", "p-value"]
    return f"<h2>Held-out module ({_e(primary.task)} {_e(primary.metric)})</h2><p>{_e(caption)}</p>" + _table(
        header, rows
    )


def _heldout_cells(row: dict[str, Any] | None) -> list[str]:
    if row is None:
        return ["-"] * 4
    interval = _interval(row["ci_low"], row["ci_high"])
    return [_num(row["value"]), interval, _lift_cell(row, ""), _num(row.get("p_value"))]


def _baseline_models(result: EvaluationResult) -> str:
    """Every LightGBM model of the baseline: its best iteration, eval score and parameters."""
    if not result.baseline_models:
        return ""
    header = ["model", "target", "best iteration", "eval score", "parameters"]
    rows = [
        [
            entry["scope"],
            entry["target"],
            _count(entry.get("best_iteration")),
            ", ".join(f"{name} {value:.4f}" for name, value in entry.get("eval_scores", {}).items()) or "-",
            ", ".join(f"{name}={value}" for name, value in sorted(entry.get("params", {}).items()) if name in SHOWN)
            or "-",
        ]
        for entry in result.baseline_models
    ]
    caption = (
        "The GBDT baseline's models (the global LightGBM and one per module and target), as trained: early "
        "stopping on the eval split with rows shuffled within each request, parameters from the seeded search."
    )
    return f"<h2>GBDT baseline models</h2><p class='small'>{_e(caption)}</p>" + _table(header, rows)


SHOWN = (
    "num_leaves",
    "learning_rate",
    "min_data_in_leaf",
    "feature_fraction",
    "lambda_l2",
    "lambdarank_truncation_level",
)
"""The LightGBM parameters the baseline table shows (the manifest has them all)."""


def _fallback_notes(fallbacks: Iterable[dict[str, str]]) -> list[str]:
    return [f"GBDT {item['module']} / {item['target']} uses the global model: {item['reason']}" for item in fallbacks]


def _timings(test: SplitEvaluation) -> str:
    scoring = ", ".join(f"{model} {seconds:.1f}s" for model, seconds in test.scoring_seconds.items())
    return f"Scoring {test.impressions} impressions: {scoring}; metrics and bootstrap {test.metric_seconds:.1f}s."


def _image(figure: plt.Figure) -> str:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    head = "".join(f'<th class="name">{_e(h)}</th>' if i == 0 else f"<th>{_e(h)}</th>" for i, h in enumerate(header))
    body = "".join(
        "<tr>" + "".join(f'<td class="name">{_e(c)}</td>' if i < 2 else f"<td>{_e(c)}</td>" for i, c in enumerate(row))
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _list(items: Iterable[str]) -> str:
    return "<ul>" + "".join(f"<li>{_e(item)}</li>" for item in items) + "</ul>"


def _e(value: Any) -> str:
    return html.escape(str(value))


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _pct(value: float | None, sign: bool = True) -> str:
    if value is None:
        return "-"
    return f"{value:+.1%}" if sign else f"{value:.1%}"


def _interval(low: float | None, high: float | None, fmt: Callable[[float | None], str] | None = None) -> str:
    """``[0.4512, 0.4733]``; a bound that could not be computed shows as ``n/a``, never ``-`` (a minus sign
    beside a percentage)."""
    fmt = fmt or _num
    return "[" + ", ".join(NO_BOUND if bound is None else fmt(bound) for bound in (low, high)) + "]"


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def _or_nan(value: float | None) -> float:
    return np.nan if value is None else value


def summary_table(result: EvaluationResult) -> str:
    """A plain-text table of the primary metric per model, then the verdict (what the CLI prints)."""
    header, lines = _primary_rows(result)
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *lines, strict=True)]
    text = [
        " | ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)) for row in [header, *lines]
    ]
    text.insert(1, "-+-".join("-" * width for width in widths))
    text += _expected_lines(result)
    verdict = "BLESSED" if result.blessing.blessed else "NOT BLESSED"
    text += ["", f"{verdict}: {headline_sentence(result)}", *(f"  - {reason}" for reason in result.blessing.reasons)]
    return "\n".join(text)


def _expected_lines(result: EvaluationResult) -> list[str]:
    """The candidate against the expected relevance, in one line (nothing without a position-free oracle)."""
    row = result.test.find(result.candidate, ALL_MODULES, result.blessing.primary.task, expected_metric(result))
    if row is None or row["value"] is None:
        return []
    lifts = f"{_lift_cell(row, '')} vs {result.baseline}, {_lift_cell(row, 'global_')} vs the global LightGBM"
    return [
        "",
        f"Against the expected relevance (position-free oracle as gains, not gated): {result.candidate} "
        f"{row['target']} {row['metric']} = {_num(row['value'])}, {lifts}; {_oracle_share(row)} of the oracle gain.",
    ]
