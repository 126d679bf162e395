"""Benchmarks: each writes bench/results/*.json and a markdown table for docs/benchmarks.md."""
