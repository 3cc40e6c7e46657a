"""The blessing: may the candidate replace what serves today?

The candidate is blessed only when, on the primary metric of the test split,

1. it beats the per-module GBDT overall (and, with ``require_significance``,
   the paired sign-flip p-value is below ``alpha`` and the lift's interval
   lies above 0);
2. it beats the current champion overall, when a champion is given (both are
   evaluated on the same requests);
3. no module falls more than ``tolerance`` (relative) below the per-module
   GBDT on that module; with ``module_veto="significant"`` (the default) the
   regression must also be significant: the module's paired sign-flip p-value,
   Bonferroni-corrected for the number of gated modules, below ``alpha``. So
   sampling noise on one of many small surfaces cannot veto a model that wins
   overall, while a real regression still does. A module judged on fewer than
   ``module_min_requests`` requests is reported but not gated.

Every failed rule adds a reason; no reason means blessed::

    blessing = decide(config, PrimaryMetric("favorite", "ndcg@10"), test, "mmoe", "gbdt_per_module", None)
    blessing.blessed, blessing.reasons
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from components.evaluation.evaluate import SplitEvaluation

ALL_MODULES = "all"


class _GateConfig(Protocol):
    tolerance: float
    module_veto: str
    module_min_requests: int
    require_significance: bool
    alpha: float
    confidence_level: float


@dataclasses.dataclass(frozen=True)
class PrimaryMetric:
    """The number the blessing compares: ``metric`` (``ndcg@k``, ``ndcg`` or ``auc``) of ``task``."""

    task: str
    metric: str

    def __str__(self) -> str:
        return f"{self.task} {self.metric}"


@dataclasses.dataclass
class Blessing:
    """The verdict, every reason for a refusal, and the numbers behind it."""

    blessed: bool
    reasons: list[str]
    primary: PrimaryMetric
    candidate_name: str
    baseline_name: str
    champion_name: str | None
    candidate: float | None
    baseline: float | None
    champion: float | None
    lift: float | None
    lift_ci: tuple[float | None, float | None]
    p_value: float | None
    modules: dict[str, dict[str, Any]]
    tolerance: float
    require_significance: bool

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["primary_metric"] = str(self.primary)
        data["primary"] = dataclasses.asdict(self.primary)
        data["lift_ci"] = list(self.lift_ci)
        return data


def decide(
    config: _GateConfig,
    primary: PrimaryMetric,
    test: SplitEvaluation,
    candidate: str,
    baseline: str,
    champion: str | None,
) -> Blessing:
    """Apply the blessing rules of the module docstring to one split's metrics."""
    row = test.find(candidate, ALL_MODULES, primary.task, primary.metric) or {}
    candidate_value = row.get("value")
    baseline_value = _value(test, baseline, ALL_MODULES, primary)
    champion_value = _value(test, champion, ALL_MODULES, primary) if champion else None
    reasons: list[str] = []
    if candidate_value is None:
        reasons.append(f"{candidate} has no {primary} on the {test.split} split (no request with a positive)")
    else:
        reasons += _versus(candidate, candidate_value, baseline, baseline_value, primary)
        if champion:
            reasons += _versus(candidate, candidate_value, champion, champion_value, primary)
        if config.require_significance:
            reasons += _significance(config, row, baseline)
    modules = {module: _module_change(test, module, candidate, baseline, primary) for module in test.modules}
    for change in modules.values():
        change["gated"] = change["requests"] is None or change["requests"] >= config.module_min_requests
    gated = sum(change["gated"] and change["relative_change"] is not None for change in modules.values())
    for module, change in modules.items():
        change["p_value_corrected"] = None if change["p_value"] is None else min(1.0, change["p_value"] * gated)
        relative = change["relative_change"]
        if relative is not None and relative < -config.tolerance and change["gated"] and _credible(config, change):
            reasons.append(
                f"module {module}: {candidate} {primary} {change['candidate']:.4f} is {-relative:.1%} below "
                f"{baseline} {change['baseline']:.4f} (tolerance {config.tolerance:.1%}{_interval(change)})"
            )
    return Blessing(
        blessed=not reasons,
        reasons=reasons,
        primary=primary,
        candidate_name=candidate,
        baseline_name=baseline,
        champion_name=champion,
        candidate=candidate_value,
        baseline=baseline_value,
        champion=champion_value,
        lift=row.get("lift"),
        lift_ci=(row.get("lift_ci_low"), row.get("lift_ci_high")),
        p_value=row.get("p_value"),
        modules=modules,
        tolerance=config.tolerance,
        require_significance=config.require_significance,
    )


def _value(test: SplitEvaluation, model: str | None, subset: str, primary: PrimaryMetric) -> float | None:
    row = test.find(model, subset, primary.task, primary.metric) if model else None
    return None if row is None else row.get("value")


def _versus(candidate: str, value: float, other: str, other_value: float | None, primary: PrimaryMetric) -> list[str]:
    if other_value is None:
        return [f"{other} has no {primary} to compare with"]
    if value <= other_value:
        return [f"{candidate} {primary} {value:.4f} does not beat {other} {other_value:.4f}"]
    return []


def _significance(config: _GateConfig, row: dict[str, Any], baseline: str) -> list[str]:
    p_value, low, high = row.get("p_value"), row.get("lift_ci_low"), row.get("lift_ci_high")
    if p_value is None:
        return [f"significance against {baseline} was not measured for this metric"]
    reasons = []
    if p_value >= config.alpha:
        reasons.append(f"the gain over {baseline} is not significant: p = {p_value:.4f} >= alpha = {config.alpha}")
    if low is None or low <= 0:
        interval = "unmeasured" if low is None or high is None else f"[{low:+.1%}, {high:+.1%}]"
        reasons.append(
            f"the lift's {config.confidence_level:.0%} interval over {baseline} {interval} does not lie above 0"
        )
    return reasons


def _module_change(
    test: SplitEvaluation, module: str, candidate: str, baseline: str, primary: PrimaryMetric
) -> dict[str, float | None]:
    row = test.find(candidate, module, primary.task, primary.metric) or {}
    value, base = row.get("value"), _value(test, baseline, module, primary)
    relative = None if value is None or not base else value / base - 1.0
    return {
        "candidate": value,
        "baseline": base,
        "relative_change": relative,
        "lift_ci": [row.get("lift_ci_low"), row.get("lift_ci_high")],
        "p_value": row.get("p_value"),
        "requests": row.get("requests"),
    }


def _credible(config: _GateConfig, change: dict[str, Any]) -> bool:
    """Whether a module's regression may veto: always under ``"point"``; under ``"significant"`` only when
    its corrected p-value is below ``alpha`` (a module without a p-value is judged on its point estimate)."""
    if config.module_veto == "point" or change["p_value_corrected"] is None:
        return True
    return change["p_value_corrected"] < config.alpha


def _interval(change: dict[str, Any]) -> str:
    low, high = change["lift_ci"]
    interval = "" if low is None or high is None else f"; lift interval [{low:+.1%}, {high:+.1%}]"
    corrected = change["p_value_corrected"]
    return interval + ("" if corrected is None else f", corrected p = {corrected:.4f}")
