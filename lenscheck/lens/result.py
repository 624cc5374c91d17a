"""What one prompt's run through one lens produced."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from lenscheck.metrics.nexttoken import NextTokenMetrics
    from lenscheck.suites import PromptCase

__all__ = ["LensResult"]


@dataclass
class LensResult:
    """Everything one prompt's lens run produced; ``json_data`` is what the JSON file holds."""

    json_data: dict[str, Any]
    records: list[dict[str, Any]]
    pure_records: list[dict[str, Any]]
    input_ids: list[int]
    entropies: torch.Tensor  # [L+1, T] bits
    top1_ids: torch.Tensor  # [L+1, T]
    residuals: list[torch.Tensor] | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    case: PromptCase | None = None
    #: The lens' name (``logit``, ``tuned``) and its facts (lenscheck.lenses.base.Lens.facts).
    lens: str = "logit"
    lens_facts: dict[str, Any] = field(default_factory=dict)
    #: The extended schema's next-token measurements (None under the original schema): the
    #: pure rows carry its columns, the sidecars are written from it.
    extended: NextTokenMetrics | None = None

    @property
    def diagnostics(self) -> dict[str, Any]:
        """The JSON's diagnostics block."""
        return self.json_data["diagnostics"]  # type: ignore[no-any-return,unused-ignore]
