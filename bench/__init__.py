"""Benchmarks run by `make bench` (python -m bench); not an installed package."""
