"""The logit lens: each layer's residual through a norm of the model's own, then its own
unembedding. The decoding point (``next-ln1``, ``final``, ``raw``: :data:`DecodeNorm`)
chooses the norm; see lenscheck.norms."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lenscheck.lenses.base import Lens
from lenscheck.norms import DECODE_NORMS, apply_norm_or_skip, decode_norm_modules
from lenscheck.vocab import NEXT_LN1, RAW

if TYPE_CHECKING:
    import torch

    from lenscheck.backends.base import LensBackend
    from lenscheck.config import LensConfig

__all__ = ["LogitLens", "lens_logits", "normalized_residuals"]


def normalized_residuals(
    backend: LensBackend, residuals: list[torch.Tensor], point: str = NEXT_LN1
) -> torch.Tensor:
    """Each layer's residual through the norm of decoding ``point``: [L+1, T, d]."""
    import torch

    norms = decode_norm_modules(backend.stack, point)
    return torch.stack([apply_norm_or_skip(r, m) for r, m in zip(residuals, norms)])


def lens_logits(
    backend: LensBackend, residuals: list[torch.Tensor], point: str = NEXT_LN1
) -> torch.Tensor:
    """The lens' fp32 logits for every layer and position at once: [L+1, T, V]."""
    return backend.unembed(normalized_residuals(backend, residuals, point))


class LogitLens(Lens):
    """The logit lens at one decoding point (a run's ``decode_norm``)."""

    kind = "logit"

    def __init__(self, backend: LensBackend, point: str = NEXT_LN1) -> None:
        if point not in DECODE_NORMS:
            raise ValueError(f"decode norm must be one of {', '.join(DECODE_NORMS)}, got {point!r}")
        super().__init__(backend)
        self.point = point
        self._norms: list[Any] | None = None

    @classmethod
    def bind(cls, backend: LensBackend, cfg: LensConfig, arg: str | None, opened: Any) -> LogitLens:
        """The logit lens at ``cfg.decode_norm``."""
        return cls(backend, cfg.decode_norm)

    @property
    def where(self) -> str:
        return f"decoding point {self.point}"

    def facts(self) -> dict[str, Any]:
        return {"kind": self.kind, "decode_norm": self.point}

    @property
    def last_layer_is_the_model_head(self) -> bool:
        # next-ln1 and final decode the last layer through the norm before the unembedding.
        return self.point != RAW

    def _layer_norms(self) -> list[Any]:
        if self._norms is None:
            self._norms = decode_norm_modules(self.backend.stack, self.point)
        return self._norms

    def prepare_layer(self, layer: int, residual: torch.Tensor) -> torch.Tensor:
        return apply_norm_or_skip(residual, self._layer_norms()[layer])

    def prepare(self, residuals: Sequence[torch.Tensor]) -> torch.Tensor:
        return normalized_residuals(self.backend, list(residuals), self.point)
