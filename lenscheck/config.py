"""One frozen configuration object carried from the CLI and the plugin to the lens, and the
one declaration of every run option.

Each :class:`LensConfig` field that a user can set is declared with :func:`option`: its type
and default are the field's, its metadata says how every front end spells it. The CLI
parser, the plugin's options and ini keys, the argv of the CLI's per-model subprocesses and
the re-bless command the plugin prints are all generated from these declarations
(:mod:`lenscheck.options`), so adding an option is one field here. Standard library only:
the pytest plugin imports this module in every session to register its options.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from lenscheck._validate import check_positive_int, check_unit_interval
from lenscheck.prompts import CONTEXT_PROMPT, GROUND_TRUTH, TEST_PROMPTS
from lenscheck.vocab import (
    BACKENDS,
    BOS_ALWAYS,
    BOS_AUTO,
    BOS_POLICIES,
    DECODE_POINTS,
    DEFAULT_COPY_MARGIN,
    DEFAULT_COPY_THRESHOLD,
    DEVICES,
    DTYPE_ALIASES,
    DTYPES,
    FINAL,
    NEXT_LN1,
    PRESET_ORIGINAL,
    PRESET_STANDARD,
    PRESETS,
    SCHEMA_EXTENDED,
    SCHEMA_ORIGINAL,
    SCHEMAS,
    TOP_K_RECORD,
    TOP_K_VERBOSE,
    Backend,
    BosPolicy,
    DecodePoint,
    Preset,
    Schema,
)

if TYPE_CHECKING:
    from lenscheck.suites import PromptSuite

__all__ = [
    "BACKENDS",
    "PRESET_SETTINGS",
    "Backend",
    "LensConfig",
    "Option",
    "OptionError",
    "option",
    "run_options",
]

#: What each preset sets; an option given explicitly wins. ``standard``: the model's own
#: conventions (the final-norm logit lens, as tuned-lens' LogitLens, nnterp and
#: TransformerLens' apply_ln read it; the tokenizer's own BOS); ``original``: the original
#: pipeline's (the next block's ln1, BOS always), under which the built-in experiment's
#: files are byte-identical to the published run.
PRESET_SETTINGS: dict[str, dict[str, str]] = {
    PRESET_STANDARD: {"decode_norm": FINAL, "bos": BOS_AUTO, "schema": SCHEMA_EXTENDED},
    PRESET_ORIGINAL: {"decode_norm": NEXT_LN1, "bos": BOS_ALWAYS, "schema": SCHEMA_ORIGINAL},
}

#: How an option's text becomes the field's value: ``choice`` (one of ``choices``), ``unit``
#: (a number in [0, 1]), ``flag`` (on/off), ``text`` (any string), ``suite`` (a prompt-suite
#: file, read relative to the caller's base folder), ``specs`` (a comma-separated list).
OptionKind = Literal["choice", "unit", "flag", "text", "suite", "specs"]


class OptionError(ValueError):
    """An option value that cannot be used. ``detail`` says what was expected and found; each
    front end names the option its own way (``--lens-dtype``, ``--dtype``, ``dtype``)."""

    def __init__(self, name: str, detail: str) -> None:
        self.name, self.detail = name, detail
        super().__init__(f"{name}: {detail}")


class Option:
    """How one :class:`LensConfig` field is set from the CLI, the plugin and its ini file.

    ``golden``: the option selects or shapes what a golden pins, so the plugin's re-bless
    command carries it. ``cli``/``plugin``: which front ends offer it. ``cli_flag``: the CLI's
    spelling when it is not ``--<word>`` (``--no-heatmap`` with ``inverted``: the flag turns
    the field off). ``word``: how users name the option when it is not the field's name
    (``prompts`` for the field ``suite``: ``--prompts``, ``--lens-prompts``, ``lens_prompts``).
    ``accepts``: a check for values beyond ``choices``, described by ``accepts_text``
    (``cuda:N``). ``preset``: left unset, the field takes the value of the run's preset
    (:data:`PRESET_SETTINGS`).

    A plain class, not a dataclass: the plugin imports this module in every pytest session,
    and each generated dataclass method costs a compile.
    """

    __slots__ = (
        "accepts",
        "accepts_text",
        "aliases",
        "choices",
        "cli",
        "cli_flag",
        "golden",
        "help",
        "inverted",
        "kind",
        "metavar",
        "name",
        "plugin",
        "plugin_word",
        "preset",
        "word",
    )

    def __init__(
        self,
        help: str,
        kind: OptionKind = "text",
        choices: tuple[str, ...] = (),
        aliases: Mapping[str, str] | None = None,
        accepts: Callable[[str], bool] | None = None,
        accepts_text: str = "",
        metavar: str | None = None,
        golden: bool = False,
        cli: bool = True,
        plugin: bool = True,
        cli_flag: str | None = None,
        inverted: bool = False,
        word: str = "",
        plugin_word: str = "",
        preset: bool = False,
        name: str = "",
    ) -> None:
        self.help, self.kind, self.choices = help, kind, choices
        self.aliases = dict(aliases or {})
        self.accepts, self.accepts_text = accepts, accepts_text
        self.metavar, self.golden, self.word = metavar, golden, word
        self.preset = preset  # unset (None) means the --preset's value
        self.plugin_word = plugin_word
        self.cli, self.plugin, self.cli_flag, self.inverted = cli, plugin, cli_flag, inverted
        self.name = name  # the field's name, set by run_options()

    def __repr__(self) -> str:
        return f"Option({self.name!r}, kind={self.kind!r})"

    @property
    def _word(self) -> str:
        return (self.word or self.name).replace("_", "-")

    @property
    def flag(self) -> str:
        """The CLI flag: ``--decode-norm``."""
        return self.cli_flag or f"--{self._word}"

    @property
    def _plugin_word(self) -> str:
        return self.plugin_word.replace("_", "-") or self._word

    @property
    def pytest_flag(self) -> str:
        """The plugin's flag: ``--lens-decode-norm``."""
        return f"--lens-{self._plugin_word}"

    @property
    def ini(self) -> str:
        """The plugin's ini key: ``lens_decode_norm``."""
        return "lens_" + self._plugin_word.replace("-", "_")

    def parse(self, text: Any, base: Path | None = None) -> Any:
        """The field's value for ``text`` as a user typed it (a bool for flags)."""
        if self.kind == "flag":
            return bool(text)
        raw = str(text).strip()
        if self.kind == "unit":
            return _unit(self, raw)
        if self.kind == "specs":
            return tuple(part.strip() for part in raw.split(",") if part.strip())
        if self.kind == "suite":
            from lenscheck.suites import load_suite

            path = Path(raw).expanduser()
            return load_suite(path if path.is_absolute() or base is None else base / path)
        if self.kind == "choice":
            value = self.aliases.get(raw, raw)
            if value not in self.choices and not (self.accepts and self.accepts(value)):
                raise OptionError(self.name, f"expected {self.expected()}, got {raw!r}")
            return value
        return raw

    def expected(self) -> str:
        """What a value must be, for messages: ``one of auto, cuda, mps, cpu or cuda:N``."""
        listed = ", ".join(self.choices)
        return (
            f"one of {listed} or {self.accepts_text}" if self.accepts_text else f"one of {listed}"
        )


def _unit(opt: Option, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise OptionError(opt.name, f"expected a number in [0, 1], got {raw!r}") from None
    if not 0.0 <= value <= 1.0:  # nan too
        raise OptionError(opt.name, f"expected a number in [0, 1], got {raw}")
    return value


def option(default: Any, **spec: Any) -> Any:
    """A :class:`LensConfig` field that is a run option (see :class:`Option`)."""
    return field(default=default, metadata={"option": Option(**spec)})


def _cuda_index(value: str) -> bool:
    return value.startswith("cuda:") and value[5:].isdigit()


@dataclass(frozen=True)
class LensConfig:
    """Every option of a lens run. Validated on construction; use :meth:`evolve` to change."""

    device: str = option(
        "auto",
        kind="choice",
        choices=DEVICES,
        accepts=_cuda_index,
        accepts_text="cuda:N",
        metavar="{auto,cuda,cuda:N,mps,cpu}",
        golden=True,
        help="compute device; auto prefers cuda, then mps, then cpu; an explicit device that "
        "is not available is an error",
    )
    dtype: str = option(
        "auto",
        kind="choice",
        choices=DTYPES,
        aliases=DTYPE_ALIASES,
        metavar="{" + ",".join(DTYPES) + "}",
        golden=True,
        help="compute dtype: auto (cuda fp16, Gemma bf16, mps fp16, cpu fp32) or a dtype "
        "(fp32, fp16, bf16 also accepted)",
    )
    backend: Backend = option(
        "transformers",
        kind="choice",
        choices=BACKENDS,
        golden=True,
        help="model library the lens reads residuals through",
    )
    preset: Preset = option(
        PRESET_STANDARD,
        kind="choice",
        choices=PRESETS,
        golden=True,
        help="whose conventions the defaults follow: standard (the model's own: the final-norm "
        "lens, the tokenizer's own BOS) or original (the original pipeline's: next-ln1, BOS "
        "always; its files byte for byte)",
    )
    decode_norm: DecodePoint = option(
        None,
        kind="choice",
        choices=DECODE_POINTS,
        golden=True,
        preset=True,
        help="where each layer is decoded: final (the final norm at every layer, the standard "
        "logit lens), next-ln1 (the norm the model applies next, the original's rule) or raw "
        "(no norm)",
    )
    bos: BosPolicy = option(
        None,
        kind="choice",
        choices=BOS_POLICIES,
        golden=True,
        preset=True,
        help="whether the prompt's ids start with the tokenizer's BOS: auto (as the tokenizer "
        "itself does for tokenizer(text): the model's own convention), always (TransformerLens' "
        "prepend_bos, the original's) or never",
    )
    schema: Schema = option(
        None,
        kind="choice",
        choices=SCHEMAS,
        golden=True,
        preset=True,
        help="what the files hold: extended (lenscheck's: layer 0, the embeddings, apart from "
        "the collapse rules; the BOS policy and settings recorded) or original (the original "
        "pipeline's columns, JSON keys and collapse rules, byte for byte)",
    )
    chat_template: bool = option(
        False,
        kind="flag",
        golden=True,
        help="read each prompt as a user turn of the tokenizer's chat template, with the "
        "generation prompt appended (instruct models); refused when the tokenizer has none",
    )
    #: The prompts of a whole run (CLI --prompts, pytest --lens-prompts); None: the single
    #: prompt below (the built-in default suite when it is the original's).
    suite: PromptSuite | None = option(
        None,
        kind="suite",
        word="prompts",
        metavar="FILE",
        golden=True,
        help="prompt suite (TOML: [[prompts]] with id, prompt, answer, optional probes); "
        "each prompt writes output-<name>-<prompt id>.*",
    )
    lenses: tuple[str, ...] = option(
        ("logit",),
        kind="specs",
        word="lens",
        plugin_word="lenses",
        metavar="SPEC[,SPEC]",
        golden=True,
        help="the lenses to read, comma-separated: logit (the logit lens at --decode-norm) and "
        "tuned=PATH (a tuned-lens checkpoint folder: config.json and params.pt, as "
        "tuned_lens.TunedLens.save writes them); each writes its own files and golden",
    )
    copy_threshold: float = option(
        DEFAULT_COPY_THRESHOLD,
        kind="unit",
        golden=True,
        help="minimum p(top-1) for copy collapse",
    )
    copy_margin: float = option(
        DEFAULT_COPY_MARGIN,
        kind="unit",
        golden=True,
        help="required p(top-1) - p(top-2) for copy collapse",
    )
    fp32_unembed: bool = option(
        False, kind="flag", golden=True, help="unembed in fp32 whatever the compute dtype"
    )
    trust_remote_code: bool = option(
        False,
        kind="flag",
        help="run the Python code a model repository ships (transformers' trust_remote_code); "
        "off by default: read that code first",
    )
    device_map: str | None = option(
        None,
        metavar="MAP",
        help="accelerate device_map for models larger than one GPU (e.g. auto)",
    )
    keep_residuals: bool = option(
        False,
        kind="flag",
        plugin=False,
        help="also write every layer's residual (safetensors)",
    )
    self_test: bool = option(
        False,
        kind="flag",
        plugin=False,
        help="check norm re-application and last-layer consistency before writing",
    )
    heatmap: bool = option(
        True,
        kind="flag",
        plugin=False,
        cli_flag="--no-heatmap",
        inverted=True,
        help="skip the PNG heatmap",
    )
    # Not options: set by the API and the runner; the schema fixes the top-k sizes.
    prompt: str = CONTEXT_PROMPT
    ground_truth: str = GROUND_TRUTH
    test_prompts: tuple[str, ...] = field(default=TEST_PROMPTS)
    top_k_record: int = TOP_K_RECORD
    top_k_verbose: int = TOP_K_VERBOSE
    seed: int = 316
    model_source: str = "hub"  # embedded, synthetic, local or hub (recorded in diagnostics)
    #: The preset-resolved options the caller set explicitly (the others follow the preset).
    explicit: frozenset[str] = field(default=frozenset(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._resolve_preset()
        check_unit_interval("copy_threshold", self.copy_threshold)
        check_unit_interval("copy_margin", self.copy_margin)
        check_positive_int("top_k_record", self.top_k_record)
        check_positive_int("top_k_verbose", self.top_k_verbose)
        if self.top_k_verbose < 2:
            # The next-token rows' copy rule reads the second probability (p1 - p2 > margin).
            raise ValueError(
                f"top_k_verbose must be >= 2, got {self.top_k_verbose}: the copy-collapse "
                "rule compares the next-token position's top two probabilities"
            )
        if self.top_k_record > self.top_k_verbose:
            raise ValueError(
                f"top_k_record ({self.top_k_record}) must not exceed top_k_verbose "
                f"({self.top_k_verbose})"
            )
        if not self.prompt.strip():
            raise ValueError("prompt is empty; expected the text the lens reads the model on")
        if not self.ground_truth.strip():
            raise ValueError("ground_truth is empty; expected the answer token text, e.g. 'Berlin'")
        self._check_lenses()
        for opt in run_options():
            if opt.kind == "choice":  # aliases become canonical names ("fp16" -> "float16")
                value = getattr(self, opt.name)
                try:
                    object.__setattr__(self, opt.name, opt.parse(value))
                except OptionError:
                    raise ValueError(
                        f"{opt.name} must be {opt.expected()}, got {value!r}"
                    ) from None

    def _check_lenses(self) -> None:
        if isinstance(self.lenses, str) or not isinstance(self.lenses, tuple):
            raise ValueError(
                f"lenses must be a tuple of lens specs, e.g. ('logit', 'tuned=PATH'), "
                f"got {self.lenses!r}"
            )
        if self.lenses != ("logit",):
            # The registry imports the lens kinds: only for a run that asks for another.
            from lenscheck.lenses import parse_lens_specs

            parse_lens_specs(self.lenses)

    def _resolve_preset(self) -> None:
        """Fill each preset-resolved option left unset from the preset; remember the rest."""
        settings = PRESET_SETTINGS.get(self.preset)
        if settings is None:
            raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {self.preset!r}")
        given = frozenset(name for name in settings if getattr(self, name) is not None)
        object.__setattr__(self, "explicit", given)
        for name, value in settings.items():
            if name not in given:
                object.__setattr__(self, name, value)

    def evolve(self, **changes: Any) -> LensConfig:
        """A copy with ``changes`` applied (and validated); options that followed the preset
        follow the new one."""
        for name in PRESET_SETTINGS[PRESET_STANDARD]:
            if name not in changes and name not in self.explicit:
                changes[name] = None
        return replace(self, **changes)

    def settings(self) -> dict[str, Any]:
        """The conventions a golden pins apart from the values: preset and what it resolved."""
        return {
            "preset": self.preset,
            "decode_norm": self.decode_norm,
            "bos": self.bos,
            "schema": self.schema,
            "chat_template": self.chat_template,
        }

    def prompt_suite(self) -> PromptSuite:
        """The suite this configuration runs: ``suite``, else the single prompt above."""
        from lenscheck.suites import DEFAULT_SUITE, PromptCase, PromptSuite

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
        return self.evolve(prompt=prompt, ground_truth=answer, test_prompts=probes, suite=None)


def run_options() -> tuple[Option, ...]:
    """Every run option, in declaration order, each knowing its field's name."""
    return _OPTIONS


def _collect() -> tuple[Option, ...]:
    found = []
    for f in fields(LensConfig):
        opt = f.metadata.get("option")
        if opt is not None:
            opt.name = f.name
            found.append(opt)
    return tuple(found)


_OPTIONS = _collect()
