"""TransformerLens-style residual hooks: attach, cache detached tensors, always detach."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["attach_residual_hooks", "build_cache_hook", "detach_hooks"]


def build_cache_hook(cache_dict: dict[str, Any]) -> Callable[[Any, Any], None]:
    """A hook that stores ``tensor.detach()`` under ``hook.name`` and leaves the value alone."""

    def cache_residual_hook(tensor: Any, hook: Any) -> None:
        cache_dict[hook.name] = tensor.detach()

    return cache_residual_hook


def attach_residual_hooks(
    model: Any, cache_hook: Callable[[Any, Any], None]
) -> tuple[list[Any], bool]:
    """Attach ``cache_hook`` to the embeddings, positional embeddings (when the model
    has them) and every block's ``hook_resid_post``.

    Returns ``(handles, has_pos_embed)`` as the original pipeline did: the handles to
    pass to :func:`detach_hooks`, and whether ``hook_pos_embed`` was hooked (so the
    caller knows whether layer 0 is ``hook_embed + hook_pos_embed`` or ``hook_embed``).
    If attaching fails half way, the hooks already attached are removed first.
    """
    has_pos_embed = "hook_pos_embed" in model.hook_dict
    names = ["hook_embed"]
    if has_pos_embed:
        names.append("hook_pos_embed")
    names += [f"blocks.{i}.hook_resid_post" for i in range(model.cfg.n_layers)]
    handles: list[Any] = []
    try:
        for name in names:
            handles.append(model.hook_dict[name].add_hook(cache_hook))
    except BaseException:
        detach_hooks(handles)
        raise
    return handles, has_pos_embed


def detach_hooks(handles: Iterable[Any]) -> None:
    """Remove every handle (``None`` entries are skipped); the list is emptied if mutable."""
    errors: list[BaseException] = []
    for handle in list(handles):
        if handle is None:
            continue
        try:
            # torch handles have .remove(); TransformerLens' LensHandle wraps one in .hook
            remove = getattr(handle, "remove", None) or handle.hook.remove
            remove()
        except Exception as exc:  # keep removing the others; report after
            errors.append(exc)
    if isinstance(handles, list):
        handles.clear()
    if errors:
        raise RuntimeError(f"{len(errors)} hook(s) failed to detach: {errors[0]!r}") from errors[0]
