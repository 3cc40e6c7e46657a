"""Scheduled runs: Vertex AI pipeline schedules (default) or KFP recurring runs (--kfp-host).

Examples::

    ranker schedule create --cron '0 3 * * 1' --name weekly-retrain \\
        --project my-project --pipeline-root gs://my-bucket/runs --registry vertex
    ranker schedule create --cron '0 6 * * *' --name daily-email --pipeline batch \\
        --parameters '{"candidates_uri": "bq://my-project.crm.email_candidates", "campaign": "email_digest",
                       "output_table": "bq://my-project.crm.email_top10"}' --project my-project \\
        --pipeline-root gs://my-bucket/runs --registry vertex
    ranker schedule list --project my-project
    ranker schedule pause  projects/123/locations/us-central1/schedules/456 --project my-project
    ranker schedule resume projects/123/locations/us-central1/schedules/456 --project my-project
    ranker schedule delete projects/123/locations/us-central1/schedules/456 --project my-project

Vertex AI reads a 5-field cron (``TZ=Europe/Paris 0 3 * * 1`` sets a time
zone); KFP's 6-field cron (seconds first) is derived from it. A cron of another
shape is refused before the pipeline is compiled or any credentials are needed.
"""

from __future__ import annotations

import argparse

from pipelines.config import PipelineSettings

HELP = "create, list, pause, resume and delete scheduled runs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from pipelines.submit_cli import add_pipeline_arguments, add_template_arguments

    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="schedule the pipeline with a cron expression")
    create.add_argument("--cron", required=True, help="when to run, e.g. '0 3 * * 1' (Mondays 03:00)")
    create.add_argument("--name", default="mmoe-ranker-retrain", help="the schedule's display name")
    create.add_argument("--max-concurrent-runs", type=int, default=1, help="runs of this schedule at once [1]")
    add_pipeline_arguments(create)
    add_template_arguments(create)
    listing = actions.add_parser("list", help="list the schedules")
    _add_target_arguments(listing)
    for action in ("pause", "resume", "delete"):
        sub = actions.add_parser(action, help=f"{action} one schedule")
        sub.add_argument("schedule", help="the schedule's id or resource name (from `ranker schedule list`)")
        _add_target_arguments(sub)


def _add_target_arguments(parser: argparse.ArgumentParser) -> None:
    from pipelines.config import add_options

    add_options(parser, ())  # the registry group: --project, --location
    parser.add_argument("--kfp-host", default=None, help="Kubeflow Pipelines API host [env RANKER_KFP_HOST]")


def main(args: argparse.Namespace) -> int:
    import tempfile

    from pipelines import remote
    from pipelines.submit_cli import pipeline_name, run_parameters, template_path

    settings = PipelineSettings.from_args_or_exit(args, "schedule")
    if args.action == "create":
        remote.schedule_cron(settings, args.cron)  # before compiling, or asking for credentials or a host
        with tempfile.TemporaryDirectory() as folder:
            template = template_path(args, settings, folder)
            info = remote.create_schedule(
                settings, template, args.cron, args.name, args.max_concurrent_runs,
                parameters=run_parameters(args, settings), pipeline_name=pipeline_name(args),
            )  # fmt: skip
        print(f"created {info.name} ({info.display_name}, cron {info.cron!r}, {info.state})")
    elif args.action == "list":
        for info in remote.list_schedules(settings):
            print(f"{info.name}\t{info.display_name}\t{info.cron}\t{info.state}")
    else:
        remote.change_schedule(settings, args.schedule, args.action)
        print(f"{ {'pause': 'paused', 'resume': 'resumed', 'delete': 'deleted'}[args.action] } {args.schedule}")
    return 0
