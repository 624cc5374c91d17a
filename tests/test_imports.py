"""`import lenscheck` and the pytest plugin (loaded by every pytest run of a user who has
lenscheck installed) stay cheap: none of the heavy libraries is imported until a model runs.
So does the console script's `--help`: it builds the parser without torch or transformers."""

from __future__ import annotations

import json
import subprocess
import sys

#: What `import lenscheck` / `import lenscheck.plugin` must not import (top-level names).
HEAVY = (
    "torch",
    "transformers",
    "transformer_lens",
    "numpy",
    "matplotlib",
    "rich",
    "tqdm",
    "huggingface_hub",
    "safetensors",
    "platformdirs",
    "filelock",
    "xdist",
    "hypothesis",
)


def _imported_after(code: str, candidates: tuple[str, ...]) -> list[str]:
    """Which of ``candidates`` a fresh interpreter has in sys.modules after running ``code``."""
    probe = (
        f"{code}\n"
        "import json, sys\n"
        f"print(json.dumps(sorted(m for m in {list(candidates)!r} if m in sys.modules)))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    found: list[str] = json.loads(proc.stdout.splitlines()[-1])
    return found


def test_import_lenscheck_and_the_plugin_import_nothing_heavy() -> None:
    assert _imported_after("import lenscheck\nimport lenscheck.plugin", HEAVY) == []


def test_the_cli_module_and_its_parser_import_neither_torch_nor_transformers() -> None:
    code = "from lenscheck.cli import build_parser\nbuild_parser()"  # what --help runs
    assert _imported_after(code, ("torch", "transformers")) == []
