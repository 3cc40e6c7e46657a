output "bucket" {
  description = "Bucket of the pipeline root and every artifact (gs://...)."
  value       = google_storage_bucket.artifacts.url
}

output "pipeline_root" {
  description = "Pipeline root for `ranker submit/schedule --pipeline-root` (RANKER_PIPELINE_ROOT)."
  value       = "${google_storage_bucket.artifacts.url}/pipeline_root"
}

output "ranker_image" {
  description = "Project image name without tag (RANKER_IMAGE=<this>:<tag>); CI tags each build with its commit SHA."
  value       = "${local.image_base}/mmoe-ranker"
}

output "serving_image" {
  description = "Serving image name without tag (RANKER_SERVING_IMAGE=<this>:<tag>)."
  value       = "${local.image_base}/mmoe-ranker-serving"
}

output "service_accounts" {
  description = "Service account emails by job: pipelines (--service-account of runs), training, serving, ci."
  value       = { for name, account in google_service_account.jobs : name => account.email }
}

output "workload_identity_provider" {
  description = "Full provider name for google-github-actions/auth (GitHub variable GCP_WORKLOAD_IDENTITY_PROVIDER)."
  value       = google_iam_workload_identity_pool_provider.github.name
}

output "endpoint" {
  description = "Resource id of the Vertex AI endpoint (its display name is name_prefix, the deploy step's --endpoint-name), or null when create_endpoint is false."
  value       = var.create_endpoint ? google_vertex_ai_endpoint.ranker[0].id : null
}

output "github_variables" {
  description = "Repository variables the GitHub workflows read (Settings > Secrets and variables > Actions > Variables)."
  value = {
    GCP_PROJECT_ID                 = var.project_id
    GCP_REGION                     = var.region
    GCP_WORKLOAD_IDENTITY_PROVIDER = google_iam_workload_identity_pool_provider.github.name
    GCP_CI_SERVICE_ACCOUNT         = google_service_account.jobs["ci"].email
    GCP_PIPELINE_SERVICE_ACCOUNT   = google_service_account.jobs["pipelines"].email
    GCP_TRAINING_SERVICE_ACCOUNT   = google_service_account.jobs["training"].email
    GCP_SERVING_SERVICE_ACCOUNT    = google_service_account.jobs["serving"].email
    GCP_PIPELINE_ROOT              = "${google_storage_bucket.artifacts.url}/pipeline_root"
    GCP_ARTIFACT_REPOSITORY        = local.image_base
  }
}
