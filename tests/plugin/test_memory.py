"""One model in memory at a time: a model's run and weights go after its last test."""

from __future__ import annotations

import pytest
from _plugin_helpers import GENERATED, LensProject

MODELS = ("synthetic-gpt2", "synthetic-llama")

#: A user's tests that hold weak references to each model's weights and check, while the
#: second model runs, that the first one's are gone.
USER_TESTS = """
import gc
import weakref

REFS = {}


def test_a_hold(lens_run, lens_model):
    REFS[lens_model] = (weakref.ref(lens_run.run.backend), weakref.ref(lens_run.run.backend.model))


def test_b_check(lens_run, lens_model):
    gc.collect()
    alive = {m: [r() is not None for r in refs] for m, refs in REFS.items()}
    assert alive[lens_model] == [True, True]  # this model: in use
    others = {m: a for m, a in alive.items() if m != lens_model}
    if lens_model == "synthetic-llama":
        assert others == {"synthetic-gpt2": [False, False]}, others  # released
"""


@pytest.mark.parametrize("update", [False, True], ids=["check", "rebless-unchanged"])
def test_a_model_is_released_after_its_last_test(lens_project: LensProject, update: bool) -> None:
    """Also when --snapshot-update finds the golden unchanged: syrupy keeps its assertion
    (and the extension's comparison) until the session ends, which must not keep the run."""
    lens_project.copy_golden(*MODELS)
    lens_project.pytester.makepyfile(test_users=USER_TESTS)
    args = ["--snapshot-update"] if update else []
    result = lens_project.run(f"--lens-models={','.join(MODELS)}", "-p", "no:randomly", *args)
    result.assert_outcomes(passed=len(MODELS) * (len(GENERATED) + 2))


class _Weights:
    """Stands in for a backend: weak-referenceable, optionally in a reference cycle."""

    def __init__(self, cycle: bool) -> None:
        self.me = self if cycle else None


@pytest.mark.parametrize("cycle", [False, True], ids=["refcounted", "in-a-cycle"])
def test_settling_frees_released_weights_collecting_only_when_a_cycle_holds_them(
    cycle: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refcounting frees a model the moment its run is dropped; before the next model loads,
    the full collection (~0.2 s with torch loaded) runs only if a cycle keeps one alive."""
    import gc
    import weakref
    from types import SimpleNamespace

    from lenscheck.plugin.session import LensRun, LensSession

    collections: list[int] = []
    real_collect = gc.collect
    monkeypatch.setattr(gc, "collect", lambda *a: collections.append(1) or real_collect(*a))
    gc.disable()  # no automatic collection may free the cycle behind the test's back
    try:
        weights = _Weights(cycle)
        ref = weakref.ref(weights)
        run = SimpleNamespace(backend=weights)
        session = LensSession(settings=None)  # type: ignore[arg-type]
        session.runs["m"] = LensRun("m", "m", "cpu", run, {}, {})  # type: ignore[arg-type]
        del weights, run
        assert ref() is not None
        assert session.release("m") is None
        assert (ref() is None) is not cycle  # a cycle outlives the release...
        session.settle()
        assert ref() is None  # ...but not the settling before the next model
        assert collections == ([1] if cycle else [])
        session.settle()
        assert collections == ([1] if cycle else [])  # nothing left to settle
    finally:
        gc.enable()


def test_on_cuda_release_notes_the_peak_and_settling_empties_the_cache(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No GPU needed: torch.cuda's memory functions are recorded, not run."""
    import torch

    from lenscheck.plugin.session import LensRun, LensSession

    calls: list[tuple[str, object]] = []
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda d: 3 * 2**29)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append(("empty", None)))
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda d: calls.append(("reset", d)))
    session = LensSession(settings=None)  # type: ignore[arg-type]
    run = LensRun("m", "m", "cuda:1", _Run(), {}, {})  # type: ignore[arg-type]
    session.runs["m"] = run
    del run
    assert session.release("m") == "m: peak device memory 1.50 GiB on cuda:1"
    assert calls == []  # the weights may still be held by pytest here
    session.settle()
    assert calls == [("empty", None), ("reset", "cuda:1")]


class _Run:
    def __init__(self) -> None:
        self.backend = _Weights(cycle=False)
