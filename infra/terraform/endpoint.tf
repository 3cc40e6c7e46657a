# Optional: the Vertex AI endpoint the pipeline's deploy step (ranker run/submit --deploy) targets.
# Models are deployed to it by the pipeline, not by Terraform, so applying never undeploys them.
resource "google_vertex_ai_endpoint" "ranker" {
  # checkov:skip=CKV2_GCP_33:private only when var.endpoint_network names a peered VPC network; a public endpoint still requires IAM-authenticated callers (aiplatform.endpoints.predict)
  count        = var.create_endpoint ? 1 : 0
  project      = var.project_id
  location     = var.region
  # The endpoint ID must be numeric (at most 10 digits): a stable one derived from project and prefix.
  name = format("%d", parseint(substr(sha256("${var.project_id}/${var.name_prefix}"), 0, 8), 16))
  # The deploy step finds the endpoint by display name (--endpoint-name, RANKER_ENDPOINT).
  display_name = var.name_prefix
  description  = "Serves the blessed MMoE ranker (serving image, KServe v1 / Vertex AI protocol)."
  labels       = local.labels
  network      = var.endpoint_network == "" ? null : var.endpoint_network

  dynamic "encryption_spec" {
    for_each = var.kms_key_name == "" ? [] : [var.kms_key_name]
    content {
      kms_key_name = encryption_spec.value
    }
  }

  depends_on = [google_project_service.required, google_kms_crypto_key_iam_member.service_agents]
}
