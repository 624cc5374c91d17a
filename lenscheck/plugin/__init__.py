"""The pytest plugin (``pytest11`` entry point ``lenscheck``).

Cheap to import: torch, transformers and the model code load inside fixtures, so a
suite that never asks for ``--lens-models`` pays nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lenscheck.plugin.options import LensSettings, add_options, read_settings
from lenscheck.plugin.session import CROSS_CLASS_NOTE, GoldenHelper, LensRun, LensSession

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


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """loadgroup by lens model (xdist's own grouping misses them, see xdist_groups)."""
    models = config.stash[_SESSION].settings.models
    if not models or config.getvalue("dist") != "loadgroup":
        return None
    from lenscheck.plugin.xdist_groups import lens_group_scheduler

    return lens_group_scheduler(config, log, models)


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
def lens_golden(
    lens_run: LensRun, pytestconfig: pytest.Config, request: pytest.FixtureRequest
) -> Iterator[GoldenHelper]:
    """Compare ``lens_run`` with its golden: ``.compare()``, ``.check()``, ``.assert_snapshot``."""
    settings = pytestconfig.stash[_SESSION].settings
    yield GoldenHelper(lens_run, settings, pytestconfig, node=request.node)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """List the runs compared with another class's golden (cross-class tolerances).

    The notes travel as ``user_properties`` of the test reports, so xdist workers' appear too.
    """
    notes = dict.fromkeys(
        value
        for reports in terminalreporter.stats.values()
        for report in reports
        for name, value in getattr(report, "user_properties", ())
        if name == CROSS_CLASS_NOTE
    )
    if notes:
        terminalreporter.section("lenscheck: cross-class comparisons")
        for note in notes:
            terminalreporter.write_line(str(note))


def pytest_report_header(config: pytest.Config) -> list[str]:
    settings: LensSettings = config.stash[_SESSION].settings
    if not settings.models:
        return []
    trust = " trust_remote_code=on" if settings.trust_remote_code else ""
    return [
        f"lenscheck: models={','.join(settings.models)} device={settings.device} "
        f"dtype={settings.dtype} backend={settings.backend} golden={settings.golden_dir}{trust}"
    ]
