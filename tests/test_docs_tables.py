"""The option and preset tables in docs/ are the declarations' (benchmarks/docs_tables.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_SPEC = importlib.util.spec_from_file_location("docs_tables", ROOT / "benchmarks/docs_tables.py")
assert _SPEC is not None and _SPEC.loader is not None
docs_tables = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(docs_tables)


@pytest.mark.parametrize("name", sorted(docs_tables.BLOCKS))
def test_each_generated_table_is_current(name: str) -> None:
    doc, _ = docs_tables.BLOCKS[name]
    text = (ROOT / doc).read_text(encoding="utf-8")
    current = docs_tables.block_of(text, name)
    assert current is not None, f"{doc} has no '<!-- generated: {name} -->' block"
    assert current == docs_tables.render(name), (
        f"{doc}'s {name} table is stale: run python benchmarks/docs_tables.py --write"
    )


def test_every_option_is_in_the_tables() -> None:
    from lenscheck.config import run_options
    from lenscheck.plugin.options import PLUGIN_OPTIONS

    cli, plugin = docs_tables.render("cli-options"), docs_tables.render("plugin-options")
    for opt in run_options():
        assert (f"`{opt.flag}" in cli) is opt.cli, opt.name
        assert (f"`{opt.pytest_flag}`" in plugin and f"`{opt.ini}`" in plugin) is opt.plugin
    assert all(f"`{p.ini}`" in plugin for p in PLUGIN_OPTIONS)
    presets = docs_tables.render("presets")
    assert "| `original` | `next-ln1` | `always` | `original` |" in presets
