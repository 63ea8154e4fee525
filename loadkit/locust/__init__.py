"""Locust glue: the only package (besides the locustfile) that imports Locust."""
