"""Benchmark suite of autods: ``python -m bench`` (see docs/benchmarks.md).

Every comparison runs autods and its reference side by side in one process tree, in
alternating order, and reports medians of per-round ratios, so background load on the
machine shifts both figures alike instead of skewing the ratio.
"""
