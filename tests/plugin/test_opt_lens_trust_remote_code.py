"""--lens-trust-remote-code / ini lens_trust_remote_code: repository code runs only when asked.

The model is the synthetic Llama re-declared as a custom architecture whose config and
model classes live in the checkpoint folder (as on the hub with ``auto_map``). Importing
that code leaves a marker file, so the tests see whether it ran, not just whether the run
passed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from _plugin_helpers import FRESH_GOLDENS, GENERATED, LensProject

from lenscheck.models import resolve_model

CONFIGURATION = """
from pathlib import Path

from transformers import LlamaConfig

Path({marker!r}).touch()  # proves this repository code was imported


class CustomConfig(LlamaConfig):
    model_type = "lenscheck-custom"
"""

MODELING = """
from transformers import LlamaForCausalLM

from .configuration_custom import CustomConfig


class CustomForCausalLM(LlamaForCausalLM):
    config_class = CustomConfig
"""


def remote_code_checkpoint(folder: Path, marker: Path) -> Path:
    """A copy of synthetic-llama whose classes come from code inside the folder."""
    shutil.copytree(resolve_model("synthetic-llama").path, folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config["model_type"] = "lenscheck-custom"
    config["architectures"] = ["CustomForCausalLM"]
    config["auto_map"] = {
        "AutoConfig": "configuration_custom.CustomConfig",
        "AutoModelForCausalLM": "modeling_custom.CustomForCausalLM",
    }
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    (folder / "configuration_custom.py").write_text(CONFIGURATION.format(marker=str(marker)))
    (folder / "modeling_custom.py").write_text(MODELING)
    return folder


@pytest.fixture
def custom(lens_project: LensProject, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """(checkpoint folder, marker path); transformers copies the code into the project."""
    monkeypatch.setenv("HF_MODULES_CACHE", str(lens_project.path / "hf-modules"))
    marker = lens_project.path / "REMOTE_CODE_RAN"
    return remote_code_checkpoint(lens_project.path / "custom-llama", marker), marker


def test_off_by_default_and_the_code_never_runs(
    lens_project: LensProject, custom: tuple[Path, Path]
) -> None:
    ckpt, marker = custom
    # In process: nothing of the repository is imported, so nothing can leak between runs.
    result = lens_project.run(f"--lens-models={ckpt}", "--snapshot-update")
    assert result.ret == 1
    result.assert_outcomes(errors=len(GENERATED))  # the shared lens run fails in setup
    result.stdout.fnmatch_lines(
        [
            "*needs its own code to load*rerun with --trust-remote-code (pytest: "
            "--lens-trust-remote-code;*"
        ]
    )
    assert "trust_remote_code=on" not in result.stdout.str()
    assert not marker.exists()
    assert not list(lens_project.path.glob("golden/**/*.json"))


@pytest.mark.slow  # a fresh interpreter that imports torch: `nox -s slow`
@pytest.mark.parametrize("how", ["option", "ini"])
def test_asked_for_the_code_runs_and_the_lens_is_the_models(
    lens_project: LensProject, custom: tuple[Path, Path], how: str
) -> None:
    ckpt, marker = custom
    args = [f"--lens-models={ckpt}", "--snapshot-update"]
    if how == "option":
        args.append("--lens-trust-remote-code")
    else:
        lens_project.ini("lens_trust_remote_code = true")
    # A fresh interpreter: the imported repository code must not stay in this one.
    result = lens_project.run_subprocess(*args)
    result.assert_outcomes(passed=len(GENERATED))
    assert "trust_remote_code=on" in result.stdout.str()  # the header says so
    assert marker.exists()
    goldens = list(lens_project.path.glob("golden/**/cpu-float32.json"))
    assert len(goldens) == 1
    golden = json.loads(goldens[0].read_text(encoding="utf-8"))
    # The custom class is the synthetic Llama underneath: the same lens, layer by layer (as
    # this session's library versions compute it: the collapse block holds probabilities).
    llama = json.loads(FRESH_GOLDENS["synthetic-llama"])
    ours, theirs = golden["prompts"]["capital-de"], llama["prompts"]["capital-de"]
    assert ours["next_token"]["top1"] == theirs["next_token"]["top1"]
    assert ours["collapse"] == theirs["collapse"]
    assert golden["model"] == "custom-llama"  # keyed by its place in the project, portably
    assert str(lens_project.path) not in goldens[0].read_text(encoding="utf-8")
