"""``--self-test``: it passes on faithful lenses, names each failed check, and a failure
stops the run before any file is written."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from _lens_fixtures import make_fake_backend

#: One torch thread for this module (see _lens_fixtures.single_thread).
pytestmark = pytest.mark.usefixtures("torch_single_thread")


def _lens(fb: Any) -> Any:
    from lenscheck.config import LensConfig
    from lenscheck.lens import run_lens

    return run_lens(fb, LensConfig(keep_residuals=True, test_prompts=("The capital",)))


def test_tolerances_per_dtype() -> None:
    import torch

    from lenscheck.selftest import kl_tolerance_bits

    assert kl_tolerance_bits(torch.float32) == kl_tolerance_bits(torch.float64) == 5e-6
    assert kl_tolerance_bits(torch.float16) == kl_tolerance_bits(torch.bfloat16) == 1e-2


@pytest.mark.parametrize("norm", ["layernorm", "rmsnorm"])
def test_self_test_passes_on_a_faithful_lens(norm: str) -> None:
    from lenscheck.selftest import run_self_test

    fb = make_fake_backend(norm=norm)
    result = _lens(fb)
    assert result.residuals is not None and len(result.residuals) == 4
    run_self_test(fb, result, result.residuals)  # no exception


def _shifted_layernorm(base: Any) -> Any:
    """Looks like torch.nn.LayerNorm to the lens (a subclass), but its forward shifts."""
    import torch

    class ShiftedLayerNorm(torch.nn.LayerNorm):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x) + 5.0 * torch.linspace(-1, 1, x.shape[-1])

    mod = ShiftedLayerNorm(base.normalized_shape, eps=base.eps)
    mod.load_state_dict(base.state_dict())
    return mod.requires_grad_(False)


def test_self_test_catches_a_norm_whose_forward_the_lens_does_not_reproduce() -> None:
    from lenscheck.selftest import SelfTestError, run_self_test

    fb = make_fake_backend(norm="layernorm")
    fb.stack.ln_final = _shifted_layernorm(fb.stack.ln_final)
    result = _lens(fb)
    with pytest.raises(SelfTestError) as exc:
        run_self_test(fb, result, result.residuals)
    message = str(exc.value)
    assert "self-test failed for fake/pre_norm-layernorm" in message
    assert "no files were written" in message
    assert "normalization scaling at layer 3" in message  # the last lens layer only
    assert "layer 0" not in message and "layer 2:" not in message
    # The model's own forward went through the shifted norm: last-layer consistency fails too.
    assert "last-layer consistency: KL(model || lens)" in message


def test_self_test_reports_top1_disagreement() -> None:
    from lenscheck.selftest import SelfTestError, run_self_test

    fb = make_fake_backend()
    result = _lens(fb)
    result.json_data["diagnostics"]["last_layer_consistency"]["top1_agree"] = False
    with pytest.raises(SelfTestError, match="the lens' top-1 differs from the model's"):
        run_self_test(fb, result, result.residuals)


def test_cli_self_test_failure_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import lenscheck.selftest
    from lenscheck.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(lenscheck.selftest, "kl_tolerance_bits", lambda dtype: -1.0)
    out = tmp_path / "out"
    code = main(["run", "synthetic-llama", "--device", "cpu", "--out-dir", str(out), "--self-test"])
    assert code == 2
    errors = "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
    assert "self-test failed for synthetic-llama" in errors
    assert "allowed < -1" in errors
    assert out.is_dir()  # checked writable up front...
    assert sorted(p.name for p in out.iterdir()) == []  # ...but nothing written, no parts
