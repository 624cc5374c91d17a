"""benchmarks/bench.py writes docs/benchmarks.md from one sitting's results: the renderer
turns a result dict (as ``--json`` writes it) into the document, and nothing else."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench.py"


@pytest.fixture(scope="module")
def bench() -> Any:
    sys.path.insert(0, str(BENCH.parent))  # its sibling modules, as `python bench.py` finds them
    spec = importlib.util.spec_from_file_location("lenscheck_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)  # stdlib imports only: torch comes with the parts
    yield module
    del sys.modules[spec.name]
    sys.path.remove(str(BENCH.parent))


def _results() -> dict[str, Any]:
    """A small sitting with made-up numbers, one of each part."""
    return {
        "meta": {
            "date": "2031-02-03 04:05 UTC",
            "command": "python benchmarks/bench.py --repeat 3 --docs docs/benchmarks.md",
            "model": "embedded",
            "device": "cpu",
            "repeat": 3,
            "note": "a shared 2-core machine",
            "load_average_start": [2.5, 1.25, 1.0],
            "load_average_end": [3.0, 1.5, 1.125],
            "machine": {
                "cores": 2,
                "cpu": "Example CPU 9000",
                "ram_gib": 23.5,
                "platform": "Linux",
            },
            "versions": {
                "python": "3.11.2",
                "torch": "2.13.0+cpu",
                "transformers": "5.24.0",
                "lenscheck": "0.1.0",
                "git_commit": "abcdef123456",
            },
        },
        "cli": {
            "run_median_s": 5.0,
            "run_range_s": [4.5, 12.0],
            "run_no_heatmap_median_s": 4.8,
            "import_torch_transformers_median_s": 2.5,
            "transformers_load_forward_median_s": 4.0,
            "heatmap_cost_s": 0.2,
            "after_imports_s": 2.3,
            "after_transformers_s": 0.8,
            "run_peak_rss_mb": 1079.4,
        },
        "plugin": {
            "repeat": 10,
            "plugin_only_modules": ["lenscheck.config", "lenscheck.vocab"],
            "plugin_only_import_ms": 2.345,
            "heavy_imported": [],
            "import_entry_min_ms": 2.5,
        },
        "memory": {
            "one_model_peak_rss_mb": 1000.0,
            "two_models_peak_rss_mb": 1010.0,
            "ratio": 1.01,
        },
        "model": "embedded",
        "device": "cpu",
        "load_s": 0.25,
        "heatmap_s": 0.04,
        "threads_1": {
            "pipeline_s": 0.6,
            "original_schema_s": 0.55,
            "extended_cost": 1.0909,
            "floor_s": 0.5,
            "ratio": 1.2,
            "points_floor_s": 0.55,
            "points_ratio": 1.0909,
            "pipeline_range_s": [0.55, 1.5],
            "floor_range_s": [0.45, 0.5],
        },
        "threads_2": {
            "pipeline_s": 0.363,
            "original_schema_s": 0.33,
            "extended_cost": 1.1,
            "floor_s": 0.3,
            "ratio": 1.21,
            "points_floor_s": 0.32,
            "points_ratio": 1.134,
        },
        "suite": {
            "prompts": 16,
            "threads_1": {
                "suite_s": 7.5,
                "original_schema_s": 7.0,
                "extended_cost": 1.0714,
                "floor_s": 5.0,
                "ratio": 1.5,
                "points_floor_s": 5.5,
                "points_ratio": 1.3636,
                "one_prompt_s": 0.5,
                "per_prompt": 15.0,
            },
            "suite_peak_rss_mb": 1498.0,
            "one_prompt_peak_rss_mb": 1008.0,
        },
    }


def _row(text: str, first_cell: str) -> list[str]:
    """The cells of the markdown table row whose first cell is ``first_cell``."""
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no table row {first_cell!r} in:\n{text}")


def test_the_header_says_when_where_and_with_what(bench: Any) -> None:
    text = bench.render_markdown(_results())
    assert text.startswith("# Benchmarks\n")
    assert "- date: 2031-02-03 04:05 UTC" in text
    assert "- machine: 2 cores, CPU Example CPU 9000, RAM 23.5 GiB, Linux" in text
    assert (
        "- versions: Python 3.11.2, torch 2.13.0+cpu, transformers 5.24.0, lenscheck 0.1.0, "
        "commit `abcdef123456`"
    ) in text
    assert "- notes: a shared 2-core machine" in text
    assert (
        "- load average (1, 5, 15 min) at the start: 2.50, 1.25, 1.00, at the end: 3.00, 1.50, 1.12"
        in text
    )
    assert "one sitting" in text and "nox -s bench" in text


def test_each_table_carries_the_sittings_numbers_and_ratios(bench: Any) -> None:
    text = bench.render_markdown(_results())
    # medians, with the sitting's fastest and slowest run where the results record them
    assert _row(text, "warm `lenscheck run` (heatmap on)")[1:] == [
        "5.00 s (4.50 s to 12.00 s)",
        "1.25x",
    ]
    assert _row(text, "transformers alone: load the checkpoint, one forward pass")[1:] == [
        "4.00 s",
        "1.00x",
    ]
    assert _row(text, "their import time (importtime self times)")[1] == "2.35 ms"
    assert _row(text, "`import lenscheck.plugin` after pytest")[1] == "2.50 ms"
    assert _row(text, "torch, transformers or syrupy imported")[1] == "none"
    assert _row(text, "the heatmap (run minus `--no-heatmap`)")[1] == "200 ms"
    assert _row(text, "`--no-heatmap` run after the imports")[1] == "2.30 s"
    assert _row(text, "peak RSS of `lenscheck run`")[1] == "1,079 MiB"
    assert _row(text, "1") == [
        "1",
        "600 ms (550 ms to 1.50 s)",
        "550 ms",
        "1.09x",
        "500 ms (450 ms to 500 ms)",
        "1.20x",
        "550 ms",
        "1.09x",
    ]
    assert _row(text, "2") == [
        "2",
        "363 ms",
        "330 ms",
        "1.10x",
        "300 ms",
        "1.21x",
        "320 ms",
        "1.13x",
    ]
    assert "Load: 250 ms" in text and "the heatmap: 40 ms" in text
    suite_rows = [line for line in text.splitlines() if line.startswith("| 1 | 7.50 s")]
    assert suite_rows == [
        "| 1 | 7.50 s | 7.00 s | 1.07x | 5.00 s | 1.50x | 5.50 s | 1.36x |",
        "| 1 | 7.50 s | 500 ms | 15.00x |",
    ]
    assert _row(text, "the same with its first prompt alone")[1] == "1,008 MiB"
    assert _row(text, "two models / one")[1] == "1.01x"


def test_only_the_parts_that_ran_get_a_section(bench: Any) -> None:
    results = _results()
    full = bench.render_markdown(results)
    sections = [line for line in full.splitlines() if line.startswith("## ")]
    assert sections == [
        "## The command line, warm",
        "## The pipeline after loading",
        "## A 16-prompt suite",
        "## A plugin session's memory",
        "## The plugin in a session that uses no lens option",
    ]
    cli_only = {k: v for k, v in results.items() if k in ("meta", "cli")}
    text = bench.render_markdown(cli_only)
    assert [line for line in text.splitlines() if line.startswith("## ")] == sections[:1]
    assert text.endswith("|\n") and not text.endswith("\n\n")


def test_rendering_is_pure(bench: Any) -> None:
    results = _results()
    before = copy.deepcopy(results)
    assert bench.render_markdown(results) == bench.render_markdown(results)
    assert results == before
    results["meta"]["note"] = ""
    assert "- notes:" not in bench.render_markdown(results)


def test_only_docs_path_writes_a_document(
    bench: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plain run writes no markdown; --docs PATH writes what render_markdown makes of the
    very results --json holds (no part runs here: --parts none)."""
    monkeypatch.chdir(tmp_path)
    plain = ["bench.py", "--parts", "none", "--json", "plain.json", "--note", "shared"]
    monkeypatch.setattr(sys, "argv", plain)
    bench.main()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.json"]
    monkeypatch.setattr(sys, "argv", [*plain[:3], "--json", "r.json", "--docs", "b.md", "--note=x"])
    bench.main()
    results = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert results["meta"]["versions"]["python"] == platform.python_version()
    assert results["meta"]["machine"]["cores"] == os.cpu_count()
    assert results["meta"]["command"] == (
        "python benchmarks/bench.py --parts none --json r.json --docs b.md"
    )
    assert results["meta"]["note"] == "x"
    assert (tmp_path / "b.md").read_text(encoding="utf-8") == bench.render_markdown(results)


def test_nox_bench_writes_the_committed_document() -> None:
    noxfile = (BENCH.parents[1] / "noxfile.py").read_text(encoding="utf-8")
    session = noxfile.split("def bench(", 1)[1].split("\n\n\n", 1)[0]
    assert '["--docs", BENCH_DOC]' in session
    assert 'BENCH_DOC = "docs/benchmarks.md"' in noxfile
