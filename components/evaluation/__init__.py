"""NDCG evaluation, the report and the blessing."""
