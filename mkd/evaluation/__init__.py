"""Offline evaluation: metrics, the long-tail slice, scorers and the report of ``relevance evaluate``."""
