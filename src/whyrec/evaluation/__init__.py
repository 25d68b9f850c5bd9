"""Offline evaluation: metrics (METRICS.md), the full-ranking protocol and reports."""
