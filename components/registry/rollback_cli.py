"""Roll back: the champion the canary (or the last promotion) replaced takes all traffic back.

Examples::

    ranker rollback                              # Vertex AI registry: its endpoint
    ranker rollback --deploy-target kserve | kubectl apply -f -

During a canary the canary is undeployed and the champion keeps all traffic;
after a promotion the ``previous-champion`` is served again and becomes the
champion. Without a champion to go back to: exit status 2.
"""

from __future__ import annotations

import argparse

from components.registry.deploy_cli import add_rollout_arguments, run

HELP = "send all traffic back to the previous champion and undeploy the canary"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_rollout_arguments(parser)


def main(args: argparse.Namespace) -> int:
    from components.registry.rollout import roll_back

    return run(args, lambda config, publish: roll_back(config, publish=publish))
