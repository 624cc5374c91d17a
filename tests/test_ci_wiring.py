"""The CI entry points run what the README says: its test command, and every gate session."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
CI_RUN = (REPO / ".ci" / "run").read_text(encoding="utf-8")
WORKFLOW = (REPO / ".github" / "workflows" / "ci.yml").read_text(encoding="utf-8")
NOXFILE = (REPO / "noxfile.py").read_text(encoding="utf-8")


def _quickstart() -> list[str]:
    block = README.split("## Quickstart", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    return [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]


def _ci_sessions() -> list[str]:
    sessions: list[str] = []
    for line in CI_RUN.splitlines():
        if m := re.match(r'"\$PYTHON" noxfile\.py -s ((?:\w+ ?)+)', line):
            sessions += m.group(1).split()
    return sessions


def test_ci_runs_the_readmes_two_commands_test_command_first() -> None:
    demo, test = _quickstart()
    assert (demo, test) == ("python3 noxfile.py -s demo", "python3 noxfile.py -s unit")
    first = next(line for line in CI_RUN.splitlines() if line.startswith('"$PYTHON"'))
    assert first == '"$PYTHON" noxfile.py -s unit'


def test_every_session_ci_runs_exists_and_the_workflow_runs_it_too() -> None:
    sessions = _ci_sessions()
    assert sessions == ["unit", "slow", "lint", "typecheck", "golden", "gemma", "gpu"]
    defined = set(re.findall(r"@nox\.session[^\n]*\ndef (\w+)\(", NOXFILE))
    assert set(sessions) <= defined
    for name in sessions:
        assert f"python noxfile.py -s {name}" in WORKFLOW, name
    assert "noxfile.py -s gpu -- --dry-run" in CI_RUN
    assert "python noxfile.py -s gpu -- --dry-run" in WORKFLOW


def test_the_unit_gate_and_the_slow_step_split_the_suite_by_one_marker() -> None:
    """Nothing is dropped between them: unit takes `not slow`, slow takes `slow`."""
    unit = NOXFILE.split("def unit(", 1)[1].split("\n\n\n", 1)[0]
    slow = NOXFILE.split("def slow(", 1)[1].split("\n\n\n", 1)[0]
    assert '"-m", "not slow"' in unit and '"-m", "slow"' in slow
    assert '"--lens-models=synthetic"' in unit and '"--lens-models=synthetic"' in slow
