"""The tuned lens (Belrose et al. 2023): a learned affine translator per layer, then the
model's final norm and unembedding.

Read from a folder as tuned-lens 0.2.0's ``TunedLens.save`` writes it, without importing
tuned-lens: ``config.json`` (``TunedLensConfig.to_dict``: base_model_name_or_path, d_model,
num_hidden_layers, bias, base_model_revision, unembed_hash, lens_type) and ``params.pt``
(``torch.save`` of the translators' ``ModuleList.state_dict()``: ``"{i}.weight"`` [d, d] and
``"{i}.bias"`` [d] for i < num_hidden_layers). Applied as tuned-lens defines it
(``TunedLens.transform_hidden`` and ``Unembed.forward``): layer i < L (the embeddings are
layer 0) decodes ``unembed(final_norm(h + W_i h + b_i))``; the last layer has no translator
and decodes as the model does, ``unembed(final_norm(h))`` (tuned-lens uses the model's own
logits there). The final norm is the one in front of the unembedding (``final`` decoding
point, :func:`lenscheck.norms.final_norm_module`); translators run in fp32 and their output
is cast back to the residual's dtype before the norm, as the model's own final norm sees it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lenscheck.lenses.base import Lens, LensSpecError
from lenscheck.norms import apply_norm_or_skip, final_norm_module

if TYPE_CHECKING:
    import torch

    from lenscheck.backends.base import LensBackend
    from lenscheck.config import LensConfig

__all__ = [
    "CONFIG_FILE",
    "LENS_TYPE",
    "PARAMS_FILE",
    "TunedCheckpoint",
    "TunedLens",
    "read_checkpoint",
    "same_model",
    "unembed_hash",
]

log = logging.getLogger(__name__)
CONFIG_FILE, PARAMS_FILE = "config.json", "params.pt"
#: The only lens type tuned-lens 0.2.0 writes (TunedLensConfig.lens_type).
LENS_TYPE = "linear_tuned_lens"
_REQUIRED = {"base_model_name_or_path": str, "d_model": int, "num_hidden_layers": int}
_OPTIONAL: dict[str, tuple[type | tuple[type, ...], object]] = {
    "bias": (bool, True),
    "base_model_revision": ((str, type(None)), None),
    "unembed_hash": ((str, type(None)), None),
    "lens_type": (str, LENS_TYPE),
}
_MAKE_ONE = (
    "a tuned-lens checkpoint folder holds config.json and params.pt, as "
    "tuned_lens.TunedLens.save(path) writes them"
)


@dataclass(frozen=True)
class TunedCheckpoint:
    """A tuned-lens folder, read and checked on its own (no model yet)."""

    path: Path
    config: dict[str, Any]  # every TunedLensConfig field, defaults filled in
    weights: torch.Tensor  # [L, d, d]: translator i's weight (nn.Linear layout), as saved
    biases: torch.Tensor | None  # [L, d]; None without bias
    digest: str  # sha256 of the translators' names, dtypes, shapes and values

    @property
    def d_model(self) -> int:
        return int(self.config["d_model"])

    @property
    def num_layers(self) -> int:
        return int(self.config["num_hidden_layers"])


def _refuse(path: Path, what: str) -> LensSpecError:
    return LensSpecError(f"tuned lens {str(path)!r}: {what}")


def _read_config(path: Path) -> dict[str, Any]:
    file = path / CONFIG_FILE
    if not file.is_file():
        raise _refuse(path, f"no {CONFIG_FILE} in the folder; {_MAKE_ONE}")
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _refuse(path, f"{CONFIG_FILE} is not readable JSON ({exc}); {_MAKE_ONE}") from None
    if not isinstance(raw, dict):
        raise _refuse(path, f"{CONFIG_FILE} holds {type(raw).__name__}, expected an object")
    return _check_config(path, raw)


def _check_config(path: Path, raw: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for key, kind in _REQUIRED.items():
        value = raw.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise _refuse(path, f"{CONFIG_FILE} needs {key} ({kind.__name__}), got {value!r}")
        config[key] = value
    for key, (kinds, default) in _OPTIONAL.items():
        value = raw.get(key, default)
        if not isinstance(value, kinds):
            raise _refuse(path, f"{CONFIG_FILE}: {key} must be {kinds}, got {value!r}")
        config[key] = value
    for key in ("d_model", "num_hidden_layers"):
        if config[key] < 1:
            raise _refuse(path, f"{CONFIG_FILE}: {key} must be >= 1, got {config[key]}")
    if config["lens_type"] != LENS_TYPE:
        raise _refuse(
            path,
            f"lens_type is {config['lens_type']!r}; lenscheck reads tuned-lens' "
            f"{LENS_TYPE!r} (per-layer affine translators) only",
        )
    for key in sorted(set(raw) - set(config)):
        # tuned-lens' TunedLensConfig.from_dict drops unknown keys with a warning too.
        log.warning("tuned lens %s: ignoring config key %r", path, key)
    return config


def _load_params(path: Path) -> Any:
    import torch

    file = path / PARAMS_FILE
    if not file.is_file():
        raise _refuse(path, f"no {PARAMS_FILE} in the folder; {_MAKE_ONE}")
    try:
        # weights_only: a checkpoint from elsewhere is data, never code to run.
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a damaged archive
        raise _refuse(
            path,
            f"{PARAMS_FILE} is not a readable torch state dict ({type(exc).__name__}: "
            f"{exc}); {_MAKE_ONE}",
        ) from None


def _check_tensor(path: Path, state: Any, key: str, shape: tuple[int, ...]) -> torch.Tensor:
    import torch

    tensor = state.get(key)
    if not isinstance(tensor, torch.Tensor):
        raise _refuse(path, f"{PARAMS_FILE} has no tensor {key!r}")
    if tuple(tensor.shape) != shape or not torch.is_floating_point(tensor):
        raise _refuse(
            path,
            f"{PARAMS_FILE}[{key!r}] is {tensor.dtype} {tuple(tensor.shape)}, expected a "
            f"float tensor of shape {shape} (d_model and num_hidden_layers from {CONFIG_FILE})",
        )
    if not bool(torch.isfinite(tensor).all()):
        raise _refuse(path, f"{PARAMS_FILE}[{key!r}] holds NaN or inf")
    return tensor


def _translators(
    path: Path, config: dict[str, Any], state: Any
) -> tuple[torch.Tensor, torch.Tensor | None]:
    import torch

    if not isinstance(state, dict):
        raise _refuse(path, f"{PARAMS_FILE} holds {type(state).__name__}, expected a state dict")
    n, d, bias = config["num_hidden_layers"], config["d_model"], config["bias"]
    expected = {f"{i}.weight" for i in range(n)}
    if bias:
        expected |= {f"{i}.bias" for i in range(n)}
    found = set(state)
    if found != expected:
        extra, missing = sorted(map(str, found - expected)), sorted(expected - found)
        raise _refuse(
            path,
            f"{PARAMS_FILE} does not match {CONFIG_FILE} (num_hidden_layers {n}, bias {bias}): "
            f"missing {missing[:4]}{'...' if len(missing) > 4 else ''}, unexpected "
            f"{extra[:4]}{'...' if len(extra) > 4 else ''}",
        )
    weights = torch.stack([_check_tensor(path, state, f"{i}.weight", (d, d)) for i in range(n)])
    if not bias:
        return weights, None
    return weights, torch.stack([_check_tensor(path, state, f"{i}.bias", (d,)) for i in range(n)])


def _digest(state: dict[str, torch.Tensor]) -> str:
    """Of the values, not the file: a torch.save archive's bytes also depend on the torch
    version that wrote it and on the file name it was saved under (its folder inside the
    zip), so the same translators saved twice need not give the same file."""
    import torch

    sha = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        sha.update(f"{key}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        sha.update(tensor.view(-1).view(torch.uint8).numpy().tobytes())
    return sha.hexdigest()


def read_checkpoint(folder: str | Path) -> TunedCheckpoint:
    """Read and check a tuned-lens folder; :class:`LensSpecError` names what is wrong."""
    path = Path(folder).expanduser()
    if not path.is_dir():
        what = "is a file" if path.exists() else "does not exist"
        raise _refuse(path, f"the folder {what}; {_MAKE_ONE}")
    config = _read_config(path)
    state = _load_params(path)
    weights, biases = _translators(path, config, state)
    return TunedCheckpoint(path, config, weights, biases, _digest(state))


def _model_name(name: str) -> str:
    return name.strip().rstrip("/\\").replace("\\", "/").split("/")[-1].lower()


def same_model(recorded: str, model_id: str) -> bool:
    """Whether a lens recorded for ``recorded`` fits ``model_id``: the same id, or the same
    name after the last ``/`` (a hub id and its local copy; ``gpt2`` and
    ``openai-community/gpt2``), case aside."""
    return recorded == model_id or _model_name(recorded) == _model_name(model_id)


def unembed_hash(weight: torch.Tensor) -> str:
    """tuned-lens' ``Unembed.unembedding_hash`` of an unembedding weight [V, d]."""
    import numpy as np

    array = weight.detach().cpu().float().numpy()
    return hashlib.sha256(str.encode(np.array_str(array, precision=1))).hexdigest()


def _misfit(ckpt: TunedCheckpoint, backend: LensBackend) -> str | None:
    facts, model = backend.facts, backend.model_id
    recorded = ckpt.config["base_model_name_or_path"]
    if ckpt.d_model != facts.d_model:
        return (
            f"its translators are for d_model {ckpt.d_model}, {model} has d_model {facts.d_model}"
        )
    if ckpt.num_layers != facts.num_layers:
        return (
            f"it has translators for {ckpt.num_layers} layers, {model} has {facts.num_layers} "
            "blocks (tuned-lens makes one translator per block)"
        )
    if not same_model(recorded, model):
        return (
            f"it was tuned for {recorded!r}, this run reads {model!r}. If it is the same model "
            f"under another name, set base_model_name_or_path in {ckpt.path / CONFIG_FILE} to "
            f"{model!r}"
        )
    return None


class TunedLens(Lens):
    """tuned-lens' ``TunedLens`` read from a checkpoint folder, bound to a model."""

    kind = "tuned"
    argument = "PATH"

    def __init__(self, backend: LensBackend, checkpoint: TunedCheckpoint) -> None:
        import torch

        super().__init__(backend)
        problem = _misfit(checkpoint, backend)
        if problem is not None:
            raise LensSpecError(
                f"tuned lens {str(checkpoint.path)!r} does not fit {backend.model_id}: {problem}; "
                "pass --lens tuned=PATH with a lens tuned for this model"
            )
        self.checkpoint = checkpoint
        self._final = final_norm_module(backend.stack)
        # fp32, beside the unembedding (no copy for fp32 translators on the CPU). _wt holds
        # each W_i^T as a view, so baddbmm(b, h, wt) = h @ W_i^T + b is nn.Linear's product.
        device = backend.unembed.weight.device
        self._wt = checkpoint.weights.to(device, torch.float32).transpose(1, 2)
        biases = checkpoint.biases
        self._bias = None if biases is None else biases.to(device, torch.float32)[:, None]
        self._check_unembed_hash()

    @classmethod
    def open(cls, arg: str | None) -> TunedCheckpoint:
        return read_checkpoint(str(arg))

    @classmethod
    def bind(cls, backend: LensBackend, cfg: LensConfig, arg: str | None, opened: Any) -> TunedLens:
        return cls(backend, opened if opened is not None else cls.open(arg))

    def _check_unembed_hash(self) -> None:
        recorded = self.checkpoint.config["unembed_hash"]
        weight = self.backend.unembed.weight
        if recorded is None or not _is_float(weight):
            return
        if unembed_hash(weight) != recorded:
            # tuned-lens warns (and goes on) too: the hash rounds to 0.1 and is meant to
            # catch a different model, which the shape and name checks above refuse.
            log.warning(
                "tuned lens %s: the unembedding's hash differs from the one it was tuned "
                "with (tuned-lens' unembed_hash); it may come from another checkpoint",
                self.checkpoint.path,
            )

    @property
    def where(self) -> str:
        return f"tuned lens {self.checkpoint.path}"

    def facts(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "config": dict(self.checkpoint.config),
            "translators_sha256": self.checkpoint.digest,
            "final_norm": None if self._final is None else type(self._final).__name__,
        }

    def _translate(self, layers: slice, h: torch.Tensor) -> torch.Tensor:
        """``h + W h + b`` for stacked layers ``h`` [n, rows, d], in fp32, then cast back."""
        import torch

        h32 = h.float()
        wt = self._wt[layers].to(h32.device)
        if self._bias is None:
            delta = torch.bmm(h32, wt)
        else:
            delta = torch.baddbmm(self._bias[layers].to(h32.device), h32, wt)
        return (h32 + delta).to(h.dtype)

    def prepare_layer(self, layer: int, residual: torch.Tensor) -> torch.Tensor:
        n = self.checkpoint.num_layers
        if not 0 <= layer <= n:
            raise IndexError(f"layer {layer} out of range for {n + 1} lens layers")
        if layer < n:
            rows = residual.reshape(1, -1, residual.shape[-1])
            residual = self._translate(slice(layer, layer + 1), rows)[0].reshape(residual.shape)
        return apply_norm_or_skip(residual, self._final)

    def prepare(self, residuals: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.prepare_batch([residuals])

    def prepare_batch(self, prompts: Sequence[Sequence[torch.Tensor]]) -> torch.Tensor:
        import torch

        # One batched matmul per layer over every prompt's positions: [L+1, N, d].
        h = torch.cat([torch.stack(list(p)) for p in prompts], dim=1)
        translated = self._translate(slice(None), h[:-1])
        rows = [apply_norm_or_skip(t, self._final) for t in translated.unbind(0)]
        rows.append(apply_norm_or_skip(h[-1], self._final))
        return torch.stack(rows)


def _is_float(weight: torch.Tensor) -> bool:
    import torch

    return bool(torch.is_floating_point(weight))
