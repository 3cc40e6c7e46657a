# Workload Identity Federation: GitHub Actions runs of var.github_repository (on the allowed refs)
# exchange their OIDC token for the CI service account's credentials. No key ever leaves GCP.

locals {
  github_ref_condition = length(var.github_allowed_refs) == 0 ? "" : format(
    " && assertion.ref in [%s]", join(", ", [for ref in var.github_allowed_refs : "'${ref}'"])
  )
}

resource "google_iam_workload_identity_pool" "github" {
  project                   = var.project_id
  workload_identity_pool_id = "${var.name_prefix}-github"
  display_name              = "GitHub Actions"
  description               = "GitHub Actions workflows of ${var.github_repository}"
  depends_on                = [google_project_service.required]
}

resource "google_iam_workload_identity_pool_provider" "github" {
  # checkov:skip=CKV_GCP_125:the condition pins assertion.repository and assertion.ref (the parts of the sub claim) to var.github_repository and var.github_allowed_refs; checkov only recognises a literal assertion.sub comparison
  project                            = var.project_id
  workload_identity_pool_id          = google_iam_workload_identity_pool.github.workload_identity_pool_id
  workload_identity_pool_provider_id = "github-oidc"
  display_name                       = "GitHub OIDC"
  # Only tokens of this repository (and the allowed refs) are accepted at all.
  attribute_condition = "assertion.repository == '${var.github_repository}'${local.github_ref_condition}"
  attribute_mapping = {
    "google.subject"       = "assertion.sub"
    "attribute.repository" = "assertion.repository"
    "attribute.ref"        = "assertion.ref"
    "attribute.actor"      = "assertion.actor"
    "attribute.workflow"   = "assertion.workflow"
  }

  oidc {
    issuer_uri = "https://token.actions.githubusercontent.com"
  }
}

resource "google_service_account_iam_member" "github_impersonates_ci" {
  service_account_id = google_service_account.jobs["ci"].name
  role               = "roles/iam.workloadIdentityUser"
  member             = "principalSet://iam.googleapis.com/${google_iam_workload_identity_pool.github.name}/attribute.repository/${var.github_repository}"
}
