"""``ranker tune``: search the ranker's configuration on the eval split, print the trials and the choice (and why).

The model configuration (``--config``, as for ``ranker train``) is the first
trial; ``--tuning-config`` is a TuningConfig (trials, budget, metric, search
space). The chosen configuration is written to ``--out`` as JSON, ready for
``ranker train --config @<out>``::

    ranker tune --examples work/examples --tuning-config '{"trials": 8}' --out work/tuned.json
    ranker train --examples work/examples --model-dir work/model --config @work/tuned.json
"""

from __future__ import annotations

import argparse
import json
import tempfile

from ranker_core.cli_support import UserError, require_path, writable_file

HELP = "search the ranker's configuration on the eval split (Optuna), write the chosen one"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--examples", required=True, help="extracted-examples folder (local or gs://)")
    parser.add_argument("--config", help="the model configuration as given (first trial): JSON or @file.json")
    parser.add_argument("--tuning-config", help="TuningConfig (trials, budget_seconds, metric, space): JSON or @file")
    parser.add_argument("--out", required=True, help="where the chosen TrainerConfig is written (JSON)")


def main(args: argparse.Namespace) -> int:
    examples = require_path(args.examples, "--examples")  # before TensorFlow takes seconds to import
    out = writable_file(args.out, example="tuned.json")  # before any trial: a refused --out loses no work
    from ranker_core.step_configs import TrainerConfig, TuningConfig
    from trainer.tuning import tune

    tuning = TuningConfig.from_sources(args.tuning_config)
    if tuning.trials < 1:
        raise UserError("--tuning-config needs trials >= 1, e.g. '{\"trials\": 8}'")
    with tempfile.TemporaryDirectory() as work:
        result = tune(examples, TrainerConfig.from_sources(args.config), tuning, work)
    out.write_text(json.dumps(result.config.to_dict(), indent=2) + "\n")
    record = result.record()
    del record["config"]  # written to --out
    print(json.dumps({"out": args.out, **record}, indent=2))
    return 0
