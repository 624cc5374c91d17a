"""Keep each model's tests on one xdist worker, so every model loads once per worker.

xdist's own ``--dist loadgroup`` carries the ``xdist_group`` of a test to the controller by
appending ``@group`` to the node id on the worker. pytest 9.2 stores node ids in a
structured form that this no longer changes (pytest-dev/pytest-xdist#1386), and a worker
started with plain ``-n N`` never turned it on anyway. So the controller finds each test's
model from the node id's parameter instead; tests without a lens model keep xdist's rule.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["lens_group_scheduler", "model_of"]


def model_of(nodeid: str, models: Iterable[str]) -> str | None:
    """The lens model in ``nodeid``'s parameter id (``test_x[synthetic-llama]``), or None.

    A test with more parameters has an id like ``synthetic-llama-3`` or ``3-synthetic-llama``.
    """
    _, sep, tail = nodeid.rpartition("[")
    if not sep or "]" not in tail:
        return None
    pid = tail[: tail.rindex("]")]
    for model in sorted(models, key=len, reverse=True):
        if (
            pid == model
            or pid.startswith(f"{model}-")
            or pid.endswith(f"-{model}")
            or f"-{model}-" in pid
        ):
            return model
    return None


def lens_group_scheduler(config: Any, log: Any, models: tuple[str, ...]) -> Any:
    """A LoadGroupScheduling whose groups are the lens models."""
    # Imported here: pytest-xdist is optional, and the plugin imports this module.
    from xdist.scheduler import LoadGroupScheduling

    class LensGroupScheduling(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            # Where xdist's "@group" suffix does work (pytest < 9.2), look past it.
            at = nodeid.rfind("@")
            base = nodeid[:at] if at > nodeid.rfind("]") else nodeid
            model = model_of(base, models)
            return model if model is not None else str(super()._split_scope(nodeid))

    return LensGroupScheduling(config, log)
