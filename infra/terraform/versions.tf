# Terraform and provider pins. `terraform init` writes the exact provider build to
# .terraform.lock.hcl; commit that file once generated.
#
# State: for a shared project keep it in a GCS bucket made once by hand, e.g.
#   terraform init -backend-config="bucket=my-tf-state" -backend-config="prefix=mmoe-ranker"
# after adding `backend "gcs" {}` inside the terraform block below.
terraform {
  required_version = ">= 1.5.0, < 2.0.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.0"
    }
    google-beta = { # google_project_service_identity only (iam.tf)
      source  = "hashicorp/google-beta"
      version = "~> 6.0"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}

provider "google-beta" {
  project = var.project_id
  region  = var.region
}
