"""lenscheck.plugin.gpus: which GPU each xdist worker takes (device counts faked)."""

from __future__ import annotations

import pytest

from lenscheck.plugin.gpus import assign_cuda_device, worker_index
from lenscheck.plugin.session import _worker_device


def test_four_workers_over_two_gpus() -> None:
    assert [assign_cuda_device(f"gw{n}", 2) for n in range(4)] == [
        "cuda:0",
        "cuda:1",
        "cuda:0",
        "cuda:1",
    ]


def test_workers_over_three_gpus() -> None:
    assert [assign_cuda_device(f"gw{n}", 3) for n in range(7)] == [
        "cuda:0",
        "cuda:1",
        "cuda:2",
        "cuda:0",
        "cuda:1",
        "cuda:2",
        "cuda:0",
    ]
    assert assign_cuda_device("gw13", 8) == "cuda:5"


@pytest.mark.parametrize("worker", [None, "", "master", "gw0", "gw5"])
@pytest.mark.parametrize("count", [0, 1])
def test_single_or_no_gpu_is_plain_cuda(worker: str | None, count: int) -> None:
    assert assign_cuda_device(worker, count) == "cuda"


@pytest.mark.parametrize("worker", [None, "", "master"])
def test_main_process_takes_gpu_0(worker: str | None) -> None:
    assert worker_index(worker) == 0
    assert assign_cuda_device(worker, 4) == "cuda:0"


@pytest.mark.parametrize("worker", ["gw", "worker1", "gw-1", "gw1a", "GW1", "1", "gw²"])
def test_bad_worker_id_is_an_error(worker: str) -> None:
    with pytest.raises(ValueError) as info:
        assign_cuda_device(worker, 2)
    assert str(info.value) == f"unexpected xdist worker id {worker!r}; expected 'gwN'"


def test_session_uses_the_worker_and_device_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """The plugin's resolved device: bare 'cuda' is spread; explicit ones are kept."""
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw3")
    assert _worker_device("cuda") == "cuda:1"
    assert _worker_device("cuda:0") == "cuda:0"  # the user chose one
    assert _worker_device("cpu") == "cpu"
    monkeypatch.delenv("PYTEST_XDIST_WORKER")
    assert _worker_device("cuda") == "cuda:0"
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw3")
    assert _worker_device("cuda") == "cuda"
