"""`lenscheck diff`: exit 0 within tolerance, 1 on drift (with the report), 2 on bad input."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
from _shared import reference_dir

from lenscheck.cli import main
from lenscheck.schema import CSV_DIALECT

# Their expectations decide the golden comparison too: `nox -s mutation` runs them on it.
pytestmark = pytest.mark.covers("lenscheck.golden.compare")

MODEL = "synthetic-llama"
PURE = f"output-{MODEL}-pure-next-token.csv"
#: The original pipeline's files: the full published run, or the vendored one-model copy.
PUBLISHED = reference_dir()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run-a")
    assert main(["run", MODEL, "--device", "cpu", "--no-heatmap", "--out-dir", str(out)]) == 0
    return out


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def _bump_entropy(path: Path, layer: int, delta: float) -> None:
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh, dialect=CSV_DIALECT))
    rows[layer + 1][3] = repr(float(rows[layer + 1][3]) + delta)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        csv.writer(fh, dialect=CSV_DIALECT).writerows(rows)


def test_two_identical_runs_exit_0(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = _copy(run_dir, tmp_path / "b")
    assert main(["diff", str(run_dir), str(other)]) == 0
    assert "no drift beyond tolerance" in capsys.readouterr().out


def test_hand_edited_copy_exits_1_with_the_report(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = _copy(run_dir, tmp_path / "b")
    _bump_entropy(other / PURE, layer=2, delta=0.3)
    assert main(["diff", str(run_dir), str(other)]) == 1
    out = capsys.readouterr().out
    assert f"trajectory: prompt {MODEL} layer 2 entropy" in out
    assert "OLD" in out and "NEW" in out
    # Headed OLD then NEW, as the command line names them (not "NEW vs OLD").
    assert re.fullmatch(rf"lenscheck drift: {MODEL}.*: OLD \S+ vs NEW \S+", out.splitlines()[0])
    assert "re-bless" not in out  # no golden involved


def test_within_tolerance_edit_exits_0(run_dir: Path, tmp_path: Path) -> None:
    other = _copy(run_dir, tmp_path / "b")
    _bump_entropy(other / PURE, layer=1, delta=1e-6)
    assert main(["diff", str(run_dir / PURE), str(other / PURE)]) == 0


def test_json_format_lists_the_drift(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = _copy(run_dir, tmp_path / "b")
    _bump_entropy(other / PURE, layer=3, delta=0.5)
    assert main(["diff", str(run_dir), str(other), "--format", "json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is False
    drifts = data["models"][0]["drifts"]
    assert [(d["section"], d["metric"], d["layer"]) for d in drifts] == [
        ("trajectory", "entropy", 3)
    ]
    assert drifts[0]["delta"] == pytest.approx(0.5, abs=1e-9)


def test_run_against_its_golden(run_dir: Path, tmp_path: Path) -> None:
    golden = Path(__file__).resolve().parents[1] / "golden" / MODEL / "cpu-float32.json"
    assert main(["diff", str(golden), str(run_dir / f"output-{MODEL}.json")]) == 0


def test_unreadable_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diff", str(tmp_path / "missing"), str(tmp_path)]) == 2
    assert "no such file or directory" in capsys.readouterr().err
    broken = tmp_path / "output-x.json"
    broken.write_text("{not json", encoding="utf-8")
    assert main(["diff", str(broken), str(broken)]) == 2


@pytest.mark.skipif(not PUBLISHED.is_dir(), reason=f"reference files not found at {PUBLISHED}")
def test_published_original_pipeline_pair_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    llama = PUBLISHED / "output-Meta-Llama-3-8B.json"
    assert main(["diff", str(llama), str(llama)]) == 0
    assert main(["diff", str(PUBLISHED), str(PUBLISHED)]) == 0
    assert "cuda-float16" in capsys.readouterr().out


def test_markdown_format_for_job_summaries(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = _copy(run_dir, tmp_path / "b")
    _bump_entropy(other / PURE, layer=3, delta=0.5)
    assert main(["diff", str(run_dir), str(other), "--format", "markdown"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("## lenscheck drift report\n")
    assert f"| {MODEL} | cpu-float32 → cpu-float32 | **drift** | 1 |" in out
    assert f"| trajectory | prompt {MODEL} layer 3 | entropy |" in out


def test_a_golden_against_the_obtained_file_a_drifting_run_wrote(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lenscheck.golden.store import dumps_golden, read_golden

    golden = Path(__file__).resolve().parents[1] / "golden" / MODEL / "cpu-float32.json"
    data = read_golden(golden)
    data["prompts"]["capital-de"]["records"]["entropy"][1][4] += 0.25
    obtained = tmp_path / "cpu-float32.obtained.json"
    obtained.write_text(dumps_golden(data), encoding="utf-8")
    assert main(["diff", str(golden), str(obtained)]) == 1
    out = capsys.readouterr().out
    assert "records: 1 of 756 values drifted" in out
    assert "records: prompt capital-de layer 1 pos 4 entropy: OLD " in out


def test_a_golden_against_a_run_folder_of_its_suite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The example suite's golden against a run of that suite: prompts pair by their text."""
    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "run"
    suite = root / "examples" / "prompts" / "capitals.toml"
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
                "--prompts",
                str(suite),
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert len(list(out.glob("output-*.json"))) == 9
    golden = root / "golden" / MODEL / "capitals" / "cpu-float32.json"
    assert main(["diff", str(golden), str(out)]) == 0
    assert "no drift beyond tolerance" in capsys.readouterr().out


def _edit_cell(path: Path, row: int, column: str, value: str) -> None:
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh, dialect=CSV_DIALECT))
    rows[row][rows[0].index(column)] = value
    with open(path, "w", encoding="utf-8", newline="") as fh:
        csv.writer(fh, dialect=CSV_DIALECT, lineterminator="\n").writerows(rows)


@pytest.mark.parametrize(
    ("file", "row", "column", "value", "report"),
    [
        ("pure-next-token.csv", 3, "kl_to_final_bits", "9.5", "next_token kl_to_final_bits"),
        ("pure-next-token.csv", 2, "answer_rank", "1", "next_token answer_rank"),
        ("pure-next-token-rawlens.csv", 1, "js_divergence", "0.99", "rawlens js_divergence"),
        ("milestones.csv", 4, "layer", "0", "milestones first_kl_below_1.0"),
    ],
    ids=["pure-extended-column", "rank", "rawlens", "milestone"],
)
def test_diff_reads_and_compares_the_extended_files(
    run_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    file: str,
    row: int,
    column: str,
    value: str,
    report: str,
) -> None:
    """The extended schema's columns and both sidecars are compared, each value by its
    declared tolerance class (issue 24)."""
    other = _copy(run_dir, tmp_path / "b")
    _edit_cell(other / f"output-{MODEL}-{file}", row, column, value)
    assert main(["diff", str(run_dir), str(other)]) == 1
    assert f"metrics: prompt {MODEL}" in (out := capsys.readouterr().out) and report in out
