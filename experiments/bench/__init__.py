"""Benchmarks (`python -m experiments.bench.unet`, `.predict`, `.sampling`, `.data`): speed and quality, not tests.

Shared pieces: :mod:`.stats` (median, spread, the verdict rule), :mod:`.machine` (what ran it, its assumed
peak), :mod:`.flops` (FLOP counts).
"""
