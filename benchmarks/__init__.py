"""Reproducible throughput comparisons: `python -m benchmarks.run --help`."""
