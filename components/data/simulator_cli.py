"""Generate marketplace impression logs with known ground truth (the built-in dataset).

Writes ``<out>/impressions/part-NNNNN.parquet`` (the data contract),
``<out>/oracle/part-NNNNN.parquet`` (true task probabilities, never a
feature) and ``<out>/summary.json``, then prints the per-module base rates.

examples:
  ranker simulate --out work_dir/data --n-impressions 1000000 --seed 7
  ranker simulate --out /tmp/sim --module-mix home_feed=0.5,search=0.5 --candidates search=40
"""

from __future__ import annotations

import argparse
from pathlib import Path

from components.data.simulator_config import SimulatorConfig
from ranker_core.cli_support import UserError, writable_folder, write_problem

HELP = "generate marketplace impression logs with known ground truth"
DEFAULTS = SimulatorConfig()
RENAMED_FLAGS = {"--impressions": "--n-impressions"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder (impressions/, oracle/, summary.json)")
    parser.add_argument(
        "--n-impressions", type=int, default=DEFAULTS.n_impressions, help="rows to generate (default: %(default)s)"
    )
    parser.add_argument("--seed", type=int, default=DEFAULTS.seed, help="random seed (default: %(default)s)")
    parser.add_argument("--days", type=int, default=DEFAULTS.days, help="days the requests span (default: %(default)s)")
    parser.add_argument("--users", type=int, default=None, help="users (default: n-impressions / 100, at least 200)")
    parser.add_argument("--listings", type=int, default=None, help="listings (default: n-impressions / 25, >= 1000)")
    parser.add_argument("--shops", type=int, default=None, help="shops (default: listings / 15, at least 50)")
    parser.add_argument(
        "--module-mix",
        default="",
        help="request share per module as NAME=SHARE,...; modules left out get no requests (default: all six)",
    )
    parser.add_argument("--candidates", default="", help="slate size per module as NAME=SIZE,... (default: built in)")
    parser.add_argument(
        "--history-strength",
        type=float,
        default=DEFAULTS.history_strength,
        help="effect of past engagement on exposure and engagement; 0 turns it off (default: %(default)s)",
    )
    parser.add_argument(
        "--rows-per-part", type=int, default=DEFAULTS.rows_per_part, help="rows per parquet part (default: %(default)s)"
    )


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    return SimulatorConfig.from_options(
        module_mix=args.module_mix,
        candidates=args.candidates,
        n_impressions=args.n_impressions,
        seed=args.seed,
        days=args.days,
        n_users=args.users,
        n_listings=args.listings,
        n_shops=args.shops,
        history_strength=args.history_strength,
        rows_per_part=args.rows_per_part,
    )


def main(args: argparse.Namespace) -> int:
    from components.data.simulator import simulate

    try:
        config = config_from_args(args).resolved()  # every field checked before anything is written
    except ValueError as error:
        raise SystemExit(f"ranker simulate: {error}") from None
    out = output_folder(args.out)  # before the simulation: a path that cannot be written loses nothing
    try:
        summary = simulate(config, out)
    except PermissionError as error:  # a part or a subfolder of another user's earlier output
        raise UserError(f"--out {args.out}: cannot write {error.filename}: {error.strerror}") from None
    print(f"impressions: {summary.impressions_dir} ({summary.parts} parts, {summary.rows:,} rows)")
    print(f"oracle:      {summary.oracle_dir}")
    print(f"{summary.requests:,} requests from {summary.users:,} users over {summary.listings:,} listings\n")
    print(summary.rates_table())
    return 0


def output_folder(out: str, flag: str = "--out") -> Path:
    """``out`` as a folder, created if missing; a one-line :class:`UserError` naming ``flag`` and the path when
    it cannot be created (a file in the way, no permission) or written."""
    try:
        return writable_folder(Path(out))
    except OSError as error:
        raise UserError(f"{flag} {out}: {write_problem(error)}") from None
