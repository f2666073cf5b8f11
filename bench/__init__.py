"""Benchmarks: each module's main() prints figures and ratios against a baseline measured in the same run."""
