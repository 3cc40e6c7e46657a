"""Promote the canary: it takes all traffic and the champion alias; the version it replaces is undeployed.

Examples::

    ranker promote                               # Vertex AI registry: its endpoint
    ranker promote --deploy-target kserve | kubectl apply -f -

The replaced champion keeps the ``previous-champion`` alias, so ``ranker
rollback`` can serve it again. Without a canary (``ranker deploy --canary``)
there is nothing to promote: exit status 2.
"""

from __future__ import annotations

import argparse

from components.registry.deploy_cli import add_rollout_arguments, run

HELP = "send all traffic to the canary and undeploy the version it replaces"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--force", action="store_true", help="promote a canary its evaluation did not bless (a challenger)"
    )
    add_rollout_arguments(parser)


def main(args: argparse.Namespace) -> int:
    from components.registry.rollout import promote_canary

    return run(args, lambda config, publish: promote_canary(config, force=args.force, publish=publish))
