"""Mergeable metrics: histograms and counters with no I/O and no clocks."""
