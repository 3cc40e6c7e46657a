"""The Terraform: parses, documented, consistent, least-privilege, and checkov clean (no terraform binary needed)."""

import re

import hcl2
import pytest

from tests.infra.conftest import TERRAFORM, checkov, failed_checks

TF_FILES = tuple(sorted(TERRAFORM.glob("*.tf")))


def unquote(value):
    return value.strip('"') if isinstance(value, str) else value


def blocks(kind: str) -> dict[str, dict]:
    """Every ``kind`` block (variable, output, ...) of the module by name."""
    found = {}
    for path in TF_FILES:
        for block in hcl2.load(path.open()).get(kind, []):
            found.update({unquote(name): body for name, body in block.items()})
    return found


def resources(resource_type: str) -> dict[str, dict]:
    found = {}
    for path in TF_FILES:
        for block in hcl2.load(path.open()).get("resource", []):
            for kind, named in block.items():
                if unquote(kind) == resource_type:
                    found.update({unquote(name): body for name, body in named.items()})
    return found


def source() -> str:
    return "\n".join(path.read_text() for path in TF_FILES)


@pytest.mark.parametrize("path", TF_FILES, ids=lambda path: path.name)
def test_every_file_parses(path):
    assert hcl2.load(path.open())


def test_every_variable_and_output_is_documented_and_typed():
    for name, variable in blocks("variable").items():
        assert len(unquote(variable.get("description", ""))) > 20, f"variable {name} needs a description"
        assert "type" in variable, f"variable {name} needs a type"
    for name, output in blocks("output").items():
        assert len(unquote(output.get("description", ""))) > 20, f"output {name} needs a description"


def test_every_variable_is_declared_and_used():
    declared = set(blocks("variable"))
    referenced = set(re.findall(r"\bvar\.([A-Za-z_][A-Za-z0-9_]*)", source()))
    assert referenced - declared == set(), "referenced but not declared"
    assert declared - referenced == set(), "declared but never used"


def test_providers_and_terraform_are_pinned():
    [settings] = hcl2.load((TERRAFORM / "versions.tf").open())["terraform"]
    assert unquote(settings["required_version"]).startswith(">=")
    [providers] = settings["required_providers"]
    for provider in ("google", "google-beta"):
        assert re.match(r"~> \d+\.\d+", unquote(providers[provider]["version"]))


def test_the_bucket_is_private_versioned_and_uniform():
    [bucket] = resources("google_storage_bucket").values()
    assert bucket["uniform_bucket_level_access"] is True
    assert unquote(bucket["public_access_prevention"]) == "enforced"
    assert bucket["versioning"][0]["enabled"] is True


def test_no_basic_roles_and_storage_or_registry_roles_only_on_their_resource():
    text = source()
    assert not re.search(r"roles/(owner|editor|viewer)\b", text)
    assert not re.search(r"roles/iam\.serviceAccount(User|TokenCreator)\"\s*}", text)
    project_roles = re.findall(r'role = "(roles/[^"]+)" }', text)
    assert project_roles, "project roles are listed in iam.tf"
    assert not [role for role in project_roles if role.startswith(("roles/storage.", "roles/artifactregistry."))]
    assert "google_storage_bucket_iam_member" in text and "google_artifact_registry_repository_iam_member" in text


def test_github_federation_is_limited_to_the_repository():
    [provider] = resources("google_iam_workload_identity_pool_provider").values()
    assert "assertion.repository == '${var.github_repository}'" in provider["attribute_condition"]
    assert provider["oidc"][0]["issuer_uri"] == '"https://token.actions.githubusercontent.com"'
    binding = resources("google_service_account_iam_member")["github_impersonates_ci"]
    assert unquote(binding["role"]) == "roles/iam.workloadIdentityUser"
    assert "attribute.repository/${var.github_repository}" in binding["member"]


def test_the_kms_key_is_granted_to_service_agents_provisioned_first():
    """A fresh project has no Vertex AI or Artifact Registry service agent until first use: the grant would fail."""
    agents = resources("google_project_service_identity")["agents"]
    assert {"artifactregistry.googleapis.com", "aiplatform.googleapis.com"} <= set(
        re.findall(r"[a-z]+\.googleapis\.com", agents["for_each"])
    )
    grants = resources("google_kms_crypto_key_iam_member")["service_agents"]
    granted = str(grants["for_each"])
    assert "google_project_service_identity.agents" in granted and "google_storage_project_service_account" in granted
    assert "gcp-sa-" not in granted  # no agent address built by hand


def test_the_endpoint_is_optional():
    [endpoint] = resources("google_vertex_ai_endpoint").values()
    assert "var.create_endpoint" in endpoint["count"]


def test_checkov_passes_the_terraform():
    report = checkov("terraform", "--directory", TERRAFORM)
    assert report["summary"]["resource_count"] > 10
    assert failed_checks(report) == []
