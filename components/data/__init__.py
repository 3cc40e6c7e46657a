"""Marketplace simulator, dataset specs and readers for bring-your-own-data."""
