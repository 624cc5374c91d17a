"""`lenscheck run --prompts FILE` and `--prompt TEXT --answer TEXT`: files per prompt."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lenscheck.cli import main

SUITE = """
[[prompts]]
id = "capital-fr"
prompt = "The capital of France is called simply"
answer = "Paris"
probes = ["Paris is the capital of"]

[[prompts]]
id = "capital-it"
prompt = "The capital of Italy is called simply"
answer = "Rome"
"""
MODEL = "synthetic-llama"


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_suite_writes_each_prompts_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = tmp_path / "mine.toml"
    suite.write_text(SUITE, encoding="utf-8")
    out = tmp_path / "out"
    args = ["run", MODEL, "--device", "cpu", "--no-heatmap", "--out-dir", str(out)]
    assert main([*args, "--prompts", str(suite)]) == 0
    assert names(out) == [
        f"output-{MODEL}-capital-fr-milestones.csv",
        f"output-{MODEL}-capital-fr-pure-next-token-rawlens.csv",
        f"output-{MODEL}-capital-fr-pure-next-token.csv",
        f"output-{MODEL}-capital-fr-records.csv",
        f"output-{MODEL}-capital-fr.json",
        f"output-{MODEL}-capital-it-milestones.csv",
        f"output-{MODEL}-capital-it-pure-next-token-rawlens.csv",
        f"output-{MODEL}-capital-it-pure-next-token.csv",
        f"output-{MODEL}-capital-it-records.csv",
        f"output-{MODEL}-capital-it.json",
    ]
    fr = json.loads((out / f"output-{MODEL}-capital-fr.json").read_text(encoding="utf-8"))
    assert fr["prompt"]["ground_truth"] == "Paris"
    assert [t["prompt"] for t in fr["test_prompts"]] == ["Paris is the capital of"]
    it = json.loads((out / f"output-{MODEL}-capital-it.json").read_text(encoding="utf-8"))
    assert it["test_prompts"] == []
    table = capsys.readouterr().out
    assert "capital-fr" in table and "capital-it" in table  # one summary row per prompt


def test_one_prompt_on_the_command_line(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = main(
        [
            "run",
            MODEL,
            "--device",
            "cpu",
            "--no-heatmap",
            "--out-dir",
            str(out),
            "--prompt",
            "The capital of France is",
            "--answer",
            "Paris",
        ]
    )
    assert code == 0
    assert names(out) == [
        f"output-{MODEL}-custom-milestones.csv",
        f"output-{MODEL}-custom-pure-next-token-rawlens.csv",
        f"output-{MODEL}-custom-pure-next-token.csv",
        f"output-{MODEL}-custom-records.csv",
        f"output-{MODEL}-custom.json",
    ]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--prompt", "The capital of France is"],
            "--prompt and --answer go together: --prompt TEXT --answer TEXT, where the answer "
            "is the token expected after the prompt (it sets is_answer and L_semantic)",
        ),
        (
            ["--answer", "Paris"],
            "--prompt and --answer go together",
        ),
        (
            ["--prompts", "x.toml", "--prompt", "a", "--answer", "b"],
            "give either --prompts FILE or --prompt TEXT --answer TEXT, not both",
        ),
    ],
)
def test_prompt_without_answer_and_both_sources(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, extra: list[str], message: str
) -> None:
    out = tmp_path / "out"
    assert main(["run", MODEL, "--device", "cpu", "--out-dir", str(out), *extra]) == 2
    assert any(message in r.getMessage() for r in caplog.records)
    assert not out.exists()  # nothing written, not even the folder


def test_a_bad_suite_exits_2_naming_the_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    suite = tmp_path / "bad.toml"
    suite.write_text(SUITE.replace('id = "capital-it"', 'id = "capital-fr"'), encoding="utf-8")
    out = tmp_path / "out"
    assert main(["run", MODEL, "--out-dir", str(out), "--prompts", str(suite)]) == 2
    assert any(
        f"{suite}: prompt #2 (id 'capital-fr'): prompt id 'capital-fr' appears twice"
        in r.getMessage()
        for r in caplog.records
    )
    assert not out.exists()


def test_decode_norm_reaches_the_files(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert (
        main(
            [
                "run",
                MODEL,
                "--device",
                "cpu",
                "--no-heatmap",
                "--out-dir",
                str(out),
                "--decode-norm",
                "final",
            ]
        )
        == 0
    )
    diag = json.loads((out / f"output-{MODEL}.json").read_text(encoding="utf-8"))["diagnostics"]
    assert diag["decode_norm"] == "final" and diag["decoding_ablation"]["chosen"] == "final"
