"""The option and preset tables of docs/cli.md and docs/plugin.md, from the declarations.

    python benchmarks/docs_tables.py           # print every table
    python benchmarks/docs_tables.py --write   # rewrite the marked blocks in docs/

Each table sits between ``<!-- generated: NAME -->`` and ``<!-- /generated -->`` in its
document; tests/test_docs_tables.py fails when a block differs from what this renders, so a
new option is documented by declaring it (lenscheck.config.LensConfig, PLUGIN_OPTIONS).
"""

from __future__ import annotations

import argparse
import re
import sys
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lenscheck.config import PRESET_SETTINGS, Option, run_options  # noqa: E402
from lenscheck.options import _metavar, default_text  # noqa: E402
from lenscheck.plugin.options import PLUGIN_OPTIONS  # noqa: E402

__all__ = ["BLOCKS", "render", "rewrite"]


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _values(opt: Option) -> str:
    if opt.kind == "flag":
        return ""
    if opt.choices:
        listed = ", ".join(f"`{c}`" for c in opt.choices)
        return f" ({listed}{', `' + opt.accepts_text + '`' if opt.accepts_text else ''})"
    return ""


def cli_table() -> str:
    """`lenscheck run`'s run options."""
    rows = ["| option | default | meaning |", "|---|---|---|"]
    for opt in run_options():
        if not opt.cli:
            continue
        spelled = opt.flag if opt.kind == "flag" else f"{opt.flag} {_metavar(opt) or 'TEXT'}"
        rows.append(f"| `{spelled}` | {_cell(default_text(opt))} | {_cell(opt.help)} |")
    return "\n".join(rows)


def plugin_table() -> str:
    """The plugin's options: its own, then the run options it shares with the CLI."""
    rows = ["| option | ini | default | meaning |", "|---|---|---|---|"]
    for p in PLUGIN_OPTIONS:
        flag = f"`{p.pytest_flag}`" if p.flag else ""
        default = p.default if p.default not in ("", [], False) else "none"
        rows.append(f"| {flag} | `{p.ini}` | {_cell(str(default))} | {_cell(p.help)} |")
    for opt in run_options():
        if not opt.plugin:
            continue
        rows.append(
            f"| `{opt.pytest_flag}` | `{opt.ini}` | {_cell(default_text(opt))} | "
            f"{_cell(opt.help)}{_values(opt)} |"
        )
    return "\n".join(rows)


def preset_table() -> str:
    """What each preset sets."""
    names = list(next(iter(PRESET_SETTINGS.values())))
    rows = ["| preset | " + " | ".join(f"`--{n.replace('_', '-')}`" for n in names) + " |"]
    rows.append("|---" * (len(names) + 1) + "|")
    for preset, settings in PRESET_SETTINGS.items():
        rows.append(f"| `{preset}` | " + " | ".join(f"`{settings[n]}`" for n in names) + " |")
    return "\n".join(rows)


#: block name -> (document, renderer)
BLOCKS = {
    "cli-options": ("docs/cli.md", cli_table),
    "presets": ("docs/cli.md", preset_table),
    "plugin-options": ("docs/plugin.md", plugin_table),
}


def render(name: str) -> str:
    return BLOCKS[name][1]()


def _pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- generated: {name} -->\n)(.*?)(<!-- /generated -->)", re.S)


def block_of(text: str, name: str) -> str | None:
    """The current content of block ``name`` in ``text`` (None when it has no such block)."""
    match = _pattern(name).search(text)
    return None if match is None else match.group(2).rstrip("\n")


def _replace_block(table: str, match: re.Match[str]) -> str:
    """A block's markers around its new table."""
    return f"{match.group(1)}{table}\n{match.group(3)}"


def rewrite() -> list[str]:
    """Rewrite every block in place; the documents changed."""
    changed = []
    for name, (doc, _) in BLOCKS.items():
        path = ROOT / doc
        text = path.read_text(encoding="utf-8")
        new = _pattern(name).sub(partial(_replace_block, render(name)), text)
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed.append(f"{doc} ({name})")
    return changed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite the blocks in docs/")
    args = parser.parse_args()
    if args.write:
        print("\n".join(rewrite()) or "docs already up to date")
    else:
        for name in BLOCKS:
            print(f"## {name}\n\n{render(name)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
