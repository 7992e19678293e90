"""Benchmarks: `python bench/run.py` (see its docstring and the README's Performance section)."""
