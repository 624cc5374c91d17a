"""Residual hooks (lenscheck.backends.hooks, public from lenscheck): attach, cache, clean up."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from lenscheck.backends.hooks import attach_residual_hooks, build_cache_hook, detach_hooks

Hook = Callable[[Any, Any], Any]


class FakeHandle:
    def __init__(self, point: FakeHookPoint, fn: Hook) -> None:
        self.point, self.fn, self.removed = point, fn, False

    def remove(self) -> None:
        self.point.hooks.remove(self.fn)
        self.removed = True


class FakeHookPoint:
    """TransformerLens-style hook point: add_hook(fn) -> handle; fn(tensor, hook)."""

    def __init__(self, name: str, fail: bool = False) -> None:
        self.name, self.fail = name, fail
        self.hooks: list[Hook] = []

    def add_hook(self, fn: Hook) -> FakeHandle:
        if self.fail:
            raise RuntimeError(f"cannot hook {self.name}")
        self.hooks.append(fn)
        return FakeHandle(self, fn)

    def fire(self, tensor: torch.Tensor) -> torch.Tensor:
        for fn in list(self.hooks):
            out = fn(tensor, self)
            if out is not None:
                tensor = out
        return tensor


def fake_model(n_layers: int, pos_embed: bool, fail_at: str | None = None) -> Any:
    names = ["hook_embed"] + (["hook_pos_embed"] if pos_embed else [])
    for i in range(n_layers):
        names += [
            f"blocks.{i}.hook_resid_pre",
            f"blocks.{i}.hook_resid_mid",
            f"blocks.{i}.hook_resid_post",
            f"blocks.{i}.attn.hook_z",
            f"blocks.{i}.ln1.hook_normalized",
        ]
    names.append("ln_final.hook_normalized")
    hook_dict = {n: FakeHookPoint(n, fail=n == fail_at) for n in names}
    return SimpleNamespace(hook_dict=hook_dict, cfg=SimpleNamespace(n_layers=n_layers))


def intended(n_layers: int, pos_embed: bool) -> list[str]:
    return (
        ["hook_embed"]
        + (["hook_pos_embed"] if pos_embed else [])
        + [f"blocks.{i}.hook_resid_post" for i in range(n_layers)]
    )


def hooked(model: Any) -> dict[str, int]:
    return {n: len(p.hooks) for n, p in model.hook_dict.items() if p.hooks}


@pytest.mark.parametrize("pos_embed", [True, False])
@pytest.mark.parametrize("n_layers", [1, 3])
def test_only_intended_hooks_attached(n_layers: int, pos_embed: bool) -> None:
    model = fake_model(n_layers, pos_embed)
    cache: dict[str, Any] = {}
    handles, has_pos_embed = attach_residual_hooks(model, build_cache_hook(cache))
    want = intended(n_layers, pos_embed)
    assert has_pos_embed is pos_embed
    assert hooked(model) == dict.fromkeys(want, 1)
    assert len(handles) == len(want)
    assert [h.point.name for h in handles] == want


def test_cached_tensors_are_detached_and_keyed_by_hook_name() -> None:
    model = fake_model(2, pos_embed=True)
    cache: dict[str, Any] = {}
    handles, _ = attach_residual_hooks(model, build_cache_hook(cache))
    x = torch.randn(1, 4, 8, requires_grad=True)
    for i, name in enumerate(intended(2, True)):
        activation = x * (i + 1)  # part of an autograd graph
        returned = model.hook_dict[name].fire(activation)
        assert returned is activation  # the hook observes, never replaces
        cached = cache[name]
        assert cached.requires_grad is False and cached.grad_fn is None
        assert activation.requires_grad is True  # the model's own tensor is untouched
        assert torch.equal(cached, activation.detach())
        assert cached.data_ptr() == activation.data_ptr()  # a view, not a copy
    assert sorted(cache) == sorted(intended(2, True))
    model.hook_dict["blocks.0.hook_resid_mid"].fire(x)  # not hooked: nothing cached
    assert "blocks.0.hook_resid_mid" not in cache
    detach_hooks(handles)


def test_cleanup_removes_every_hook() -> None:
    model = fake_model(3, pos_embed=True)
    cache: dict[str, Any] = {}
    handles, _ = attach_residual_hooks(model, build_cache_hook(cache))
    detach_hooks(handles)
    assert hooked(model) == {}
    assert handles == []  # the list is emptied
    model.hook_dict["hook_embed"].fire(torch.ones(2))
    assert cache == {}


@pytest.mark.parametrize("pos_embed", [True, False])
def test_returns_handles_and_has_pos_embed_as_the_original(pos_embed: bool) -> None:
    """The original returned ``(handles, has_pos_embed)``; its callers unpack two values.

    With 1 layer and no positional embedding a bare list would have held exactly two
    handles and unpacked without error into the wrong names: pin the type, not the length.
    """
    model = fake_model(1, pos_embed)
    result = attach_residual_hooks(model, build_cache_hook({}))
    assert type(result) is tuple and len(result) == 2
    handles, has_pos_embed = result
    assert isinstance(handles, list) and type(has_pos_embed) is bool
    assert has_pos_embed is pos_embed
    assert len(handles) == 2 + pos_embed
    detach_hooks(handles)
    assert hooked(model) == {}


@pytest.mark.parametrize(
    "fail_at", ["hook_pos_embed", "blocks.1.hook_resid_post", "blocks.2.hook_resid_post"]
)
def test_failure_midway_removes_already_attached_hooks(fail_at: str) -> None:
    model = fake_model(3, pos_embed=True, fail_at=fail_at)
    with pytest.raises(RuntimeError, match=f"cannot hook {fail_at}"):
        attach_residual_hooks(model, build_cache_hook({}))
    assert hooked(model) == {}


def test_detach_hooks_handles_none_tuples_and_lens_handles() -> None:
    point = FakeHookPoint("p")
    plain = point.add_hook(lambda t, h: None)
    lens_style = SimpleNamespace(hook=point.add_hook(lambda t, h: None))  # LensHandle-like
    handles = (None, plain, lens_style)
    detach_hooks(handles)
    assert point.hooks == []
    assert plain.removed and lens_style.hook.removed


def test_detach_hooks_removes_the_rest_then_reports_failures() -> None:
    point = FakeHookPoint("p")
    good1, good2 = point.add_hook(lambda t, h: None), point.add_hook(lambda t, h: 1)

    class Broken:
        def remove(self) -> None:
            raise OSError("gone")

    handles: list[Any] = [good1, Broken(), good2]
    with pytest.raises(RuntimeError, match="1 hook\\(s\\) failed to detach") as info:
        detach_hooks(handles)
    assert isinstance(info.value.__cause__, OSError)
    assert point.hooks == [] and good1.removed and good2.removed
    assert handles == []


def test_build_cache_hook_overwrites_by_name() -> None:
    cache: dict[str, Any] = {}
    hook = build_cache_hook(cache)
    point = SimpleNamespace(name="blocks.0.hook_resid_post")
    assert hook(torch.zeros(2), point) is None
    hook(torch.ones(2), point)
    assert list(cache) == ["blocks.0.hook_resid_post"]
    assert cache["blocks.0.hook_resid_post"].tolist() == [1.0, 1.0]


def test_real_transformer_lens_hook_points() -> None:
    hook_points = pytest.importorskip("transformer_lens.hook_points")
    points = {}
    for name in [
        "hook_embed",
        "blocks.0.hook_resid_post",
        "blocks.1.hook_resid_post",
        "blocks.0.hook_resid_pre",
    ]:
        hp = hook_points.HookPoint()
        hp.name = name
        points[name] = hp
    model = SimpleNamespace(hook_dict=points, cfg=SimpleNamespace(n_layers=2))
    cache: dict[str, Any] = {}
    handles, has_pos_embed = attach_residual_hooks(model, build_cache_hook(cache))
    assert len(handles) == 3 and has_pos_embed is False
    x = torch.randn(3, requires_grad=True)
    for hp in points.values():
        out = hp(x * 2)
        assert out.requires_grad
    assert sorted(cache) == ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post", "hook_embed"]
    assert all(not t.requires_grad and torch.equal(t, (x * 2).detach()) for t in cache.values())
    detach_hooks(handles)
    assert all(len(hp._forward_hooks) == 0 for hp in points.values())
    cache.clear()
    points["hook_embed"](x)
    assert cache == {}
