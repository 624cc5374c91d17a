"""The run options: one declaration on LensConfig, every front end generated from it.

Reachability: every LensConfig field is a run option, or listed below as set by the API or
the runner. Round trips: values a user gives reach the same LensConfig through the CLI, the
argv of the CLI's per-model subprocesses, the plugin's options, its ini keys and the
re-bless command the plugin prints.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lenscheck.cli import build_parser
from lenscheck.config import LensConfig, Option, OptionError, run_options
from lenscheck.golden.report import rebless_command
from lenscheck.options import (
    cli_argv,
    cli_values,
    config_from_values,
    golden_options,
    plugin_options,
    pytest_argv,
)

#: LensConfig fields that are not options, and why.
NOT_OPTIONS = {
    "prompt": "the API's single prompt; users give --prompt/--answer or a suite",
    "ground_truth": "the API's single answer (--answer)",
    "test_prompts": "the API's single prompt's probes (a suite's probes)",
    "top_k_record": "fixed by the CSV schema",
    "top_k_verbose": "fixed by the CSV schema",
    "seed": "fixed, so that reruns are byte-identical",
    "model_source": "set by the runner from where the model came from",
}
#: Options that choose which files are written, not what any value in them is.
FILES_ONLY = {"keep_residuals", "self_test", "heatmap"}
SUITE = Path(__file__).resolve().parents[1] / "examples" / "prompts" / "capitals.toml"


def _option(name: str) -> Option:
    return next(o for o in run_options() if o.name == name)


def test_every_field_is_an_option_or_named_as_set_elsewhere() -> None:
    fields = [f.name for f in dataclasses.fields(LensConfig) if f.init]
    options = [o.name for o in run_options()]
    assert sorted(options) == sorted(set(fields) - set(NOT_OPTIONS))
    assert set(NOT_OPTIONS) <= set(fields)


def test_every_option_that_moves_a_value_reaches_the_cli_the_plugin_and_the_rebless() -> None:
    moving = [o for o in run_options() if o.name not in FILES_ONLY]
    assert all(o.cli and o.plugin for o in moving), [o.name for o in moving if not o.plugin]
    # What a golden pins depends on these: the re-bless command must carry them.
    golden = {o.name for o in golden_options()}
    assert golden == {o.name for o in moving} - {"trust_remote_code", "device_map"}
    # The ones that only decide which files exist are the CLI's alone (the plugin writes none).
    assert {o.name for o in run_options() if not o.plugin} == FILES_ONLY


def test_flags_and_ini_keys_are_spelled_from_one_word() -> None:
    spelled = {o.name: (o.flag, o.pytest_flag, o.ini) for o in run_options()}
    assert spelled["decode_norm"] == ("--decode-norm", "--lens-decode-norm", "lens_decode_norm")
    assert spelled["suite"] == ("--prompts", "--lens-prompts", "lens_prompts")
    assert spelled["heatmap"][0] == "--no-heatmap"
    assert spelled["lenses"] == ("--lens", "--lens-lenses", "lens_lenses")
    flags = [o.flag for o in run_options()]
    assert len(set(flags)) == len(flags)


def test_the_cli_parser_lists_each_options_choices_and_default() -> None:
    run = next(
        a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)
    ).choices["run"]
    text = " ".join(run.format_help().split())  # argparse wraps lines where it likes
    assert "--dtype {auto,float32,float16,bfloat16}" in text
    assert "--copy-threshold P minimum p(top-1) for copy collapse (default: 0.9)" in text
    assert "--device {auto,cuda,cuda:N,mps,cpu}" in text
    assert "--decode-norm {next-ln1,final,raw}" in text
    assert "(default: transformers)" in text
    models = next(a for a in run._actions if a.dest == "models").help or ""
    assert "embedded-gemma3" in models and "synthetic-opt-postnorm" in models
    assert "embedded-qwen2" in models


def _value_strategy(opt: Option) -> st.SearchStrategy[Any]:
    if opt.kind == "flag":
        return st.just(not opt.inverted)  # what giving the flag means (--no-heatmap: False)
    if opt.kind == "unit":
        return st.floats(0.0, 1.0).map(repr)
    if opt.kind == "suite":
        return st.just(str(SUITE))
    if opt.kind == "specs":
        return st.just("logit")
    if opt.kind == "choice":
        extra = ["cuda:1"] if opt.accepts else []
        return st.sampled_from(list(opt.choices) + extra + list(opt.aliases))
    return st.sampled_from(["auto", "balanced"])


@st.composite
def _values(draw: st.DrawFn, options: tuple[Option, ...]) -> dict[str, Any]:
    chosen = draw(st.lists(st.sampled_from(options), unique_by=lambda o: o.name))
    return {o.name: draw(_value_strategy(o)) for o in chosen}


CLI_OPTIONS = tuple(o for o in run_options() if o.cli)


@given(_values(CLI_OPTIONS))
def test_cli_values_and_the_subprocess_argv_give_one_config(values: dict[str, Any]) -> None:
    """The CLI reads the values; the argv it hands a per-model subprocess reads back the same."""
    argv = cli_argv(values)
    args = build_parser().parse_args(["run", *argv])
    assert cli_values(args) == values
    again = build_parser().parse_args(["run", *cli_argv(cli_values(args))])
    assert config_from_values(cli_values(again)) == config_from_values(cli_values(args))


@given(_values(golden_options()))
def test_the_rebless_command_carries_every_golden_option_as_the_shell_reads_it(
    values: dict[str, Any],
) -> None:
    """What the printed command says is what the plugin reads: split it as a shell would,
    parse it with the plugin's own flags, and the configuration is the run's."""
    command = rebless_command("mine=/data/my model", pytest_argv(values, golden_options()))
    argv = shlex.split(command)
    assert argv[:2] == ["pytest", "--lens-models=mine=/data/my model"]
    assert argv[-1] == "--snapshot-update"
    read: dict[str, Any] = {}
    by_flag = {o.pytest_flag: o for o in plugin_options()}
    for arg in argv[2:-1]:
        flag, _, text = arg.partition("=")
        opt = by_flag[flag]
        read[opt.name] = True if opt.kind == "flag" else text
    assert read == values
    assert config_from_values(read) == config_from_values(values)


def test_a_suite_path_is_read_relative_to_the_callers_folder(tmp_path: Path) -> None:
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "mine.toml").write_bytes(SUITE.read_bytes())
    cfg = config_from_values({"suite": "suites/mine.toml"}, base=tmp_path)
    assert cfg.suite is not None and cfg.suite.source == str(tmp_path / "suites" / "mine.toml")
    assert len(cfg.suite.cases) == 9


@pytest.mark.parametrize(
    ("name", "text", "detail"),
    [
        ("dtype", "int8", "expected one of auto, float32, float16, bfloat16, got 'int8'"),
        ("device", "tpu", "expected one of auto, cuda, mps, cpu or cuda:N, got 'tpu'"),
        ("copy_threshold", "0.9x", "expected a number in [0, 1], got '0.9x'"),
        ("copy_margin", "1.5", "expected a number in [0, 1], got 1.5"),
        ("copy_margin", "nan", "expected a number in [0, 1], got nan"),
    ],
)
def test_a_bad_value_names_the_option_and_what_it_accepts(
    name: str, text: str, detail: str
) -> None:
    with pytest.raises(OptionError) as err:
        config_from_values({name: text})
    assert (err.value.name, err.value.detail) == (name, detail)


def test_aliases_become_canonical_names() -> None:
    assert config_from_values({"dtype": "bf16"}).dtype == "bfloat16"
    assert LensConfig(dtype="fp16").dtype == "float16"


def test_an_unknown_option_name_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown run option"):
        config_from_values({"decode_point": "final"})
