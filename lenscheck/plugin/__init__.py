"""The pytest plugin (``pytest11`` entry point ``lenscheck``).

Inert unless asked: without a ``--lens-*`` option or a ``lens_*`` ini key it reads no
setting, adds no test, no warning filter and no global torch setting, and imports nothing
beyond this module and the option declarations (standard library only); the session state,
torch and syrupy come in through the hooks, as hypothesis' own plugin does. With models it
generates one test per model and value class of the output files, runs each model once per
worker, and releases it after its last test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from lenscheck.plugin.options import add_options, lens_requested

if TYPE_CHECKING:
    from lenscheck.plugin.session import GoldenHelper, LensRun, LensSession
    from lenscheck.plugin.settings import LensSettings

__all__ = [
    "GENERATED_NODEID",
    "lens_golden",
    "lens_kind",
    "lens_model",
    "lens_run",
    "lens_settings",
]

_SESSION = pytest.StashKey["LensSession"]()
_NO_MODELS = "no --lens-models (or lens_models ini) given: lens golden tests not run"
#: The "file" part of the generated tests' node ids: ``lenscheck::test_records[embedded]``.
GENERATED_NODEID = "lenscheck"


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def _session(config: pytest.Config) -> LensSession | None:
    """This session's lens state; None when no lens option was given (the plugin is idle)."""
    return config.stash.get(_SESSION, None)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "lens: a lenscheck golden test of one model")
    if not lens_requested(config):
        return
    from lenscheck.plugin.session import LensSession
    from lenscheck.plugin.settings import read_settings

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
    from lenscheck.device import DeviceUnavailableError, resolve_device

    try:
        resolve_device(settings.device, "--lens-device (ini: lens_device)")
    except DeviceUnavailableError as exc:
        raise pytest.UsageError(f"lenscheck: {exc}") from None


def _models(config: pytest.Config) -> tuple[str, ...]:
    session = _session(config)
    return () if session is None else session.settings.models


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """loadgroup by lens model (xdist's own grouping misses them, see xdist_groups)."""
    models = _models(config)
    if not models or config.getvalue("dist") != "loadgroup":
        return None
    from lenscheck.plugin.xdist_groups import lens_group_scheduler

    return lens_group_scheduler(config, log, models)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "lens_model" not in metafunc.fixturenames:
        return
    models = _models(metafunc.config)
    if not models:
        # Only a user's own test that asked for a lens fixture gets here.
        params = [
            pytest.param(None, id="no-lens-models", marks=pytest.mark.skip(reason=_NO_MODELS))
        ]
    else:
        params = [pytest.param(m, id=m, marks=pytest.mark.lens) for m in models]
    metafunc.parametrize("lens_model", params, scope="session")
    lenses = _lens_names(metafunc.config)
    if "lens_kind" in metafunc.fixturenames and len(lenses) > 1:
        # One test per lens and value class (test_records[embedded-tuned]); the model's run,
        # session-scoped by model, serves every lens.
        metafunc.parametrize("lens_kind", lenses, ids=lenses)


def _lens_names(config: pytest.Config) -> list[str]:
    """The names of the run's lenses (``logit``, ``tuned``), in the order given."""
    session = _session(config)
    if session is None:
        return ["logit"]
    from lenscheck.lenses import parse_lens_specs

    return [spec.name for spec in parse_lens_specs(session.settings.config.lenses)]


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
    lens = _session(config)
    if lens is None or not _wants_generated_tests(config, lens.settings):
        return
    # The generated tests' module is imported for collection only, not with the plugin.
    from lenscheck.plugin import suite

    path = Path(suite.__file__)
    if any(item.path == path for item in items):
        return
    module = pytest.Module.from_parent(session, path=path, nodeid=GENERATED_NODEID)
    items.extend(item for item in session.genitems(module) if isinstance(item, pytest.Item))


def _settings(config: pytest.Config) -> LensSettings:
    session = _session(config)
    if session is None:
        from lenscheck.plugin.settings import LensSettings

        return LensSettings()  # no lens option given: nothing configured
    return session.settings


@pytest.fixture(scope="session")
def lens_settings(pytestconfig: pytest.Config) -> LensSettings:
    """The plugin's resolved settings (models, config, golden dir, report, tolerances)."""
    return _settings(pytestconfig)


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
    from lenscheck.plugin.session import LENSCHECK_NOTE

    session = pytestconfig.stash[_SESSION]
    yield session.get(lens_model)
    note = session.release(lens_model)
    if note is not None:
        request.node.user_properties.append((LENSCHECK_NOTE, note))


@pytest.fixture
def lens_kind(request: pytest.FixtureRequest) -> str:
    """The lens of this test (parametrized when ``--lens-lenses`` names several; else the
    one lens, ``logit`` by default)."""
    param = getattr(request, "param", None)
    return str(param) if param is not None else _lens_names(request.config)[0]


@pytest.fixture
def lens_golden(
    lens_run: LensRun, lens_kind: str, pytestconfig: pytest.Config, request: pytest.FixtureRequest
) -> GoldenHelper:
    """Compare ``lens_run`` (through ``lens_kind``) with its golden: ``.compare()``,
    ``.check()``, ``.path``."""
    from lenscheck.plugin.session import GoldenHelper

    session = _session(pytestconfig)
    settings = _settings(pytestconfig)
    run = lens_run.for_lens(lens_kind)
    return GoldenHelper(run, settings, pytestconfig, node=request.node, session=session)


def pytest_deselected(items: list[pytest.Item]) -> None:
    """A deselected generated test makes the session partial: it then reports no golden
    as unused and deletes none."""
    lens = _session(items[0].config) if items else None
    if lens is not None and any(i.nodeid.startswith(f"{GENERATED_NODEID}::") for i in items):
        lens.partial = True


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Goldens no test used: reported, and deleted by --snapshot-update, but only after a
    whole, uninterrupted, undistributed selection (see LensSession.unused_goldens)."""
    lens = _session(session.config)
    config = session.config
    dist = getattr(config.option, "dist", "no")  # absent without pytest-xdist
    distributed = hasattr(config, "workerinput") or dist not in (None, "no")
    if lens is None or distributed or exitstatus not in (0, 1):
        return
    lens.settle_unused(updating=bool(getattr(session.config.option, "update_snapshots", False)))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The session's lenscheck notes: cross-class comparisons, prompts the goldens have and
    the suite does not, peak device memory per model (xdist workers' notes included), and
    goldens no test used."""
    lens = _session(terminalreporter.config)
    if lens is None:
        return
    from lenscheck.plugin.session import LENSCHECK_NOTE

    notes = dict.fromkeys(
        value
        for reports in terminalreporter.stats.values()
        for report in reports
        for name, value in getattr(report, "user_properties", ())
        if name == LENSCHECK_NOTE
    )
    notes.update(dict.fromkeys(lens.notes))
    if notes:
        terminalreporter.section("lenscheck")
        for note in notes:
            terminalreporter.write_line(str(note))


def pytest_report_header(config: pytest.Config) -> list[str]:
    session = _session(config)
    if session is None or not session.settings.entries:
        return []
    from lenscheck.plugin.header import header_lines

    return header_lines(session.settings, config)
