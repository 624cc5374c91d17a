"""tests/_faults.py against today's source, in the unit gate: every fault's lines occur
exactly once in the function it patches, and every module that imported the function by
name still holds it. The fault-injection runs (slow gate) refuse a missing line with a
usage error; this finds a refactor that moved one in a second instead of minutes later."""

from __future__ import annotations

import importlib
import inspect
import textwrap

import pytest
from _faults import FAULTS, Patch

PATCHES = [(name, patch) for name, patches in FAULTS.items() for patch in patches]


@pytest.mark.parametrize(("fault", "patch"), PATCHES, ids=[f"{n}:{p[1]}" for n, p in PATCHES])
def test_every_fault_line_is_in_the_function_it_patches(fault: str, patch: Patch) -> None:
    module_name, qualname, edits, also = patch
    owner: object = importlib.import_module(module_name)
    *path, name = qualname.split(".")
    for part in path:
        owner = getattr(owner, part)
    function = getattr(owner, name)
    source = textwrap.dedent(inspect.getsource(function))
    assert [(old, source.count(old)) for old, _ in edits] == [(old, 1) for old, _ in edits]
    for target in also:
        imported, attr = target.split(":")
        assert getattr(importlib.import_module(imported), attr) is function, target
