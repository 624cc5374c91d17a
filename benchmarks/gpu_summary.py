"""The markdown summary of `nox -s gpu`: class x model x backend x result x max |delta|.

    python benchmarks/gpu_summary.py OUT_DIR [BENCH_JSON [SUMMARY_MD]]

OUT_DIR holds ``reports/<dtype>-<backend>.jsonl`` per golden run (the plugin's
``--lens-report``) and ``junit-<dtype>-<backend>.xml`` (pytest's ``--junitxml``: every
generated test's outcome, invariants included); BENCH_JSON, when given, is
``benchmarks/bench.py --json``'s output. Exit 1 when a test failed or a configuration left
no report line (a wiring problem).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["main", "render"]


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def _junit(path: Path) -> tuple[int, int]:
    """(tests, failures + errors) of a junit XML file."""
    import xml.etree.ElementTree as ET

    if not path.exists():
        return 0, 1
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root)
    tests = sum(int(s.get("tests", 0)) for s in suites)
    bad = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
    return tests, bad


def render(out_dir: Path, bench: dict[str, Any] | None = None) -> tuple[str, bool]:
    """The markdown, and whether every test of every configuration passed."""
    report_dir = out_dir / "reports"
    rows = [
        "## lenscheck on the GPU",
        "",
        "| class | model | backend | golden | result | drifts | outliers | max |Δ| |",
        "|---|---|---|---|---|---|---|---|",
    ]
    ok = True
    files = sorted(report_dir.glob("*.jsonl"))
    if not files:
        return "\n".join([*rows, "", f"no report in {report_dir}: nothing ran"]), False
    for path in files:
        tests, bad = _junit(out_dir / f"junit-{path.stem}.xml")
        if bad or not tests:
            rows.append(f"| {path.stem} | | | | **{bad} of {tests} tests failed** | | | |")
            ok = False
        lines = _lines(path)
        if not lines:
            rows.append(f"| {path.stem} | (none) | | | **no run** | | | |")
            ok = False
        for line in sorted(lines, key=lambda x: x["model"]):
            worst = max(line.get("max_delta", {}).values(), default=0.0)
            result = "pass" if line["ok"] else "**fail**"
            ok &= bool(line["ok"])
            drifts = ", ".join(f"{k} {v}" for k, v in line.get("drifts", {}).items()) or "-"
            golden = line.get("golden_class") or line.get("problem", "")[:40]
            rows.append(
                f"| {line['class']} | {line['model']} | {line.get('backend')} | {golden} | "
                f"{result} | {drifts} | {line.get('outliers', '')} | {worst:.3g} |"
            )
    if bench:
        rows += ["", "### Benchmark on the device (post-load pipeline vs its floor)", ""]
        rows += ["| threads | pipeline s | floor s | ratio |", "|---|---|---|---|"]
        for key, value in bench.items():
            if key.startswith("threads_"):
                rows.append(
                    f"| {key.removeprefix('threads_')} | {value['pipeline_s']:.3f} | "
                    f"{value['floor_s']:.3f} | {value['ratio']:.2f} |"
                )
    return "\n".join(rows) + "\n", ok


def main() -> None:
    out_dir = Path(sys.argv[1])
    bench = json.loads(Path(sys.argv[2]).read_text(encoding="utf-8")) if len(sys.argv) > 2 else None
    text, ok = render(out_dir, bench)
    if len(sys.argv) > 3:
        Path(sys.argv[3]).write_text(text, encoding="utf-8")
    print(text)
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
