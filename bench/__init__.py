"""Benchmarks (figures and commands in docs/benchmarks.md)."""
