"""Evaluation: metrics (docs/metrics.md), the full-ranking protocol, statistics, reports and
simulated conversations."""
