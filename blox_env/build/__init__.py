"""Benchmark builders (normal and blockwise), Blox-mini and the executors they run on."""
