"""Fixtures for the plugin's pytester tests: a throwaway project with the committed goldens.

Every test here drives a *real* inner pytest run (in-process unless isolation matters) on
the tiny synthetic models, against goldens this session's own library versions wrote (see
``_plugin_helpers.FRESH_GOLDENS``; tests about the committed goldens read ``golden/``).

In-process runs share this interpreter: pytester removes the modules an inner run imported
for the first time when it ends, and a second import of torch/transformers in one process
breaks. ``_warm_lens_modules`` therefore runs every synthetic model once up front, so the
inner runs find everything imported already (and pay only for their own model runs).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from _plugin_helpers import FRESH_GOLDENS, LensProject


@pytest.fixture(scope="session", autouse=True)
def _warm_lens_modules() -> None:
    """Import everything a synthetic lens run touches, once, in this process, and keep each
    synthetic model's golden document as the plugin writes it with default options."""
    import lenscheck.golden.extension  # noqa: F401  (syrupy extension, imported lazily)
    from lenscheck.golden.store import dumps_golden
    from lenscheck.models import SYNTHETIC_ALIASES
    from lenscheck.plugin.session import LensSession
    from lenscheck.plugin.settings import LensSettings, ModelEntry

    for alias in SYNTHETIC_ALIASES:
        session = LensSession(LensSettings(entries=(ModelEntry(alias, alias),)))
        FRESH_GOLDENS[alias] = dumps_golden(session.get(alias).payload).encode("utf-8")
        session.release(alias)


@pytest.fixture
def lens_project(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LensProject]:
    """A fresh project with an empty ``[pytest]`` ini and no goldens (models: the real cache)."""
    yield LensProject(pytester, monkeypatch)
    # No inner run may have built a model of its own (a wrong cache costs 25 s or more).
    assert not list(pytester.path.glob(".cache/lenscheck/*")), "an inner run rebuilt a model"
