"""Evaluation harness: execution-scored infilling benchmarks and completion on real code."""
