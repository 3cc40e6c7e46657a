"""How the held-out module would rank under each trained module's embedding instead of the unknown one.

A module the model never trained on gets the OOV ("average module") embedding.
This scores the held-out split of ``--examples`` with ``module_name`` replaced by
each trained module in turn, and by a name no model knows, and prints NDCG@10
of every task and of the ranking score (graded engagement) per substitution. If
no trained module ranks the new module better than the OOV embedding, a better
embedding for new modules (from declared module traits, say) has little room::

    python -m benchmarks.bench_module_swap --model-dir work/model --examples work/examples
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from ranker_core.ranking_metrics import RequestGroups, ndcg_per_request
from ranker_core.schema import HELDOUT_SPLIT, MODULE, REQUEST_ID, FeatureSpec
from ranker_core.targets import ENGAGEMENT, target_labels
from trainer.examples import read_split
from trainer.features import trained_modules
from trainer.model import SCORE
from trainer.predict import Ranker

UNKNOWN = "__never_trained__"


def swap_scores(ranker: Ranker, columns: dict[str, np.ndarray], spec: FeatureSpec) -> dict[str, dict[str, float]]:
    """Module substituted -> target -> mean NDCG@10 over the requests with a positive."""
    groups = RequestGroups.from_ids(columns[REQUEST_ID])
    results = {}
    for module in (UNKNOWN, *trained_modules(spec)):
        inputs = {name: columns[name] for name in ranker.input_signature if name != MODULE}
        outputs = ranker.predict({**inputs, MODULE: np.full(len(groups.row_request), module, dtype=object)})
        results[module] = {
            target: _mean_ndcg(groups, target_labels(columns, target, spec.task_names), outputs[output])
            for target, output in [*((task, task) for task in spec.task_names), (ENGAGEMENT, SCORE)]
        }
    return results


def _mean_ndcg(groups: RequestGroups, gains: np.ndarray, scores: np.ndarray) -> float:
    return float(np.nanmean(ndcg_per_request(groups, gains.astype(float), scores, [10])[10]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", required=True, help="an exported ranker (ranker train)")
    parser.add_argument("--examples", required=True, help="extracted examples with a held-out module")
    args = parser.parse_args(argv)
    spec = FeatureSpec.load(args.examples)
    if not spec.held_out_module:
        parser.error(f"{args.examples} has no held-out module (extract with --held-out-module)")
    results = swap_scores(Ranker(args.model_dir), read_split(args.examples, HELDOUT_SPLIT, spec), spec)
    targets = list(next(iter(results.values())))
    print(f"held-out module {spec.held_out_module!r} scored as ... (NDCG@10)")
    print(f"| module | {' | '.join(targets)} |\n|---|{'---:|' * len(targets)}")
    for module, scores in results.items():
        name = "(unknown: OOV)" if module == UNKNOWN else module
        print(f"| {name} | {' | '.join(f'{scores[target]:.4f}' for target in targets)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
