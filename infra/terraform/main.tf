# The GCP resources the pipeline needs: APIs, the artifact bucket, the image repository.
# Identities and their permissions are in iam.tf, GitHub Actions federation in github.tf,
# the optional serving endpoint in endpoint.tf.

locals {
  bucket_name = var.bucket_name != "" ? var.bucket_name : "${var.project_id}-${var.name_prefix}"
  labels      = merge({ app = var.name_prefix, managed-by = "terraform" }, var.labels)
  image_base  = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}"
}

data "google_project" "this" {
  project_id = var.project_id
}

resource "google_project_service" "required" {
  for_each = toset([
    "aiplatform.googleapis.com",           # Vertex AI Pipelines, training, Model Registry, endpoints
    "artifactregistry.googleapis.com",     # the images
    "bigquery.googleapis.com",             # bring-your-own-data from BigQuery
    "cloudbuild.googleapis.com",           # infra/cloudbuild.yaml
    "cloudresourcemanager.googleapis.com", # IAM bindings
    "compute.googleapis.com",              # Vertex AI and Dataflow workers
    "dataflow.googleapis.com",             # Beam feature extraction at scale
    "iam.googleapis.com",                  # service accounts
    "iamcredentials.googleapis.com",       # service account impersonation (CI)
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "storage.googleapis.com",
    "sts.googleapis.com", # Workload Identity Federation token exchange
  ])
  project = var.project_id
  service = each.value
  # Other workloads in the project may use these APIs too: never turn them off on destroy.
  disable_on_destroy = false
}

# The pipeline root (Vertex AI Pipelines writes every step's artifacts under it), extracted
# examples, models, reports and compiled pipeline specs.
resource "google_storage_bucket" "artifacts" {
  # checkov:skip=CKV_GCP_62:access to the bucket is recorded by Cloud Audit Logs (enable Data Access logs for storage.googleapis.com); a second log bucket adds cost, not coverage
  name                        = local.bucket_name
  project                     = var.project_id
  location                    = var.region
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false
  labels                      = local.labels

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_version_retention_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  dynamic "encryption" {
    for_each = var.kms_key_name == "" ? [] : [var.kms_key_name]
    content {
      default_kms_key_name = encryption.value
    }
  }

  depends_on = [google_project_service.required, google_kms_crypto_key_iam_member.service_agents]
}

# The project image (every pipeline step, training jobs) and the serving image.
resource "google_artifact_registry_repository" "images" {
  # checkov:skip=CKV_GCP_84:customer-managed encryption is opt-in through var.kms_key_name; Google-managed keys are the default
  project       = var.project_id
  location      = var.region
  repository_id = var.name_prefix
  description   = "Images of the MMoE ranker pipeline (project image) and its prediction server (serving image)."
  format        = "DOCKER"
  kms_key_name  = var.kms_key_name == "" ? null : var.kms_key_name
  labels        = local.labels

  docker_config {
    # CI tags every build with its commit SHA and compiles the pipeline against that tag, so a
    # schedule never changes image behind your back; re-running a CI job may re-push a tag.
    immutable_tags = false
  }

  cleanup_policy_dry_run = false
  cleanup_policies {
    id     = "keep-recent-versions"
    action = "KEEP"
    most_recent_versions {
      keep_count = var.image_retention_count
    }
  }
  cleanup_policies {
    id     = "delete-old-untagged"
    action = "DELETE"
    condition {
      tag_state  = "UNTAGGED"
      older_than = "2592000s" # 30 days
    }
  }

  depends_on = [google_project_service.required, google_kms_crypto_key_iam_member.service_agents]
}
