"""Canary, promote and rollback as KServe manifests (and locally), on a real MLflow store; the CLI's errors."""

import shutil
from pathlib import Path

import kubernetes.client
import pytest
import yaml
from kserve.models import V1beta1InferenceServiceSpec, V1beta1PredictorSpec

from components.registry.core import (
    CANARY,
    CHALLENGER,
    CHAMPION,
    PREVIOUS_CHAMPION,
    ROLLED_BACK,
    STABLE,
    Candidate,
    RegistrationRefusedError,
    RegistryConfig,
    register_model,
)
from components.registry.kserve import VERSION_ANNOTATION
from components.registry.mlflow_store import MlflowRegistry
from pipelines.cli import main
from tests.registry.conftest import copy_model

# Registration logs each version as an MLflow model (its signature scores a few rows), so versions are
# copies of a really exported model.
pytestmark = pytest.mark.slow


def registered(tmp_path: Path, config: RegistryConfig, name: str, exported: Path) -> str:
    """Register a copy of ``exported`` as a blessed version (the rules of register_model only, no load check)."""
    model = copy_model(exported, tmp_path / name, name)
    candidate = Candidate(str(model), True, [], {}, {"primary_metric": 0.6}, f"run-{name}", name * 64)
    return register_model(candidate, config).version


def two_versions(folder: Path, exported: Path) -> Path:
    """A local registry where version 2 is the champion and version 1 the previous one; its work dir."""
    config = RegistryConfig(work_dir=str(folder / "work"))
    registered(folder, config, "a", exported)
    registered(folder, config, "b", exported)
    return folder / "work"


@pytest.fixture(scope="module")
def unchanged_work(tmp_path_factory, model_dir) -> Path:
    """:func:`two_versions` shared by the tests that must not change it."""
    return two_versions(tmp_path_factory.mktemp("registry"), model_dir)


@pytest.fixture
def work(tmp_path, unchanged_work) -> Path:
    """A copy of :func:`unchanged_work` (the same database; the model files stay where they were registered)."""
    return Path(shutil.copytree(unchanged_work, tmp_path / "work"))


def ranker(capsys, *argv: str) -> tuple[int, str, str]:
    """Run ``ranker ARGV``: exit status, stdout, stderr."""
    capsys.readouterr()  # not what came before
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def kserve(capsys, work: Path, command: str, *flags: str) -> dict:
    """The manifest ``ranker COMMAND --deploy-target kserve`` prints, checked against KServe's own field names."""
    status, out, _ = ranker(capsys, command, "--deploy-target", "kserve", "--work-dir", str(work), *flags)
    assert status == 0
    manifest = yaml.safe_load(out)
    assert_inference_service(manifest)
    return manifest


def assert_inference_service(manifest: dict) -> None:
    """Every key is a field of KServe's ``InferenceService`` (kserve and kubernetes client models)."""
    assert (manifest["apiVersion"], manifest["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    assert set(manifest) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(manifest["metadata"]) <= fields(kubernetes.client.V1ObjectMeta)
    assert set(manifest["spec"]) <= fields(V1beta1InferenceServiceSpec)
    predictor = manifest["spec"]["predictor"]
    assert set(predictor) <= fields(V1beta1PredictorSpec)
    (container,) = predictor["containers"]
    assert set(container) <= fields(kubernetes.client.V1Container)
    assert container["name"] == "kserve-container"
    for env in container["env"]:
        assert set(env) <= fields(kubernetes.client.V1EnvVar)
    assert set(container["readinessProbe"]["httpGet"]) <= fields(kubernetes.client.V1HTTPGetAction)
    if "canaryTrafficPercent" in predictor:
        assert isinstance(predictor["canaryTrafficPercent"], int)


def fields(model: type) -> set[str]:
    """The JSON field names of an OpenAPI-generated client model."""
    return set(model.attribute_map.values())


def served(manifest: dict) -> tuple[str, str, int | None]:
    """The version annotation, MODEL_URI and canary share of a manifest."""
    predictor = manifest["spec"]["predictor"]
    env = {item["name"]: item["value"] for item in predictor["containers"][0]["env"]}
    return (
        manifest["metadata"]["annotations"][VERSION_ANNOTATION],
        env["MODEL_URI"],
        predictor.get("canaryTrafficPercent"),
    )


def test_canary_promote_on_kserve_and_the_aliases(capsys, work, tmp_path):
    registry = MlflowRegistry(RegistryConfig(work_dir=str(work)))
    out = tmp_path / "isvc.yaml"

    canary = kserve(capsys, work, "deploy", "--canary", "10", "--kserve-namespace", "ranking", "--out", str(out))

    assert served(canary) == ("2", registry.version_model_uri("2"), 10)
    assert canary["metadata"] == {
        "name": "mmoe-ranker",
        "namespace": "ranking",
        "annotations": {VERSION_ANNOTATION: "2"},
    }
    assert yaml.safe_load(out.read_text()) == canary
    assert registry.alias_version(CANARY) == "2"

    promoted = kserve(capsys, work, "promote")

    assert served(promoted) == ("2", registry.version_model_uri("2"), None)
    assert (registry.alias_version(CHAMPION), registry.alias_version(PREVIOUS_CHAMPION)) == ("2", "1")
    assert registry.alias_version(CANARY) is None


def test_rollback_on_kserve_serves_the_previous_champion_again(capsys, work, caplog):
    registry = MlflowRegistry(RegistryConfig(work_dir=str(work)))
    kserve(capsys, work, "deploy", "--canary", "50")

    with caplog.at_level("INFO", logger="components.registry.rollout"):
        rolled_back = kserve(capsys, work, "rollback")

    assert caplog.messages[-1] == (
        "version 1 serves all traffic again as the champion; canary version 2 no longer serves (alias rolled-back)"
    )

    assert served(rolled_back) == ("1", registry.version_model_uri("1"), None)
    assert registry.alias_version(CHAMPION) == "1"
    assert registry.alias_version(PREVIOUS_CHAMPION) is None
    assert registry.alias_version(CANARY) is None
    assert registry.alias_version(ROLLED_BACK) == "2"


def test_a_rolled_back_model_registered_again_stays_rolled_back_until_an_operator_promotes_it(
    capsys, work, tmp_path, model_dir
):
    """A retried run re-registers its model: after a rollback from that model, the champion stays as rolled back."""
    config = RegistryConfig(work_dir=str(work))
    registry = MlflowRegistry(config)
    kserve(capsys, work, "rollback")  # from the champion, version 2 ("b"), to version 1
    assert (registry.alias_version(CHAMPION), registry.alias_version(ROLLED_BACK)) == ("1", "2")

    with pytest.raises(RegistrationRefusedError, match="already mmoe-ranker version 2, and the last rollback took"):
        registered(tmp_path, config, "b", model_dir)
    assert (registry.alias_version(CHAMPION), registry.alias_version(ROLLED_BACK)) == ("1", "2")

    kserve(capsys, work, "deploy", "--version", "2", "--canary", "10")
    kserve(capsys, work, "promote")  # the operator's choice
    assert (registry.alias_version(CHAMPION), registry.alias_version(ROLLED_BACK)) == ("2", None)
    assert registered(tmp_path / "again", config, "b", model_dir) == "2"


def test_a_canary_of_an_older_version_rolls_back_to_the_champion(capsys, work):
    registry = MlflowRegistry(RegistryConfig(work_dir=str(work)))
    kserve(capsys, work, "deploy", "--version", "1", "--canary", "5")

    assert served(kserve(capsys, work, "rollback"))[0] == "2"
    assert (registry.alias_version(CHAMPION), registry.alias_version(PREVIOUS_CHAMPION)) == ("2", "1")
    assert registry.alias_version(ROLLED_BACK) == "1"  # the canary


def test_a_plain_deploy_serves_the_champion_with_all_traffic(capsys, work):
    assert served(kserve(capsys, work, "deploy"))[0::2] == ("2", None)
    status, out, _ = ranker(capsys, "deploy", "--work-dir", str(work))
    assert status == 0 and "ranker serve --model-uri models:/mmoe-ranker/2" in out


def test_a_canary_of_an_older_version_rolls_back_to_the_champion_and_says_so(capsys, work, caplog):
    kserve(capsys, work, "deploy", "--version", "1", "--canary", "5")

    with caplog.at_level("INFO", logger="components.registry.rollout"):
        kserve(capsys, work, "rollback")

    assert "None" not in caplog.text
    assert caplog.messages[-1] == (
        "version 2 serves all traffic again as the champion; canary version 1 no longer serves (alias rolled-back)"
    )


def test_a_canary_of_100_is_a_plain_deploy_as_in_the_pipeline(capsys, work):
    """The pipeline's deploy step reads ``canary_percent`` 100 as all traffic; so does ``ranker deploy``."""
    registry = MlflowRegistry(RegistryConfig(work_dir=str(work)))

    assert served(kserve(capsys, work, "deploy", "--canary", "100"))[0::2] == ("2", None)
    assert (registry.alias_version(CANARY), registry.alias_version(STABLE)) == (None, "2")
    assert served(kserve(capsys, work, "deploy", "--version", "1", "--canary", "99"))[0::2] == ("1", 99)
    assert registry.alias_version(CANARY) == "1"


@pytest.mark.parametrize(("flags", "share"), [([], 20), (["--canary", "30"], 30)])
def test_the_canary_share_comes_from_the_environment_and_the_flag_wins(capsys, work, monkeypatch, flags, share):
    monkeypatch.setenv("RANKER_CANARY", "20")
    monkeypatch.setenv("RANKER_DEPLOY_TARGET", "kserve")
    status, out, _ = ranker(capsys, "deploy", "--work-dir", str(work), *flags)
    assert status == 0 and served(yaml.safe_load(out))[2] == share


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["deploy", "--canary", "150", "--deploy-target", "kserve"],
            "canary 150 (--canary, RANKER_CANARY): the share of traffic is a percent, 1 to 99 for a canary "
            "(100: a plain deployment)",
        ),
        (["deploy", "--canary", "-1", "--deploy-target", "kserve"], "canary -1 (--canary, RANKER_CANARY): the share"),
        (
            ["deploy", "--canary", "0", "--deploy-target", "kserve"],
            "canary 0 (--canary, RANKER_CANARY) would be a canary that gets no traffic: give it 1 to 99 percent, "
            "or leave out --canary to send it all traffic (to take the traffic from a canary: `ranker rollback`)",
        ),
        (
            ["deploy", "--deploy-target", "vertex"],
            "--deploy-target vertex serves versions of the Vertex AI Model Registry, not of the mlflow registry: "
            "pass --registry vertex and --project (or GOOGLE_CLOUD_PROJECT)",
        ),
        (["rollback", "--deploy-target", "vertex"], "--deploy-target vertex serves versions of the Vertex AI"),
        (["deploy", "--canary", "10"], "a local server has no traffic split"),
        (["deploy", "--version", "9", "--deploy-target", "kserve"], ": mmoe-ranker has no version '9'\n"),
        (
            ["deploy", "--model-name", "mmoe-rankr", "--deploy-target", "kserve"],
            "there is no registered model named 'mmoe-rankr' in sqlite:///",
        ),
        (["promote", "--model-name", "mmoe-rankr"], "there is no registered model named 'mmoe-rankr'"),
        (["register", "--champion", "--model-name", "mmoe-rankr"], "there is no registered model named 'mmoe-rankr'"),
        (
            ["deploy", "--deploy-target", "kserve", "--endpoint", "Bad_Name!"],
            "--endpoint 'Bad_Name!' (RANKER_ENDPOINT) is not a valid InferenceService name: an RFC 1123 DNS label",
        ),
        (["deploy", "--deploy-target", "kserve", "--endpoint", "1st"], "--endpoint '1st' (RANKER_ENDPOINT) is not"),
        (
            ["rollback", "--deploy-target", "kserve", "--kserve-namespace", "Team A"],
            "--kserve-namespace 'Team A' (RANKER_KSERVE_NAMESPACE) is not a Kubernetes namespace",
        ),
        (["promote", "--deploy-target", "kserve"], "no canary to promote: run `ranker deploy --canary PERCENT` first"),
    ],
)
def test_bad_input_is_one_line_and_exit_status_2(capsys, unchanged_work, argv, message):
    status, out, err = ranker(capsys, *argv, "--work-dir", str(unchanged_work))

    assert status == 2
    assert err.startswith(f"ranker {argv[0]}: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert out == ""


def test_no_champion_to_roll_back_to(capsys, tmp_path, model_dir):
    config = RegistryConfig(work_dir=str(tmp_path / "work"))
    registered(tmp_path, config, "a", model_dir)

    status, _, err = ranker(capsys, "rollback", "--deploy-target", "kserve", "--work-dir", config.work_dir)

    assert (status, err) == (2, "ranker rollback: no previous champion of mmoe-ranker to roll back to\n")


def test_rollout_commands_need_an_existing_registry(capsys, tmp_path):
    status, _, err = ranker(capsys, "promote", "--work-dir", str(tmp_path / "none"))
    assert status == 2 and "there is no model registry" in err
    assert not (tmp_path / "none").exists()


@pytest.mark.parametrize("command", ["deploy", "promote", "rollback"])
def test_an_out_file_that_cannot_be_written_changes_no_alias(capsys, work, tmp_path, command):
    registry = MlflowRegistry(RegistryConfig(work_dir=str(work)))
    if command != "deploy":
        kserve(capsys, work, "deploy", "--canary", "10")
    aliases = {alias: registry.alias_version(alias) for alias in (CHAMPION, CANARY, PREVIOUS_CHAMPION)}
    flags = ["--canary", "20"] if command == "deploy" else []
    out = tmp_path / "no" / "such" / "isvc.yaml"

    status, _, err = ranker(
        capsys, command, "--deploy-target", "kserve", "--work-dir", str(work), *flags, "--out", str(out)
    )

    assert status == 2 and err == f"ranker {command}: --out {out}: no such folder {out.parent}\n"
    assert {alias: registry.alias_version(alias) for alias in aliases} == aliases


def aliases_of(work: Path) -> dict[str, str | None]:
    registry = MlflowRegistry(RegistryConfig(work_dir=str(work)))
    return {alias: registry.alias_version(alias) for alias in (CHAMPION, CANARY, PREVIOUS_CHAMPION, ROLLED_BACK)}


@pytest.mark.parametrize("command", ["deploy", "promote", "rollback"])
def test_an_out_file_that_fails_to_be_written_is_one_line_and_moves_no_alias(
    capsys, work, tmp_path, monkeypatch, command
):
    """The write can fail after every check passed (root on NFS, a full disk): it happens before any alias moves."""
    if command != "deploy":
        kserve(capsys, work, "deploy", "--canary", "10")
    before = aliases_of(work)
    out = tmp_path / "isvc.yaml"
    write_text = Path.write_text

    def refuse(path: Path, *args, **kwargs):
        if path == out:
            raise PermissionError(13, "Permission denied", str(path))
        return write_text(path, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", refuse)
    flags = ["--canary", "20"] if command == "deploy" else []

    status, printed, err = ranker(
        capsys, command, "--deploy-target", "kserve", "--work-dir", str(work), *flags, "--out", str(out)
    )

    assert status == 2 and printed == ""  # nothing to pipe into kubectl either
    assert err == f"ranker {command}: --out {out}: cannot be written (Permission denied); no registry alias was moved\n"
    assert aliases_of(work) == before


def test_an_out_file_under_a_file_or_on_sysfs_is_refused_before_anything(capsys, work, tmp_path):
    before = aliases_of(work)
    under_a_file = tmp_path / "notes.txt"
    under_a_file.write_text("a file, not a folder")
    out = under_a_file / "isvc.yaml"

    status, printed, err = ranker(
        capsys, "deploy", "--deploy-target", "kserve", "--work-dir", str(work), "--canary", "10", "--out", str(out)
    )

    assert (status, printed) == (2, "")
    assert err == f"ranker deploy: --out {out}: no such folder {under_a_file}\n"
    if Path("/sys/fs").is_dir():  # os.access says root may write there; creating a file says otherwise
        sysfs = "/sys/fs/ranker-isvc.yaml"
        status, printed, err = ranker(
            capsys, "deploy", "--deploy-target", "kserve", "--work-dir", str(work), "--canary", "10", "--out", sysfs
        )
        assert (status, printed) == (2, "")
        assert err.startswith(f"ranker deploy: --out {sysfs}: folder /sys/fs is not writable") and err.count("\n") == 1
    assert aliases_of(work) == before


def test_a_canary_its_evaluation_did_not_bless_is_promoted_only_with_force(capsys, work, tmp_path, model_dir):
    config = RegistryConfig(work_dir=str(work), keep_challengers=True)
    model = copy_model(model_dir, tmp_path / "c", "c")
    candidate = Candidate(str(model), False, ["worse on search"], {}, {"primary_metric": 0.5}, "run-c", "c" * 64)
    challenger = register_model(candidate, config).version  # kept as a challenger: no champion alias
    registry = MlflowRegistry(config)
    kserve(capsys, work, "deploy", "--version", challenger, "--canary", "5")  # watched online: allowed

    status, _, err = ranker(capsys, "promote", "--deploy-target", "kserve", "--work-dir", str(work))

    assert status == 2 and f"version {challenger} was not blessed by its evaluation" in err and "--force" in err
    assert (registry.alias_version(CHAMPION), registry.alias_version(CANARY)) == ("2", challenger)
    assert registry.alias_version(CHALLENGER) == challenger
    assert served(kserve(capsys, work, "promote", "--force"))[0] == challenger
    assert (registry.alias_version(CHAMPION), registry.alias_version(PREVIOUS_CHAMPION)) == (challenger, "2")
    # the champion now, no longer a challenger: one version does not hold both
    assert registry.version_aliases(challenger) == (CHAMPION, STABLE)


def test_a_version_whose_model_files_are_gone_is_not_deployed(capsys, work, tmp_path, model_dir):
    config = RegistryConfig(work_dir=str(work))
    version = registered(tmp_path, config, "d", model_dir)
    files = Path(MlflowRegistry(config).version_model_uri(version))
    shutil.rmtree(files)

    status, out, err = ranker(
        capsys, "deploy", "--deploy-target", "kserve", "--work-dir", str(work), "--version", version
    )

    assert status == 2 and out == ""
    assert err == f"ranker deploy: mmoe-ranker version {version}: its model files are missing from {files}\n"


def test_register_champion_without_one_is_one_line_on_stderr_and_exit_status_2(capsys, work):
    """Scripts run `ranker serve --model-uri "$(ranker register --champion)"`: no champion must stop them."""
    MlflowRegistry(RegistryConfig(work_dir=str(work))).remove_alias(CHAMPION)

    status, out, err = ranker(capsys, "register", "--champion", "--work-dir", str(work))

    assert (status, out) == (2, "")
    assert err == (
        "ranker register: mmoe-ranker has no champion yet: register a blessed model first "
        "(ranker register --model ... --report ... --blessing ...)\n"
    )


def test_a_new_champion_is_not_registered_while_a_canary_is_live(capsys, work, tmp_path, model_dir):
    """Else rollback would serve the new champion, which never served, and promote would make it previous-champion."""
    config = RegistryConfig(work_dir=str(work))
    kserve(capsys, work, "deploy", "--canary", "10")  # champion 2 next to 1
    before = aliases_of(work)

    with pytest.raises(RegistrationRefusedError, match="version 2 is live as the canary, so a new champion is not"):
        registered(tmp_path, config, "c", model_dir)

    assert aliases_of(work) == before
    assert MlflowRegistry(config).find_version("c" * 64) is None  # nothing written
    assert registered(tmp_path / "retry", config, "b", model_dir) == "2"  # the canary's own run, retried: no change
    assert served(kserve(capsys, work, "rollback"))[0] == "1"
    assert registered(tmp_path / "after", config, "c", model_dir) == "3"
    assert aliases_of(work)[CHAMPION] == "3"


def test_a_plain_deploy_of_a_version_that_is_not_the_champion_needs_force_and_makes_it_the_champion(capsys, work):
    registry = MlflowRegistry(RegistryConfig(work_dir=str(work)))
    kserve(capsys, work, "rollback")  # all traffic from 2 (rolled-back) to 1
    before = aliases_of(work)

    status, out, err = ranker(capsys, "deploy", "--deploy-target", "kserve", "--work-dir", str(work), "--version", "2")

    assert (status, out) == (2, "")
    assert err == (
        "ranker deploy: not sending all traffic to mmoe-ranker version 2: it is not the champion (version 1), "
        "the last rollback took the traffic from it; a plain deploy makes it the champion: pass --force, or try it "
        "with --canary PERCENT and `ranker promote`\n"
    )
    assert aliases_of(work) == before

    assert served(kserve(capsys, work, "deploy", "--version", "2", "--force"))[0::2] == ("2", None)
    assert aliases_of(work) == {CHAMPION: "2", CANARY: None, PREVIOUS_CHAMPION: "1", ROLLED_BACK: None}
    assert registry.alias_version(STABLE) == "2"


def test_no_plain_deploy_and_no_second_canary_while_a_canary_is_live(capsys, work):
    kserve(capsys, work, "deploy", "--canary", "10")
    before = aliases_of(work)

    for flags, problem in [
        (["--canary", "20"], "version 2 is already the canary: finish it with `ranker promote` or `ranker rollback`"),
        (["--version", "1", "--canary", "5"], "version 2 is already the canary"),
        ([], "version 2 is live as the canary: finish it with `ranker promote` or `ranker rollback` before"),
        (["--version", "1", "--force"], "version 2 is live as the canary"),
    ]:
        status, out, err = ranker(capsys, "deploy", "--deploy-target", "kserve", "--work-dir", str(work), *flags)
        assert (status, out) == (2, "") and problem in err and err.count("\n") == 1

    assert aliases_of(work) == before


def test_a_canary_of_the_version_that_already_serves_all_traffic_is_refused(capsys, work):
    kserve(capsys, work, "deploy", "--canary", "10")
    kserve(capsys, work, "promote")  # version 2 serves all traffic

    status, out, err = ranker(capsys, "deploy", "--deploy-target", "kserve", "--work-dir", str(work), "--canary", "10")

    assert (status, out) == (2, "")
    assert err == (
        "ranker deploy: mmoe-ranker version 2 already serves all the traffic (alias stable): a canary of it would "
        "share the traffic with itself: canary another version (--version N, or register a new champion)\n"
    )
    assert served(kserve(capsys, work, "deploy", "--version", "1", "--canary", "10"))[0::2] == ("1", 10)
