"""How the held-out module would rank under each trained module's embedding instead of the unknown one.

A module the model never trained on gets the OOV ("average module") embedding.
This scores the held-out split of ``--examples`` with ``module_name`` replaced by
each trained module in turn, and by a name no model knows, and prints NDCG@10
of every task and of the ranking score (graded engagement) per substitution. If
no trained module ranks the new module better than the OOV embedding, a better
embedding for new modules (from declared module traits, say) has little room::

    python -m benchmarks.bench_module_swap --model-dir work/model --examples work/examples
    python -m benchmarks.bench_module_swap      # bench_baseline's 1M examples and a default model trained on them

With ``--baseline`` it also measures the lever the table points to, a module alias chosen on a new
surface's first logs. The held-out requests are split by time: the earliest ``--probe-share`` of them
(the new surface's first days) pick, for each ranker, the name under which it ranks the primary task
best; the later ones judge the chosen names. The GBDTs get the same choice, so the comparison stays
fair: the per-module GBDT may pick any trained module's own models or its global fallback (the unknown
name), the global LightGBM any module's name or the unknown one::

    python -m benchmarks.bench_module_swap --model-dir work/model --examples work/examples \\
        --baseline work/baseline --probe-share 0.5
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping, Sequence

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from ranker_core.ranking_metrics import RequestGroups, ideal_dcg, ndcg_per_request
from ranker_core.schema import HELDOUT_SPLIT, MODULE, REQUEST_ID, TIMESTAMP, FeatureSpec
from ranker_core.stats import bootstrap_means, percentile_interval
from ranker_core.targets import ENGAGEMENT, default_primary_task, target_labels
from trainer.examples import read_split
from trainer.features import trained_modules
from trainer.model import SCORE
from trainer.predict import Ranker

UNKNOWN = "__never_trained__"
BOOTSTRAP_SAMPLES = 1000

Columns = Mapping[str, np.ndarray]
Scorer = Callable[[Columns], Mapping[str, np.ndarray]]
"""Example columns -> one score per row for every target (each task and ``engagement``)."""

SwapNdcg = dict[str, dict[str, np.ndarray]]
"""Substituted module name -> target -> NDCG@10 of every request (NaN without a positive)."""


def ranker_scorer(ranker: Ranker) -> Scorer:
    """The MMoE as a :data:`Scorer`: its task probabilities, and its ranking score for engagement."""

    def score(columns: Columns) -> dict[str, np.ndarray]:
        outputs = ranker.predict({name: columns[name] for name in ranker.input_signature})
        return {**{task: outputs[task] for task in ranker.task_names}, ENGAGEMENT: outputs[SCORE]}

    return score


def swap_ndcg(scorer: Scorer, columns: Columns, task_names: Sequence[str], names: Sequence[str]) -> SwapNdcg:
    """Every request's NDCG@10 per target with ``module_name`` replaced by each of ``names``."""
    groups = RequestGroups.from_ids(columns[REQUEST_ID])
    gains: dict[str, np.ndarray] = {}
    ideal: dict[str, dict[int, np.ndarray]] = {}
    results: SwapNdcg = {}
    for name in names:
        scores = scorer({**columns, MODULE: np.full(len(groups.row_request), name, dtype=object)})
        for target in scores.keys() - gains.keys():  # the same labels under every name: computed once
            gains[target] = target_labels(columns, target, task_names).astype(float)
            ideal[target] = ideal_dcg(groups, gains[target], [10])
        results[name] = {
            target: ndcg_per_request(groups, gains[target], values, [10], ideal[target])[10]
            for target, values in scores.items()
        }
    return results


def probe_requests(columns: Columns, share: float) -> np.ndarray:
    """Per request (in :class:`RequestGroups` order): is it among the earliest ``share`` of the requests?"""
    groups = RequestGroups.from_ids(columns[REQUEST_ID])
    first_seen = np.full(groups.n_requests, np.inf)
    np.minimum.at(first_seen, groups.row_request, np.asarray(columns[TIMESTAMP], dtype=np.float64))
    order = np.argsort(first_seen, kind="stable")
    probe = np.zeros(groups.n_requests, dtype=bool)
    probe[order[: round(share * groups.n_requests)]] = True
    return probe


def choose_alias(ndcg: SwapNdcg, target: str, probe: np.ndarray) -> str:
    """The name whose mean ``target`` NDCG on the probe requests is highest (the unknown name on a tie)."""
    means = {name: np.nanmean(per_target[target][probe]) for name, per_target in ndcg.items()}
    best = max(means.values())
    return UNKNOWN if means.get(UNKNOWN) == best else max(means, key=means.get)


def lift_interval(candidate: np.ndarray, other: np.ndarray, seed: int = 0) -> tuple[float, float, float]:
    """Relative lift of the candidate's mean over the other's, paired over requests, and its 95% interval."""
    draws = bootstrap_means(np.column_stack([candidate, other]), BOOTSTRAP_SAMPLES, np.random.default_rng(seed))
    low, high = percentile_interval(draws[:, 0] / draws[:, 1] - 1.0)
    return float(np.nanmean(candidate) / np.nanmean(other) - 1.0), float(low), float(high)


def _table(rows: dict[str, dict[str, float]]) -> list[str]:
    targets = list(next(iter(rows.values())))
    lines = [f"| | {' | '.join(targets)} |", f"|---|{'---:|' * len(targets)}"]
    lines += [f"| {label} | {' | '.join(f'{row[target]:.4f}' for target in targets)} |" for label, row in rows.items()]
    return lines


def _label(name: str) -> str:
    return "(unknown: OOV)" if name == UNKNOWN else name


def swap_report(ndcg: SwapNdcg) -> list[str]:
    """The MMoE's mean NDCG@10 per substituted name and target, over every held-out request."""
    means = {
        _label(name): {t: float(np.nanmean(v)) for t, v in per_target.items()} for name, per_target in ndcg.items()
    }
    return _table(means)


def alias_report(rankers: dict[str, SwapNdcg], target: str, probe: np.ndarray, candidate: str = "mmoe") -> list[str]:
    """Each ranker under the unknown name and under the name its probe requests chose, judged on the rest."""
    judged = ~probe
    chosen = {ranker: choose_alias(ndcg, target, probe) for ranker, ndcg in rankers.items()}
    options = [(ranker, name) for ranker in rankers for name in dict.fromkeys([UNKNOWN, chosen[ranker]])]
    rows = {f"{ranker}, {_as(name)}": _judged_means(rankers[ranker][name], judged) for ranker, name in options}
    lines = [
        f"Alias chosen on the earliest {probe.mean():.0%} of the held-out requests ({int(probe.sum())}) by "
        f"{target} NDCG@10, judged on the other {int(judged.sum())}:",
        *_table(rows),
    ]
    aliased = rankers[candidate][chosen[candidate]][target][judged]
    for ranker, name in options:
        if (ranker, name) != (candidate, chosen[candidate]):
            lift, low, high = lift_interval(aliased, rankers[ranker][name][target][judged])
            versus = f"{candidate}, {_as(chosen[candidate])} vs {ranker}, {_as(name)}"
            lines.append(f"{versus}: {target} {lift:+.1%} [{low:+.1%}, {high:+.1%}]")
    return lines


def _as(name: str) -> str:
    return "unknown name" if name == UNKNOWN else f"as {name}"


def _judged_means(ndcg: dict[str, np.ndarray], judged: np.ndarray) -> dict[str, float]:
    return {target: float(np.nanmean(values[judged])) for target, values in ndcg.items()}


def default_inputs() -> tuple[str, str]:
    """bench_baseline's default examples (``shop_page`` held out) and the default ``TrainerConfig``
    trained on them, beside them (once: kept for the next run)."""
    from benchmarks.bench_baseline import default_examples
    from benchmarks.bench_trainer import train_variant
    from trainer.config import TrainerConfig

    examples = default_examples()
    model_dir = examples.parent / f"{examples.name}-mmoe-default"
    train_variant(examples, TrainerConfig(), model_dir, reuse=True)
    return str(examples), str(model_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model-dir", help="an exported ranker (default: the default config trained on the default examples, once)"
    )
    parser.add_argument(
        "--examples", help="extracted examples with a held-out module (default: bench_baseline's 1M examples)"
    )
    parser.add_argument("--baseline", help="a trained GBDT baseline (ranker train-baseline): adds the alias check")
    parser.add_argument("--probe-share", type=float, default=0.5, help="earliest share of requests that choose")
    args = parser.parse_args(argv)
    if not args.examples and not args.model_dir:
        args.examples, args.model_dir = default_inputs()
    elif not (args.examples and args.model_dir):
        parser.error("give both --model-dir and --examples (the examples it was trained on), or neither")
    spec = FeatureSpec.load(args.examples)
    if not spec.held_out_module:
        parser.error(f"{args.examples} has no held-out module (extract with --held-out-module)")
    if not 0 < args.probe_share < 1:
        parser.error(f"--probe-share must be between 0 and 1, got {args.probe_share}")
    columns = read_split(args.examples, HELDOUT_SPLIT, spec)
    names = [UNKNOWN, *trained_modules(spec)]
    rankers = {"mmoe": swap_ndcg(ranker_scorer(Ranker(args.model_dir)), columns, spec.task_names, names)}
    print(f"held-out module {spec.held_out_module!r} scored as ... (NDCG@10)")
    print("\n".join(swap_report(rankers["mmoe"])))
    if args.baseline:
        from components.baseline.scoring import GbdtBaseline

        baseline = GbdtBaseline.load(args.baseline)
        for scorer in (baseline.per_module_scorer(), baseline.global_scorer()):
            rankers[scorer.name] = swap_ndcg(scorer, columns, spec.task_names, names)
        target = default_primary_task(spec.task_names, "ndcg@10")
        print("\n" + "\n".join(alias_report(rankers, target, probe_requests(columns, args.probe_share))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
