"""--lens-schema / ini lens_schema: the original pipeline's files, key for key, or lenscheck's."""

from __future__ import annotations

import pytest
from _plugin_helpers import GENERATED, LensProject

from lenscheck.golden.store import read_golden

MODEL = "synthetic-opt-postnorm"  # copies from layer 0: the two rules differ there


def _paths(tree: object, prefix: str = "") -> set[str]:
    if isinstance(tree, dict):
        return {p for k, v in tree.items() for p in _paths(v, f"{prefix}.{k}")} | {prefix}
    if isinstance(tree, list) and tree:
        return _paths(tree[0], prefix + "[]")
    return {prefix}


@pytest.mark.parametrize("how", ["flag", "ini"])
def test_the_original_schema_has_the_originals_keys_and_collapse_rule(
    lens_project: LensProject, how: str
) -> None:
    lens_project.copy_golden(MODEL)
    if how == "ini":
        lens_project.ini("lens_schema = original")
    args = [f"--lens-models={MODEL}", "--snapshot-update"]
    result = lens_project.run(*args, *(["--lens-schema=original"] if how == "flag" else []))
    result.assert_outcomes(passed=len(GENERATED))
    ours = read_golden(lens_project.golden(MODEL).with_name("cpu-float32.schema-original.json"))
    standard = read_golden(lens_project.golden(MODEL))
    assert ours["settings"]["schema"] == "original" and ours["facts"]["schema"] is None
    added = _paths(standard["schema"]["json_keys"]) - _paths(ours["schema"]["json_keys"])
    assert {p.split(".")[2] for p in added if p.startswith(".diagnostics.")} == {
        "preset",
        "bos",
        "schema",
        "chat_template",
        "collapse_from_layer",
        "embedding_echo",
        "tokenization",
        "answer_first_id",
        "milestones",
        "raw_lens_summary",
    }
    # The original rule counts layer 0 (the embeddings); the standard one starts at 1.
    assert ours["prompts"]["capital-de"]["collapse"]["L_copy"] == 0
    assert standard["prompts"]["capital-de"]["collapse"]["L_copy"] == 1


def test_an_unknown_schema_is_a_usage_error(lens_project: LensProject) -> None:
    result = lens_project.run(f"--lens-models={MODEL}", "--lens-schema=full")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: lenscheck: --lens-schema (ini: lens_schema): expected one of extended, "
            "original, got 'full'"
        ]
    )
