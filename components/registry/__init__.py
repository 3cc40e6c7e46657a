"""Model registries: MLflow (local default) and Vertex AI Model Registry."""
