"""Measured figures: each script here prints its numbers and writes benchmarks/results/. Not scripts: common.py
(what the scripts share), quality_*.py (quality.py's protocols, rows and figure) and process_latency_child.py
(the process process_latency.py measures)."""
