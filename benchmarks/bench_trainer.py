"""Trainer benchmarks: training throughput against the CPU's arithmetic limit, and NDCG of every architecture.

    python -m benchmarks.bench_trainer                          # simulate 200k impressions, extract, then both
    python -m benchmarks.bench_trainer --examples work/examples --skip-quality

1. Throughput: examples/s of warm training epochs of the default config, with
   the model's FLOPs per example counted analytically (2 per multiply-add of
   every Dense and Cross kernel; a training step is ~3x the forward pass),
   against the machine's peak (cores x clock x FP32 FLOPs per cycle).
2. Quality: eval NDCG@10 per task (graded by that task's label) of every
   architecture, and of the default MMoE with each numeric encoding forced.

Data: the built-in simulator (components/data) and the Beam extraction
(components/features) unless ``--examples`` points at extracted examples.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import time
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf

from trainer.config import ARCHITECTURES, NUMERIC_ENCODINGS, TrainerConfig
from trainer.inputs import make_dataset
from trainer.model import RankerModel, build_model
from trainer.schema import FeatureSpec


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
        ExtractionConfig(str(work_dir / "sim" / "impressions"), "simulator", str(examples), beam=BeamOptions())
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
    cores = len(os.sched_getaffinity(0))
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
    from components.evaluation.metrics import RequestGroups, ndcg_per_request
    from trainer.examples import read_split
    from trainer.predict import load_ranker
    from trainer.schema import REQUEST_ID, label_key
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


def quality_variants(architectures: list[str], encodings: list[str]) -> dict[str, dict]:
    variants = {architecture: {"architecture": architecture} for architecture in architectures}
    variants.update({f"mmoe, {encoding}": {"numeric_encoding": encoding} for encoding in encodings})
    return variants


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
    args = parser.parse_args(argv)

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
        for name, overrides in quality_variants(args.architectures, args.encodings).items():
            config = base.replace(epochs=args.epochs, **overrides)
            started = time.perf_counter()
            ndcg = eval_ndcg(examples, config, args.work_dir / "models" / name.replace(", ", "_"))
            rows.append((name, ndcg, time.perf_counter() - started))
        tasks = list(spec.task_names)
        print("\n| variant | " + " | ".join(f"{t} NDCG@10" for t in tasks) + " | train+eval s |")
        print("|---|" + "---|" * (len(tasks) + 1))
        for name, ndcg, seconds in rows:
            print(f"| {name} | " + " | ".join(f"{ndcg[t]:.4f}" for t in tasks) + f" | {seconds:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
