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
