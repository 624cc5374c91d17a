"""Entropy and top-k of every (layer, position) of every prompt, through one lens.

Every layer of every prompt is prepared by the lens at once, then read out in row chunks:
rows are layer-major over the prompts' positions laid end to end. Chunking bounds the peak
memory to a few [rows, V] fp32 buffers at the same arithmetic cost; each step works row by
row, so each prompt's numbers are those it has alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from lenscheck.lens.finite import diagnose_nan_entropy
from lenscheck.lenses.logit import LogitLens
from lenscheck.numerics import TopK, softmax_entropy, topk_probs
from lenscheck.vocab import NEXT_LN1

if TYPE_CHECKING:
    from lenscheck.backends.base import LensBackend
    from lenscheck.lenses.base import Lens

__all__ = ["VOCAB", "LensStats", "Scratch", "even_chunk", "lens_stats", "lens_stats_batch"]

#: Logits per unembedding chunk (16 Mi fp32 values = 64 MiB); a run holds two buffers of
#: that size (:class:`Scratch`). Each chunk streams all of W_U once: on the embedded model
#: a 341-row chunk costs 10% less per row than a 170-row one (a CPU, one thread), while
#: doubling it again gains nothing more (the softmax passes then leave the cache).
_CHUNK_LOGITS = 1 << 24
#: The vocabulary axis of every logits tensor here ([rows, V], [L+1, V], [T, V]).
VOCAB = -1


@dataclass
class LensStats:
    """Per layer and position: entropy, top-k; plus the rows later checks need."""

    entropy: torch.Tensor  # [L+1, T]
    top_ids: torch.Tensor  # [L+1, T, k]
    top_probs: torch.Tensor  # [L+1, T, k]
    last_layer: torch.Tensor  # [T, V] lens logits at the last layer
    next_token: torch.Tensor  # [L+1, V] lens logits at the last position
    next_token_probs: torch.Tensor  # [L+1, V] their softmax, as the entropies read it
    #: The logits of the rows given as ``tail`` (:func:`lens_stats_batch`), else None.
    tail: torch.Tensor | None = None

    def next_token_top1(self) -> list[int]:
        """The top-1 id per layer at the last position, as the records have it: every file
        names this one among tied logits."""
        return [int(i) for i in self.top_ids[:, -1, 0].tolist()]


class Scratch:
    """fp32 [rows, V] work buffers kept across the prompts and lenses of a run, by use: the
    unembedding's two (``"logits"``, ``"softmax"``) and the decoding points' logits
    (``"points"``). Each prompt's fresh buffers were new pages from the OS, zeroed on first
    touch, which cost more than the arithmetic on them on a CPU. Nothing a result keeps
    points into them: a buffer is overwritten by the next prompt."""

    def __init__(self) -> None:
        self._held: dict[str, torch.Tensor] = {}

    def take(self, use: str, rows: int, vocab: int, device: torch.device) -> torch.Tensor:
        """An uninitialized [rows, vocab] fp32 buffer on ``device`` for ``use``: the one
        held for it when it is as wide and at least as long, else a new one."""
        held = self._held.get(use)
        if held is None or held.device != device or held.shape[1] != vocab or len(held) < rows:
            held = self._held[use] = _fp32(device, rows, vocab)
        return held[:rows]


def even_chunk(rows: int, limit: int) -> int:
    """The chunk length that reads ``rows`` out in as few chunks of at most ``limit`` rows
    as can be, all of one length but the last (shorter by less than the chunk count).

    Each chunk streams all of W_U once, and a short chunk pays that for few rows: on the
    embedded model a 496-row prompt in 341 + 155 rows cost 3% more than in 248 + 248
    (a CPU, one thread). A row's logits do not depend on the chunk's length: the matmul
    kernels give the same bits for any row count from a few dozen up.
    """
    chunks = -(-rows // limit)
    return max(1, -(-rows // max(chunks, 1)))


def _fp32(device: torch.device, *shape: int) -> torch.Tensor:
    return torch.empty(shape, dtype=torch.float32, device=device)


def lens_stats(
    backend: LensBackend,
    residuals: list[torch.Tensor],
    k: int,
    point: str = NEXT_LN1,
    *,
    lens: Lens | None = None,
    original: bool = False,
    scratch: Scratch | None = None,
    tail: torch.Tensor | None = None,
) -> LensStats:
    """:func:`lens_stats_batch` for one prompt."""
    return lens_stats_batch(
        backend, [residuals], k, point, lens=lens, original=original, scratch=scratch, tail=tail
    )[0]


@dataclass
class _Layout:
    """The rows a batch reads out, and where each prompt's rows lie among them."""

    rows: torch.Tensor  # [n_layers * width, d']
    lengths: list[int]
    n_layers: int
    width: int  # every prompt's positions laid end to end

    @property
    def top_row(self) -> int:
        """The first row of the last layer."""
        return (self.n_layers - 1) * self.width

    def next_token_rows(self) -> list[tuple[int, int, int]]:
        """(prompt, layer, row) of each prompt's last position at every layer."""
        ends = torch.tensor(self.lengths).cumsum(0) - 1
        return [
            (p, layer, layer * self.width + int(end))
            for p, end in enumerate(ends)
            for layer in range(self.n_layers)
        ]


def _layout(lens: Lens, prompts: Sequence[list[torch.Tensor]]) -> _Layout:
    prepared = lens.prepare_batch(prompts)
    n_layers, width = prepared.shape[0], prepared.shape[1]
    rows = prepared.reshape(n_layers * width, prepared.shape[-1])
    return _Layout(rows, [p[0].shape[0] for p in prompts], n_layers, width)


@dataclass
class _Buffers:
    """Every [rows, V] buffer of a batch, made once and filled in place. Fresh buffers per
    chunk, with the small copies made between them, fragmented the heap: the allocator grew
    it by a buffer per chunk instead of reusing the freed ones (+190 MiB peak RSS on the
    embedded model, varying from run to run)."""

    logits: torch.Tensor  # [chunk, V]; then the entropy's scratch (z - max z)
    dist: torch.Tensor  # [chunk, V] softmax
    next_token: torch.Tensor  # [prompts, L+1, V]
    next_token_probs: torch.Tensor  # [prompts, L+1, V]
    last_layer: torch.Tensor  # [width, V]


def _buffers(layout: _Layout, chunk: int, total: int, vocab: int, scratch: Scratch) -> _Buffers:
    device = layout.rows.device
    rows = min(chunk, total)
    logits, dist = (scratch.take(use, rows, vocab, device) for use in ("logits", "softmax"))
    # Fresh: the prompt's results keep the logits, and a run holds every lens' probabilities
    # of a prompt at once (its decoding-point ablation reads them).
    next_token, next_probs = (
        _fp32(device, len(layout.lengths), layout.n_layers, vocab) for _ in range(2)
    )
    return _Buffers(logits, dist, next_token, next_probs, _fp32(device, layout.width, vocab))


def _keep_rows(
    logits: torch.Tensor,
    dist: torch.Tensor,
    start: int,
    layout: _Layout,
    wanted: list[tuple[int, int, int]],
    bufs: _Buffers,
) -> None:
    """Copy the chunk's next-token rows (logits and softmax) and its rows of the last layer
    (logits) out of ``logits`` and ``dist``."""
    stop = start + logits.shape[0]
    for p, layer, row in wanted:
        if start <= row < stop:
            bufs.next_token[p, layer].copy_(logits[row - start])
            bufs.next_token_probs[p, layer].copy_(dist[row - start])
    top_row = layout.top_row
    # The chunk's rows of the last layer (none before it: both slices are then empty).
    bufs.last_layer[max(start - top_row, 0) : max(stop - top_row, 0)].copy_(
        logits[max(top_row - start, 0) :]
    )


def _checked_entropy(
    lens: Lens,
    dist: torch.Tensor,
    logits: torch.Tensor,
    top: TopK,
    original: bool,
    part: torch.Tensor,
    start: int,
    width: int,
) -> torch.Tensor:
    """Entropy of the chunk's softmax; overwrites ``logits`` (kept rows are copied out).

    A row holding NaN or +inf, or only -inf, has a NaN softmax and so a NaN entropy; masked
    (-inf) ids alone do not. Checking the [rows] entropies instead of the [rows, V] logits
    saves five passes over the logits; the diagnosis, on failure only, reads the chunk out
    again.
    """
    ent = softmax_entropy(dist, logits, top.ids, original=original, work=logits)
    if not bool(torch.isfinite(ent).all()):
        diagnose_nan_entropy(lens.readout(part), start, width, lens.where, lens.readout_dtype)
    return ent


def _reduce_chunk(
    logits: torch.Tensor, bufs: _Buffers, k: int
) -> tuple[torch.Tensor, torch.Tensor, TopK]:
    """The chunk's softmax (in the softmax buffer) and top-``k`` from that softmax."""
    dist = bufs.dist[: logits.shape[0]]
    torch.softmax(logits.float(), dim=VOCAB, out=dist)
    return logits, dist, topk_probs(logits, k, probs=dist)


def _with_tail(rows: torch.Tensor, tail: torch.Tensor | None) -> torch.Tensor:
    """The layout's rows, then ``tail``'s, in one dtype both convert to exactly."""
    if tail is None:
        return rows
    dtype = torch.promote_types(rows.dtype, tail.dtype)
    return torch.cat([rows.to(dtype), tail.to(dtype)])


def _keep_tail(logits: torch.Tensor, start: int, n_rows: int, out: torch.Tensor | None) -> int:
    """Copy the chunk's tail rows (those at or after row ``n_rows`` of the batch) into
    ``out``; the number of the chunk's rows before them."""
    stop = start + logits.shape[0]
    real = max(0, min(stop, n_rows) - start)
    if out is not None and stop > n_rows:
        out[max(start - n_rows, 0) : stop - n_rows].copy_(logits[real:])
    return real


def _per_prompt(
    layout: _Layout,
    bufs: _Buffers,
    ent: list[torch.Tensor],
    ids: list[torch.Tensor],
    probs: list[torch.Tensor],
) -> list[LensStats]:
    """Each prompt's columns of the batch's [L+1, width] statistics."""
    n_layers, width = layout.n_layers, layout.width
    entropy = torch.cat(ent).reshape(n_layers, width)
    top_ids = torch.cat(ids).reshape(n_layers, width, -1)
    top_probs = torch.cat(probs).reshape(n_layers, width, -1)
    out, offset = [], 0
    for p, n in enumerate(layout.lengths):
        cols = slice(offset, offset + n)
        out.append(
            LensStats(
                entropy=entropy[:, cols],
                top_ids=top_ids[:, cols],
                top_probs=top_probs[:, cols],
                last_layer=bufs.last_layer[cols],
                next_token=bufs.next_token[p],
                next_token_probs=bufs.next_token_probs[p],
            )
        )
        offset += n
    return out


def lens_stats_batch(
    backend: LensBackend,
    prompts: Sequence[list[torch.Tensor]],
    k: int,
    point: str = NEXT_LN1,
    *,
    lens: Lens | None = None,
    original: bool = False,
    scratch: Scratch | None = None,
    tail: torch.Tensor | None = None,
) -> list[LensStats]:
    """Read every (layer, position) of every prompt out through ``lens`` (default: the
    logit lens at ``point``) in row chunks, reduce each chunk; one result per prompt.
    ``original``: the original pipeline's entropy formula (see softmax_entropy).
    ``scratch``: work buffers to reuse (a run passes one for all its prompts).
    ``tail``: more rows [n, d] read out through the lens' readout in the same chunks,
    after the prompts' own, their logits kept unreduced in the first result's ``tail``
    (in ``scratch``'s ``"points"`` buffer when given: valid until its next use)."""
    lens = lens if lens is not None else LogitLens(backend, point)
    layout = _layout(lens, prompts)
    vocab = backend.facts.d_vocab
    rows, n_rows = _with_tail(layout.rows, tail), layout.rows.shape[0]
    chunk = even_chunk(rows.shape[0], max(1, _CHUNK_LOGITS // vocab))
    scratch = scratch if scratch is not None else Scratch()
    bufs = _buffers(layout, chunk, rows.shape[0], vocab, scratch)
    kept = None if tail is None else scratch.take("points", tail.shape[0], vocab, rows.device)
    wanted = layout.next_token_rows()
    ent, ids, probs = [], [], []
    for start in range(0, rows.shape[0], chunk):
        part = rows[start : start + chunk]
        logits = lens.readout(part, out=bufs.logits[: part.shape[0]])
        real = _keep_tail(logits, start, n_rows, kept)
        if not real:
            continue
        part, (logits, dist, top) = part[:real], _reduce_chunk(logits[:real], bufs, k)
        ids.append(top.ids)
        probs.append(top.probs)
        _keep_rows(logits, dist, start, layout, wanted, bufs)
        ent.append(_checked_entropy(lens, dist, logits, top, original, part, start, layout.width))
    out = _per_prompt(layout, bufs, ent, ids, probs)
    out[0].tail = kept
    return out
