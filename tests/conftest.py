"""Shared pytest configuration for the lenscheck test suite."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _hypothesis_profiles import load as load_hypothesis_profile
from _threads import share_cores_between_workers

# Hypothesis profiles (tests/_hypothesis_profiles.py): the derandomized "gate" wherever the
# suite runs, CI or not, unless HYPOTHESIS_PROFILE names another ("explore" for random
# examples). Property tests never set max_examples themselves, so the profile decides.
HYPOTHESIS_PROFILE = load_hypothesis_profile()


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


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "allow_network: the test may open internet sockets (none does today)"
    )
    config.addinivalue_line(
        "markers", "covers(module): nox -s mutation also runs this file on that module's mutants"
    )
    share_cores_between_workers()


class NetworkAccessError(RuntimeError):
    """A test tried to reach the network; the offline gate forbids it."""


@pytest.fixture(autouse=True)
def _no_network(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any test that opens an internet connection (AF_UNIX and pipes stay allowed).

    The offline gate (`nox -s unit`) must not depend on a hub or any host; a test that
    tries names itself through this error instead of hanging on a timeout.
    """
    import socket

    if request.node.get_closest_marker("allow_network"):
        return
    real_connect = socket.socket.connect

    def guarded(sock: socket.socket, address: object) -> object:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            raise NetworkAccessError(
                f"{request.node.nodeid} tried to connect to {address!r}; tests run offline "
                "(mark it allow_network if it truly needs the network)"
            )
        return real_connect(sock, address)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", guarded)
    monkeypatch.setattr(socket, "create_connection", _refuse(request.node.nodeid))


def _refuse(nodeid: str) -> object:
    def create_connection(address: object, *args: object, **kwargs: object) -> object:
        raise NetworkAccessError(f"{nodeid} tried to connect to {address!r}; tests run offline")

    return create_connection


#: The committed golden every comparison test edits: a real document, four layers.
COMMITTED_GOLDEN = (
    Path(__file__).resolve().parents[1] / "golden" / "synthetic-llama" / "cpu-float32.json"
)


@pytest.fixture(scope="session")
def committed_golden() -> dict[str, Any]:
    """The committed synthetic-llama golden, parsed once (do not edit: use ``golden``)."""
    return dict(json.loads(COMMITTED_GOLDEN.read_text(encoding="utf-8")))


@pytest.fixture
def golden(committed_golden: dict[str, Any]) -> dict[str, Any]:
    """A fresh copy of the committed golden: the stored side of a comparison."""
    return copy.deepcopy(committed_golden)


@pytest.fixture
def run(committed_golden: dict[str, Any]) -> dict[str, Any]:
    """Another fresh copy: the run side, to edit into drift."""
    return copy.deepcopy(committed_golden)
