"""The test suite's hypothesis profiles (tests/conftest.py loads one at import).

``gate``, the default wherever the suite runs (the README's test command, CI, a plain
``pytest``): 200 examples per property, derandomized, so every machine tests the same
examples and a gate that passed in CI passes on a fresh clone. ``dev``: a quicker loop,
derandomized too. ``explore``: the only random profile, for ``nox -s explore`` (not a
gate): fresh random examples every run, ``LENSCHECK_EXPLORE_EXAMPLES`` per property
(default 1000). ``ci``: the gate's former name, the same settings.

No profile writes the example database: derandomized profiles cannot use it (hypothesis:
derandomize implies database=None), and ``explore`` prints each falsifying example with
its reproduction blob instead of hiding it in ``.hypothesis/`` for the next run to replay.
``HYPOTHESIS_PROFILE`` names a profile explicitly; pytest's ``--hypothesis-profile`` wins
over both.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from hypothesis import settings

__all__ = ["DEFAULT_PROFILE", "EXPLORE_EXAMPLES", "load", "profile_name", "register"]

DEFAULT_PROFILE = "gate"
#: Examples per property under ``explore`` unless LENSCHECK_EXPLORE_EXAMPLES says otherwise.
EXPLORE_EXAMPLES = 1000


def register(environ: Mapping[str, str] = os.environ) -> None:
    """Register gate, ci, dev and explore (no deadline: the first call into torch is slow)."""
    for name, examples in (("gate", 200), ("ci", 200), ("dev", 50)):
        settings.register_profile(
            name, max_examples=examples, derandomize=True, deadline=None, print_blob=True
        )
    settings.register_profile(
        "explore",
        max_examples=int(environ.get("LENSCHECK_EXPLORE_EXAMPLES") or EXPLORE_EXAMPLES),
        derandomize=False,
        database=None,
        deadline=None,
        print_blob=True,
    )


def profile_name(environ: Mapping[str, str] = os.environ) -> str:
    """HYPOTHESIS_PROFILE when set and non-empty, else the derandomized gate (CI or not)."""
    return environ.get("HYPOTHESIS_PROFILE") or DEFAULT_PROFILE


def load(environ: Mapping[str, str] = os.environ) -> str:
    """Register the profiles, load the one ``environ`` names, and return its name."""
    register(environ)
    name = profile_name(environ)
    settings.load_profile(name)
    return name
