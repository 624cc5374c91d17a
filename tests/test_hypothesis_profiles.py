"""The gate is derandomized: the suite's conftest loads a profile that draws the same
examples on every run and machine, CI or not; only ``explore`` draws fresh ones."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from _hypothesis_profiles import DEFAULT_PROFILE, EXPLORE_EXAMPLES, profile_name, register
from hypothesis import settings

TESTS = Path(__file__).resolve().parent
NOXFILE = (TESTS.parent / "noxfile.py").read_text(encoding="utf-8")

#: A property test that appends every drawn example to $DRAWS, and the loaded profile once.
RECORDER = """
import json, os
from hypothesis import given, settings, strategies as st

def test_profile():
    s = settings.default
    with open(os.environ["DRAWS"] + ".profile", "w") as fh:
        json.dump({"max_examples": s.max_examples, "derandomize": s.derandomize,
                   "database": repr(s.database), "deadline": repr(s.deadline),
                   "print_blob": s.print_blob}, fh)

@settings(max_examples=40)  # fewer examples; derandomize and the rest come from the profile
@given(st.integers(), st.floats(allow_nan=False), st.text(max_size=5))
def test_record(n, x, t):
    with open(os.environ["DRAWS"], "a", encoding="utf-8") as fh:
        fh.write(json.dumps([n, x, t]) + "\\n")
"""


def _draws(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, run: str, **env: str
) -> tuple[list[str], dict[str, object]]:
    """Run RECORDER under the repo's own conftest in a fresh interpreter with ``env`` (and
    neither CI nor HYPOTHESIS_PROFILE unless given); its draws and its loaded profile."""
    draws = pytester.path / f"draws-{run}"
    for key in ("CI", "HYPOTHESIS_PROFILE", "LENSCHECK_EXPLORE_EXAMPLES"):
        monkeypatch.delenv(key, raising=False)
    # Only the hypothesis plugin (its pytest hooks, as in the gate): the other installed
    # plugins took 20 s per run to import and play no part.
    fixed = {"DRAWS": str(draws), "PYTHONPATH": str(TESTS), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    for key, value in {**env, **fixed}.items():
        monkeypatch.setenv(key, value)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "_hypothesis_pytestplugin"
    )
    result.assert_outcomes(passed=2)
    profile = json.loads(Path(f"{draws}.profile").read_text(encoding="utf-8"))
    return draws.read_text(encoding="utf-8").splitlines(), profile


@pytest.fixture
def recorder(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest((TESTS / "conftest.py").read_text(encoding="utf-8"))
    pytester.makepyfile(test_recorder=RECORDER)
    return pytester


GATE = {
    "max_examples": 200,
    "derandomize": True,
    "database": "None",
    "deadline": "None",
    "print_blob": True,
}


def test_the_gate_draws_the_same_examples_every_run_ci_or_not(
    recorder: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, profile = _draws(recorder, monkeypatch, "a")
    again, _ = _draws(recorder, monkeypatch, "b")
    on_ci, ci_profile = _draws(recorder, monkeypatch, "ci", CI="true")
    assert profile == ci_profile == GATE
    assert len(first) >= 40 and len(set(first)) > 30  # real, varied examples...
    assert again == first  # ...and the very same ones, in the same order
    assert on_ci == first  # CI=true changes nothing
    # The explicit override still works: explore draws fresh examples every run.
    env = {"HYPOTHESIS_PROFILE": "explore", "LENSCHECK_EXPLORE_EXAMPLES": "300"}
    wild, explore = _draws(recorder, monkeypatch, "x1", **env)
    wild_again, _ = _draws(recorder, monkeypatch, "x2", **env)
    assert explore == {**GATE, "max_examples": 300, "derandomize": False}
    assert wild != wild_again and wild != first


def test_profile_names_and_settings() -> None:
    register({"LENSCHECK_EXPLORE_EXAMPLES": "7"})
    assert profile_name({}) == profile_name({"CI": "true"}) == DEFAULT_PROFILE == "gate"
    assert profile_name({"HYPOTHESIS_PROFILE": ""}) == "gate"
    assert profile_name({"HYPOTHESIS_PROFILE": "explore"}) == "explore"
    for name, examples in (("gate", 200), ("ci", 200), ("dev", 50)):
        s = settings.get_profile(name)
        assert (s.max_examples, s.derandomize, s.database, s.deadline) == (
            examples,
            True,
            None,
            None,
        )
    explore = settings.get_profile("explore")
    assert (explore.max_examples, explore.derandomize, explore.database) == (7, False, None)
    assert explore.print_blob is True
    register({})
    assert settings.get_profile("explore").max_examples == EXPLORE_EXAMPLES == 1000
    register()  # as the conftest registered them (re-registering may reload the active one)
    # This very session runs under the profile the environment names (the gate by default).
    assert settings.default.derandomize is (os.environ.get("HYPOTHESIS_PROFILE") != "explore")


def _session(name: str) -> str:
    return NOXFILE.split(f"def {name}(", 1)[1].split("\n\n\n", 1)[0]


def test_the_gate_sessions_pass_the_derandomized_profile_and_explore_the_random_one() -> None:
    for name in ("unit", "slow"):
        assert re.search(r'session\.run\("pytest", .*env=gate_env\(\)\)', _session(name), re.S)
    gate_env = _session("gate_env")
    assert '"HYPOTHESIS_PROFILE": os.environ.get("HYPOTHESIS_PROFILE") or "gate"' in gate_env
    explore = _session("explore")
    assert '"HYPOTHESIS_PROFILE": "explore"' in explore
    assert '"-m", "hypothesis and not slow"' in explore
    assert '"""Not a gate: ' in explore  # a one-line docstring, like the other sessions
    assert 'install(session, "test,tl")' in explore  # the norms' tests need the tl extra
