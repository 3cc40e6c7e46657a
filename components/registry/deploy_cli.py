"""Deploy a registered version: all traffic, or a canary share next to what is served now.

Examples::

    ranker deploy                                   # the champion, all traffic (Vertex AI registry: its endpoint)
    ranker deploy --canary 10                       # the champion gets 10% next to the version served now
    ranker deploy --version 4 --canary 10 --deploy-target kserve > isvc.yaml && kubectl apply -f isvc.yaml
    ranker promote                                  # then: the canary takes all traffic
    ranker rollback                                 # or: the previous champion takes it back

Targets: ``vertex`` (the endpoint ``--endpoint``, created on first use; the
default with the Vertex AI registry), ``kserve`` (prints the ``InferenceService``
manifest, ``canaryTrafficPercent`` for a canary) and ``local`` (prints the serve
command; no traffic split). The version under canary holds the ``canary`` alias
until ``ranker promote`` or ``ranker rollback``; a second canary, or a canary of
the version that already serves all traffic (``stable``), is refused. Deploying a
version that is not the champion with all the traffic makes it the champion, so it
needs ``--force``; so does nothing while a canary is live (promote or roll back first). ``--out`` is tried before
anything changes and written before any alias moves: a file that cannot be
written is one line (exit status 2) and no alias moves. Every option's default
comes from the environment variable named in its help.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from components.registry.cli import add_registry_arguments, registry_config
from components.registry.core import RegistryConfig
from ranker_core.cli_support import UserError, writable_file

if TYPE_CHECKING:
    from components.registry.rollout import Publish

HELP = "deploy a registered version: all traffic, or a canary share (Vertex AI endpoint, KServe, local)"


def add_rollout_arguments(parser: argparse.ArgumentParser) -> None:
    """The serving target options shared by deploy, promote and rollback, and the registry's."""
    group = parser.add_argument_group("serving target")
    group.add_argument(
        "--deploy-target",
        choices=("vertex", "kserve", "local"),
        default=None,
        help="where to serve [env RANKER_DEPLOY_TARGET; default vertex with that registry, else local]",
    )
    group.add_argument(
        "--endpoint", default=None, help="Vertex AI endpoint / InferenceService name [env RANKER_ENDPOINT]"
    )
    group.add_argument(
        "--kserve-namespace", default=None, help="namespace of the InferenceService [env RANKER_KSERVE_NAMESPACE]"
    )
    group.add_argument("--out", default="", help="also write what is printed (e.g. the manifest) to this file")
    parser.add_argument(
        "--work-dir", default=None, help="folder of the local MLflow registry [env RANKER_WORK_DIR, work_dir]"
    )
    add_registry_arguments(parser)


def rollout_config(args: argparse.Namespace) -> RegistryConfig:
    """The registry and serving configuration from parsed options and the environment."""
    flags = {
        "deploy_target": args.deploy_target,
        "endpoint_name": args.endpoint,
        "kserve_namespace": args.kserve_namespace,
        "canary_percent": getattr(args, "canary", None),
    }
    config = registry_config(args, work_dir=args.work_dir)  # flags > environment > defaults
    return config.replace(**{key: value for key, value in flags.items() if value is not None})


def show(text: str, out: str) -> None:
    """Write the result to ``out`` when given, then print it.

    A file that cannot be written is a one-line :class:`UserError` naming it, and nothing is printed: the
    rollout functions call this before any alias moves (``publish``), so the aliases stay as they were.
    """
    if out:
        try:
            Path(out).write_text(text if text.endswith("\n") else text + "\n")
        except OSError as error:
            raise UserError(
                f"--out {out}: cannot be written ({error.strerror or error}); no registry alias was moved"
            ) from None
    print(text.rstrip("\n"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", default="", help="the registered version to deploy (default: the champion)")
    parser.add_argument(
        "--canary",
        type=int,
        default=None,
        metavar="PERCENT",
        help="send only this share of traffic (1 to 99) to the version; 100 is a plain deployment [env RANKER_CANARY]",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="send all traffic to a --version that is not the champion (unblessed, rolled back, older): "
        "it becomes the champion",
    )
    add_rollout_arguments(parser)


def run(args: argparse.Namespace, action: Callable[[RegistryConfig, Publish], str]) -> int:
    """What deploy, promote and rollback do: ``action`` on the configuration (an existing registry), which
    hands what it shows to ``publish`` (written to ``--out``, printed) before it moves any alias."""
    from components.registry.cli import require_registry

    config = rollout_config(args)
    require_registry(config)
    if args.out:  # before the serving change: a refused --out changes nothing
        writable_file(args.out)
    action(config, lambda text: show(text, args.out))
    return 0


def main(args: argparse.Namespace) -> int:
    from components.registry.rollout import deploy

    return run(args, lambda config, publish: deploy(config, args.version, publish=publish, force=args.force))
