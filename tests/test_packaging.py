"""What `pip install lenscheck` promises: metadata, the tl extra and its install hint.

The end-to-end proof (build the wheel, install it into a fresh venv, run the plugin and
the CLI in an empty project, then add the tl extra) is the ``wheel`` nox session: it needs
the package index, which the offline gate does not use.
"""

from __future__ import annotations

import importlib.metadata
import re
import sys
from pathlib import Path
from typing import Any

import pytest

import lenscheck

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest depends on tomli below 3.11
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT = PYPROJECT["project"]


def _names(requirements: list[str]) -> list[str]:
    return [re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower() for r in requirements]


def test_syrupy_is_core_and_transformer_lens_is_the_tl_extra() -> None:
    core = _names(PROJECT["dependencies"])
    assert "syrupy" in core  # the plugin's golden test is a syrupy snapshot
    assert "transformer-lens" not in core
    extras = PROJECT["optional-dependencies"]
    assert _names(extras["tl"]) == ["transformer-lens"]
    assert "syrupy" not in _names(extras["test"])
    assert any(r.startswith("lenscheck[") and "tl" in r for r in extras["dev"])


def test_license_file_and_metadata_agree() -> None:
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License")
    assert "Copyright (c) 2026 the lenscheck authors" in text
    assert PROJECT["license"] == "MIT"
    assert PROJECT["license-files"] == ["LICENSE"]
    assert "License :: OSI Approved :: MIT License" not in PROJECT["classifiers"]  # PEP 639


def test_build_requirement_reads_the_license_string() -> None:
    """The SPDX ``license = "MIT"`` string and license-files need setuptools >= 77."""
    (setuptools,) = [r for r in PYPROJECT["build-system"]["requires"] if "setuptools" in r]
    match = re.fullmatch(r"setuptools>=(\d+)(?:\.\d+)*", setuptools)
    assert match is not None and int(match.group(1)) >= 77


def test_classifiers_and_urls() -> None:
    classifiers = PROJECT["classifiers"]
    for needed in (
        "Framework :: Pytest",
        "Operating System :: OS Independent",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ):
        assert needed in classifiers
    lowest = PROJECT["requires-python"].removeprefix(">=")
    assert f"Programming Language :: Python :: {lowest}" in classifiers
    running = f"Programming Language :: Python :: {sys.version_info.major}.{sys.version_info.minor}"
    assert running in classifiers, "the Python running the tests is not declared"
    urls = PROJECT["urls"]
    assert urls["Homepage"] == urls["Repository"] == "https://github.com/lenscheck/lenscheck"
    assert urls["Issues"] == "https://github.com/lenscheck/lenscheck/issues"


def test_version_is_declared_once() -> None:
    """lenscheck/_version.py holds it; pyproject reads it from there, the package too."""
    assert "version" not in PROJECT and PROJECT["dynamic"] == ["version"]
    dynamic = PYPROJECT["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "lenscheck._version.__version__"}
    assert importlib.metadata.version("lenscheck") == lenscheck.__version__


def test_entry_points() -> None:
    assert PROJECT["scripts"] == {"lenscheck": "lenscheck.cli:main"}
    assert PROJECT["entry-points"]["pytest11"] == {"lenscheck": "lenscheck.plugin"}


# ------------------------------------------------------------ without transformer-lens


@pytest.fixture
def no_transformer_lens(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``import transformer_lens`` (and any submodule) fail as if not installed."""
    for name in [m for m in sys.modules if m.split(".")[0] == "transformer_lens"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "transformer_lens", None)


HINT = "pip install 'lenscheck[tl]'"


def test_bridge_backend_says_how_to_install_the_extra(no_transformer_lens: None) -> None:
    import torch

    from lenscheck.backends.tl import boot_bridge

    with pytest.raises(ImportError) as info:
        boot_bridge("x", None, None, device="cpu", dtype=torch.float32, trust_remote_code=False)
    message = str(info.value)
    assert message == (
        "the transformer-lens backend needs TransformerLens, which is not installed "
        f"(it is an optional extra). Install it with: {HINT}"
    )


def test_hooked_backend_says_how_to_install_the_extra(no_transformer_lens: None) -> None:
    import torch

    from lenscheck.backends.hooked import build_hooked_transformer

    with pytest.raises(ImportError, match=re.escape(HINT)) as info:
        build_hooked_transformer("x", None, None, device="cpu", dtype=torch.float32)
    assert "hooked-transformer backend needs TransformerLens" in str(info.value)


def test_installed_but_wrong_version_names_the_version_range(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """transformer-lens present, but 4.x for the hooked backend (HookedTransformer gone)."""
    import importlib.util

    from lenscheck.backends.tl import missing_transformer_lens

    real = importlib.util.find_spec

    def present(name: str, *args: Any) -> Any:
        return object() if name == "transformer_lens" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", present)
    gone = ImportError("cannot import name 'HookedTransformer' from 'transformer_lens'")
    message = missing_transformer_lens("hooked-transformer", gone)
    assert "TransformerLens 3.x (4.0 removed HookedTransformer)" in message
    assert "pip install 'transformer-lens>=3.9,<4'" in message and "HookedTransformer" in message
    bridge = missing_transformer_lens("transformer-lens", ImportError("no TransformerBridge"))
    assert "pip install 'transformer-lens>=3.9,<5'" in bridge


def test_cli_run_without_the_extra_exits_2_with_the_hint(
    no_transformer_lens: None,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lenscheck.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    argv = ["run", "synthetic-llama", "--backend", "transformer-lens", "--device", "cpu"]
    assert main([*argv, "--no-heatmap", "--out-dir", str(tmp_path)]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any(HINT in e for e in errors), errors
    assert not any(p.name.startswith("output-") for p in tmp_path.iterdir())
