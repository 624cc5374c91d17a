"""tests/_faults.py against today's source, in the unit gate: every fault's lines occur
exactly once in the function it patches, and every lenscheck module that holds the function
by name is one the fault re-binds (a fault patched only where it is defined, while its
caller imported it by name, never runs: the run passes and the test that should catch it
looks blind). The fault-injection runs (slow gate) refuse a missing line with a
usage error; this finds a refactor that moved one in a second instead of minutes later."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import textwrap

import pytest
from _faults import FAULTS, TIE_FAULTS, Patch

import lenscheck

PATCHES = [
    (name, patch)
    for table in (FAULTS, TIE_FAULTS)
    for name, patches in table.items()
    for patch in patches
]


def _holders(function: object, home: str) -> set[str]:
    """``module:attr`` of every lenscheck module other than ``home`` that binds ``function``."""
    out = set()
    for info in pkgutil.walk_packages(lenscheck.__path__, "lenscheck."):
        if info.name.endswith("__main__"):  # importing it runs the command line
            continue
        module = importlib.import_module(info.name)
        if info.name != home:
            out |= {f"{info.name}:{a}" for a, v in vars(module).items() if v is function}
    return out


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
    unbound = _holders(function, module_name) - set(also)
    assert not unbound, f"{fault}: hold the function by name, add them to the patch: {unbound}"
