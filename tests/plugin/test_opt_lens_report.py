"""--lens-report / ini lens_report: one JSON line per model, for CI summaries."""

from __future__ import annotations

import json
from typing import Any

from _plugin_helpers import GENERATED, LensProject


def lines(path: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_one_line_per_model_with_classes_drifts_and_max_delta(lens_project: LensProject) -> None:
    lens_project.copy_golden("synthetic-llama", "synthetic-gpt2")

    def drift(data: dict) -> None:  # type: ignore[type-arg]
        data["prompts"]["capital-de"]["records"]["entropy"][1][3] += 0.5

    lens_project.edit_golden("synthetic-gpt2", drift)
    lens_project.run("--lens-models=synthetic-llama,synthetic-gpt2", "--lens-report=out/lens.jsonl")
    llama, gpt2 = sorted(
        lines(lens_project.path / "out" / "lens.jsonl"), key=lambda x: x["model"], reverse=True
    )
    assert (llama["model"], llama["class"], llama["golden_class"], llama["ok"]) == (
        "synthetic-llama",
        "cpu-float32",
        "cpu-float32",
        True,
    )
    assert llama["drifts"] == {} and max(llama["max_delta"].values()) < 1e-4  # thread noise
    # 4 layers x 16 positions x (top1, entropy, p_top1, top-k order) + every top-k probability.
    assert llama["compared"]["records"] == 4 * 16 * 4 + 4 * (13 * 5 + 3 * 20)
    assert (gpt2["ok"], gpt2["drifts"]) == (False, {"records": 1})
    assert abs(gpt2["max_delta"]["records"] - 0.5) < 1e-6
    assert gpt2["golden"].endswith("golden/synthetic-gpt2/cpu-float32.json")


def test_a_missing_golden_is_a_line_too_and_the_ini_equivalent(lens_project: LensProject) -> None:
    lens_project.ini("lens_report = lens.jsonl")
    result = lens_project.run("--lens-models=synthetic-neox")
    # test_invariants and test_rules need no golden.
    result.assert_outcomes(passed=3, failed=1, skipped=len(GENERATED) - 4)
    (line,) = lines(lens_project.path / "lens.jsonl")
    assert line["ok"] is False and line["problem"].startswith("no golden for synthetic-neox")
