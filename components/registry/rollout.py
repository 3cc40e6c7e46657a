"""Safe rollout: a canary share of traffic, then promote or roll back, on Vertex AI, KServe or locally.

The registry's aliases say which version is where, the same way on MLflow and
Vertex AI Model Registry:

* ``champion``: the version that serves (or is to serve) all traffic;
* ``previous-champion``: the champion before it, what a rollback returns to;
* ``canary``: the version that receives a share of traffic until it is
  promoted or rolled back (one at a time);
* ``stable``: the version that last took all the traffic (a plain deploy,
  promote, rollback): during a canary, the one it shares the traffic with.

A plain deploy (all traffic, no canary) of a version that is not the champion
makes it the champion, so it needs ``force``, as promoting an unblessed canary does.

Registration already makes a blessed version the champion (its predecessor
keeps ``previous-champion``), so the usual rollout is::

    start_canary(config, percent=10)   # the champion gets 10% next to what the endpoint serves
    promote_canary(config)             # the canary gets 100%, the version it replaces is undeployed
    roll_back(config)                  # or: the previous champion gets 100% back, the canary is undeployed

The serving change happens first and the aliases move only once it is done, so
a failed endpoint call leaves the registry as it was. Each serving target
(:class:`ServingTarget`) does the traffic part: a Vertex AI endpoint
(:class:`components.registry.deploy.VertexEndpoint`), KServe manifests
(:class:`components.registry.kserve.KServeManifests`), or the local server
(:class:`components.registry.deploy.LocalServer`, which has no traffic split). Mistakes (no champion to
roll back to, no canary to promote, an unknown version or endpoint) raise
:class:`RolloutError`: one line, exit status 2 from the ``ranker`` command.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from components.registry.core import (
    CANARY,
    CHAMPION,
    PREVIOUS_CHAMPION,
    ROLLED_BACK,
    STABLE,
    RegistryBackend,
    RegistryConfig,
    canary_share_problem,
    is_canary_share,
    open_backend,
    promote,
    require_model,
)
from ranker_core.cli_support import UserError

logger = logging.getLogger(__name__)


# Called with what a rollout shows (a manifest, an endpoint's traffic) once the serving change is done and
# before any alias moves: the CLI writes --out and prints it there.
Publish = Callable[[str], None]


class RolloutError(UserError):
    """A rollout that cannot be done as asked (nothing to promote, nothing to roll back to, ...)."""


@dataclasses.dataclass(frozen=True)
class Release:
    """A registered version and where its model files are."""

    version: str
    model_uri: str


class ServingTarget(Protocol):
    """The traffic part of a rollout; each method returns what to show the user."""

    def serve(self, release: Release) -> str:
        """Serve ``release`` alone with all the traffic (a plain deployment)."""

    def canary(self, release: Release, percent: int) -> str:
        """Serve ``release`` with ``percent``% of the traffic next to what is served now."""

    def switch(self, release: Release) -> str:
        """Send all traffic to ``release`` and stop serving the others (promote, and roll back)."""


def open_target(config: RegistryConfig) -> ServingTarget:
    """The serving target the configuration names (``deploy_target``; by default follows the registry)."""
    target = config.resolved_deploy_target
    if target == "vertex" and config.backend != "vertex":
        raise RolloutError(
            f"--deploy-target vertex serves versions of the Vertex AI Model Registry, not of the {config.backend} "
            "registry: pass --registry vertex and --project (or GOOGLE_CLOUD_PROJECT); an MLflow registry's versions "
            "are served with --deploy-target kserve or local"
        )
    if target == "kserve":
        from components.registry.kserve import KServeManifests

        return KServeManifests(config)
    from components.registry.deploy import LocalServer, VertexEndpoint

    return VertexEndpoint(config) if target == "vertex" else LocalServer(config)


def deploy(
    config: RegistryConfig,
    version: str = "",
    backend: RegistryBackend | None = None,
    target: ServingTarget | None = None,
    publish: Publish | None = None,
    force: bool = False,
) -> str:
    """Serve ``version`` (default: the champion): alone, or with ``canary_percent`` of the traffic below 100.

    A share of 100 is a plain deployment, as in the pipeline's deploy step: all traffic, no ``canary`` alias.
    The version served alone is the champion and ``stable`` afterwards; one that is not the champion yet is
    served alone only with ``force`` (:func:`check_plain_deploy`).
    """
    if is_canary_share(config.canary_percent):
        return start_canary(config, version, backend=backend, target=target, publish=publish)
    backend = _registered(config, backend)
    release = _version_or_champion(backend, version, config)
    check_plain_deploy(backend, release.version, config, force)
    shown = _published(target_or_default(config, target).serve(release), publish)
    promote(backend, release.version)
    backend.set_alias(STABLE, release.version)
    return shown


def check_plain_deploy(backend: RegistryBackend, version: str, config: RegistryConfig, force: bool) -> None:
    """Raise :class:`RolloutError` when ``version`` must not take all the traffic at once: a canary is live
    (finish it first), or it is not the champion and not ``force`` (the message says why it is not)."""
    canary = backend.alias_version(CANARY)
    if canary is not None:
        raise RolloutError(
            f"{config.model_name} version {canary} is live as the canary: finish it with `ranker promote` or "
            "`ranker rollback` before deploying a version with all the traffic"
        )
    champion = backend.alias_version(CHAMPION)
    if version == champion or force:
        return
    reasons = [f"it is not the champion ({f'version {champion}' if champion else 'none yet'})"]
    if backend.version_blessed(version) is False:
        reasons.append("its evaluation did not bless it")
    if backend.alias_version(ROLLED_BACK) == version:
        reasons.append("the last rollback took the traffic from it")
    raise RolloutError(
        f"not sending all traffic to {config.model_name} version {version}: {', '.join(reasons)}; a plain deploy "
        "makes it the champion: pass --force, or try it with --canary PERCENT and `ranker promote`"
    )


def start_canary(
    config: RegistryConfig,
    version: str = "",
    percent: int | None = None,
    backend: RegistryBackend | None = None,
    target: ServingTarget | None = None,
    publish: Publish | None = None,
) -> str:
    """Serve ``version`` (default: the champion) with ``percent``% of the traffic; it takes the ``canary`` alias."""
    percent = config.canary_percent if percent is None else percent
    if problem := canary_share_problem(percent):
        raise RolloutError(problem)
    backend = _registered(config, backend)
    target = target_or_default(config, target)
    canary = _version_or_champion(backend, version, config)
    check_canary(backend, canary.version, config)
    shown = _published(target.canary(canary, percent), publish)
    backend.set_alias(CANARY, canary.version)
    logger.info("version %s takes %d%% of the traffic as the canary", canary.version, percent)
    return shown


def check_canary(backend: RegistryBackend, version: str, config: RegistryConfig) -> None:
    """Raise :class:`RolloutError` when ``version`` cannot start a canary: one is live already (an endpoint
    serves one canary at a time), or ``version`` is ``stable``, the one that already serves all the traffic."""
    live = backend.alias_version(CANARY)
    if live is not None:
        raise RolloutError(
            f"{config.model_name} version {live} is already the canary: finish it with `ranker promote` or "
            "`ranker rollback` before starting another"
        )
    if backend.alias_version(STABLE) == version:
        raise RolloutError(
            f"{config.model_name} version {version} already serves all the traffic (alias {STABLE}): a canary of "
            "it would share the traffic with itself: canary another version (--version N, or register a new champion)"
        )


def promote_canary(
    config: RegistryConfig,
    backend: RegistryBackend | None = None,
    target: ServingTarget | None = None,
    force: bool = False,
    publish: Publish | None = None,
) -> str:
    """Send all traffic to the canary; it becomes (or stays) the champion and loses the ``canary`` alias.

    A canary whose evaluation did not bless it (a challenger, canaried to watch it online) is promoted only
    with ``force``: the registry's rule is that only a blessed model becomes champion. Promoted, it loses the
    ``challenger`` alias: one version is not both.
    """
    backend = _registered(config, backend)
    version = _holder(backend, CANARY, config, "no canary to promote: run `ranker deploy --canary PERCENT` first")
    if backend.version_blessed(version) is False and not force:
        raise RolloutError(
            f"{config.model_name} version {version} was not blessed by its evaluation, so it is not promoted "
            "to champion; promote it with --force if the canary's online results justify it"
        )
    target = target_or_default(config, target)
    shown = _published(target.switch(_release(backend, version, config)), publish)
    promote(backend, version)
    backend.remove_alias(CANARY)
    backend.set_alias(STABLE, version)
    return shown


def roll_back(
    config: RegistryConfig,
    backend: RegistryBackend | None = None,
    target: ServingTarget | None = None,
    publish: Publish | None = None,
) -> str:
    """Send all traffic back to the champion the canary (or the last promotion) replaced.

    With a canary that is not the champion, that is the champion; otherwise the
    ``previous-champion``, which becomes the champion again. The version traffic was taken
    from holds ``rolled-back``, so that registering it again (a retried run) does not make it
    the champion again.
    """
    backend = _registered(config, backend)
    canary = backend.alias_version(CANARY)
    champion = backend.alias_version(CHAMPION)
    version = champion if canary is not None and canary != champion else backend.alias_version(PREVIOUS_CHAMPION)
    if version is None:
        raise RolloutError(f"no previous champion of {config.model_name} to roll back to")
    target = target_or_default(config, target)
    shown = _published(target.switch(_release(backend, version, config)), publish)
    _restore_champion(backend, version)
    backend.set_alias(STABLE, version)
    rolled_back_from = canary if canary is not None and canary != version else champion
    if rolled_back_from is not None:
        backend.set_alias(ROLLED_BACK, rolled_back_from)
    logger.info("%s", rollback_summary(version, rolled_back_from, canary))
    return shown


def rollback_summary(version: str, rolled_back_from: str | None, canary: str | None) -> str:
    """The log line of a rollback to ``version``, naming the version traffic was taken from (if any).

    >>> rollback_summary("2", "3", "3")
    'version 2 serves all traffic again as the champion; canary version 3 no longer serves (alias rolled-back)'
    """
    summary = f"version {version} serves all traffic again as the champion"
    if rolled_back_from is None:
        return summary
    was = "canary version" if rolled_back_from == canary else "version"
    return f"{summary}; {was} {rolled_back_from} no longer serves (alias {ROLLED_BACK})"


def mark_canary(config: RegistryConfig, version: str, percent: int, backend: RegistryBackend | None = None) -> None:
    """After the pipeline deployed ``version`` with ``percent``% of the traffic: below 100 it is the canary,
    else ``stable``."""
    (backend or open_backend(config)).set_alias(CANARY if is_canary_share(percent) else STABLE, version)


def target_or_default(config: RegistryConfig, target: ServingTarget | None) -> ServingTarget:
    """``target``, or the one the configuration names."""
    return target if target is not None else open_target(config)


def _registered(config: RegistryConfig, backend: RegistryBackend | None) -> RegistryBackend:
    """``backend`` (default: the configured one), when it holds the model; else :class:`RolloutError`."""
    try:
        return require_model(backend or open_backend(config), config)
    except UserError as error:
        raise RolloutError(str(error)) from None


def _published(shown: str, publish: Publish | None) -> str:
    """Hand what the serving change shows to ``publish`` (the CLI writes ``--out`` and prints it) before any
    alias moves, so that a failure there leaves the aliases as they were; ``shown``."""
    if publish is not None:
        publish(shown)
    return shown


def _restore_champion(backend: RegistryBackend, version: str) -> None:
    """Make ``version`` the champion again; it no longer is the previous one, and no canary is left."""
    backend.set_alias(CHAMPION, version)
    if backend.alias_version(PREVIOUS_CHAMPION) == version:
        backend.remove_alias(PREVIOUS_CHAMPION)
    backend.remove_alias(CANARY)


def _version_or_champion(backend: RegistryBackend, version: str, config: RegistryConfig) -> Release:
    """``version``, or the champion when it is empty."""
    version = version or _holder(backend, CHAMPION, config, "no champion to deploy: pass --version")
    return _release(backend, version, config)


def _holder(backend: RegistryBackend, alias: str, config: RegistryConfig, problem: str) -> str:
    """The version holding ``alias``, else :class:`RolloutError` with ``problem``."""
    version = backend.alias_version(alias)
    if version is None:
        raise RolloutError(f"{config.model_name}: {problem}")
    return version


def _release(backend: RegistryBackend, version: str, config: RegistryConfig) -> Release:
    """The version and its model files; :class:`RolloutError` when the registry has no such version."""
    try:
        uri = backend.version_model_uri(version)
    except Exception as error:  # each registry has its own "not found" (MlflowException, NotFound)
        logger.debug("version %s of %s: %r", version, config.model_name, error)
        raise RolloutError(f"{config.model_name} has no version {version!r}") from None
    if "://" not in uri and not Path(uri).is_dir():  # a local registry whose files were moved or deleted
        raise RolloutError(f"{config.model_name} version {version}: its model files are missing from {uri}")
    return Release(version, uri)
