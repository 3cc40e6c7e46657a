"""Per-module and global LightGBM LambdaRank baselines."""
