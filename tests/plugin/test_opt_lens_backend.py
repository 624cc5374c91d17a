"""--lens-backend / ini lens_backend: both model libraries meet the same committed golden."""

from __future__ import annotations

import re

import pytest
from _plugin_helpers import GENERATED, LensProject

from lenscheck.config import BACKENDS


@pytest.fixture(scope="module", autouse=True)
def _warm_transformer_lens() -> None:
    """Import transformer-lens (and the datasets/pyarrow it pulls in) in this process first:
    pytester drops modules first imported by an in-process run, and pyarrow refuses a second
    registration of datasets' extension types."""
    from lenscheck.config import LensConfig
    from lenscheck.runner import run_model

    run_model(
        "synthetic-llama", LensConfig(device="cpu", backend="transformer-lens", heatmap=False)
    )


PROBE = """
def test_seen(lens_run):
    print(f"PROBE backend={lens_run.diagnostics['backend']} class={lens_run.golden_class}")
"""


@pytest.mark.parametrize("backend", ["transformers", "transformer-lens"])
def test_both_backends_pass_against_the_same_golden(
    lens_project: LensProject, backend: str
) -> None:
    """One committed golden (written with transformers) serves both backends.

    The transformer-lens run lists one more library in diagnostics.versions; that is
    environment, not schema, and used to fail test_schema with
    "json key diagnostics.versions.transformer-lens: golden 'absent' vs run 'str'".
    """
    golden = lens_project.copy_golden("synthetic-llama")["synthetic-llama"]
    before = golden.read_bytes()
    lens_project.pytester.makepyfile(test_seen=PROBE)
    result = lens_project.run("-s", "--lens-models=synthetic-llama", f"--lens-backend={backend}")
    result.assert_outcomes(passed=len(GENERATED) + 1)
    out = result.stdout.str()
    assert f"backend={backend} suite=default (1 prompt)" in out  # the header
    assert re.findall(r"PROBE .*", out) == [f"PROBE backend={backend} class=cpu-float32"]
    assert "1 snapshot passed." in out
    assert golden.read_bytes() == before


def test_ini_lens_backend(lens_project: LensProject) -> None:
    lens_project.ini("lens_backend = transformer-lens")
    lens_project.pytester.makepyfile(test_seen=PROBE)
    result = lens_project.run("-s", "--lens-models=synthetic-llama", "-k", "seen")
    result.assert_outcomes(passed=1, deselected=len(GENERATED))
    assert re.findall(r"PROBE .*", result.stdout.str()) == [
        "PROBE backend=transformer-lens class=cpu-float32"
    ]


@pytest.mark.parametrize("value", ["tl", "hooked", "Transformers"])
def test_invalid_backend_is_a_usage_error(lens_project: LensProject, value: str) -> None:
    result = lens_project.run("--lens-models=synthetic-llama", f"--lens-backend={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    accepted = ", ".join(BACKENDS)
    assert accepted.startswith("transformers, transformer-lens")
    result.stderr.fnmatch_lines(
        [
            "ERROR: lenscheck: --lens-backend (ini: lens_backend): expected one of "
            f"{accepted}, got '{value}'"
        ]
    )
