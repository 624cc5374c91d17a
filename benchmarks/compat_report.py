"""Compare the embedded model's records across library stacks (``nox -s compat``).

Reads ``<dir>/<stack>/output-*-records.csv`` for every stack folder under ``dir`` and
prints, for every pair of stacks, the maximum entropy difference over all layers and
positions and whether the top-1 token agrees everywhere.
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

from lenscheck.schema import read_csv


def _records(folder: Path) -> dict[tuple[int, int], tuple[float, str]]:
    path = next(folder.glob("output-*-records.csv"))
    return {(r.layer, r.pos): (r.entropy, r.topk[0][0]) for r in read_csv(path).rows}


def main(root: str) -> int:
    stacks = {p.name: _records(p) for p in sorted(Path(root).iterdir()) if p.is_dir()}
    rows = []
    for (a, ra), (b, rb) in itertools.combinations(stacks.items(), 2):
        keys = ra.keys() & rb.keys()
        rows.append(
            {
                "stacks": f"{a} vs {b}",
                "cells": len(keys),
                "max_entropy_diff_bits": max(abs(ra[k][0] - rb[k][0]) for k in keys),
                "top1_agree_everywhere": all(ra[k][1] == rb[k][1] for k in keys),
            }
        )
    print(json.dumps(rows, indent=2))
    return 0 if all(r["top1_agree_everywhere"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
