"""Which models a backend can run: ``python -m lenscheck.backends.support BACKEND``.

Prints JSON ``{"run": [...], "unsupported": {model: reason}}`` for the embedded model
and every synthetic family; ``nox -s compat`` uses it to say what it leaves out.
"""

from __future__ import annotations

import json
import sys

from lenscheck.backends import UNSUPPORTED
from lenscheck.models import EMBEDDED_ALIAS, SYNTHETIC_ALIASES

__all__ = ["support_matrix"]


def support_matrix(backend: str) -> dict[str, object]:
    """The offline models ``backend`` runs, and those it cannot load with the reason."""
    if backend not in UNSUPPORTED:
        raise ValueError(f"backend must be one of {', '.join(UNSUPPORTED)}; got {backend!r}")
    skipped = UNSUPPORTED[backend]
    models = [EMBEDDED_ALIAS, *SYNTHETIC_ALIASES]
    return {"run": [m for m in models if m not in skipped], "unsupported": dict(skipped)}


if __name__ == "__main__":
    print(json.dumps(support_matrix(sys.argv[1])))
