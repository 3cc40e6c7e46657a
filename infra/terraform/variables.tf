variable "project_id" {
  description = "GCP project that runs the pipeline, stores its artifacts and serves the model."
  type        = string
}

variable "region" {
  description = "Region of the bucket, the Artifact Registry repository, Vertex AI Pipelines, training and endpoints."
  type        = string
  default     = "us-central1"
}

variable "name_prefix" {
  description = "Prefix of every resource name (service accounts, repository, pool, endpoint): lets several copies share a project."
  type        = string
  default     = "mmoe-ranker"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,17}$", var.name_prefix))
    error_message = "name_prefix must be 3-18 characters of lowercase letters, digits and hyphens, starting with a letter (service account ids are at most 30 characters)."
  }
}

variable "bucket_name" {
  description = "Name of the bucket holding the pipeline root, extracted examples, models and reports. Empty: <project_id>-<name_prefix>."
  type        = string
  default     = ""
}

variable "noncurrent_version_retention_days" {
  description = "Days an overwritten or deleted object version is kept in the bucket before it is removed (versioning is always on)."
  type        = number
  default     = 30
}

variable "kms_key_name" {
  description = "Cloud KMS key (projects/P/locations/L/keyRings/R/cryptoKeys/K) encrypting the bucket, the image repository and the endpoint. Empty: Google-managed keys."
  type        = string
  default     = ""
}

variable "image_retention_count" {
  description = "Most recent image versions the Artifact Registry cleanup policy keeps per image; older ones are deleted."
  type        = number
  default     = 20
}

variable "github_repository" {
  description = "GitHub repository (owner/name) whose Actions workflows may impersonate the CI service account through Workload Identity Federation."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", var.github_repository))
    error_message = "github_repository must look like owner/name."
  }
}

variable "github_allowed_refs" {
  description = "Git refs (e.g. refs/heads/main) whose workflow runs may authenticate. Empty list: any ref of the repository."
  type        = list(string)
  default     = ["refs/heads/main"]
}

variable "enable_dataflow" {
  description = "Grant the pipeline service account what running feature extraction on Dataflow needs (Beam's DataflowRunner)."
  type        = bool
  default     = true
}

variable "create_endpoint" {
  description = "Create a Vertex AI endpoint the pipeline's deploy step (--deploy, --endpoint-name) deploys blessed models to."
  type        = bool
  default     = false
}

variable "endpoint_network" {
  description = "VPC network (projects/<project number>/global/networks/<name>) peered with Vertex AI that makes the endpoint private. Empty: a public endpoint, callable only with IAM credentials."
  type        = string
  default     = ""
}

variable "labels" {
  description = "Labels added to every resource that takes labels (team, cost center, environment, ...)."
  type        = map(string)
  default     = {}
}
