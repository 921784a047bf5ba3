"""Datasets: S7-ISP (full ISP), MSR demosaicing (JDD), and the synthetic S7-layout generator."""
