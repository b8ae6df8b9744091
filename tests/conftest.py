"""Shared test set-up: hypothesis settings for torch code and a pinned global seed."""

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

# torch calls have unpredictable first-call latency, so per-example deadlines only produce flakes.
settings.register_profile(
    "default", deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.register_profile("thorough", deadline=None, max_examples=500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(autouse=True)
def _pin_seed():
    torch.manual_seed(0)
    yield
