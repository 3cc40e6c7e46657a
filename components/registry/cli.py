"""Register a blessed model in MLflow (local SQLite by default) or Vertex AI Model Registry.

Examples::

    ranker register --model work_dir/latest/model --report work_dir/latest/metrics.json \\
        --blessing work_dir/latest/blessing.json
    ranker register --champion            # print the current champion's model location (none: exit status 2)
    ranker register --registry vertex --project my-project --model gs://bucket/model ...

Registration is idempotent: the same model files (same digest) never become a
second version. A blessed model becomes the ``champion``; the version it
replaces keeps the ``previous-champion`` alias. A blessing whose ``blessed`` is
not a JSON boolean, or whose ``judged_model`` is not this model, and a model
that does not load and score, are refused (exit status 1, nothing written).
Missing options and paths that do not exist are one line, exit status 2. The
paths may be links (``work_dir/latest/model``): MLflow is given the real folder.
Every option's default comes from the environment variable named in its help.
"""

from __future__ import annotations

import argparse
import json
import logging

from components.registry.core import (
    RegistrationRefusedError,
    RegistryConfig,
    champion_model_uri,
    open_backend,
    register_from_artifacts,
    require_model,
)
from ranker_core.cli_support import UserError, require_path
from ranker_core.serving import local_store_path

HELP = "register a blessed model in MLflow or Vertex AI Model Registry"
logger = logging.getLogger(__name__)


def add_registry_arguments(parser: argparse.ArgumentParser, judging: bool = False) -> None:
    """The registry options (shared with `ranker run`); empty values fall back to the environment.

    ``judging``: the command judges against the champion (a pipeline run), so it takes ``--on-broken-champion``.
    """
    group = parser.add_argument_group("model registry")
    group.add_argument(
        "--registry", choices=("mlflow", "vertex"), default=None, help="registry backend [env RANKER_REGISTRY, mlflow]"
    )
    group.add_argument("--model-name", default=None, help="registered model name [env RANKER_MODEL_NAME, mmoe-ranker]")
    group.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow store [env MLFLOW_TRACKING_URI, sqlite:///<work-dir>/mlflow.db]",
    )
    group.add_argument("--project", default=None, help="Google Cloud project for vertex [env GOOGLE_CLOUD_PROJECT]")
    group.add_argument("--location", default=None, help="Vertex AI region [env GOOGLE_CLOUD_REGION, us-central1]")
    group.add_argument(
        "--serving-image",
        default=None,
        help="serving container registered with a Vertex AI model [env RANKER_SERVING_IMAGE, RANKER_IMAGE]",
    )
    if not judging:
        return
    group.add_argument(
        "--on-broken-champion",
        choices=("continue", "stop"),
        default=None,
        help="when the champion does not load: judge without it (noted in the report) or fail the run "
        "[env RANKER_ON_BROKEN_CHAMPION, continue]",
    )


def registry_config(args: argparse.Namespace, work_dir: str | None = None) -> RegistryConfig:
    """The registry configuration from parsed options and the environment."""
    return RegistryConfig.from_env(
        backend=args.registry,
        model_name=args.model_name,
        tracking_uri=args.tracking_uri,
        project=args.project,
        location=args.location,
        serving_image=args.serving_image,
        work_dir=work_dir,
        keep_challengers=getattr(args, "keep_challengers", None) or None,
        on_broken_champion=getattr(args, "on_broken_champion", None),
    )


def require_registry(config: RegistryConfig) -> None:
    """Raise :class:`UserError` when the MLflow registry is not there: a local store that does not exist (reading
    must not create one), or a tracking server that does not answer (MLflow would retry for minutes)."""
    if config.backend != "mlflow":
        return
    uri = config.tracking_uri
    if uri.startswith(("http://", "https://")):
        _require_server(uri)
        return
    database = local_store_path(config.resolved_tracking_uri)
    if database is not None and not database.is_file():
        where = f"--tracking-uri {uri}" if uri else f"{config.work_dir} (no {database.name})"
        raise UserError(
            f"there is no model registry in {where}: pass the --work-dir of a run that registered a model, "
            "or the --tracking-uri of one"
        )


def _require_server(uri: str, timeout_s: float = 10.0) -> None:
    """An MLflow tracking server answers its health route within ``timeout_s``, or :class:`UserError`."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout_s):
            return
    except urllib.error.HTTPError:
        return  # it answered (behind a proxy, the route may differ): MLflow's own calls say the rest
    except (OSError, ValueError) as error:
        raise UserError(f"--tracking-uri {uri}: no MLflow server answers ({error})") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="the exported model folder (local or gs://)")
    parser.add_argument("--report", help="the evaluation's metrics.json, or the folder holding it")
    parser.add_argument("--blessing", help="the evaluation's blessing.json, or the folder holding it")
    parser.add_argument("--run-id", default="", help="pipeline run id recorded with the version (default: digest)")
    parser.add_argument("--data-uri", default="", help="training data recorded with the version")
    parser.add_argument(
        "--work-dir", default=None, help="folder of the local MLflow registry [env RANKER_WORK_DIR, work_dir]"
    )
    parser.add_argument(
        "--keep-challengers",
        action="store_true",
        help="register an unblessed model as `challenger` instead of refusing it [env RANKER_KEEP_CHALLENGERS]",
    )
    parser.add_argument("--champion", action="store_true", help="only print the current champion's model location")
    add_registry_arguments(parser)


def require_champion(config: RegistryConfig) -> str:
    """The champion's model location; :class:`UserError` when there is none (or no such model), so that
    ``--model-uri "$(ranker register --champion)"`` stops instead of getting a message as a path."""
    uri = champion_model_uri(config, require_model(open_backend(config), config))
    if not uri:
        raise UserError(
            f"{config.model_name} has no champion yet: register a blessed model first "
            "(ranker register --model ... --report ... --blessing ...)"
        )
    return uri


def main(args: argparse.Namespace) -> int:
    config = registry_config(args, work_dir=args.work_dir)
    if args.champion:
        require_registry(config)
        print(require_champion(config))
        return 0
    missing = [flag for flag in ("model", "report", "blessing") if not getattr(args, flag)]
    if missing:
        raise UserError(
            f"missing {', '.join('--' + flag for flag in missing)}: give the model folder and its evaluation's "
            "metrics.json and blessing.json (or --champion to print the champion's model location)"
        )
    for flag in ("model", "report", "blessing"):
        require_path(getattr(args, flag), f"--{flag}")
    try:
        registered = register_from_artifacts(args.model, args.report, args.blessing, config, args.run_id, args.data_uri)
    except RegistrationRefusedError as error:
        logger.error("%s", error)
        return 1
    print(json.dumps(registered.to_dict(), indent=2))
    if config.backend == "mlflow":
        print(f"browse it: mlflow ui --backend-store-uri {config.resolved_tracking_uri}")
    return 0
