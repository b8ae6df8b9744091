"""Scoring samples: image metrics, the evaluation loop, report tables and the quality measures."""
