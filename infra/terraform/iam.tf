# One identity per job, each with only what that job does:
#   pipelines  runs the Vertex AI pipeline steps (and launches training jobs and deployments)
#   training   runs Vertex AI custom training jobs (--training-backend custom-job)
#   serving    runs the prediction server on a Vertex AI endpoint
#   ci         the GitHub Actions / Cloud Build deployer: pushes images, submits and schedules runs
# Bucket and repository roles are granted on the bucket and the repository, not the project.

locals {
  service_accounts = {
    pipelines = "Runs the MMoE ranker's Vertex AI pipeline steps"
    training  = "Runs the MMoE ranker's Vertex AI custom training jobs"
    serving   = "Serves the MMoE ranker on Vertex AI endpoints"
    ci        = "CI deployer: pushes images, compiles, submits and schedules pipeline runs"
  }

  # Project-level roles: the APIs these jobs call have no narrower resource to grant them on.
  project_roles = concat(
    [
      { sa = "pipelines", role = "roles/aiplatform.user" },    # create training jobs, models, endpoints, metadata
      { sa = "pipelines", role = "roles/bigquery.jobUser" },   # read bring-your-own-data tables (grant dataViewer per dataset)
      { sa = "pipelines", role = "roles/bigquery.readSessionUser" }, # bq:// tables are read with the Storage Read API
      { sa = "pipelines", role = "roles/logging.logWriter" },
      { sa = "training", role = "roles/logging.logWriter" },
      { sa = "training", role = "roles/aiplatform.user" },     # report metrics and TensorBoard to Vertex AI
      { sa = "serving", role = "roles/logging.logWriter" },
      { sa = "serving", role = "roles/monitoring.metricWriter" },
      { sa = "ci", role = "roles/aiplatform.user" },           # submit pipeline runs and manage schedules
      { sa = "ci", role = "roles/logging.logWriter" },         # Cloud Build logs when builds run as this account
    ],
    var.enable_dataflow ? [
      { sa = "pipelines", role = "roles/dataflow.developer" }, # launch the Beam extraction job
      { sa = "pipelines", role = "roles/dataflow.worker" },    # the job's workers run as this account
    ] : [],
  )

  bucket_roles = {
    pipelines = "roles/storage.objectAdmin"  # the pipeline root: read and write every step's artifacts
    training  = "roles/storage.objectAdmin"  # examples in, checkpoints and the exported model out
    serving   = "roles/storage.objectViewer" # the model it serves
    ci        = "roles/storage.objectAdmin"  # compiled pipeline specs and the run's pipeline root
  }

  repository_roles = {
    pipelines = "roles/artifactregistry.reader"
    training  = "roles/artifactregistry.reader"
    serving   = "roles/artifactregistry.reader"
    ci        = "roles/artifactregistry.writer" # pushes the images
  }

  # Who may run jobs as whom (roles/iam.serviceAccountUser on the target account only).
  act_as = merge(
    {
      "ci-runs-pipelines"        = { actor = "ci", target = "pipelines" }       # runs are submitted with --service-account
      "pipelines-runs-training"  = { actor = "pipelines", target = "training" } # custom training jobs
      "pipelines-deploys-server" = { actor = "pipelines", target = "serving" }  # the deploy step
    },
    var.enable_dataflow ? {
      "pipelines-runs-dataflow" = { actor = "pipelines", target = "pipelines" } # Dataflow workers run as itself
    } : {},
  )
}

resource "google_service_account" "jobs" {
  for_each     = local.service_accounts
  project      = var.project_id
  account_id   = "${var.name_prefix}-${each.key}"
  display_name = "${var.name_prefix} ${each.key}"
  description  = each.value
  depends_on   = [google_project_service.required]
}

resource "google_project_iam_member" "jobs" {
  for_each = { for grant in local.project_roles : "${grant.sa}-${grant.role}" => grant }
  project  = var.project_id
  role     = each.value.role
  member   = google_service_account.jobs[each.value.sa].member
}

resource "google_storage_bucket_iam_member" "jobs" {
  for_each = local.bucket_roles
  bucket   = google_storage_bucket.artifacts.name
  role     = each.value
  member   = google_service_account.jobs[each.key].member
}

resource "google_artifact_registry_repository_iam_member" "jobs" {
  for_each   = local.repository_roles
  project    = var.project_id
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = each.value
  member     = google_service_account.jobs[each.key].member
}

resource "google_service_account_iam_member" "act_as" {
  for_each           = local.act_as
  service_account_id = google_service_account.jobs[each.value.target].name
  role               = "roles/iam.serviceAccountUser"
  member             = google_service_account.jobs[each.value.actor].member
}

# With var.kms_key_name, Google's service agents encrypt with the key on our behalf: Cloud Storage (the
# bucket), Artifact Registry (the repository) and Vertex AI (the endpoint, models and pipeline runs). A fresh
# project has none of them until first use, and a grant to an agent that does not exist fails, so they are
# provisioned first (google_project_service_identity is in the beta provider only).
resource "google_project_service_identity" "agents" {
  provider   = google-beta
  for_each   = var.kms_key_name == "" ? toset([]) : toset(["artifactregistry.googleapis.com", "aiplatform.googleapis.com"])
  project    = var.project_id
  service    = each.value
  depends_on = [google_project_service.required]
}

data "google_storage_project_service_account" "storage" {
  project = var.project_id
}

resource "google_kms_crypto_key_iam_member" "service_agents" {
  for_each = var.kms_key_name == "" ? {} : {
    storage          = data.google_storage_project_service_account.storage.email_address
    artifactregistry = google_project_service_identity.agents["artifactregistry.googleapis.com"].email
    aiplatform       = google_project_service_identity.agents["aiplatform.googleapis.com"].email
  }
  crypto_key_id = var.kms_key_name
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = "serviceAccount:${each.value}"
}
