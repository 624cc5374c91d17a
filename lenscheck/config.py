"""One frozen configuration object carried from the CLI and the plugin to the lens."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from lenscheck._validate import check_positive_int, check_unit_interval
from lenscheck.collapse import DEFAULT_COPY_MARGIN, DEFAULT_COPY_THRESHOLD
from lenscheck.device import DEVICES, parse_dtype
from lenscheck.lenses import DEFAULT_LENSES, parse_lens_specs
from lenscheck.norms import DECODE_NORMS, DecodeNorm
from lenscheck.prompts import CONTEXT_PROMPT, GROUND_TRUTH, TEST_PROMPTS
from lenscheck.schema import TOP_K_RECORD, TOP_K_VERBOSE
from lenscheck.suites import DEFAULT_SUITE, PromptCase, PromptSuite

__all__ = ["BACKENDS", "Backend", "LensConfig"]

Backend = Literal["transformers", "transformer-lens", "hooked-transformer"]
# transformer-lens = TransformerLens' TransformerBridge (3.9+ and 4.x);
# hooked-transformer = TransformerLens 3.x HookedTransformer, as the original pipeline.
BACKENDS: tuple[Backend, ...] = ("transformers", "transformer-lens", "hooked-transformer")


@dataclass(frozen=True)
class LensConfig:
    """Every option of a lens run. Validated on construction; use :meth:`evolve` to change."""

    device: str = "auto"
    dtype: str = "auto"
    backend: Backend = "transformers"
    copy_threshold: float = DEFAULT_COPY_THRESHOLD
    copy_margin: float = DEFAULT_COPY_MARGIN
    fp32_unembed: bool = False
    keep_residuals: bool = False
    self_test: bool = False
    trust_remote_code: bool = False
    heatmap: bool = True
    device_map: str | None = None
    prompt: str = CONTEXT_PROMPT
    ground_truth: str = GROUND_TRUTH
    test_prompts: tuple[str, ...] = field(default=TEST_PROMPTS)
    top_k_record: int = TOP_K_RECORD
    top_k_verbose: int = TOP_K_VERBOSE
    seed: int = 316
    model_source: str = "hub"  # embedded, synthetic, local or hub (recorded in diagnostics)
    decode_norm: DecodeNorm = "next-ln1"
    #: The lenses a run reads, as specs (lenscheck.lenses): ``logit`` (the logit lens at
    #: ``decode_norm``), ``tuned=PATH`` (a tuned-lens checkpoint folder); each writes its files.
    lenses: tuple[str, ...] = DEFAULT_LENSES
    #: The prompts of a whole run (CLI --prompts, pytest --lens-prompts); None: the single
    #: prompt above (the built-in default suite when it is the original's).
    suite: PromptSuite | None = None

    def __post_init__(self) -> None:
        check_unit_interval("copy_threshold", self.copy_threshold)
        check_unit_interval("copy_margin", self.copy_margin)
        check_positive_int("top_k_record", self.top_k_record)
        check_positive_int("top_k_verbose", self.top_k_verbose)
        if self.top_k_record > self.top_k_verbose:
            raise ValueError(
                f"top_k_record ({self.top_k_record}) must not exceed top_k_verbose "
                f"({self.top_k_verbose})"
            )
        if self.decode_norm not in DECODE_NORMS:
            raise ValueError(
                f"decode_norm must be one of {', '.join(DECODE_NORMS)}, got {self.decode_norm!r}"
            )
        if isinstance(self.lenses, str) or not isinstance(self.lenses, tuple):
            raise ValueError(
                f"lenses must be a tuple of lens specs, e.g. ('logit', 'tuned=PATH'), "
                f"got {self.lenses!r}"
            )
        parse_lens_specs(self.lenses)
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if not self.prompt.strip():
            raise ValueError("prompt is empty; expected the text the lens reads the model on")
        if not self.ground_truth.strip():
            raise ValueError("ground_truth is empty; expected the answer token text, e.g. 'Berlin'")
        if self.device not in DEVICES and not self.device.startswith("cuda:"):
            raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        parse_dtype(self.dtype)

    def evolve(self, **changes: object) -> LensConfig:
        """A copy with ``changes`` applied (and validated)."""
        return replace(self, **changes)  # type: ignore[arg-type]

    def prompt_suite(self) -> PromptSuite:
        """The suite this configuration runs: ``suite``, else the single prompt above."""
        if self.suite is not None:
            return self.suite
        (default,) = DEFAULT_SUITE.cases
        case = PromptCase(default.id, self.prompt, self.ground_truth, self.test_prompts)
        return (
            DEFAULT_SUITE
            if case == default
            else PromptSuite.one_off(self.prompt, self.ground_truth, self.test_prompts)
        )

    def for_case(self, prompt: str, answer: str, probes: tuple[str, ...]) -> LensConfig:
        """This configuration reading one prompt of a suite."""
        return replace(self, prompt=prompt, ground_truth=answer, test_prompts=probes, suite=None)
