"""Readers of a finished (or live) loadkit report: thresholds, comparisons, HTML.

Everything in this package is pure: report dicts and time-series rows in,
values and strings out. No sockets, clocks or Locust imports.
"""
