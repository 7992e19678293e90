"""Benchmarks: `python bench/run.py` (see its docstring and bench/README.md)."""
