"""--lens-bos / ini lens_bos: the BOS policy, recorded in the golden, its own golden file."""

from __future__ import annotations

import pytest
from _plugin_helpers import GENERATED, LensProject

from lenscheck.golden.store import read_golden

MODEL = "synthetic-llama"  # the embedded SmolLM2 tokenizer: a BOS it does not add by itself


@pytest.mark.parametrize(
    ("policy", "first", "other"), [("always", 1, "auto"), ("never", None, "always")]
)
def test_each_policy_gets_its_own_golden_with_the_other_policys_answer(
    lens_project: LensProject, policy: str, first: int | None, other: str
) -> None:
    created = lens_project.run(
        f"--lens-models={MODEL}", f"--lens-bos={policy}", "--snapshot-update"
    )
    created.assert_outcomes(passed=len(GENERATED))
    golden = read_golden(lens_project.golden(MODEL).with_name(f"cpu-float32.bos-{policy}.json"))
    tok = golden["prompts"]["capital-de"]["tokenization"]
    assert (tok["bos_policy"], tok["prepend_bos"], tok["tokenizer_adds_bos"]) == (
        policy,
        first == 1,
        False,
    )
    assert (tok["input_ids"][0] == 1) is (first == 1)
    assert tok["other_bos"]["policy"] == other
    assert golden["facts"]["bos"] == policy
    lens_project.ini(f"lens_bos = {policy}")  # the ini twin reads the same golden
    lens_project.run(f"--lens-models={MODEL}").assert_outcomes(passed=len(GENERATED))


def test_an_unknown_policy_is_a_usage_error(lens_project: LensProject) -> None:
    result = lens_project.run(f"--lens-models={MODEL}", "--lens-bos=yes")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: lenscheck: --lens-bos (ini: lens_bos): expected one of auto, always, "
            "never, got 'yes'"
        ]
    )
