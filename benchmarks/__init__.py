"""Benchmarks of uqf, grouped by what they measure (speed, scale, quality, tools).

Run each from the repository root as ``python -m benchmarks.<group>.<name>``.
"""
