"""The classic logit-lens picture: layers x positions coloured by entropy."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lenscheck.lens import LensResult

__all__ = ["render_heatmap_png"]

_MAX_LABEL = 8


def _label(text: str) -> str:
    shown = text.encode("unicode_escape").decode("ascii") if not text.isprintable() else text
    return shown if len(shown) <= _MAX_LABEL else shown[: _MAX_LABEL - 1] + "…"


def render_heatmap_png(result: LensResult, title: str) -> bytes:
    """PNG bytes: entropy heatmap with top-1 tokens, plus next-token entropy and p(answer)."""
    import io
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    ent = result.entropies.cpu().numpy()
    n_layers, n_pos = ent.shape
    top1 = _top1_texts(result, n_layers, n_pos)
    fig, (ax, side) = plt.subplots(
        1,
        2,
        figsize=(4 + 0.75 * n_pos, 2 + 0.3 * n_layers),
        gridspec_kw={"width_ratios": [max(n_pos, 4), 4]},
        constrained_layout=True,
    )
    mesh = ax.imshow(ent, aspect="auto", origin="lower", cmap="viridis_r")
    labels = [_label(r["token"]) for r in result.records[:n_pos]]
    ax.set_xticks(range(n_pos), labels, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(0, n_layers, max(1, n_layers // 16)))
    ax.set_xlabel("prompt position (input token)")
    ax.set_ylabel("layer (0 = embeddings)")
    ax.set_title(f"{title}: logit lens, cell = top-1 token, colour = entropy (bits)")
    fig.colorbar(mesh, ax=ax, label="entropy (bits)", shrink=0.8)
    _side_panel(side, result, n_layers)
    # Lay the figure out before the hundreds of cell labels exist, then drop the engine
    # (None, not "none": a placeholder engine still costs savefig a layout draw pass). The
    # labels sit inside the image and cannot move the layout; measuring them twice was a
    # third of the rendering time.
    fig.draw_without_rendering()
    fig.set_layout_engine(None)
    _cell_labels(ax, ent, top1)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # Tokens from scripts DejaVu Sans lacks (CJK, ...) draw as boxes; one warning per
        # glyph on stderr helps nobody reading the CSVs, which hold the exact text.
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from font")
        fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def _cell_labels(ax: Any, ent: Any, top1: list[list[str]]) -> None:
    # RGBA tuples, not colour names: matplotlib parses a name again for every label.
    white, black = (1.0, 1.0, 1.0, 1.0), (0.0, 0.0, 0.0, 1.0)
    dark = ent.max() / 2
    for layer, row in enumerate(top1):
        for pos, text in enumerate(row):
            color = white if ent[layer, pos] > dark else black
            ax.text(pos, layer, text, ha="center", va="center", fontsize=6, color=color)


def _top1_texts(result: LensResult, n_layers: int, n_pos: int) -> list[list[str]]:
    grid = [["" for _ in range(n_pos)] for _ in range(n_layers)]
    for rec in result.records:
        grid[rec["layer"]][rec["pos"]] = _label(rec["topk"][0][0])
    return grid


def _side_panel(ax: Any, result: LensResult, n_layers: int) -> None:
    layers = list(range(n_layers))
    ax.plot([r["entropy"] for r in result.pure_records], layers, color="tab:blue")
    ax.set_xlabel("next-token entropy (bits)", color="tab:blue")
    ax.set_ylim(-0.5, n_layers - 0.5)
    ax.set_yticks([])
    twin = ax.twiny()
    # Markers and a margin: p(answer) sits at ~0 for most layers, which a bare line would
    # draw exactly on the axis spine, where it cannot be told from "not plotted". Both normed
    # decoding points: where they part, the onset is an artefact of the decoding point.
    p_answer = result.extras.get("p_answer", {})
    for point, color, style in (("next-ln1", "tab:red", "-"), ("final", "tab:orange", "--")):
        twin.plot(
            p_answer.get(point, [0.0] * n_layers),
            layers,
            color=color,
            linestyle=style,
            marker="o",
            markersize=2.5,
            label=point,
        )
    twin.set_xlim(-0.04, 1.04)
    twin.set_xlabel(f"p({result.json_data['prompt']['ground_truth']})", color="tab:red")
    twin.legend(loc="lower right", fontsize=6, title="decoded at", title_fontsize=6)
