"""The kfp component that generates the built-in marketplace data (see :mod:`components.data.simulator`)."""

from kfp.dsl import Dataset, Output

from components.base import ranker_component


@ranker_component
def simulate_marketplace(
    impressions: Output[Dataset],
    oracle: Output[Dataset],
    n_impressions: int = 200_000,
    seed: int = 0,
    days: int = 30,
    module_mix: str = "",
    history_strength: float = 1.0,
) -> None:
    """Simulate impression logs into ``impressions`` and the true probabilities into ``oracle``.

    Both artifacts are folders of ``part-NNNNN.parquet`` files with the same
    rows in the same order; the summary (rows, requests, base rates) goes to
    the ``impressions`` artifact's metadata.
    ``module_mix`` is ``NAME=SHARE,...`` (empty: all six modules).
    """
    from components.data.simulator import SimulatorConfig, simulate

    config = SimulatorConfig.from_options(
        module_mix=module_mix, n_impressions=n_impressions, seed=seed, days=days, history_strength=history_strength
    )
    summary = simulate(config, impressions_dir=impressions.path, oracle_dir=oracle.path)
    impressions.metadata.update({"rows": summary.rows, "requests": summary.requests, "rates": summary.rates})
    impressions.metadata["rows_per_module"] = {name: stats.rows for name, stats in summary.per_module.items()}
    oracle.metadata["rows"] = summary.rows
