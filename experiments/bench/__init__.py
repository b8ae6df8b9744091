"""Benchmarks (`python -m experiments.bench.unet`, `.sampling`, `.data`): speed and quality, not tests."""
