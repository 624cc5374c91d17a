"""What every lens is: a way to read one layer's residual as next-token logits.

A lens maps each layer's residual to the vector a shared readout turns into logits
(:meth:`Lens.prepare`), and that readout (:meth:`Lens.readout`, by default the model's own
unembedding). The pipeline prepares every layer of every prompt at once and runs the
readout in row chunks; :meth:`Lens.decode` is the same for one layer, for checks and callers
that read a layer at a time.

A kind is a subclass with a ``kind`` name, constructed from a spec's argument by
:meth:`Lens.bind` (after :meth:`Lens.open` read what it needs from disk, before any model
loads). Register it in :data:`lenscheck.lenses.LENS_KINDS`.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

# torch is imported inside the functions that need it: lenscheck.config imports the
# registry, and `import lenscheck` must stay free of torch.
if TYPE_CHECKING:
    import torch

    from lenscheck.backends.base import LensBackend
    from lenscheck.config import LensConfig

__all__ = ["Lens", "LensSpecError"]


class LensSpecError(ValueError):
    """A lens spec, or what it names, that lenscheck cannot use; the message says why and
    what fixes it. Raised before any output is written."""


class Lens(abc.ABC):
    """One kind of lens bound to a loaded model (its backend)."""

    #: The kind's name in specs (``logit``, ``tuned``) and in file names.
    kind: ClassVar[str]
    #: What the spec's argument is (``PATH``), or None for a kind that takes none.
    argument: ClassVar[str | None] = None

    def __init__(self, backend: LensBackend) -> None:
        self.backend = backend

    # --- constructors from a spec -------------------------------------------------------

    @classmethod
    def check_argument(cls, arg: str | None) -> None:
        """Refuse a spec argument of the wrong shape (no file is read here)."""
        if cls.argument is None and arg is not None:
            raise LensSpecError(f"lens {cls.kind!r} takes no argument, got {cls.kind}={arg}")
        if cls.argument is not None and not arg:
            raise LensSpecError(
                f"lens {cls.kind!r} needs an argument: {cls.kind}={cls.argument}, got {arg!r}"
            )

    @classmethod
    def open(cls, arg: str | None) -> Any:
        """Read and check what the lens needs from disk, before any model loads (the
        default: nothing). What it returns is handed to :meth:`bind`."""
        return None

    @classmethod
    @abc.abstractmethod
    def bind(cls, backend: LensBackend, cfg: LensConfig, arg: str | None, opened: Any) -> Lens:
        """The lens for ``backend``; refuses what does not fit the model."""

    # --- what a run records ---------------------------------------------------------------

    @property
    def name(self) -> str:
        """The lens' name in results, file names and goldens."""
        return self.kind

    @property
    def where(self) -> str:
        """How error messages name this lens (``decoding point next-ln1``)."""
        return f"{self.kind} lens"

    @abc.abstractmethod
    def facts(self) -> dict[str, Any]:
        """JSON-ready facts that identify the lens: what a golden pins beside its values."""

    @property
    def last_layer_is_the_model_head(self) -> bool:
        """Whether the last layer decodes through the norm in front of the unembedding, as
        the model itself does (the last-layer consistency diagnostic reads it then)."""
        return True

    # --- decoding ---------------------------------------------------------------------------

    @abc.abstractmethod
    def prepare_layer(self, layer: int, residual: torch.Tensor) -> torch.Tensor:
        """Layer ``layer``'s residual [..., d] mapped to what :meth:`readout` reads."""

    def prepare(self, residuals: Sequence[torch.Tensor]) -> torch.Tensor:
        """Every layer of one prompt: [L+1, T, d']."""
        import torch

        return torch.stack([self.prepare_layer(n, r) for n, r in enumerate(residuals)])

    def prepare_batch(self, prompts: Sequence[Sequence[torch.Tensor]]) -> torch.Tensor:
        """Every layer of every prompt, positions laid end to end: [L+1, sum(T), d']."""
        import torch

        return torch.cat([self.prepare(p) for p in prompts], dim=1)

    def readout(
        self, rows: torch.Tensor, *, fp32: bool = False, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """fp32 logits [..., V] of prepared rows: the model's own unembedding (see
        :class:`lenscheck.backends.base.Unembedder` for ``fp32`` and ``out``)."""
        return self.backend.unembed(rows, fp32=fp32, out=out)

    @property
    def readout_dtype(self) -> torch.dtype:
        """The dtype the readout's matmul runs in (error messages name it)."""
        return self.backend.unembed.dtype

    def decode(self, layer: int, residual: torch.Tensor) -> torch.Tensor:
        """fp32 logits [..., V] of layer ``layer``'s residual [..., d]."""
        return self.readout(self.prepare_layer(layer, residual))

    def decode_all(self, residuals: Sequence[torch.Tensor]) -> torch.Tensor:
        """fp32 logits of every layer and position of one prompt at once: [L+1, T, V]."""
        return self.readout(self.prepare(residuals))
