"""Batch invariance: a prompt's files are byte-identical whether it runs alone or inside
any suite (issue 24, item 8). A suite's composition is not noise: the pipeline computes each
prompt from that prompt alone (lenscheck.lens.pipeline's docstring)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _lens_fixtures import make_fake_backend
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
CAPITALS = ROOT / "examples" / "prompts" / "capitals.toml"


def _pool() -> tuple[Any, ...]:
    """The example suite's prompts and the built-in one: different lengths and probes."""
    from lenscheck.suites import DEFAULT_SUITE, load_suite

    # Not the control prompt: a sub-suite may leave out the prompt it controls.
    cases = [c for c in load_suite(CAPITALS).cases if c.control_for is None]
    return (*cases, *DEFAULT_SUITE.cases)


def _suite(cases: Any) -> Any:
    from lenscheck.suites import PromptSuite

    return PromptSuite(name="mixed", cases=tuple(cases), source=str(CAPITALS))


def _files(backend: Any, cases: Any, cfg: Any) -> dict[str, tuple[bytes, bytes, bytes]]:
    """Each prompt's JSON and CSV bytes, as the runner writes them."""
    from lenscheck.lens import run_suite
    from lenscheck.runner import output_bytes

    return {pid: output_bytes(r, cfg) for pid, r in run_suite(backend, _suite(cases), cfg).items()}


def _suites_around(cases: tuple[Any, ...], first: Any) -> list[tuple[Any, ...]]:
    """``first`` alone, then inside suites of 2 and of 16 prompts (at different places)."""
    others = [c for c in cases if c.id != first.id]
    big = []
    for n in range(15):
        case = others[n % len(others)]
        big.append(_renamed(case, f"{case.id}-{n}"))
    return [(first,), (others[0], first), (*big[:7], first, *big[7:])]


def _renamed(case: Any, new_id: str) -> Any:
    from dataclasses import replace

    return replace(case, id=new_id)


def _check_invariant(backend: Any, cfg: Any, first: Any) -> None:
    alone, *suites = _suites_around(_pool(), first)
    want = _files(backend, alone, cfg)[first.id]
    for cases in suites:
        got = _files(backend, cases, cfg)[first.id]
        for name, a, b in zip(("json", "records", "pure"), want, got):
            assert a == b, f"{first.id}: {name} differs inside a suite of {len(cases)} prompts"


def _cfg(**changes: Any) -> Any:
    from lenscheck.config import LensConfig

    return LensConfig(device="cpu", heatmap=False, **changes)


@settings(max_examples=10, deadline=None)
@given(picks=st.lists(st.integers(0, 8), min_size=1, max_size=6), where=st.integers(0, 6))
def test_a_prompts_files_do_not_depend_on_its_suite_fake(picks: list[int], where: int) -> None:
    """Property: any suite around a prompt gives it the bytes it has alone."""
    pool = _pool()
    first = pool[picks[0]]
    others = [_renamed(pool[i], f"o{n}") for n, i in enumerate(picks[1:])]
    cases = [*others[:where], first, *others[where:]]
    fb = make_fake_backend(n_layers=3)
    cfg = _cfg()
    assert _files(fb, cases, cfg)[first.id] == _files(fb, [first], cfg)[first.id]


@pytest.mark.parametrize("alias", ["synthetic-llama", "synthetic-gpt2"])
def test_a_prompts_files_do_not_depend_on_its_suite_synthetic(alias: str) -> None:
    from lenscheck.runner import load_model

    cfg = _cfg()
    _, backend = load_model(alias, cfg)
    _check_invariant(backend, cfg, _pool()[0])


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["original", "standard"])
def test_a_prompts_files_do_not_depend_on_its_suite_embedded(preset: str) -> None:
    from lenscheck.runner import load_model

    cfg = _cfg(preset=preset)
    _, backend = load_model("embedded", cfg)
    _check_invariant(backend, cfg, _pool()[0])
