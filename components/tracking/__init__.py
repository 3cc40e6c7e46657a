"""Experiment tracking: one MLflow run per pipeline run, the run listing, Vertex AI Experiments."""
