"""The blessing: may the candidate replace what serves today?

The candidate is blessed only when, on the primary metric of the test split,

0. the test split holds at least ``min_requests`` requests with a positive
   (AUC: positive impressions): a verdict on fewer is noise;
1. it beats the per-module GBDT overall (and, with ``require_significance``,
   the paired sign-flip p-value is below ``alpha`` and the lift's interval
   lies above 0);
2. it beats the global LightGBM overall, when ``must_beat_global`` is set
   (the lift over it is always reported, with its interval);
3. it beats the current champion overall, when a champion is given (both are
   evaluated on the same requests);
4. no module falls more than ``tolerance`` (relative) below the per-module
   GBDT on that module; with ``module_veto="significant"`` (the default) the
   regression must also be significant: the module's paired sign-flip p-value,
   Bonferroni-corrected for the number of gated modules, below ``alpha``. So
   sampling noise on one of many small surfaces cannot veto a model that wins
   overall, while a real regression still does. A module judged on fewer than
   ``module_min_requests`` requests with a positive (AUC: positive impressions,
   as rule 0 counts) is reported, with the reason, but not gated; an unmeasured
   module (no request with a positive) has no p-value;
   every module states its requests, positives and the minimum detectable
   effect (relative, at ``power``, with the corrected ``alpha``), so a reader
   sees which regressions the check could have caught;
5. on the held-out module (never trained on), with ``heldout_rule="not_worse"``
   (the default) the candidate is not significantly worse than the GBDT
   fallback (p < ``alpha`` with a negative difference); ``"beat"`` requires a
   higher value; ``"off"`` reports only.

A verdict is given on the held-back test split only: judged on ``train`` or
``eval`` (``split``), the report is still written, for diagnostics, but the
blessing is refused with that reason, and ``blessing.json`` names the split.

Every failed rule adds a reason; no reason means blessed::

    compared = Comparison("mmoe", "gbdt_per_module", "gbdt_global", champion=None)
    blessing = decide(config, PrimaryMetric("favorite", "ndcg@10"), test, heldout, compared)
    blessing.blessed, blessing.reasons
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any, Protocol

from ranker_core.stats import minimum_detectable_effect

if TYPE_CHECKING:
    from components.evaluation.evaluate import SplitEvaluation

ALL_MODULES = "all"
# The only split a verdict may be given on: the held-back one that neither model was fitted or stopped on.
VERDICT_SPLIT = "test"


class _GateConfig(Protocol):
    tolerance: float
    module_veto: str
    module_min_requests: int
    min_requests: int
    require_significance: bool
    must_beat_global: bool
    heldout_rule: str
    alpha: float
    power: float
    confidence_level: float


@dataclasses.dataclass(frozen=True)
class PrimaryMetric:
    """The number the blessing compares: ``metric`` (``ndcg@k``, ``ndcg`` or ``auc``) of ``task``."""

    task: str
    metric: str

    def __str__(self) -> str:
        return f"{self.task} {self.metric}"


@dataclasses.dataclass(frozen=True)
class Comparison:
    """Who is judged against whom: the candidate, the per-module GBDT, the global LightGBM, the champion."""

    candidate: str
    baseline: str
    global_model: str
    champion: str | None = None


@dataclasses.dataclass
class Blessing:
    """The verdict, every reason for a refusal, and the numbers behind it.

    ``judged_model`` is the digest of the model files that were judged
    (``trainer.digest.judged_model``): registration refuses any other model.
    ``split`` is the split the metrics were measured on (only ``test`` may bless).
    """

    blessed: bool
    reasons: list[str]
    primary: PrimaryMetric
    candidate_name: str
    baseline_name: str
    global_name: str
    champion_name: str | None
    candidate: float | None
    baseline: float | None
    global_value: float | None
    champion: float | None
    lift: float | None
    lift_ci: tuple[float | None, float | None]
    p_value: float | None
    mde_relative: float | None
    global_lift: float | None
    global_lift_ci: tuple[float | None, float | None]
    global_p_value: float | None
    requests: int | None
    positives: int | None
    modules: dict[str, dict[str, Any]]
    heldout: dict[str, Any] | None
    tolerance: float
    require_significance: bool
    power: float
    split: str = VERDICT_SPLIT
    judged_model: dict[str, str] | None = None
    champion_note: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["primary_metric"] = str(self.primary)
        data["primary"] = dataclasses.asdict(self.primary)
        data["lift_ci"] = list(self.lift_ci)
        data["global_lift_ci"] = list(self.global_lift_ci)
        return data


def decide(
    config: _GateConfig,
    primary: PrimaryMetric,
    test: SplitEvaluation,
    heldout: SplitEvaluation | None,
    compared: Comparison,
) -> Blessing:
    """Apply the blessing rules of the module docstring to the test (and held-out) split's metrics."""
    candidate = compared.candidate
    row = test.find(candidate, ALL_MODULES, primary.task, primary.metric) or {}
    candidate_value = row.get("value")
    baseline_value = _value(test, compared.baseline, ALL_MODULES, primary)
    global_value = _value(test, compared.global_model, ALL_MODULES, primary)
    champion_value = _value(test, compared.champion, ALL_MODULES, primary) if compared.champion else None
    reasons = _split_reasons(test.split)
    if candidate_value is None:
        reasons.append(f"{candidate} has no {primary} on the {test.split} split (no request with a positive)")
    elif too_few := _too_few(config, row, primary, test.split):
        reasons.append(too_few)
    else:
        reasons += _versus(candidate, candidate_value, compared.baseline, baseline_value, primary)
        if config.must_beat_global:
            reasons += _versus(candidate, candidate_value, compared.global_model, global_value, primary)
        if compared.champion:
            reasons += _versus(candidate, candidate_value, compared.champion, champion_value, primary)
        if config.require_significance:
            reasons += _significance(config, row, compared.baseline)
    modules = _module_checks(config, test, compared, primary)
    reasons += _module_reasons(config, modules, compared, primary)
    heldout_check = _heldout_check(config, heldout, compared, primary)
    if heldout_check and heldout_check["reason"]:
        reasons.append(heldout_check["reason"])
    return Blessing(
        blessed=not reasons,
        reasons=reasons,
        primary=primary,
        candidate_name=candidate,
        baseline_name=compared.baseline,
        global_name=compared.global_model,
        champion_name=compared.champion,
        candidate=candidate_value,
        baseline=baseline_value,
        global_value=global_value,
        champion=champion_value,
        lift=row.get("lift"),
        lift_ci=(row.get("lift_ci_low"), row.get("lift_ci_high")),
        p_value=row.get("p_value"),
        mde_relative=row.get("mde_relative"),
        global_lift=row.get("global_lift"),
        global_lift_ci=(row.get("global_lift_ci_low"), row.get("global_lift_ci_high")),
        global_p_value=row.get("global_p_value"),
        requests=row.get("requests"),
        positives=row.get("positives"),
        modules=modules,
        heldout=heldout_check,
        tolerance=config.tolerance,
        require_significance=config.require_significance,
        power=config.power,
        split=test.split,
    )


def _split_reasons(split: str) -> list[str]:
    """A refusal when the metrics are not the held-back test split's (the report is still written)."""
    if split == VERDICT_SPLIT:
        return []
    return [f"judged on the {split} split: a verdict needs the held-back {VERDICT_SPLIT} split"]


def _too_few(config: _GateConfig, row: dict[str, Any], primary: PrimaryMetric, split: str) -> str:
    """Why the split is too small for a verdict (empty when it is not): fewer than ``min_requests`` requests
    with a positive (NDCG is per request), or positive impressions (AUC)."""
    judged_on = _evidence(row, primary)
    if judged_on is None or judged_on >= config.min_requests:
        return ""
    return (
        f"the {split} split has {_evidence_count(judged_on, primary)} for {primary}; a verdict needs "
        f"min_requests={config.min_requests}{_auc_note(primary)}: too few for a verdict (use more impressions or "
        "more test days)"
    )


def _evidence(row: dict[str, Any], primary: PrimaryMetric) -> int | None:
    """What a verdict's size is counted in: requests with a positive (NDCG), or positive impressions (AUC)."""
    return row.get("positives" if primary.metric == "auc" else "requests")


def _evidence_count(count: int | None, primary: PrimaryMetric) -> str:
    """``count`` in the verdict's unit: ``1 request with a positive``, ``8 positive impressions`` (AUC)."""
    if primary.metric == "auc":
        return f"{count} positive impression{'' if count == 1 else 's'}"
    return f"{count} request{'' if count == 1 else 's'} with a positive"


def _auc_note(primary: PrimaryMetric) -> str:
    """For AUC, that the ``*min_requests`` settings count positive impressions, not requests."""
    return " (counted in positive impressions for AUC)" if primary.metric == "auc" else ""


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


def _module_checks(
    config: _GateConfig, test: SplitEvaluation, compared: Comparison, primary: PrimaryMetric
) -> dict[str, dict[str, Any]]:
    """Each module's change against the per-module GBDT, whether it is gated (and why not), its corrected
    p-value and its minimum detectable effect at the Bonferroni-corrected level."""
    modules = {module: _module_change(test, module, compared, primary) for module in test.modules}
    for change in modules.values():
        judged_on = _evidence(change, primary)
        change["gated"] = change["relative_change"] is not None and (
            judged_on is None or judged_on >= config.module_min_requests
        )
        change["not_gated_reason"] = _not_gated_reason(config, change, primary)
    gated = max(1, sum(change["gated"] for change in modules.values()))
    corrected_alpha = config.alpha / gated
    for change in modules.values():
        change["p_value_corrected"] = None if change["p_value"] is None else min(1.0, change["p_value"] * gated)
        mde = minimum_detectable_effect(change.pop("delta_sd"), change["requests"] or 0, corrected_alpha, config.power)
        change["mde_relative"] = mde / change["baseline"] if change["baseline"] and math.isfinite(mde) else None
    return modules


def _not_gated_reason(config: _GateConfig, change: dict[str, Any], primary: PrimaryMetric) -> str:
    if change["gated"]:
        return ""
    if change["relative_change"] is None:
        return "not measured (no request with a positive, or no baseline value)"
    return (
        f"{_evidence_count(_evidence(change, primary), primary)} < module_min_requests="
        f"{config.module_min_requests}{_auc_note(primary)}: reported, not gated"
    )


def _module_change(test: SplitEvaluation, module: str, compared: Comparison, primary: PrimaryMetric) -> dict[str, Any]:
    """A module's change against the per-module GBDT; an unmeasured one (no change) has no p-value either
    (a sign-flip test of no request says 1.0, which would read as measured)."""
    row = test.find(compared.candidate, module, primary.task, primary.metric) or {}
    value, base = row.get("value"), _value(test, compared.baseline, module, primary)
    relative = None if value is None or not base else value / base - 1.0
    return {
        "candidate": value,
        "baseline": base,
        "relative_change": relative,
        "lift_ci": [row.get("lift_ci_low"), row.get("lift_ci_high")],
        "p_value": None if relative is None else row.get("p_value"),
        "requests": row.get("requests"),
        "positives": row.get("positives"),
        "delta_sd": math.nan if row.get("delta_sd") is None else row["delta_sd"],
    }


def _module_reasons(
    config: _GateConfig, modules: dict[str, dict[str, Any]], compared: Comparison, primary: PrimaryMetric
) -> list[str]:
    reasons = []
    for module, change in modules.items():
        relative = change["relative_change"]
        if relative is not None and relative < -config.tolerance and change["gated"] and _credible(config, change):
            reasons.append(
                f"module {module}: {compared.candidate} {primary} {change['candidate']:.4f} is {-relative:.1%} below "
                f"{compared.baseline} {change['baseline']:.4f} (tolerance {config.tolerance:.1%}{_interval(change)})"
            )
    return reasons


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


def _heldout_check(
    config: _GateConfig, heldout: SplitEvaluation | None, compared: Comparison, primary: PrimaryMetric
) -> dict[str, Any] | None:
    """The held-out module's row (the candidate against the GBDT fallback) and the rule's reason, if it fails."""
    if heldout is None:
        return None
    row = heldout.find(compared.candidate, ALL_MODULES, primary.task, primary.metric) or {}
    value, base = row.get("value"), _value(heldout, compared.baseline, ALL_MODULES, primary)
    check = {
        "modules": list(heldout.modules),
        "rule": config.heldout_rule,
        "candidate": value,
        "baseline": base,
        "global_value": _value(heldout, compared.global_model, ALL_MODULES, primary),
        "lift": row.get("lift"),
        "lift_ci": [row.get("lift_ci_low"), row.get("lift_ci_high")],
        "p_value": row.get("p_value"),
        "requests": row.get("requests"),
        "positives": row.get("positives"),
        "mde_relative": row.get("mde_relative"),
        "reason": "",
    }
    check["reason"] = _heldout_reason(config, check, compared, primary)
    if value is None or base is None:
        check["not_judged_reason"] = f"no request with a positive for {primary}"
    return check


def _heldout_reason(config: _GateConfig, check: dict[str, Any], compared: Comparison, primary: PrimaryMetric) -> str:
    if config.heldout_rule == "off":
        return ""
    value, base, p_value = check["candidate"], check["baseline"], check["p_value"]
    where = f"held-out module {', '.join(check['modules'])}"
    if value is None or base is None:  # like a module below module_min_requests: nothing to decide on
        if config.heldout_rule != "beat":
            return ""  # not_worse has no evidence to refuse on; check["not_judged_reason"] says so
        return f"{where}: {primary} could not be measured (no request with a positive), so it cannot beat the fallback"
    if config.heldout_rule == "beat" and value <= base:
        return f"{where}: {compared.candidate} {primary} {value:.4f} does not beat the GBDT fallback {base:.4f}"
    if value < base and p_value is not None and p_value < config.alpha:
        return (
            f"{where}: {compared.candidate} {primary} {value:.4f} is significantly below the GBDT fallback "
            f"{base:.4f} (p = {p_value:.4f} < alpha = {config.alpha})"
        )
    return ""
