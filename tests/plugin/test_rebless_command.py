"""The re-bless command the plugin prints: run as a shell reads it, it configures the very
run that printed it, whether the options came from the command line or the ini file."""

from __future__ import annotations

import re
import shlex

from _plugin_helpers import REPO, LensProject

PROBE = """
import json
from lenscheck.golden.report import rebless_command

def test_rebless_probe(lens_settings):
    print("CMD " + rebless_command("synthetic-llama", lens_settings.rebless_flags()))
    print("CFG " + repr(lens_settings.config))
"""
OPTIONS = {
    "lens_dtype": "float32",
    "lens_decode_norm": "final",
    "lens_prompts": "my suites/capitals.toml",
    "lens_copy_threshold": "0.8",
    "lens_copy_margin": "0.1",
    "lens_backend": "transformers",
    "lens_device": "cpu",
}


def _probe(lens_project: LensProject, *args: str) -> tuple[str, str]:
    result = lens_project.run("-s", "-k", "test_rebless_probe", *args)
    result.assert_outcomes(passed=1)  # the generated tests are deselected: no model runs
    out = result.stdout.str()
    (cmd,) = re.findall(r"CMD (.*)$", out, re.M)
    (cfg,) = re.findall(r"CFG (.*)$", out, re.M)
    return cmd, cfg


def _project(lens_project: LensProject) -> None:
    suites = lens_project.path / "my suites"
    suites.mkdir()
    (suites / "capitals.toml").write_bytes(
        (REPO / "examples" / "prompts" / "capitals.toml").read_bytes()
    )
    lens_project.pytester.makepyfile(test_rebless_probe=PROBE)


def test_the_printed_command_reproduces_the_configuration(lens_project: LensProject) -> None:
    _project(lens_project)
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in OPTIONS.items()]
    cmd, cfg = _probe(lens_project, "--lens-models=synthetic-llama", "--lens-fp32-unembed", *flags)
    argv = shlex.split(cmd)
    assert argv[0] == "pytest" and argv[-1] == "--snapshot-update"
    assert "--lens-prompts=my suites/capitals.toml" in argv  # one argument, quoted in cmd
    assert "--lens-fp32-unembed" in argv
    again_cmd, again_cfg = _probe(lens_project, *argv[1:-1])
    assert (again_cmd, again_cfg) == (cmd, cfg)
    assert "decode_norm='final'" in cfg and "copy_threshold=0.8" in cfg


def test_ini_values_reach_the_command_too(lens_project: LensProject) -> None:
    _project(lens_project)
    lens_project.ini(*(f"{k} = {v}" for k, v in OPTIONS.items()), "lens_fp32_unembed = true")
    cmd, cfg = _probe(lens_project, "--lens-models=synthetic-llama")
    # Without the ini file, the printed command alone configures the same run.
    lens_project.ini()
    again_cmd, again_cfg = _probe(lens_project, *shlex.split(cmd)[1:-1])
    assert (again_cmd, again_cfg) == (cmd, cfg)
