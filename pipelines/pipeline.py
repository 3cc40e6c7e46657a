"""The DAG: data -> features -> MMoE and GBDT baseline -> evaluation -> registration -> (deployment).

One pipeline function serves every way of running it: ``kfp.local`` (``ranker
run``), compiled YAML for Vertex AI Pipelines or a Kubeflow Pipelines server
(``ranker compile|submit|schedule``). Runtime choices are pipeline parameters;
resources and the training backend are compile-time choices, so the pipeline
is built from :class:`~pipelines.config.PipelineSettings`::

    pipeline = build_pipeline(PipelineSettings.from_env(train_accelerator="NVIDIA_TESLA_T4"))
    kfp.compiler.Compiler().compile(pipeline, "pipeline.yaml")

::

    data_uri == ""? ── simulate_marketplace ─ simulated_source ─┐ (OneOf)
                  └─── user_source ─────────────────────────────┴─> importer(raw data)
    -> extract_features ─┬─> [tune_mmoe ->] train_mmoe ──> resolve_champion ─┐
                         └─> train_baseline ──────────────────────────────────┴─> evaluate
    -> record_run (the MLflow run start_tracking opened first) -> blessing_verdict
    -> if blessed: register_model (logs the MLflow model into that run) -> materialize_features;
       if deploy: deploy_model (Vertex AI: plan_vertex_deploy -> ModelDeployOp (traffic split) -> mark_vertex_canary)

Compiled for Vertex AI or KFP (:func:`build_tracked_pipeline`), that DAG runs inside an exit
handler: ``close_tracking`` ends the MLflow run FAILED, with the error, when a step fails.
``ranker run`` runs the DAG itself (kfp returns no outputs from inside an exit handler, and
the local runner closes the run itself).

``kfp.local`` merges ``dsl.OneOf`` parameters but not artifacts, so the two
data branches end in URIs and the raw data is imported once from the merged
URI: the same graph runs locally and compiles for Vertex AI.
"""

# No `from __future__ import annotations`: kfp reads the pipeline function's real annotations.
import inspect
from typing import Any, NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Model

from components.base import with_image
from components.baseline.component import train_baseline
from components.data.simulator_component import simulate_marketplace
from components.evaluation.component import evaluate
from components.features.component import extract_features
from components.features.materialize_component import materialize_features
from components.pipeline_steps import (
    blessing_verdict,
    deploy_model,
    resolve_champion,
    simulated_source,
    user_source,
)
from components.registry.component import register_model
from components.registry.deploy_component import mark_vertex_canary, plan_vertex_deploy
from components.tracking.component import close_tracking, record_run, start_tracking
from components.training.component import train_mmoe
from components.training.tune_component import tune_mmoe
from pipelines.config import PIPELINE_CANDIDATE, PIPELINE_NAME, PipelineSettings


class PipelineOutputs(NamedTuple):
    examples: Dataset
    dead_letters: Dataset
    model: Model
    baseline: Model
    report: HTML
    report_json: Artifact
    blessing: Artifact
    blessed: bool
    primary_metric: float
    tracking_run_id: str


def build_pipeline(settings: PipelineSettings | None = None) -> Any:
    """The ``@dsl.pipeline`` for these settings (their values are also the parameters' defaults)."""
    settings = settings or PipelineSettings()
    arguments = settings.pipeline_arguments(local=True)
    train = _training_op(settings)
    deploy_step = _deploy_op(settings)

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Build the MMoE ranker, judge it against per-module LightGBM rankers, register it if it wins.",
    )
    def mmoe_ranker_pipeline(
        data_uri: str = arguments["data_uri"],
        oracle_uri: str = arguments["oracle_uri"],
        dataset_spec: str = arguments["dataset_spec"],
        held_out_module: str = arguments["held_out_module"],
        n_impressions: int = arguments["n_impressions"],
        seed: int = arguments["seed"],
        dead_letter_threshold: float = arguments["dead_letter_threshold"],
        num_shards: int = arguments["num_shards"],
        beam_options_json: str = arguments["beam_options_json"],
        model_config_json: str = arguments["model_config_json"],
        baseline_config_json: str = arguments["baseline_config_json"],
        eval_config_json: str = arguments["eval_config_json"],
        tune_config_json: str = arguments["tune_config_json"],
        registry: str = arguments["registry"],
        model_name: str = arguments["model_name"],
        tracking_uri: str = settings.registry.tracking_uri,
        project: str = arguments["project"],
        location: str = arguments["location"],
        serving_image: str = arguments["serving_image"],
        on_broken_champion: str = arguments["on_broken_champion"],
        deploy: bool = arguments["deploy"],
        endpoint_name: str = arguments["endpoint_name"],
        feature_store: str = "",
        canary_percent: int = arguments["canary_percent"],
    ) -> PipelineOutputs:
        registry_args = {
            "registry": registry,
            "model_name": model_name,
            "tracking_uri": tracking_uri,
            "project": project,
            "location": location,
        }
        tracking = _sized(
            start_tracking(
                pipeline_run_id=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
                data_uri=data_uri,
                dataset_spec=dataset_spec,
                held_out_module=held_out_module,
                n_impressions=n_impressions,
                seed=seed,
                model_config_json=model_config_json,
                baseline_config_json=baseline_config_json,
                eval_config_json=eval_config_json,
                **registry_args,
            ),
            settings,
        )
        tracking.set_caching_options(False)  # one MLflow run per pipeline run
        with dsl.If(data_uri == "", name="simulate"):
            simulated = _sized(simulate_marketplace(n_impressions=n_impressions, seed=seed), settings)
            simulated.after(tracking)  # the MLflow run starts with the pipeline run
            simulated_uris = _sized(
                simulated_source(impressions=simulated.outputs["impressions"], oracle=simulated.outputs["oracle"]),
                settings,
            )
        with dsl.Else(name="user-data"):
            user_uris = _sized(user_source(data_uri=data_uri, oracle_uri=oracle_uri), settings)
            user_uris.after(tracking)
            user_uris.set_caching_options(False)  # it reads the data's version, the extraction's cache key
        raw_data_uri = dsl.OneOf(simulated_uris.outputs["data_uri"], user_uris.outputs["data_uri"])
        source_oracle_uri = dsl.OneOf(simulated_uris.outputs["oracle_uri"], user_uris.outputs["oracle_uri"])
        data_version = dsl.OneOf(simulated_uris.outputs["data_version"], user_uris.outputs["data_version"])
        raw_data = dsl.importer(artifact_uri=raw_data_uri, artifact_class=Dataset, reimport=False)
        raw_data.set_display_name("raw-data")

        features = _sized(
            extract_features(
                raw_data=raw_data.output,
                dataset_spec=dataset_spec,
                held_out_module=held_out_module,
                dead_letter_threshold=dead_letter_threshold,
                num_shards=num_shards,
                beam_options_json=beam_options_json,
                data_version=data_version,
            ),
            settings,
        )
        examples = features.outputs["examples"]
        model_config = model_config_json
        if settings.tuning.trials > 0:  # compile-time: the step is in the DAG only when trials are asked for
            tuned = _training_resources(
                tune_mmoe(examples=examples, config_json=model_config_json, tuning_json=tune_config_json), settings
            )
            model_config = tuned.outputs["Output"]
        trained = train(examples=examples, config_json=model_config)
        baseline = _sized(train_baseline(examples=examples, config_json=baseline_config_json), settings)
        champion = _sized(
            resolve_champion(model=trained.outputs["model"], on_broken_champion=on_broken_champion, **registry_args),
            settings,
        )
        champion.set_caching_options(False)  # the registry changes between runs
        judged = _sized(
            evaluate(
                examples=examples,
                model=trained.outputs["model"],
                model_name=PIPELINE_CANDIDATE,
                baseline=baseline.outputs["baseline"],
                oracle_uri=source_oracle_uri,
                champion_model_uri=champion.outputs["champion_model_uri"],
                champion_note=champion.outputs["champion_note"],
                config_json=eval_config_json,
            ),
            settings,
        )
        recorded = _sized(
            record_run(
                tracking_run_id=tracking.output,
                model=trained.outputs["model"],
                tensorboard=trained.outputs["tensorboard"],
                report=judged.outputs["report"],
                report_json=judged.outputs["report_json"],
                blessing=judged.outputs["blessing"],
                **registry_args,
            ),
            settings,
        )
        recorded.set_caching_options(False)  # every run is recorded, blessed or refused
        verdict = _sized(blessing_verdict(blessing=judged.outputs["blessing"]), settings)
        verdict.after(recorded)
        with dsl.If(verdict.output == True, name="blessed"):  # noqa: E712 (a kfp condition)
            registered = _sized(
                register_model(
                    model=trained.outputs["model"],
                    report_json=judged.outputs["report_json"],
                    blessing=judged.outputs["blessing"],
                    serving_image=serving_image,
                    run_id=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
                    data_uri=raw_data_uri,
                    tracking_run_id=tracking.output,
                    **registry_args,
                ),
                settings,
            )
            registered.set_caching_options(False)  # idempotent, and the registry may have been reset
            materialized = _sized(
                materialize_features(examples=examples, model_version=registered.output, feature_store=feature_store),
                settings,
            )
            materialized.set_caching_options(False)  # the online store holds the champion's snapshot
            with dsl.If(deploy == True, name="deploy"):  # noqa: E712
                deploy_step(registered.output, endpoint_name, canary_percent, registry_args)
        return PipelineOutputs(
            examples=examples,
            dead_letters=features.outputs["dead_letters"],
            model=trained.outputs["model"],
            baseline=baseline.outputs["baseline"],
            report=judged.outputs["report"],
            report_json=judged.outputs["report_json"],
            blessing=judged.outputs["blessing"],
            blessed=verdict.output,
            primary_metric=judged.outputs["primary_metric"],
            tracking_run_id=tracking.output,
        )

    return mmoe_ranker_pipeline


def build_tracked_pipeline(settings: PipelineSettings | None = None) -> Any:
    """The DAG of :func:`build_pipeline` inside an exit handler that ends its MLflow run FAILED when a step fails.

    The same parameters as the DAG, and no outputs (kfp returns none from inside an exit handler).
    The exit task may depend on no task, so ``close_tracking`` finds the MLflow run by the pipeline
    run's name, as ``start_tracking`` tagged it.
    """
    settings = settings or PipelineSettings()
    dag = build_pipeline(settings)
    signature = inspect.signature(dag.pipeline_func)

    def tracked(*values: Any) -> None:  # kfp passes the parameters in the signature's order
        arguments = dict(zip(signature.parameters, values, strict=True))
        registry_args = {name: arguments[name] for name in ("registry", "model_name", "tracking_uri", "project")}
        closed = close_tracking(
            pipeline_run_id=dsl.PIPELINE_JOB_NAME_PLACEHOLDER, location=arguments["location"], **registry_args
        )
        _sized(closed, settings).set_caching_options(False)
        with dsl.ExitHandler(closed, name="tracked-run"):
            dag(**arguments)

    tracked.__signature__ = signature.replace(return_annotation=None)
    return dsl.pipeline(name=PIPELINE_NAME, description=dag.description)(tracked)


def _sized(task: dsl.PipelineTask, settings: PipelineSettings) -> dsl.PipelineTask:
    """Declare the image and the default CPU and memory of a step."""
    return (
        task.set_container_image(settings.image).set_cpu_limit(settings.step_cpu).set_memory_limit(settings.step_memory)
    )


def _deploy_op(settings: PipelineSettings):
    """The deployment: on Vertex AI google-cloud-pipeline-components' ``ModelDeployOp`` (lineage, traffic split)
    between its plan and the ``canary`` alias; otherwise the ``deploy_model`` step (locally: the serve command)."""

    def deploy_step(version: Any, endpoint_name: Any, canary_percent: Any, registry_args: dict[str, Any]) -> None:
        deployed = _sized(deploy_model(version=version, endpoint_name=endpoint_name, **registry_args), settings)
        deployed.set_caching_options(False)

    def vertex_deploy_step(
        version: Any, endpoint_name: Any, canary_percent: Any, registry_args: dict[str, Any]
    ) -> None:
        from google_cloud_pipeline_components.v1.endpoint import ModelDeployOp

        where = {key: registry_args[key] for key in ("model_name", "project", "location")}
        plan = _sized(
            plan_vertex_deploy(version=version, endpoint_name=endpoint_name, canary_percent=canary_percent, **where),
            settings,
        ).set_caching_options(False)
        deployed = ModelDeployOp(
            model=plan.outputs["model"],
            endpoint=plan.outputs["endpoint"],
            deployed_model_display_name=plan.outputs["display_name"],
            traffic_split=plan.outputs["traffic_split"],
            dedicated_resources_machine_type=settings.registry.machine_type,
            dedicated_resources_min_replica_count=settings.registry.min_replicas,
            dedicated_resources_max_replica_count=settings.registry.max_replicas,
            service_account=settings.registry.serving_service_account,
        ).set_caching_options(False)
        marked = mark_vertex_canary(version=version, traffic_split=plan.outputs["traffic_split"], **where)
        marked.after(deployed)
        _sized(marked, settings).set_caching_options(False)

    return vertex_deploy_step if settings.registry.backend == "vertex" else deploy_step


def _training_op(settings: PipelineSettings):
    """``train_mmoe`` as a pipeline step with its resources, or as a Vertex AI custom training job."""
    if settings.training_backend == "custom-job":
        from google_cloud_pipeline_components.v1.custom_job import create_custom_training_job_from_component

        return create_custom_training_job_from_component(
            with_image(train_mmoe, settings.image),
            display_name="train-mmoe",
            machine_type=settings.train_machine_type,
            accelerator_type=settings.train_accelerator,
            accelerator_count=settings.train_accelerator_count if settings.train_accelerator else 0,
            service_account=settings.training_service_account or settings.service_account,
            network=settings.network,
            encryption_spec_key_name=settings.encryption_key,
        )

    def train_step(**kwargs: Any) -> dsl.PipelineTask:
        return _training_resources(train_mmoe(**kwargs), settings)

    return train_step


def _training_resources(task: dsl.PipelineTask, settings: PipelineSettings) -> dsl.PipelineTask:
    """The image, CPU, memory and accelerator of a step that trains the ranker (train_mmoe, tune_mmoe)."""
    task.set_container_image(settings.image).set_cpu_limit(settings.train_cpu).set_memory_limit(settings.train_memory)
    if settings.train_accelerator:
        task.set_accelerator_type(settings.train_accelerator).set_accelerator_limit(settings.train_accelerator_count)
    return task
