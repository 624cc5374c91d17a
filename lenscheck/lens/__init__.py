"""The lens pipeline: residuals -> each lens -> records, batched over a suite.

Modules, by concept: ``pipeline`` (run_suite / run_lenses: jobs, forward passes, one result
per lens and prompt), ``jobs`` (tokens, context checks, the forward passes), ``stats``
(entropy and top-k of every cell through a lens, in row chunks), ``records`` (the CSV rows),
``probes`` (the model's own distributions), ``ablation`` (the logit lens at every decoding
point), ``diagnostics`` (the JSON's diagnostics block), ``finite`` (overflow refusals),
``result`` (LensResult). The lens kinds themselves (logit, tuned) live in lenscheck.lenses.
"""

from __future__ import annotations

from lenscheck.lens.ablation import ABLATION_RULE, onset_tolerance
from lenscheck.lens.finite import NonFiniteResidualError
from lenscheck.lens.pipeline import LensLike, run_lens, run_lenses, run_suite
from lenscheck.lens.records import NEXT_TOKEN, first_rule_layer
from lenscheck.lens.result import LensResult
from lenscheck.lens.stats import LensStats, lens_stats, lens_stats_batch
from lenscheck.lenses.logit import lens_logits, normalized_residuals

__all__ = [
    "ABLATION_RULE",
    "NEXT_TOKEN",
    "LensLike",
    "LensResult",
    "LensStats",
    "NonFiniteResidualError",
    "first_rule_layer",
    "lens_logits",
    "lens_stats",
    "lens_stats_batch",
    "normalized_residuals",
    "onset_tolerance",
    "run_lens",
    "run_lenses",
    "run_suite",
]
