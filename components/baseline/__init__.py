"""Per-module and global LightGBM LambdaRank baselines."""

import os

# LightGBM's OpenMP threads spin-wait at every barrier (libgomp's default). On a machine whose cores are
# shared (the MMoE trains next to the baseline in the pipeline, CI runners, other jobs) a spinning thread
# waits for a preempted one: a 30-round global fit at 1M impressions took 30.7 s with 2 threads against
# 4.5 s with one, and 3.1 s with 2 passive threads. libgomp reads this when LightGBM loads it, so it is
# set here, before any baseline module imports lightgbm; an OMP_WAIT_POLICY already set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
