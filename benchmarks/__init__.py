"""Measured figures: each module is a script that prints its numbers and writes benchmarks/results/."""
