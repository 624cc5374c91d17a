"""The pytest plugin (``pytest11`` entry point ``lenscheck``).

Cheap to import: torch, transformers and the model code load inside fixtures, so a
suite that never asks for ``--lens-models`` pays nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lenscheck.plugin.options import LensSettings, add_options, read_settings
from lenscheck.plugin.session import GoldenHelper, LensRun, LensSession

__all__ = ["lens_golden", "lens_model", "lens_run", "lens_settings"]

_SESSION = pytest.StashKey[LensSession]()
_NO_MODELS = "no --lens-models (or lens_models ini) given: lens golden tests not run"


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "lens: a lenscheck golden test of one model")
    # syrupy cannot relate golden/<model>/<class>.json to a test name; our extension does.
    config.addinivalue_line("filterwarnings", r"ignore:\s*Can not relate snapshot:UserWarning")
    settings = read_settings(config)
    config.stash[_SESSION] = LensSession(settings)
    # Keep every test of a model on one xdist worker, so it loads once per worker.
    if settings.models and getattr(config.option, "dist", "no") == "load":
        config.option.dist = "loadgroup"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "lens_model" not in metafunc.fixturenames:
        return
    models = metafunc.config.stash[_SESSION].settings.models
    if not models:
        params = [
            pytest.param(None, id="no-lens-models", marks=pytest.mark.skip(reason=_NO_MODELS))
        ]
    else:
        params = [
            pytest.param(m, id=m, marks=[pytest.mark.lens, pytest.mark.xdist_group(m)])
            for m in models
        ]
    metafunc.parametrize("lens_model", params, scope="session")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Add the generated lens tests (once) before -k/-m selection runs."""
    from lenscheck.plugin import suite

    path = Path(suite.__file__)
    if any(item.path == path for item in items):
        return
    module = pytest.Module.from_parent(session, path=path)
    items.extend(item for item in session.genitems(module) if isinstance(item, pytest.Item))


@pytest.fixture(scope="session")
def lens_settings(pytestconfig: pytest.Config) -> LensSettings:
    """The plugin's resolved settings (models, device, dtype, backend, golden dir)."""
    return pytestconfig.stash[_SESSION].settings


@pytest.fixture(scope="session")
def lens_model(request: pytest.FixtureRequest) -> str:
    """The model id of this test (parametrized over --lens-models)."""
    param = getattr(request, "param", None)
    if param is None:
        raise pytest.UsageError("lens_model is parametrized by --lens-models; none given")
    return str(param)


@pytest.fixture(scope="session")
def lens_run(lens_model: str, pytestconfig: pytest.Config) -> LensRun:
    """This model's lens run (one per session per xdist worker)."""
    return pytestconfig.stash[_SESSION].get(lens_model)


@pytest.fixture
def lens_golden(lens_run: LensRun, pytestconfig: pytest.Config) -> Iterator[GoldenHelper]:
    """Compare ``lens_run`` with its golden: ``.compare()``, ``.check()``, ``.assert_snapshot``."""
    yield GoldenHelper(lens_run, pytestconfig.stash[_SESSION].settings, pytestconfig)


def pytest_report_header(config: pytest.Config) -> list[str]:
    settings: LensSettings = config.stash[_SESSION].settings
    if not settings.models:
        return []
    return [
        f"lenscheck: models={','.join(settings.models)} device={settings.device} "
        f"dtype={settings.dtype} backend={settings.backend} golden={settings.golden_dir}"
    ]
