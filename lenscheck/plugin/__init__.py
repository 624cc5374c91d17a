"""The pytest plugin (``pytest11`` entry point ``lenscheck``).

Inert unless asked: without ``--lens-models`` (or ``lens_models`` in an ini) it adds no
test, no warning filter and no global torch setting, and imports nothing heavy. With
models it generates one test per model and value class of the output files, runs each
model once per worker, and releases it after its last test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lenscheck.device import DeviceUnavailableError, resolve_device
from lenscheck.plugin.header import header_lines
from lenscheck.plugin.options import LensSettings, add_options, read_settings
from lenscheck.plugin.session import LENSCHECK_NOTE, GoldenHelper, LensRun, LensSession
from lenscheck.plugin.xdist_groups import lens_group_scheduler

__all__ = ["GENERATED_NODEID", "lens_golden", "lens_model", "lens_run", "lens_settings"]

_SESSION = pytest.StashKey[LensSession]()
_NO_MODELS = "no --lens-models (or lens_models ini) given: lens golden tests not run"
#: The "file" part of the generated tests' node ids: ``lenscheck::test_records[embedded]``.
GENERATED_NODEID = "lenscheck"


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "lens: a lenscheck golden test of one model")
    settings = read_settings(config)
    config.stash[_SESSION] = LensSession(settings)
    if not settings.entries:
        return
    _check_device(settings)
    # Keep every test of a model on one xdist worker, so it loads once per worker.
    if getattr(config.option, "dist", "no") == "load":
        config.option.dist = "loadgroup"


def _check_device(settings: LensSettings) -> None:
    """An explicit device that is not there stops the session before collection."""
    try:
        resolve_device(settings.device, "--lens-device (ini: lens_device)")
    except DeviceUnavailableError as exc:
        raise pytest.UsageError(f"lenscheck: {exc}") from None


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """loadgroup by lens model (xdist's own grouping misses them, see xdist_groups)."""
    models = config.stash[_SESSION].settings.models
    if not models or config.getvalue("dist") != "loadgroup":
        return None
    return lens_group_scheduler(config, log, models)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "lens_model" not in metafunc.fixturenames:
        return
    models = metafunc.config.stash[_SESSION].settings.models
    if not models:
        # Only a user's own test that asked for a lens fixture gets here.
        params = [
            pytest.param(None, id="no-lens-models", marks=pytest.mark.skip(reason=_NO_MODELS))
        ]
    else:
        params = [pytest.param(m, id=m, marks=pytest.mark.lens) for m in models]
    metafunc.parametrize("lens_model", params, scope="session")


def _wants_generated_tests(config: pytest.Config, settings: LensSettings) -> bool:
    """--lens-models on the command line always; from an ini only when the run selects
    directories (or nothing), not when it names test files or node ids of its own."""
    if not settings.entries:
        return False
    if settings.asked_on_command_line:
        return True
    root = Path(config.rootpath)
    for arg in config.args:
        path = Path(arg.split("::", 1)[0])
        if "::" in arg or not (path if path.is_absolute() else root / path).is_dir():
            return False
    return True


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Add the generated lens tests (once) before -k/-m selection runs."""
    # The generated tests' module is imported for collection only, not with the plugin.
    from lenscheck.plugin import suite

    if not _wants_generated_tests(config, config.stash[_SESSION].settings):
        return
    path = Path(suite.__file__)
    if any(item.path == path for item in items):
        return
    module = pytest.Module.from_parent(session, path=path, nodeid=GENERATED_NODEID)
    items.extend(item for item in session.genitems(module) if isinstance(item, pytest.Item))


@pytest.fixture(scope="session")
def lens_settings(pytestconfig: pytest.Config) -> LensSettings:
    """The plugin's resolved settings (models, device, dtype, backend, suite, golden dir)."""
    return pytestconfig.stash[_SESSION].settings


@pytest.fixture(scope="session")
def lens_model(request: pytest.FixtureRequest) -> str:
    """The model key of this test (parametrized over --lens-models)."""
    param = getattr(request, "param", None)
    if param is None:
        raise pytest.UsageError("lens_model is parametrized by --lens-models; none given")
    return str(param)


@pytest.fixture(scope="session")
def lens_run(
    lens_model: str, pytestconfig: pytest.Config, request: pytest.FixtureRequest
) -> Iterator[LensRun]:
    """This model's lens run, once per worker; released (weights too) after the last test
    that uses it. pytest orders tests by model, so each model loads once; a user test that
    asks for a model again after that re-runs it."""
    session = pytestconfig.stash[_SESSION]
    yield session.get(lens_model)
    note = session.release(lens_model)
    if note is not None:
        request.node.user_properties.append((LENSCHECK_NOTE, note))


@pytest.fixture
def lens_golden(
    lens_run: LensRun, pytestconfig: pytest.Config, request: pytest.FixtureRequest
) -> GoldenHelper:
    """Compare ``lens_run`` with its golden: ``.compare()``, ``.check()``, ``.path``."""
    settings = pytestconfig.stash[_SESSION].settings
    return GoldenHelper(lens_run, settings, pytestconfig, node=request.node)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The session's lenscheck notes: cross-class comparisons, prompts the goldens have and
    the suite does not, peak device memory per model (xdist workers' notes included)."""
    notes = dict.fromkeys(
        value
        for reports in terminalreporter.stats.values()
        for report in reports
        for name, value in getattr(report, "user_properties", ())
        if name == LENSCHECK_NOTE
    )
    if notes:
        terminalreporter.section("lenscheck")
        for note in notes:
            terminalreporter.write_line(str(note))


def pytest_report_header(config: pytest.Config) -> list[str]:
    settings: LensSettings = config.stash[_SESSION].settings
    if not settings.entries:
        return []
    return header_lines(settings, config)
