"""What the pytest plugin costs a session that uses no lens option (issue 22, item 3).

    python benchmarks/plugin_cost.py [--repeat 15]

In an empty project, ``pytest --co -q`` runs with and without ``-p no:lenscheck``, each with
``python -X importtime``. Reported: the modules only the plugin's session imports, their
import time (the sum of their self times, each the fastest of ``--repeat`` runs), and the
time of ``import lenscheck.plugin`` in a fresh interpreter that imported pytest already
(every module the entry brings, whatever importtime attributes to whom). Bytecode is written
(``PYTHONDONTWRITEBYTECODE`` is dropped) and one session runs first, so pytest's rewritten
bytecode of the plugin's modules is on disk, as from a user's second session on. Where
bytecode cannot be written at all, pytest's assertion rewriter compiles each lenscheck
module it imports from source in every session (about 5x these figures, seen here).
bench.py runs this as its ``plugin`` part.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HEAVY = ("torch", "transformers", "syrupy")
_TIME_IMPORT = (
    "import time, pytest\n"
    "t0 = time.perf_counter()\n"
    "import lenscheck.plugin\n"
    "print((time.perf_counter() - t0) * 1e3)\n"
)


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _imported(project: Path, env: dict[str, str], *extra: str) -> dict[str, int]:
    """Self time (us) of each module ``pytest --co -q`` imports in ``project``."""
    cmd = [sys.executable, "-X", "importtime", "-m", "pytest", "--co", "-q"]
    out = subprocess.run(
        [*cmd, "-p", "no:cacheprovider", *extra],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
    )
    found = {}
    for line in out.stderr.splitlines():
        if line.startswith("import time:") and "cumulative" not in line:
            self_us, _, name = line.removeprefix("import time:").split("|")
            found[name.strip()] = int(self_us)
    return found


def _entry_ms(project: Path, env: dict[str, str]) -> float:
    out = subprocess.run(
        [sys.executable, "-c", _TIME_IMPORT], cwd=project, env=env, capture_output=True, text=True
    )
    return float(out.stdout.strip())


def _measure(project: Path, repeat: int) -> dict[str, Any]:
    env = _env()
    fastest: dict[str, int] = {}
    without: set[str] = set()
    _imported(project, env)  # a first session writes pytest's rewritten bytecode
    for _ in range(repeat):
        for name, us in _imported(project, env).items():
            fastest[name] = min(us, fastest.get(name, us))
        without |= set(_imported(project, env, "-p", "no:lenscheck"))
    only = {name: us for name, us in fastest.items() if name not in without}
    entry = [_entry_ms(project, env) for _ in range(repeat)]
    return {
        "repeat": repeat,
        "plugin_only_modules": sorted(only),
        "plugin_only_import_ms": sum(only.values()) / 1e3,
        "largest_modules_us": dict(sorted(only.items(), key=lambda kv: -kv[1])[:5]),
        "heavy_imported": sorted({m.split(".")[0] for m in only} & set(HEAVY)),
        "import_entry_min_ms": min(entry),
        "import_entry_median_ms": sorted(entry)[len(entry) // 2],
    }


def plugin_part(repeat: int) -> dict[str, Any]:
    """The measurement, in an empty project (a ``[pytest]`` ini and no tests)."""
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        (project / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
        return _measure(project, repeat)


def plugin_lines(part: dict[str, Any]) -> list[str]:
    """The markdown section bench.py writes into docs/benchmarks.md."""
    rows = [
        ("modules only the plugin's session imports", str(len(part["plugin_only_modules"]))),
        ("their import time (importtime self times)", f"{part['plugin_only_import_ms']:.2f} ms"),
        ("`import lenscheck.plugin` after pytest", f"{part['import_entry_min_ms']:.2f} ms"),
        ("torch, transformers or syrupy imported", ", ".join(part["heavy_imported"]) or "none"),
    ]
    return [
        "## The plugin in a session that uses no lens option",
        "",
        "`pytest --co -q` in an empty project, with and without `-p no:lenscheck` (fastest of "
        f"{part['repeat']} runs each; pytest's rewritten bytecode cached, as from a second "
        "session on), and `import lenscheck.plugin` timed in a fresh interpreter that imported "
        "pytest already.",
        "",
        "| measure | value |",
        "|---|---|",
        *(f"| {a} | {b} |" for a, b in rows),
        "",
        f"Modules: {', '.join(part['plugin_only_modules'])}.",
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    print(json.dumps(plugin_part(args.repeat), indent=2))


if __name__ == "__main__":
    main()
