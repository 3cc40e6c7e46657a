"""Turn impression logs into point-in-time-correct TFRecord examples and a feature spec.

Examples::

    ranker extract-features --data-uri work/sim/impressions --dataset-spec simulator --out work/examples
    ranker extract-features --data-uri 'data/*.csv' --dataset-spec my_spec.yaml --out work/examples \\
        --held-out-module email
    ranker extract-features --data-uri bq://my-project.logs.impressions --dataset-spec my_spec.yaml \\
        --out gs://my-bucket/examples --runner DataflowRunner --project my-project --region europe-west4 \\
        --temp-location gs://my-bucket/tmp --sdk-container-image europe-docker.pkg.dev/my-project/ranker/ranker:1

Malformed rows (text that is not UTF-8, an impossible timestamp, a label that
is not 0/1, ...) and exact duplicate rows (unless the spec says `source.duplicates:
keep`) go to <out>/dead_letter/*.jsonl with their file, row and reason; the run
fails when their share exceeds --dead-letter-threshold. Any Beam flag not listed
here can follow a lone `--`.
"""

from __future__ import annotations

import argparse
import json

from components.data.spec import SHIPPED_SPECS
from components.data.validation import DEAD_LETTER_THRESHOLD
from components.features.options import add_beam_arguments, beam_options_from_args

HELP = "turn impression logs into point-in-time-correct TFRecord examples"
RENAMED_FLAGS = {"--data": "--data-uri", "--spec": "--dataset-spec"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-uri", required=True, help="file, glob, folder or bq://project.dataset.table")
    parser.add_argument(
        "--dataset-spec", required=True, help=f"dataset spec: {', '.join(SHIPPED_SPECS)}, a path or gs:// URI"
    )
    parser.add_argument(
        "--out", required=True, help="output folder (local or gs://) for examples and feature_spec.json"
    )
    parser.add_argument("--held-out-module", default="", help="module kept out of train/eval, written as `heldout`")
    parser.add_argument(
        "--dead-letter-threshold",
        type=float,
        default=DEAD_LETTER_THRESHOLD,
        help=f"largest tolerated share of malformed rows ({DEAD_LETTER_THRESHOLD})",
    )
    parser.add_argument(
        "--num-shards",
        type=int,
        default=0,
        help="TFRecord files per split and shuffle partitions; each holds its rows in memory (0: one per "
        "250,000 rows of Parquet input, at least 4; 4 for other sources)",
    )
    parser.add_argument("--batch-rows", type=int, default=65_536, help="rows per record batch (65536)")
    parser.add_argument(
        "--timeline-seconds", type=int, default=60, help="time bucket of the global prior and split boundaries (60)"
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("beam_args", nargs=argparse.REMAINDER, help="more Beam flags after `--`")
    add_beam_arguments(parser)


def main(args: argparse.Namespace) -> int:
    from components.features.pipeline import ExtractionConfig, ExtractionError, extract_features

    extra = tuple(arg for arg in args.beam_args if arg != "--")
    config = ExtractionConfig(
        data_uri=args.data_uri,
        dataset_spec=args.dataset_spec,
        output_dir=args.out,
        held_out_module=args.held_out_module,
        dead_letter_threshold=args.dead_letter_threshold,
        num_shards=args.num_shards,
        batch_rows=args.batch_rows,
        timeline_seconds=args.timeline_seconds,
        beam=beam_options_from_args(args, extra),
    )
    try:
        summary = extract_features(config)
    except (ExtractionError, ValueError) as error:
        print(f"extraction failed: {error}")
        return 1
    print(json.dumps(summary.to_dict(), indent=2) if args.json else summary.format())
    return 0
