"""Shared pytest configuration for the lenscheck test suite."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

# Hypothesis profiles. "ci": 200 examples per property, derandomized (reproducible in CI),
# no deadline (the first call into torch is slow), and the reproduction blob printed on
# failure. "dev": a quicker local loop. HYPOTHESIS_PROFILE picks one explicitly; otherwise
# "ci" whenever the CI environment variable is set, else "dev". Property tests never set
# max_examples themselves, so the profile decides.
settings.register_profile("ci", max_examples=200, derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", max_examples=50, deadline=None, print_blob=True)


def _default_profile() -> str:
    ci = os.environ.get("CI", "").strip().lower()
    return "ci" if ci not in ("", "0", "false", "no") else "dev"


settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or _default_profile())


@pytest.fixture(scope="module")
def torch_single_thread() -> Iterator[None]:
    """Run a module's many tiny tensor ops on one intra-op thread (restored afterwards).

    Thread hand-off costs ~50x the work for the few-hundred-element tensors that property
    tests use; models and benchmarks elsewhere keep torch's default.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
