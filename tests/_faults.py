"""The faults of tests/test_fault_injection.py: real edits of lenscheck's source.

Each patch is (module, function qualname, [(source text found exactly once, its
replacement), ...], other modules that imported the function by name).
``fault_conftest`` renders the inner project's conftest.py that applies them for one run.
"""

from __future__ import annotations

import json

__all__ = ["CONFTEST", "FAULTS", "METRIC_FAULTS", "TIE_FAULTS", "Patch", "fault_conftest"]

Patch = tuple[str, str, list[tuple[str, str]], list[str]]

CONFTEST = '''
"""Inject one fault into lenscheck for this run (see tests/test_fault_injection.py)."""
import __future__
import importlib
import inspect
import json
import textwrap

import pytest

PATCHES = json.loads({patches!r})
_mp = pytest.MonkeyPatch()


def _mutant(module, qualname, edits):
    owner = module
    *path, name = qualname.split(".")
    for part in path:
        owner = getattr(owner, part)
    source = textwrap.dedent(inspect.getsource(getattr(owner, name)))
    for old, new in edits:
        if source.count(old) != 1:
            raise pytest.UsageError(
                f"fault line not found once in {{module.__name__}}.{{qualname}}: {{old!r}}"
            )
        source = source.replace(old, new)
    code = compile(
        source,
        f"<fault in {{module.__name__}}.{{qualname}}>",
        "exec",
        flags=__future__.annotations.compiler_flag,
        dont_inherit=True,
    )
    namespace = dict(vars(module))
    exec(code, namespace)
    return owner, name, namespace[name]


def pytest_configure(config):
    for module_name, qualname, edits, also in PATCHES:
        owner, name, mutant = _mutant(importlib.import_module(module_name), qualname, edits)
        _mp.setattr(owner, name, mutant)
        for target in also:  # modules that imported the name
            module_name, attr = target.split(":")
            _mp.setattr(importlib.import_module(module_name), attr, mutant)


def pytest_unconfigure(config):
    _mp.undo()
'''


def fault_conftest(patches: list[Patch]) -> str:
    """The inner conftest.py that applies ``patches`` for one run."""
    return CONFTEST.format(patches=json.dumps(patches))


#: name -> the patches of one fault (each a real edit of the current source).
FAULTS: dict[str, list[Patch]] = {
    "eps-outside-sqrt": [
        (
            "lenscheck.norms",
            "apply_norm",
            [
                (
                    "y = x32 * torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + eps)",
                    "y = x32 / (x32.pow(2).mean(dim=-1, keepdim=True).sqrt() + eps)",
                )
            ],
            [],
        )
    ],
    "wrong-norm-post-block": [
        (
            "lenscheck.norms",
            "get_correct_norm_module",
            [
                (
                    'return getattr(blocks[layer_idx + 1], "ln1", None)',
                    'return getattr(blocks[layer_idx], "ln1", None)',
                )
            ],
            [],
        )
    ],
    # Both entropy formulas (lenscheck's and the original preset's, which is also the
    # fallback for masked ids); softmax_entropy looks each up in lenscheck.numerics.
    "entropy-in-nats": [
        (
            "lenscheck.numerics",
            "entropy_from_top1",
            [("- p_max.log()) / LN2 + 0.0", "- p_max.log()) + 0.0")],
            [],
        ),
        (
            "lenscheck.numerics",
            "entropy_from_probs",
            [("return -terms.sum(dim=-1) / LN2 + 0.0", "return -terms.sum(dim=-1) + 0.0")],
            [],
        ),
    ],
    "layer-off-by-one": [
        (
            "lenscheck.lens.records",
            "pure_records",
            [('"layer": layer,', '"layer": layer + 1,')],
            ["lenscheck.lens.pipeline:pure_records"],
        )
    ],
    "probe-read-at-the-first-position": [
        (
            "lenscheck.lens.jobs",
            "_capture_job",
            [("c.logits[-1] for c in", "c.logits[0] for c in")],
            [],
        )
    ],
    "temperature-multiplies": [
        (
            "lenscheck.lens.probes",
            "probes",
            [("(final / temp).float()", "(final * temp).float()")],
            ["lenscheck.lens.pipeline:probes"],
        )
    ],
    "final-top5-second-and-third-swapped": [
        (
            "lenscheck.lens.probes",
            "probes",
            [
                (
                    '"final_prediction": {"type": "final_prediction", "entropy": ent, '
                    '"topk": topk}',
                    '"final_prediction": {"type": "final_prediction", "entropy": ent, '
                    '"topk": [topk[0], topk[2], topk[1], *topk[3:]]}',
                )
            ],
            ["lenscheck.lens.pipeline:probes"],
        )
    ],
    "records-show-the-last-position": [
        (
            "lenscheck.lens.records",
            "records",
            [
                (
                    '"topk": topk_pairs(backend, layer_ids[pos][:k], layer_p[pos][:k]),',
                    '"topk": topk_pairs(backend, layer_ids[-1][:k], layer_p[-1][:k]),',
                )
            ],
            ["lenscheck.lens.pipeline:records"],
        )
    ],
    "consistency-diagnostic-lies": [
        (
            "lenscheck.lens.diagnostics",
            "final_point_last_layer",
            [("return st.last_layer", "return backend.unembed(capture.residuals[-1])")],
            ["lenscheck.lens.pipeline:final_point_last_layer"],
        )
    ],
    "last-layer-unnormed-and-hidden": [
        (
            "lenscheck.norms",
            "decode_norm_modules",
            [
                (
                    "return lens_norm_modules(model)",
                    "return lens_norm_modules(model)[:-1] + [None]",
                )
            ],
            [
                "lenscheck.lenses.logit:decode_norm_modules",
                "lenscheck.lens.ablation:decode_norm_modules",
                "lenscheck.plugin.invariants:decode_norm_modules",
            ],
        ),
        (
            "lenscheck.lens.diagnostics",
            "consistency",
            [
                (
                    "kl = kl_bits(model_logits, lens_last)",
                    "kl = kl_bits(model_logits, model_logits)",
                ),
                (
                    "agree = bool((lens_last.argmax(-1) == model_logits.argmax(-1)).all())",
                    "agree = True",
                ),
            ],
            [],
        ),
    ],
    "ablation-decodes-every-point-alike": [
        (
            "lenscheck.lens.ablation",
            "point_rows",
            [
                (
                    "norms = decode_norm_modules(backend.stack, point)",
                    'norms = decode_norm_modules(backend.stack, "next-ln1")',
                )
            ],
            ["lenscheck.lens.pipeline:point_rows"],
        )
    ],
    "rest-mass-halved": [
        (
            "lenscheck.schema",
            "rest_mass",
            [("return max(0.0, 1.0 - total)", "return max(0.0, 1.0 - total) / 2")],
            ["lenscheck.strategies:rest_mass"],
        )
    ],
    "tuned-translator-at-the-neighbouring-layer": [
        (
            "lenscheck.lenses.tuned",
            "TunedLens._translate",
            [
                (
                    "wt = self._wt[layers].to(h32.device)",
                    "wt = self._wt.roll(1, 0)[layers].to(h32.device)",
                )
            ],
            [],
        )
    ],
    "tuned-translator-bias-dropped": [
        (
            "lenscheck.lenses.tuned",
            "TunedLens._translate",
            [("if self._bias is None:", "if True:")],
            [],
        )
    ],
    # Issue 27: a rule that stops firing and a self-check that cannot fail. The committed
    # rows rarely sit near a rule's boundary; test_rules checks the writer's rule on rows
    # at every boundary, and each self-check of test_invariants runs on a canary it must
    # refuse.
    "copy-threshold-weakened": [
        (
            "lenscheck.collapse",
            "collapse_flags",
            [("p1 > copy_threshold and", "p1 > copy_threshold - 0.1 and")],
            ["lenscheck.lens.records:collapse_flags"],
        )
    ],
    "copy-margin-ignored": [
        (
            "lenscheck.collapse",
            "collapse_flags",
            [("(p1 - p2) > copy_margin", "(p1 - p2) >= 0")],
            ["lenscheck.lens.records:collapse_flags"],
        )
    ],
    "entropy-fallback-inclusive": [
        (
            "lenscheck.collapse",
            "collapse_flags",
            [
                (
                    "return entropy_bits < entropy_fallback_threshold",
                    "return entropy_bits <= entropy_fallback_threshold",
                )
            ],
            ["lenscheck.lens.records:collapse_flags"],
        )
    ],
    "layer0-exemption-dropped": [
        (
            "lenscheck.lens.records",
            "pure_records",
            [("**(flags if layer >= start else dict.fromkeys(flags, False)),", "**flags,")],
            ["lenscheck.lens.pipeline:pure_records"],
        )
    ],
    "consistency-check-vacuous": [
        (
            "lenscheck.plugin.invariants",
            "_consistency_problems",
            [
                (
                    "kl_max = float(kl_bits(logits, lens).max())",
                    "kl_max = float(kl_bits(lens, lens).max())",
                ),
                (
                    "agree = bool((lens.argmax(-1) == logits.argmax(-1)).all())",
                    "agree = True",
                ),
            ],
            [],
        )
    ],
    "norm-check-vacuous": [
        (
            "lenscheck.plugin.invariants",
            "_norm_problems",
            [("theirs = reference(module, x)", "theirs = ours")],
            [],
        )
    ],
}


def _metric_fault(function: str, old: str, new: str, module: str = "nexttoken") -> list[Patch]:
    return [(f"lenscheck.metrics.{module}", function, [(old, new)], [])]


#: Issue 24: one one-line fault per value class of the extended schema (standard preset
#: only: the original schema has none of these values).
METRIC_FAULTS: dict[str, list[Patch]] = {
    "kl-direction-swapped": _metric_fault(
        "_pure",
        '"kl_to_final_bits": _floats(f.kl_bits_of(logp, lq.logp.expand_as(logp), lp.p)),',
        '"kl_to_final_bits": _floats(f.kl_bits_of(lq.logp.expand_as(logp), logp)),',
    ),
    "answer-rank-off-by-one": _metric_fault(
        "answer_rank",
        "return (logits > logits[..., token : token + 1]).sum(-1) + 1",
        "return (logits > logits[..., token : token + 1]).sum(-1) + 2",
        module="functions",
    ),
    "p-top5-sums-four": _metric_fault(
        "_pure", '"p_top5": _floats(f.p_topk(logp, 5)),', '"p_top5": _floats(f.p_topk(logp, 4)),'
    ),
    "jaccard-of-the-wrong-layer": _metric_fault(
        "_pure",
        "_JC: [None] + [f.topk_jaccard(sets[i - 1], sets[i]) for i in range(1, n)],",
        "_JC: [None] + [f.topk_jaccard(sets[i - 2], sets[i]) for i in range(1, n)],",
    ),
    "answer-gap-condition-flipped": _metric_fault(
        "_gaps",
        "[g if t else None for g, t in zip(second, top1)],",
        "[None if t else g for g, t in zip(second, top1)],",
    ),
    "milestone-kl-threshold-doubled": _metric_fault(
        "_milestones",
        'out[f"first_kl_below_{b}"] = f.first_layer([x < b for x in kl], start)',
        'out[f"first_kl_below_{b}"] = f.first_layer([x < 2 * b for x in kl], start)',
    ),
    "rawlens-kl-column-swapped": _metric_fault(
        "_rawlens",
        '"kl_raw_to_norm_bits": _floats(f.kl_bits_of(lr.logp, lp.logp, lr.p)),',
        '"kl_raw_to_norm_bits": _floats(f.kl_bits_of(lp.logp, lr.logp, lp.p)),',
    ),
    "raw-summary-layer-off-by-one": _metric_fault(
        "_summary",
        '"max_kl_norm_vs_raw_layer": top,',
        '"max_kl_norm_vs_raw_layer": top + 1,',
    ),
    # A control's margin read the other way round: P(controlled answer) - P(own answer).
    "control-margin-sign-flipped": _metric_fault(
        "_margins",
        "return _floats(f.control_margin(lp.logp, x.answer, x.control_answer, lp.p))",
        "return _floats(f.control_margin(lp.logp, x.control_answer, x.answer, lp.p))",
    ),
}
FAULTS.update(METRIC_FAULTS)

#: Faults that only a tie among equal logits shows (bfloat16 logits tie often; float32 ones
#: on our models never): the rawlens sidecar picks its lens top-1 with a top-k of its own,
#: whose k breaks the tie another way than the records' does.
TIE_FAULTS: dict[str, list[Patch]] = {
    # Patched inside _rawlens: lenscheck.lens.extended holds next_token_metrics by name,
    # so a patch of that function would never run.
    "rawlens-top1-chosen-apart": _metric_fault(
        "_rawlens",
        'norm = _side("norm", pure["p_top1"], top1, x.decode, norm_ans)',
        'norm = _side("norm", pure["p_top1"], _top1_ids(x.lens_logits, None), x.decode, norm_ans)',
    ),
    "ablation-top1-chosen-apart": [
        (
            "lenscheck.lens.ablation",
            "ablation",
            [
                (
                    "stats = (known or {}).get(point)",
                    "stats = None",
                )
            ],
            ["lenscheck.lens.pipeline:ablation"],
        )
    ],
}
