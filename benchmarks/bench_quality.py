"""Ranking quality across data worlds and seeds: the MMoE against every peer the evaluation scores.

For each world x seed it simulates ``--impressions`` rows, extracts them with the
world's module held out, trains the MMoE (``TrainerConfig`` defaults, or
``--model-config``) and the GBDT baseline (``BaselineConfig`` defaults), and
evaluates them with the simulator's oracles: the per-module GBDT, the tuned
global LightGBM, the network peers (``--peers``: architectures trained with the
same settings, by default a shared bottom and a DCN-v2), a random ranker and the
position-free oracle, each with NDCG@10 of every target, the MMoE's paired lifts
over the GBDTs and every peer with their 95% CIs, the share of the position-free
random->oracle gap and the held-out module's row. It prints one table per world
(with several seeds, also every lift pooled over them, :func:`pooled_lift`), then the
same table against the simulator's expected relevance (the evaluation's ``expected_ndcg@10``), and
writes every number to ``<work-dir>/bench_quality.json`` (``bench_quality-<config
hash>.json`` with ``--model-config``)::

    python -m benchmarks.bench_quality                                    # both worlds, seeds 0 1 2, 1M each
    python -m benchmarks.bench_quality --impressions 200000 --seeds 0 --worlds marketplace
    python -m benchmarks.bench_quality --model-config '{"embedding_l2": 1.0}' --work-dir /tmp/q_l2
    python -m benchmarks.bench_quality --worlds curated --impressions-per-user 400   # 4x the history per user
    python -m benchmarks.bench_quality --peers                            # no network peers
    python -m benchmarks.bench_quality --tables-only --work-dir /tmp/q    # the tables of the runs made there
    python -m benchmarks.bench_quality --model-config '{"listwise_weight": 0.1}' --against-default   # a variant
        # also scores the default MMoE of the same work dir (trained if missing) as the peer ``mmoe_default``
    python -m benchmarks.bench_quality --seeds 0 --model-config '{"seed": 1}' --against-default
        # the default configuration trained again on the same data with another model seed: the training noise
    python -m benchmarks.bench_quality --seeds 0 --worlds curated --model-config @tuned.json --against-default
        # a configuration from a file, such as the one `ranker tune --out` writes
    python -m benchmarks.bench_quality --history '{"sequences": [{"task": "click", "column": "listing_id"}]}' \\
        --against-default     # other history features: the simulator spec's `history` updated, extracted anew,
        # both rankers trained on them; ``mmoe_default`` is then the default MMoE of the shipped spec's examples
    python -m benchmarks.bench_quality --history '...' --model-config '{"sequence_dropout": 0.3}' --against-default
        # both: also ``mmoe_default_config``, the default configuration trained on the same (history) examples
    python -m benchmarks.bench_quality --module-traits --against-default   # each world's surfaces declared by
        # their traits (each World's module_traits) in the spec: like --history, a spec variant extracted anew

Worlds (:data:`WORLDS`): ``marketplace`` is the simulator as shipped (``shop_page``
held out); ``curated`` is a second marketplace with other surfaces, examination
curves and drivers (``deals_page`` held out): steeper position decay on list
surfaces, taste and history (visible only through ids and histories) driving
favorites and purchases, quality and price mattering less, and surfaces that
draw slates like the shipped ones but are judged differently.
Simulated data, extractions, the baseline and each configuration's model are kept in
``--work-dir`` and reused, so variants run in one work dir share the data and the baseline.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.bench_baseline import cpu_model
from components.data.simulator_config import DEFAULT_MODULES, ModuleBehavior, SimulatorConfig, StageModel
from ranker_core.cli_support import InvalidValueError
from ranker_core.settings import is_file_reference, read_json_object
from ranker_core.step_configs import ARCHITECTURES

TARGETS = ("click", "favorite", "add_to_cart", "purchase")
REFERENCES = ("gbdt_per_module", "gbdt_global", "random", "oracle_position_free")
NETWORK_PEERS = ("shared_bottom", "dcn")
DEFAULT_PEER = "mmoe_default"  # --against-default: the default configuration's MMoE, scored as a peer
# --against-default with --history and --model-config: the default configuration on the same examples
SAME_EXAMPLES_PEER = "mmoe_default_config"
Z_95 = 1.959964  # the standard normal's 97.5% quantile
PEER_ARCHITECTURES = tuple(name for name in ARCHITECTURES if name != "mmoe")
# The candidate's row of the evaluation: both paired lifts with their 95% CIs, and the share of the oracle gap.
LIFT_KEYS = (
    "lift",
    "lift_ci_low",
    "lift_ci_high",
    "global_lift",
    "global_lift_ci_low",
    "global_lift_ci_high",
    "gain_captured",
)


def _module(generator: str, share: float, candidates: int, decay: float, **stages: tuple) -> ModuleBehavior:
    return ModuleBehavior(
        share=share,
        candidates=candidates,
        position_decay=decay,
        generator=generator,
        **{name: StageModel(bias, weights) for name, (bias, weights) in stages.items()},
    )


# A second marketplace. Its surfaces reuse the shipped slate generators but are judged differently:
# taste and history (latent, seen only through ids and histories) drive favorites and purchases,
# quality and price matter less, and list surfaces examine steeply.
CURATED_MODULES: dict[str, ModuleBehavior] = {
    "discover": _module(
        "home_feed",
        0.3,
        20,
        1.2,
        click=(-2.9, {"taste": 1.2, "history": 0.2, "quality": 0.2, "novelty": 0.9}),
        favorite=(-3.0, {"taste": 1.4, "history": 0.4, "price": 0.5}),
        add_to_cart=(-3.6, {"taste": 0.8, "history": 0.6, "price": -0.2}),
        purchase=(-1.9, {"taste": 0.5, "history": 0.7, "mobile": -0.3}),
    ),
    "similar_items": _module(
        "item_page",
        0.2,
        10,
        0.4,
        click=(-3.2, {"taste": 0.7, "context": 1.2, "quality": 0.2}),
        favorite=(-2.9, {"taste": 1.0, "context": 0.3}),
        add_to_cart=(-3.4, {"taste": 0.6, "history": 0.5, "context": 0.5, "price": -0.2}),
        purchase=(-2.0, {"taste": 0.4, "history": 0.6, "free_shipping": 0.4}),
    ),
    "category_browse": _module(
        "search",
        0.25,
        36,
        1.5,
        click=(-2.2, {"taste": 0.8, "context": 1.0, "price": -0.4, "on_sale": 0.4}),
        favorite=(-3.3, {"taste": 1.1, "history": 0.3}),
        add_to_cart=(-4.1, {"taste": 0.6, "history": 0.4, "price": -0.5, "on_sale": 0.4}),
        purchase=(-2.1, {"taste": 0.3, "history": 0.5, "price": -0.4}),
    ),
    "push": _module(
        "email_digest",
        0.15,
        4,
        0.1,
        click=(-5.2, {"taste": 1.0, "history": 1.0, "on_sale": 0.8}),
        favorite=(-2.2, {"taste": 1.0, "history": 0.5}),
        add_to_cart=(-3.0, {"taste": 0.6, "history": 0.8, "on_sale": 0.6}),
        purchase=(-0.8, {"taste": 0.4, "history": 0.6}),
    ),
    "deals_page": _module(
        "cart",
        0.1,
        12,
        0.9,
        click=(-2.7, {"taste": 0.8, "history": 0.5, "on_sale": 1.0, "price": -0.5}),
        favorite=(-2.6, {"taste": 1.2, "history": 0.3}),
        add_to_cart=(-3.3, {"taste": 0.6, "history": 0.6, "on_sale": 0.7, "price": -0.4}),
        purchase=(-1.8, {"taste": 0.4, "history": 0.6, "on_sale": 0.4}),
    ),
}


def _traits(channel: str, layout: str, context: str) -> dict[str, str]:
    """A surface's traits: where it is shown, how its slate is laid out, what the request carries besides the user."""
    return {"channel": channel, "layout": layout, "context": context}


@dataclasses.dataclass(frozen=True)
class World:
    """A simulator configuration and the module its extraction holds out of training."""

    modules: dict[str, ModuleBehavior]
    held_out_module: str
    history_strength: float = 1.0
    policy_noise: float = 2.0
    # What each surface is, as a team would declare it in its dataset spec (--module-traits): where it is
    # shown, how its slate is laid out and what the request carries besides the user.
    module_traits: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)

    def config(self, impressions: int, seed: int, impressions_per_user: int = 0) -> SimulatorConfig:
        """The world at ``impressions``; ``impressions_per_user`` sets the users (0: the simulator's 1 per 100)."""
        return SimulatorConfig(
            n_impressions=impressions,
            n_users=impressions // impressions_per_user if impressions_per_user else None,
            seed=seed,
            modules=dict(self.modules),
            history_strength=self.history_strength,
            policy_noise=self.policy_noise,
        )


WORLDS: dict[str, World] = {
    "marketplace": World(
        dict(DEFAULT_MODULES),
        "shop_page",
        module_traits={
            "home_feed": _traits("app", "grid", "none"),
            "item_page": _traits("app", "carousel", "listing"),
            "search": _traits("app", "grid", "query"),
            "cart": _traits("app", "carousel", "cart"),
            "email_digest": _traits("email", "list", "none"),
            "shop_page": _traits("app", "grid", "shop"),
        },
    ),
    "curated": World(
        CURATED_MODULES,
        "deals_page",
        history_strength=1.5,
        policy_noise=1.0,
        module_traits={
            "discover": _traits("app", "grid", "none"),
            "similar_items": _traits("app", "carousel", "listing"),
            "category_browse": _traits("app", "grid", "category"),
            "push": _traits("push", "list", "none"),
            "deals_page": _traits("app", "grid", "none"),
        },
    ),
}


def run_world(world_name: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """Simulate, extract, train both rankers and evaluate one world and seed (reusing what exists)."""
    from components.baseline.gbdt import train_baseline
    from components.data.simulator import simulate
    from components.evaluation.config import EvaluationConfig
    from components.evaluation.evaluate import evaluate
    from components.evaluation.scorers import ModelScorer
    from ranker_core.ranking_metrics import EXPECTED_PREFIX
    from ranker_core.step_configs import BaselineConfig, TrainerConfig
    from trainer.train import train_and_export

    world = WORLDS[world_name]
    per_user = f"-{args.impressions_per_user}peruser" if args.impressions_per_user else ""
    shipped = Path(args.work_dir) / f"{world_name}-{args.impressions}{per_user}-seed{seed}"  # the shipped spec's
    root = shipped.with_name(shipped.name + _spec_variant(args))
    data = shipped / "sim"
    if not (data / "impressions").is_dir():
        simulate(world.config(args.impressions, seed, args.impressions_per_user), str(data))
    traits = world.module_traits if args.module_traits else None
    examples = extracted(data, root, world.held_out_module, args.history, traits)
    models = {}
    for name in ("mmoe", *args.peers):  # a peer: the same settings with its own architecture
        # the world's seed, unless the model config names its own (another training of the same data)
        overrides = {} if "seed" in json.loads(args.model_config) else {"seed": seed}
        overrides |= {} if name == "mmoe" else {"architecture": name}
        models[name] = root / f"{name}-{_slug(args.model_config)}"
        if not (models[name] / "saved_model.pb").exists():
            train_and_export(examples, models[name], TrainerConfig.from_sources(args.model_config, overrides))
    peers = _peers(args)
    # the folders a run without --model-config trains: on the shipped spec's examples, and on these
    for peer, peer_root in ((DEFAULT_PEER, shipped), (SAME_EXAMPLES_PEER, root)):
        if peer in peers:
            models[peer] = peer_root / "mmoe-default"
            if not (models[peer] / "saved_model.pb").exists():
                peer_examples = examples if peer_root == root else extracted(data, shipped, world.held_out_module)
                train_and_export(peer_examples, models[peer], TrainerConfig.from_sources("{}", {"seed": seed}))
            if peer_root != root:  # trained on other examples on purpose: a scorer, not lineage-checked
                models[peer] = ModelScorer.load(peer, models[peer])
    baseline_dir = root / "baseline"
    if not (baseline_dir / "manifest.json").exists():
        train_baseline(BaselineConfig(seed=seed), examples, baseline_dir)
    result = evaluate(
        EvaluationConfig(compare_with=tuple(peers)),
        examples,
        models,
        baseline_dir,
        root / f"report-{_slug(args.model_config)}",
        oracle_uri=str(data / "oracle"),
    )
    summary = summarise(result, peers)
    summary["expected"] = summarise(result, peers, EXPECTED_PREFIX + "ndcg@10")
    return summary


def extracted(
    data: Path, root: Path, held_out_module: str, history: str = "{}", module_traits: dict | None = None
) -> Path:
    """``root/examples``, extracted from the simulation once: with the simulator's spec, or with ``history``
    (JSON) merged into its `history` section and ``module_traits`` declared (the spec written under ``root``)."""
    from components.data.spec import spec_with_history
    from components.features.pipeline import ExtractionConfig, extract_features

    examples = root / "examples"
    if not (examples / "feature_spec.json").exists():
        spec = spec_with_history(json.loads(history), root / "dataset_spec.yaml", module_traits=module_traits)
        extract_features(ExtractionConfig(str(data / "impressions"), spec, str(examples), held_out_module))
    return examples


def _peers(args: argparse.Namespace) -> list[str]:
    """The models the MMoE is compared with besides the GBDTs: the network peers, and the default MMoE for a
    variant run with ``--against-default`` (also on the same examples when both the model and the history vary)."""
    model_varies, spec_varies = _slug(args.model_config) != "default", bool(_spec_variant(args))
    defaults = [DEFAULT_PEER] if model_varies or spec_varies else []
    defaults += [SAME_EXAMPLES_PEER] if model_varies and spec_varies else []
    return [*args.peers, *(defaults if args.against_default else [])]


def _spec_variant(args: argparse.Namespace) -> str:
    """The folder suffix of a spec variant (``--history``, ``--module-traits``); empty for the shipped spec."""
    history = "" if args.history == "{}" else f"-history-{_slug(args.history)}"
    return history + ("-traits" if args.module_traits else "")


def config_json(value: str) -> str:
    """``--model-config``: inline JSON as given, or the object in ``@file.json`` as sorted JSON (the text names the
    run's folders, so the same inline text keeps reusing them); read by the settings' own reader."""
    try:
        parsed = read_json_object(value, "the configuration")
    except InvalidValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error
    return json.dumps(parsed, sort_keys=True) if is_file_reference(value) else value


def _slug(model_config: str) -> str:
    """A short stable folder name for a model configuration."""
    import hashlib

    return "default" if model_config in ("", "{}") else hashlib.sha256(model_config.encode()).hexdigest()[:10]


def summarise(result, peers: Sequence[str] = (), metric: str = "ndcg@10") -> dict[str, Any]:
    """NDCG@10 of every model and target (all test modules and the held-out one), the lifts and gap shares;
    against the expected relevance with ``metric="expected_ndcg@10"`` (``ranking_metrics.EXPECTED_PREFIX``)."""
    from components.evaluation.evaluate import ALL_MODULES

    summary: dict[str, Any] = {"test": {}, "heldout": {}}
    for split_name, split in (("test", result.test), ("heldout", result.heldout)):
        if split is None:
            continue
        subset = ALL_MODULES if split_name == "test" else _only_subset(split)
        for target in TARGETS:
            cells = {}
            for model in ("mmoe", *peers, *REFERENCES):
                row = split.find(model, subset, target, metric)
                if row is not None and row["value"] is not None:
                    cells[model] = row["value"]
            candidate = split.find("mmoe", subset, target, metric) or {}
            cells |= {key: candidate.get(key) for key in (*LIFT_KEYS, *_peer_lift_keys(peers))}
            summary[split_name][target] = cells
    summary["blessed"] = result.blessing.blessed
    return summary


def _peer_lift_keys(peers: Sequence[str]) -> list[str]:
    return [f"{peer}_{key}" for peer in peers for key in ("lift", "lift_ci_low", "lift_ci_high")]


def _only_subset(split) -> str:
    """The subset name of a held-out split (its one module)."""
    subsets = {row["subset"] for row in split.ndcg}
    return sorted(subsets)[0]


def table(world: str, runs: dict[int, dict[str, Any]], peers: Sequence[str] = ()) -> list[str]:
    """Markdown rows: per seed and target, NDCG@10 of every model, the MMoE's lifts and its gap share."""
    models = ["MMoE", *peers, "per-module GBDT", "global LightGBM", "random", "position-free oracle"]
    lifts = [f"lift vs {name} [95% CI]" for name in ("per-module", "global", *peers)]
    lines = [
        f"### {world}",
        "",
        f"| seed | split | target | {' | '.join(models)} | {' | '.join(lifts)} | gap captured |",
        "|---|---|---|" + "---:|" * len(models) + "---|" * len(lifts) + "---:|",
    ]
    for seed, summary in sorted(runs.items(), key=lambda run: int(run[0])):
        for split in ("test", "heldout"):
            for target, cells in summary.get(split, {}).items():
                scores = " | ".join(_number(cells.get(model)) for model in ("mmoe", *peers, *REFERENCES))
                keys = ["lift", "global_lift", *(f"{peer}_lift" for peer in peers)]
                intervals = " | ".join(_interval(cells, key) for key in keys)
                gap = _number(cells.get("gain_captured"), percent=True)
                lines.append(f"| {seed} | {split} | {target} | {scores} | {intervals} | {gap} |")
    if len(runs) > 1:
        lines += ["", *pooled_table(runs, peers)]
    return lines


def pooled_table(runs: dict[int, dict[str, Any]], peers: Sequence[str] = ()) -> list[str]:
    """Markdown rows: per split and target, every lift pooled over the seeds (:func:`pooled_lift`), and how
    many seeds' own intervals lie above 0 (the MMoE ahead) and below it (the competitor ahead)."""
    references = ["per-module", "global", *peers]
    keys = ["lift", "global_lift", *(f"{peer}_lift" for peer in peers)]
    headers = [f"lift vs {name}: pooled [95% CI]; seeds above / below 0" for name in references]
    lines = [
        f"| split | target | {' | '.join(headers)} |",
        "|---|---|" + "---|" * len(keys),
    ]
    summaries = [summary for _, summary in sorted(runs.items(), key=lambda run: int(run[0]))]
    for split in ("test", "heldout"):
        for target in TARGETS:
            seeds = [summary[split][target] for summary in summaries if target in summary.get(split, {})]
            if not seeds:
                continue
            cells = []
            for key in keys:
                pooled = pooled_lift([_seed_lift(seed, key) for seed in seeds])
                above, below = _seeds_outside_zero(seeds, key)
                cells.append(f"{_pooled_interval(pooled)}; {above} / {below} of {len(seeds)}")
            lines.append(f"| {split} | {target} | {' | '.join(cells)} |")
    return lines


def pooled_lift(lifts: Sequence[tuple[float, float, float] | None]) -> tuple[float, float, float] | None:
    """The mean of the seeds' lifts and its 95% interval; ``lifts`` holds (lift, ci_low, ci_high) per seed.

    Each seed is its own simulated world and training run, so the seeds are independent: the mean's
    standard error is ``sqrt(sum(se_s ** 2)) / n``, each seed's ``se_s`` read off its 95% bootstrap
    interval over requests as ``(high - low) / 3.92``. The interval holds the request noise of each
    seed's test split given its trained models, not the spread between training runs: the per-seed
    rows show that. None when a seed lacks the lift or its interval.

    >>> [round(value, 4) for value in pooled_lift([(0.04, 0.02, 0.06), (0.02, 0.0, 0.04)])]
    [0.03, 0.0159, 0.0441]
    """
    if not lifts or any(lift is None for lift in lifts):
        return None
    mean = sum(lift for lift, _, _ in lifts) / len(lifts)
    standard_error = math.sqrt(sum(((high - low) / (2 * Z_95)) ** 2 for _, low, high in lifts)) / len(lifts)
    return mean, mean - Z_95 * standard_error, mean + Z_95 * standard_error


def _seed_lift(cells: dict[str, Any], key: str) -> tuple[float, float, float] | None:
    values = (cells.get(key), cells.get(f"{key}_ci_low"), cells.get(f"{key}_ci_high"))
    return None if any(value is None for value in values) else values


def _seeds_outside_zero(seeds: Sequence[dict[str, Any]], key: str) -> tuple[int, int]:
    lows = [cells.get(f"{key}_ci_low") for cells in seeds]
    highs = [cells.get(f"{key}_ci_high") for cells in seeds]
    return sum(low is not None and low > 0 for low in lows), sum(high is not None and high < 0 for high in highs)


def _pooled_interval(pooled: tuple[float, float, float] | None) -> str:
    if pooled is None:
        return "-"
    mean, low, high = pooled
    return f"{mean:+.1%} [{low:+.1%}, {high:+.1%}]"


def _number(value: float | None, percent: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:.0%}" if percent else f"{value:.3f}"


def _interval(cells: dict[str, Any], key: str) -> str:
    """``+5.0% [+1.0%, +9.0%]``; a bound the report could not give (a non-finite one, e.g. a peer at 0) is ``n/a``."""
    if cells.get(key) is None:
        return "-"
    low, high = cells.get(f"{key}_ci_low"), cells.get(f"{key}_ci_high")
    if low is None and high is None:
        return f"{cells[key]:+.1%}"
    bounds = ", ".join("n/a" if bound is None else f"{bound:+.1%}" for bound in (low, high))
    return f"{cells[key]:+.1%} [{bounds}]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worlds", nargs="+", default=list(WORLDS), choices=list(WORLDS), help="worlds (all)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="simulator and model seeds (0 1 2)")
    parser.add_argument("--impressions", type=int, default=1_000_000, help="simulated impressions per run (1000000)")
    parser.add_argument(
        "--impressions-per-user",
        type=int,
        default=0,
        help="users = impressions / this: how much history each user has (0: the simulator's 100)",
    )
    parser.add_argument(
        "--model-config",
        type=config_json,
        default="{}",
        help="TrainerConfig overrides as JSON, or @file.json such as `ranker tune --out`'s (default: {})",
    )
    parser.add_argument(
        "--history", default="{}", help="the simulator spec's `history` section updated with this JSON (default: {})"
    )
    parser.add_argument(
        "--module-traits", action="store_true", help="declare each world's module traits in its spec (off)"
    )
    parser.add_argument("--work-dir", default="/tmp/bench_quality", help="where data, models and the JSON go")
    parser.add_argument(
        "--peers", nargs="*", default=list(NETWORK_PEERS), choices=PEER_ARCHITECTURES, help="network peers"
    )
    parser.add_argument(
        "--against-default",
        action="store_true",
        help=f"with --model-config, --history or --module-traits: the default MMoE of the shipped spec's examples as "
        f"peer {DEFAULT_PEER} (with a spec variant and --model-config, "
        f"also {SAME_EXAMPLES_PEER}: the default configuration on the same examples)",
    )
    parser.add_argument(
        "--tables-only", action="store_true", help="print the tables of the runs already in --work-dir; run nothing"
    )
    args = parser.parse_args(argv)
    if not args.tables_only:
        show_progress()
    peers = _peers(args)
    worlds, seeds = ([], []) if args.tables_only else (args.worlds, args.seeds)
    results = {world: {seed: run_world(world, seed, args) for seed in seeds} for world in worlds}
    slug = _slug(args.model_config) + _spec_variant(args)
    out = Path(args.work_dir) / ("bench_quality.json" if slug == "default" else f"bench_quality-{slug}.json")
    record = {"cpu": cpu_model(), "impressions": args.impressions, "model_config": args.model_config}
    record["history"] = args.history
    record["module_traits"] = args.module_traits
    record["impressions_per_user"] = args.impressions_per_user or None
    record["peers"] = peers
    if args.tables_only:
        results = _recorded(out, record)
    else:
        results = _merged(out, record, results)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({**record, "results": results}, indent=2) + "\n")
    per_user = f" ({args.impressions_per_user} per user)" if args.impressions_per_user else ""
    print(f"{args.impressions:,} impressions per run{per_user}; model config {args.model_config}; "
          f"history {args.history}; module traits {args.module_traits}; {record['cpu']}")  # fmt: skip
    for world, runs in results.items():
        print("\n".join(table(world, runs, peers)) + "\n")
        expected = {seed: summary["expected"] for seed, summary in runs.items() if summary.get("expected")}
        if expected:
            print("\n".join(table(f"{world}, against the expected relevance", expected, peers)) + "\n")
    print(f"read from {out}" if args.tables_only else f"written to {out}")
    return 0


def show_progress() -> None:
    """Log the steps' own progress (each epoch, each export, the baseline's models), not Beam's or TensorFlow's.

    A 10M-impression run trains for a quarter of an hour per model; without this it prints nothing until the tables.
    """
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    for package in ("trainer", "components"):
        logging.getLogger(package).setLevel(logging.INFO)


def _recorded(out: Path, record: dict[str, Any]) -> dict[str, dict]:
    """The runs in ``out`` when they were made with the settings of ``record`` (``--tables-only`` writes nothing)."""
    if not out.exists():
        raise SystemExit(f"bench_quality: no results in {out}: nothing was run with these settings there")
    previous = json.loads(out.read_text())
    differing = [f"{key}: {previous.get(key)!r} there, {value!r} asked" for key, value in record.items()
                 if key != "cpu" and previous.get(key) != value]  # fmt: skip
    if differing:
        raise SystemExit(f"bench_quality: the runs in {out} were made with other settings ({'; '.join(differing)})")
    return previous["results"]


def _merged(out: Path, record: dict[str, Any], results: dict[str, dict]) -> dict[str, dict]:
    """``results`` added to the worlds and seeds already in ``out`` when that file holds runs of the same
    settings (a run of another world or seed must not overwrite them); the printed tables show them too."""
    previous = json.loads(out.read_text()) if out.exists() else {}
    if any(previous.get(key) != value for key, value in record.items()):
        return results
    merged = previous.get("results", {})
    for world, runs in results.items():
        merged.setdefault(world, {}).update({str(seed): summary for seed, summary in runs.items()})
    return merged


if __name__ == "__main__":
    raise SystemExit(main())
