"""Trainer benchmarks: training throughput against the CPU's arithmetic limit, and NDCG of every architecture.

    python -m benchmarks.bench_trainer                          # simulate 200k impressions, extract, then both
    python -m benchmarks.bench_trainer --examples work/examples --skip-quality
    python -m benchmarks.bench_trainer --examples work/examples --compare --oracle work/sim/oracle

1. Throughput: examples/s of warm training epochs of the default config, with
   the model's FLOPs per example counted analytically (2 per multiply-add of
   every Dense and Cross kernel; a training step is ~3x the forward pass),
   against the machine's peak (cores x clock x FP32 FLOPs per cycle).
2. Quality: eval NDCG@10 per task (graded by that task's label) of every
   architecture, and of the default MMoE with each numeric encoding forced,
   with position bias and without embedding L2 (``--extra-variants``).
3. ``--compare``: the same variants, the per-module and global LightGBM
   baselines, a random ranker and (``--oracle``) the simulator's oracle, all
   judged by the evaluation step (``components.evaluation.evaluate``) on the
   test split: NDCG@10 per task with 95% bootstrap intervals, and the
   held-out module's split when the examples have one.

Data: the built-in simulator (components/data) and the Beam extraction
(components/features) unless ``--examples`` points at extracted examples.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import time
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf

from ranker_core.runtime import usable_cores
from ranker_core.schema import FeatureSpec
from trainer.config import ARCHITECTURES, NUMERIC_ENCODINGS, TrainerConfig
from trainer.inputs import make_dataset
from trainer.model import RankerModel, build_model


def simulated_examples(work_dir: Path, impressions: int, seed: int) -> Path:
    """Simulate impressions and extract examples into ``work_dir`` (reused when already there)."""
    from components.data.simulator import simulate
    from components.data.simulator_config import SimulatorConfig
    from components.features.options import BeamOptions
    from components.features.pipeline import ExtractionConfig, extract_features

    examples = work_dir / "examples"
    if (examples / "feature_spec.json").exists():
        return examples
    simulate(SimulatorConfig(n_impressions=impressions, seed=seed), work_dir / "sim")
    extract_features(
        ExtractionConfig(str(work_dir / "sim" / "impressions"), "simulator", str(examples), beam=BeamOptions.load())
    )
    return examples


# -- throughput ------------------------------------------------------------------


def forward_flops(model: RankerModel) -> int:
    """FLOPs of one example's forward pass: 2 per multiply-add of every Dense/Cross kernel (lookups excluded)."""
    return sum(2 * int(np.prod(v.shape)) for v in model.trainable_variables if re.search(r"kernel:\d+$", v.name))


def peak_flops_per_second() -> tuple[float, str]:
    """Cores x clock x FP32 FLOPs per cycle (2 FMA units x vector width x 2), from /proc/cpuinfo."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = set(re.search(r"^flags\s*:(.*)$", info, re.M).group(1).split()) if "flags" in info else set()
    mhz = [float(m) for m in re.findall(r"^cpu MHz\s*:\s*([\d.]+)", info, re.M)] or [2000.0]
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
    per_cycle = 2 * lanes * (2 if "fma" in flags else 1)
    cores = usable_cores()
    return cores * mhz[0] * 1e6 * per_cycle, f"{cores} cores x {mhz[0] / 1000:.1f} GHz x {per_cycle} FLOP/cycle"


class EpochTimer(tf.keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None) -> None:
        self.seconds.append(time.perf_counter() - self._start)


@dataclasses.dataclass
class Throughput:
    examples_per_second: float
    input_examples_per_second: float
    forward_flops: int
    parameters: int


def measure_throughput(examples: Path, config: TrainerConfig, steps: int, epochs: int) -> Throughput:
    """Warm-epoch training speed (the first epoch, which traces the graph, is left out)."""
    spec = FeatureSpec.load(examples)
    tf.keras.utils.set_random_seed(config.seed)
    model = build_model(spec, config)
    model.compile(tf.keras.optimizers.Adam(config.learning_rate), steps_per_execution=config.steps_per_execution)
    batches = make_dataset(examples, "train", spec, config.batch_size, shuffle=True, cache=True).repeat()
    timer = EpochTimer()
    model.fit(batches, steps_per_epoch=steps, epochs=epochs, callbacks=[timer], verbose=0)
    training = steps * config.batch_size / float(np.median(timer.seconds[1:]))
    started = time.perf_counter()
    batches.take(steps).reduce(0, lambda count, _: count + 1)  # in-graph: no Python per batch
    reading = steps * config.batch_size / (time.perf_counter() - started)
    return Throughput(training, reading, forward_flops(model), model.count_params())


def measure_predict(examples: Path, config: TrainerConfig, model_dir: Path, batch_sizes: list[int]) -> dict[int, tuple]:
    """``Ranker.predict`` latency and candidates/s per batch size, from NumPy columns of the eval split."""
    from trainer.examples import read_split
    from trainer.export import export_model
    from trainer.predict import load_ranker

    spec = FeatureSpec.load(examples)
    export_model(build_model(spec, config), str(model_dir))  # speed does not depend on the weights
    ranker = load_ranker(model_dir)
    columns = read_split(examples, "eval", spec)
    columns = {name: columns[name] for name in ranker.input_signature}
    results = {}
    for size in batch_sizes:
        batch = {name: values[:size] for name, values in columns.items()}
        ranker.predict(batch)  # warm up
        repeats = max(5, 20_000 // size)
        started = time.perf_counter()
        for _ in range(repeats):
            ranker.predict(batch)
        seconds = (time.perf_counter() - started) / repeats
        results[size] = (seconds * 1e3, size / seconds)
    return results


# -- quality ---------------------------------------------------------------------


def eval_ndcg(examples: Path, config: TrainerConfig, model_dir: Path) -> dict[str, float]:
    """Train (early stopping on eval loss) and return eval NDCG@10 per task."""
    from ranker_core.ranking_metrics import RequestGroups, ndcg_per_request
    from ranker_core.schema import REQUEST_ID, label_key
    from trainer.examples import read_split
    from trainer.predict import load_ranker
    from trainer.train import train_and_export

    train_and_export(examples, model_dir, config)
    ranker = load_ranker(model_dir)
    columns = read_split(examples, "eval", ranker.feature_spec)
    outputs = ranker.predict(columns)
    groups = RequestGroups.from_ids(columns[REQUEST_ID])
    return {
        task: float(np.nanmean(ndcg_per_request(groups, columns[label_key(task)], outputs[task], ks=(10,))[10]))
        for task in ranker.task_names
    }


# Variants beyond the architectures and encodings: the default MMoE with one option flipped.
EXTRA_VARIANTS = {
    "mmoe, position bias": {"position_bias": True},
    "mmoe, embedding_l2 0": {"embedding_l2": 0.0},
}


def quality_variants(architectures: list[str], encodings: list[str], extra: dict[str, dict]) -> dict[str, dict]:
    variants = {architecture: {"architecture": architecture} for architecture in architectures}
    variants.update({f"mmoe, {encoding}": {"numeric_encoding": encoding} for encoding in encodings})
    variants.update(extra)
    return variants


def model_dir_name(variant: str) -> str:
    """A folder name for a variant: ``"mmoe, embedding_l2 0"`` -> ``"mmoe_embedding_l2_0"``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", variant)


# -- comparison with the GBDT baselines ----------------------------------------------


def train_variant(examples: Path, config: TrainerConfig, model_dir: Path, reuse: bool) -> float:
    """Train and export one variant (kept when ``reuse`` and already exported); returns the seconds spent."""
    from trainer.train import train_and_export

    if reuse and (model_dir / "saved_model.pb").exists():
        return 0.0
    started = time.perf_counter()
    train_and_export(examples, model_dir, config)
    return time.perf_counter() - started


def baseline_dir(examples: Path, out: Path, reuse: bool) -> Path:
    """The per-module and global LightGBM rankers trained on ``examples`` (kept when ``reuse``)."""
    from components.baseline.gbdt import BaselineConfig, train_baseline

    if not (reuse and (out / "manifest.json").exists()):
        train_baseline(BaselineConfig(), examples, out)
    return out


def ndcg_table(split, models: list[str], targets: list[str], metric: str = "ndcg@10") -> list[str]:
    """Markdown rows: NDCG per target with its 95% interval, one row per model (all modules)."""
    lines = ["| model | " + " | ".join(targets) + " |", "|---|" + "---:|" * len(targets)]
    for model in models:
        cells = []
        for target in targets:
            row = split.find(model, "all", target, metric)
            cells.append("-" if row is None else f"{row['value']:.4f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return lines


# -- main --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_trainer", description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=Path, help="extracted examples (default: simulate and extract)")
    parser.add_argument("--work-dir", type=Path, default=Path("work_dir/bench_trainer"), help="scratch folder")
    parser.add_argument("--impressions", type=int, default=200_000, help="simulated impressions")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--steps", type=int, default=60, help="training steps per timed epoch")
    parser.add_argument("--epochs", type=int, default=10, help="max epochs of each quality run")
    parser.add_argument("--config", default=None, help="TrainerConfig overrides (JSON or file) for every run")
    parser.add_argument("--architectures", nargs="*", default=list(ARCHITECTURES), choices=ARCHITECTURES)
    parser.add_argument("--encodings", nargs="*", default=list(NUMERIC_ENCODINGS), choices=NUMERIC_ENCODINGS)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-predict", action="store_true")
    parser.add_argument("--predict-batches", nargs="+", type=int, default=[1, 100, 1000])
    parser.add_argument(
        "--extra-variants",
        type=json.loads,
        default=EXTRA_VARIANTS,
        help=f"JSON {{name: TrainerConfig overrides}} trained besides the architectures (default: {EXTRA_VARIANTS})",
    )
    parser.add_argument("--compare", action="store_true", help="judge every variant against the GBDT baselines")
    parser.add_argument("--oracle", help="simulator oracle folder, for the oracle's NDCG in --compare")
    parser.add_argument("--reuse", action="store_true", help="--compare: keep models already in --work-dir")
    args = parser.parse_args(argv)
    if args.compare:
        args.skip_throughput = args.skip_predict = args.skip_quality = True

    examples = args.examples or simulated_examples(args.work_dir, args.impressions, args.seed)
    spec = FeatureSpec.load(examples)
    base = TrainerConfig.from_sources(args.config)
    print(f"examples: {examples} ({ {s: st.rows for s, st in spec.splits.items()} })")
    if not args.skip_throughput:
        result = measure_throughput(examples, base, args.steps, epochs=4)
        peak, peak_text = peak_flops_per_second()
        achieved = result.examples_per_second * 3 * result.forward_flops
        print("\n| config | params | forward FLOPs/example | train examples/s | input-only examples/s", end="")
        print(" | GFLOP/s | % of peak |")
        print("|---|---|---|---|---|---|---|")
        print(
            f"| default (batch {base.batch_size}) | {result.parameters:,} | {result.forward_flops:,} "
            f"| {result.examples_per_second:,.0f} | {result.input_examples_per_second:,.0f} "
            f"| {achieved / 1e9:.2f} | {100 * achieved / peak:.2f}% |"
        )
        print(f"peak: {peak / 1e9:.0f} GFLOP/s ({peak_text}); a training step counted as 3x the forward FLOPs")
    if not args.skip_predict:
        timings = measure_predict(examples, base, args.work_dir / "predict_model", args.predict_batches)
        print("\n| Ranker.predict batch | ms per call | candidates/s |\n|---|---|---|")
        for size, (ms, per_second) in timings.items():
            print(f"| {size} | {ms:.2f} | {per_second:,.0f} |")
    if not args.skip_quality:
        rows = []
        for name, overrides in quality_variants(args.architectures, args.encodings, args.extra_variants).items():
            config = base.replace(epochs=args.epochs, **overrides)
            started = time.perf_counter()
            ndcg = eval_ndcg(examples, config, args.work_dir / "models" / model_dir_name(name))
            rows.append((name, ndcg, time.perf_counter() - started))
        tasks = list(spec.task_names)
        print("\n| variant | " + " | ".join(f"{t} NDCG@10" for t in tasks) + " | train+eval s |")
        print("|---|" + "---|" * (len(tasks) + 1))
        for name, ndcg, seconds in rows:
            print(f"| {name} | " + " | ".join(f"{ndcg[t]:.4f}" for t in tasks) + f" | {seconds:.0f} |")
    if args.compare:
        compare(args, examples, base)
    return 0


def compare(args: argparse.Namespace, examples: Path, base: TrainerConfig) -> None:
    """Train (or reuse) every variant and the baselines, evaluate them together, print the NDCG@10 tables."""
    from components.evaluation.evaluate import EvaluationConfig, evaluate

    models = {}
    for name, overrides in quality_variants(args.architectures, args.encodings, args.extra_variants).items():
        model_dir = args.work_dir / "models" / model_dir_name(name)
        seconds = train_variant(examples, base.replace(epochs=args.epochs, **overrides), model_dir, args.reuse)
        print(f"{name}: {'reused' if seconds == 0 else f'trained in {seconds:.0f} s'} ({model_dir})")
        models[model_dir_name(name)] = model_dir
    baseline = baseline_dir(examples, args.work_dir / "baseline", args.reuse)
    result = evaluate(EvaluationConfig(), examples, models, baseline, args.work_dir / "report", args.oracle)
    targets = [*FeatureSpec.load(examples).task_names, "engagement"]
    print(f"\ntest split, NDCG@10 [95% bootstrap interval], {result.test.requests} requests:")
    print("\n".join(ndcg_table(result.test, result.models, targets)))
    if result.heldout is not None:
        print(f"\nheld-out module split, NDCG@10, {result.heldout.requests} requests:")
        print("\n".join(ndcg_table(result.heldout, result.models, targets)))


if __name__ == "__main__":
    raise SystemExit(main())
