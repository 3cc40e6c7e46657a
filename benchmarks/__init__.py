"""Benchmarks: `make benchmark`, or `python -m benchmarks.bench_<area> --help`."""
