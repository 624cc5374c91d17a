"""The collapse rules and self-checks, re-derived by the plugin with code of its own.

A golden catches a value that moves; it cannot catch a rule that never fires on the
committed rows, or a check that cannot fail. So ``test_rules`` (a generated test):

* re-derives every next-token row's flags (copy collapse, entropy collapse, is_answer) and
  the collapse layers from the values they are defined on, as the files state them, with
  the thresholds the run recorded: nothing here calls lenscheck.collapse;
* runs the writer's own rule (``lenscheck.lens.records.pure_records``, the code that writes
  the flags) on rows built just above and just below every boundary of the rule (the copy
  threshold, the copy margin, the entropy bits, a prompt token or not, layer 0), so that a
  weakened rule shows on any model, whatever rows its run happens to have.

The boundary rows need no model run of their own: they are tensors handed to the writer
with the model's own tokenizer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lenscheck.golden.payload import PromptFiles
    from lenscheck.plugin.session import LensRun

__all__ = ["check_rules", "derive_flags", "first_layers"]

#: The spec's entropy rules (docs/design.md section 3), written here again on purpose: the
#: copy rule's fallback is strict (< 1 bit), entropy collapse is not (<= 1 bit).
COPY_ENTROPY_BITS = 1.0
COLLAPSE_ENTROPY_BITS = 1.0
_FLAGS = ("copy_collapse", "entropy_collapse", "is_answer")
_MAX_LINES = 8


@dataclass(frozen=True)
class Row:
    """What a next-token row says: its layer, top-1 text, p(top-1), p(top-2), entropy."""

    layer: int
    top1: str
    p1: float
    p2: float
    entropy: float


def _prompt_texts(tokenizer: Any, prompt: str) -> tuple[set[str], set[int]]:
    """The texts and ids of the prompt's tokens (no special tokens), from the tokenizer."""
    ids = [int(i) for i in tokenizer(prompt, add_special_tokens=False)["input_ids"]]
    return {str(tokenizer.decode([i])) for i in ids}, set(ids)


def _is_prompt_token(tokenizer: Any, text: str, texts: set[str], ids: set[int]) -> bool | None:
    """Whether a top-1 shown as ``text`` is one of the prompt's ids; None when the text
    cannot say (several ids decode to it: a byte fragment shows as U+FFFD)."""
    if text not in texts:
        return False
    if "\ufffd" in text:
        return None
    own = [int(i) for i in tokenizer(text, add_special_tokens=False)["input_ids"]]
    return own[0] in ids if len(own) == 1 else None


def derive_flags(
    row: Row, in_prompt: bool | None, facts: dict[str, Any], answer: str
) -> dict[str, bool | None]:
    """The three flags of one row by the spec (None: undecidable from the files)."""
    if row.layer < int(facts.get("collapse_from_layer") or 0):
        return dict.fromkeys(_FLAGS, False)
    threshold, margin = float(facts["copy_threshold"]), float(facts["copy_margin"])
    strong = row.p1 > threshold and row.p1 - row.p2 > margin
    copy: bool | None
    if row.entropy < COPY_ENTROPY_BITS:
        copy = True
    elif not strong:
        copy = False
    else:
        copy = in_prompt
    return {
        "copy_collapse": copy,
        "entropy_collapse": row.entropy <= COLLAPSE_ENTROPY_BITS,
        "is_answer": row.top1.strip() == answer.strip(),
    }


def first_layers(flags: list[dict[str, Any]]) -> dict[str, int | None]:
    """L_copy, L_copy_H, L_semantic: the first layer of each flag; delta_layers."""

    def first(name: str) -> int | None:
        return next((n for n, f in enumerate(flags) if f[name]), None)

    out = {"L_copy": first("copy_collapse"), "L_copy_H": first("entropy_collapse")}
    out["L_semantic"] = first("is_answer")
    both = out["L_copy"] is not None and out["L_semantic"] is not None
    out["delta_layers"] = out["L_semantic"] - out["L_copy"] if both else None  # type: ignore[operator]
    return out


def _rows(files: PromptFiles) -> list[tuple[Row, dict[str, bool]]]:
    out = []
    for r in files.pure.rows:
        p2 = r.topk[1][1] if len(r.topk) > 1 else 0.0
        written = dict(zip(_FLAGS, r.flags))
        out.append((Row(r.layer, r.topk[0][0], r.topk[0][1], p2, r.entropy), written))
    return out


def _facts(diag: dict[str, Any]) -> dict[str, Any]:
    return {
        "copy_threshold": diag["copy_threshold"],
        "copy_margin": diag["copy_margin"],
        "collapse_from_layer": diag.get("collapse_from_layer", 0),
    }


def _prompt_problems(prompt: str, tokenizer: Any, files: PromptFiles) -> list[str]:
    """The written flags and collapse layers against the re-derivation."""
    diag = files.json["diagnostics"]
    texts, ids = _prompt_texts(tokenizer, files.json["prompt"]["context_prompt"])
    answer = files.json["prompt"]["ground_truth"]
    facts = _facts(diag)
    problems, derived = [], []
    for row, written in _rows(files):
        in_prompt = _is_prompt_token(tokenizer, row.top1, texts, ids)
        mine = derive_flags(row, in_prompt, facts, answer)
        derived.append({k: written[k] if v is None else v for k, v in mine.items()})
        for name, value in mine.items():
            if value is not None and value != written[name]:
                problems.append(
                    f"{prompt}: layer {row.layer} {name} written {written[name]} but the rule "
                    f"gives {value} (top-1 {row.top1!r} p1 {row.p1:.6g} p2 {row.p2:.6g} entropy "
                    f"{row.entropy:.6g}; copy_threshold {facts['copy_threshold']}, copy_margin "
                    f"{facts['copy_margin']}, collapse_from_layer {facts['collapse_from_layer']})"
                )
    for name, layer in first_layers(derived).items():
        if diag.get(name) != layer:
            problems.append(f"{prompt}: {name} written {diag.get(name)} but the flags give {layer}")
    return problems


def _boundary_problems(lens_run: LensRun, prompt: str) -> list[str]:
    """The writer's rule on rows at every boundary, against :func:`derive_flags`."""
    import torch

    from lenscheck.lens.records import pure_records

    backend = lens_run.run.backend
    result = lens_run.result(prompt)
    cfg = _config_of(lens_run, prompt)
    ids = sorted(set(backend.prompt_ids(cfg.prompt)))
    outside = next(i for i in range(backend.facts.d_vocab) if i not in ids)
    t, m = cfg.copy_threshold, cfg.copy_margin
    eps = 1e-4
    # (p1, p2, entropy, in the prompt): each rule's boundary from both sides.
    cases = [
        (t + eps, 0.0, 2.0, True),
        (t - eps, 0.0, 2.0, True),
        (min(t + 2 * eps, 1.0), min(t + 2 * eps, 1.0) - m - eps, 2.0, True),
        (min(t + 2 * eps, 1.0), min(t + 2 * eps, 1.0) - m + eps, 2.0, True),
        (t + eps, 0.0, 2.0, False),
        (0.5, 0.4, COPY_ENTROPY_BITS - eps, False),
        (0.5, 0.4, COPY_ENTROPY_BITS + eps, False),
        (0.5, 0.4, COLLAPSE_ENTROPY_BITS, False),
    ]
    start = int(result.diagnostics.get("collapse_from_layer", 0) or 0)
    layers = len(cases) + start
    # Layer 0 under the extended schema: a row every rule would fire on, exempt there.
    top_ids = [[[ids[0], outside]] for _ in range(start)]
    top_p = [[[0.99, 0.0]] for _ in range(start)]
    ent = []
    for p1, p2, e, inside in cases:
        first = ids[0] if inside else outside
        top_ids.append([[first, outside if inside else ids[0]]])
        top_p.append([[p1, p2]])
        ent.append(e)
    ent_t = torch.tensor([[0.5]] * start + [[e] for e in ent])
    rows = pure_records(backend, cfg, set(ids), ent_t, top_ids, top_p)
    facts = {"copy_threshold": t, "copy_margin": m, "collapse_from_layer": start}
    problems = []
    for n, row in enumerate(rows):
        inside = n < start or cases[n - start][3]
        mine = derive_flags(
            Row(n, str(row["topk"][0][0]), top_p[n][0][0], top_p[n][0][1], float(ent_t[n, 0])),
            inside,
            facts,
            cfg.ground_truth,
        )
        for name, value in mine.items():
            if value is not None and bool(row[name]) != value:
                problems.append(
                    f"{prompt}: the writer's rule gives {name}={row[name]} on a boundary row "
                    f"(layer {n}, p1 {top_p[n][0][0]:.6g}, p2 {top_p[n][0][1]:.6g}, entropy "
                    f"{float(ent_t[n, 0]):.6g}, top-1 in the prompt: {inside}); the spec gives "
                    f"{value}"
                )
    assert len(rows) == layers
    return problems


def _config_of(lens_run: LensRun, prompt: str) -> Any:
    """The configuration the run read ``prompt`` with (its thresholds, schema, answer)."""
    files = lens_run.files[prompt]
    diag = files.json["diagnostics"]
    from lenscheck.config import LensConfig
    from lenscheck.vocab import SCHEMA_EXTENDED, SCHEMA_ORIGINAL, Schema

    schema: Schema = SCHEMA_EXTENDED if "collapse_from_layer" in diag else SCHEMA_ORIGINAL
    return LensConfig(
        prompt=files.json["prompt"]["context_prompt"],
        ground_truth=files.json["prompt"]["ground_truth"],
        copy_threshold=float(diag["copy_threshold"]),
        copy_margin=float(diag["copy_margin"]),
        schema=schema,
    )


def check_rules(lens_run: LensRun) -> list[str]:
    """Every disagreement between what the files say and the re-derived rules (empty when
    all agree), with each rule also checked on boundary rows through the writer."""
    tokenizer = lens_run.run.backend.codec.tokenizer
    problems: list[str] = []
    for prompt, files in lens_run.files.items():
        problems += _prompt_problems(prompt, tokenizer, files)
        problems += _boundary_problems(lens_run, prompt)
    return problems[:_MAX_LINES] + (
        [f"... and {len(problems) - _MAX_LINES} more"] if len(problems) > _MAX_LINES else []
    )
