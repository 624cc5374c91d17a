"""The lens heatmap: a real PNG whose size follows the grid, with both side-panel curves."""

from __future__ import annotations

import io
import warnings
from typing import Any

import pytest
from _lens_fixtures import embedded_run, make_fake_backend

#: One torch thread for this module (see _lens_fixtures.single_thread).
pytestmark = pytest.mark.usefixtures("torch_single_thread")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TAB_RED = (214, 39, 40)  # p(answer) decoded at next-ln1
TAB_ORANGE = (255, 127, 14)  # p(answer) decoded at final
TAB_BLUE = (31, 119, 180)  # next-token entropy


def _fake_result(n_layers: int, prompt: str) -> Any:
    from lenscheck.config import LensConfig
    from lenscheck.lens import run_lens

    fb = make_fake_backend(n_layers=n_layers)
    return run_lens(fb, LensConfig(prompt=prompt, test_prompts=("The capital",)))


def _image(png: bytes) -> Any:
    from PIL import Image

    img = Image.open(io.BytesIO(png))
    img.load()
    return img.convert("RGB")


def _colour_mask(img: Any, rgb: tuple[int, int, int], tol: int = 12) -> Any:
    import numpy as np

    arr = np.asarray(img).astype(int)
    return np.abs(arr - np.array(rgb)).max(axis=-1) <= tol


def _count_colour(img: Any, rgb: tuple[int, int, int], tol: int = 12) -> int:
    return int(_colour_mask(img, rgb, tol).sum())


def _densest_column(img: Any, rgb: tuple[int, int, int]) -> int:
    """The pixel column holding most of a colour: where a vertical curve is drawn."""
    return int(_colour_mask(img, rgb).sum(axis=0).argmax())


SHORT = "The capital of Germany"
LONG = "Give the city name only, plain text. The capital of Germany is called simply"


def test_render_returns_png_bytes() -> None:
    from lenscheck.plot import render_heatmap_png

    png = render_heatmap_png(_fake_result(3, SHORT), "fake")
    assert isinstance(png, bytes) and png.startswith(PNG_MAGIC)
    img = _image(png)
    assert img.width > 300 and img.height > 200
    # Rendering is deterministic (no timestamp or software metadata in the file).
    assert render_heatmap_png(_fake_result(3, SHORT), "fake") == png


def test_png_grows_with_layers_and_positions() -> None:
    from lenscheck.plot import render_heatmap_png

    small = _image(render_heatmap_png(_fake_result(3, SHORT), "fake"))
    more_layers = _image(render_heatmap_png(_fake_result(12, SHORT), "fake"))
    more_positions = _image(render_heatmap_png(_fake_result(3, LONG), "fake"))
    assert more_layers.height > small.height
    assert more_layers.width == small.width
    assert more_positions.width > small.width
    assert more_positions.height == small.height
    # The figure size is linear in the grid: 0.3 in per layer, 0.75 in per position, 110 dpi.
    assert more_layers.height - small.height == pytest.approx(9 * 0.3 * 110, abs=3)
    assert more_positions.width - small.width == pytest.approx((15 - 5) * 0.75 * 110, abs=3)


def test_side_panel_draws_p_answer_under_next_ln1_and_final() -> None:
    """Two curves: next-ln1 in red, final in orange (dashed), each from its own point's
    p(answer); raw is not drawn. Constant curves are vertical lines at their value."""
    from lenscheck.plot import render_heatmap_png

    result = _fake_result(3, SHORT)
    n = len(result.pure_records)
    assert set(result.extras["p_answer"]) == {"next-ln1", "final", "raw"}
    result.extras["p_answer"] = {"next-ln1": [0.25] * n, "final": [0.75] * n, "raw": [0.5] * n}
    img = _image(render_heatmap_png(result, "fake"))
    assert _count_colour(img, TAB_RED) > 50 and _count_colour(img, TAB_ORANGE) > 50
    red, orange = _densest_column(img, TAB_RED), _densest_column(img, TAB_ORANGE)
    assert img.width * 0.5 < red < orange  # in the side panel, 0.25 left of 0.75
    result.extras["p_answer"] = {"next-ln1": [0.75] * n, "final": [0.25] * n, "raw": [0.5] * n}
    swapped = _image(render_heatmap_png(result, "fake"))
    assert abs(_densest_column(swapped, TAB_RED) - orange) <= 2
    assert abs(_densest_column(swapped, TAB_ORANGE) - red) <= 2


def test_labels_escape_and_truncate() -> None:
    from lenscheck.plot import _label

    assert _label(" Berlin") == " Berlin"
    assert _label("\n") == "\\n"
    assert _label("\x0b") == "\\x0b"
    assert _label("abcdefghijk") == "abcdefg…"
    assert len(_label("<|im_start|>")) == 8


def test_byte_tokens_read_as_their_bytes_not_u_fffd() -> None:
    """A token that is a piece of a UTF-8 character decodes to U+FFFD; its label shows the
    bytes as escapes, like other unprintable text, or \\x?? when nobody knows them."""
    from lenscheck.plot import UNKNOWN_BYTES, _label

    assert _label("\ufffd", b"\xe2") == "\\xe2"
    assert _label(" \ufffd", b" \xe2\x80") == " \\xe2\\x…"  # 9 characters: cut to 8
    assert _label("\ufffd", b"\xe7\x90") == "\\xe7\\x90"
    assert _label("a\ufffd", b"a\xff") == "a\\xff"
    assert UNKNOWN_BYTES == "\\x??" and _label("\ufffd") == "\\x??"
    assert _label("\ufffd", b"\xef\xbf\xbd") == "\\ufffd"  # U+FFFD itself: whole UTF-8
    assert _label(" Berlin", b"ignored") == " Berlin"  # bytes only where the text hides them


class _Drawn:
    """Every text drawn on the picture, with its font size (ImageDraw.text, recorded)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from PIL import ImageDraw

        self.texts: list[tuple[str, int]] = []
        self.cells: list[tuple[str, int]] = []  # centred on a point: the grid's cells only
        real = ImageDraw.ImageDraw.text

        def text(draw: Any, xy: Any, text: str, *args: Any, **kwargs: Any) -> Any:
            drawn = (text, int(getattr(kwargs.get("font"), "size", 0)))
            self.texts.append(drawn)
            if kwargs.get("anchor") == "mm":
                self.cells.append(drawn)
            return real(draw, xy, text, *args, **kwargs)

        monkeypatch.setattr(ImageDraw.ImageDraw, "text", text)


def test_the_heatmap_labels_byte_tokens_by_their_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    from lenscheck.plot import render_heatmap_png

    result = _fake_result(3, SHORT)
    cells = [r for r in result.records if r["layer"] == 1]
    for r in cells:  # every top-1 of layer 1 is now a lone UTF-8 lead byte
        r["topk"][0] = ("\ufffd", r["topk"][0][1])
    asked: list[int] = []

    def token_bytes(token_id: int) -> bytes:
        asked.append(token_id)
        return bytes([0xE0 + token_id % 16])

    drawn = _Drawn(monkeypatch)
    render_heatmap_png(result, "fake", token_bytes=token_bytes)
    texts = [t for t, _ in drawn.texts]
    assert not any("\ufffd" in t for t in texts)
    ids = result.top1_ids[1].tolist()
    assert sorted(asked) == sorted(ids)  # asked only for the hidden ones
    for token_id in ids:
        assert f"\\x{0xE0 + token_id % 16:02x}" in texts
    drawn.texts.clear()
    render_heatmap_png(result, "fake")  # no tokenizer to ask: a stand-in, still not U+FFFD
    assert [t for t, _ in drawn.texts].count("\\x??") == len(cells)


def test_cell_text_scales_with_the_cell() -> None:
    """15 px (0.45 of the 33 px cell height) for every label that fits the 82 px cell, as
    the embedded model's do; a label too wide for that shrinks alone, never below 9 px."""
    from lenscheck.plot import _CELL_H, _CELL_W, _font, cell_font_size

    assert (_CELL_W, _CELL_H) == (82.5, 33.0)
    for label in ("dismant…", "reponame", "\\xe7\\x90", " Berlin", "a", "firehose"):
        assert cell_font_size(label) == 15, label
    wide = "WWWWWWW…"
    assert 9 <= cell_font_size(wide) < 15
    assert _font(cell_font_size("mmmmmmm…")).getlength("mmmmmmm…") <= _CELL_W - 6


def test_p_answer_curves_both_show_where_they_coincide() -> None:
    """Decoded at next-ln1 and at final, p(answer) mostly agrees: the final curve is a wide
    orange band under a thin red next-ln1 line, so both colours stay on screen there."""
    import numpy as np

    from lenscheck.plot import _Frame, render_heatmap_png

    result = _fake_result(3, SHORT)
    n = len(result.pure_records)
    result.extras["p_answer"] = {"next-ln1": [0.5] * n, "final": [0.5] * n, "raw": [0.0] * n}
    img = _image(render_heatmap_png(result, "fake"))
    frame = _Frame(*result.entropies.shape)
    panel = img.crop((frame.side_left + 2, frame.y(n) + 2, frame.side_left + 212, frame.y(0) - 2))
    red, orange = _colour_mask(panel, TAB_RED), _colour_mask(panel, TAB_ORANGE)
    assert red.sum() > 2 * (frame.y(0) - frame.y(n)) * 0.8  # a 2 px line down the panel
    assert orange.sum() > red.sum()
    column = int(red.sum(axis=0).argmax())
    assert abs(column - int(orange.sum(axis=0).argmax())) <= 2  # one place: p = 0.5
    rows = np.nonzero(red[:, column])[0]
    for y in rows[:: max(1, len(rows) // 10)]:  # orange beside the red line, both sides
        assert orange[y, column - 4 : column - 1].any() and orange[y, column + 2 : column + 5].any()


@pytest.mark.slow
def test_embedded_heatmap(tmp_path: Any) -> None:
    """The shared embedded run's picture: size for 31 x 17, both side-panel curves drawn,
    and no font warning escapes to the user (a CJK top-1 appears at layer 8)."""
    from lenscheck.plot import render_heatmap_png

    run = embedded_run("transformers")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        png = render_heatmap_png(run.result, run.resolved.name)
    assert png.startswith(PNG_MAGIC)
    (tmp_path / "lens.png").write_bytes(png)
    img = _image(png)
    # figsize (4 + 0.75 * positions, 2 + 0.3 * layers) inches at 110 dpi: 1842.5 x 1243.
    assert img.width == pytest.approx((4 + 0.75 * 17) * 110, abs=1)
    assert img.height == pytest.approx((2 + 0.3 * 31) * 110, abs=1)
    assert _count_colour(img, TAB_RED) > 100
    assert _count_colour(img, TAB_ORANGE) > 100
    assert _count_colour(img, TAB_BLUE) > 100
    p = run.result.extras["p_answer"]
    ablation = run.result.diagnostics["decoding_ablation"]
    for point in ("next-ln1", "final"):
        assert len(p[point]) == 31 and p[point] == ablation[point]["p_answer"]
    # " Berlin" is the top-1 of the last layer only; both points decode that layer through
    # the final norm, so they agree there.
    top1_p = run.result.pure_records[30]["topk"][0][1]
    assert max(p["next-ln1"][:30]) < 0.01 and p["next-ln1"][30] == pytest.approx(top1_p, rel=1e-5)
    assert p["final"][30] == pytest.approx(top1_p, rel=1e-5)


@pytest.mark.slow
def test_embedded_heatmap_labels(monkeypatch: pytest.MonkeyPatch) -> None:
    """The embedded model's grid as `lenscheck run` draws it (the backend's token_bytes):
    its byte tokens (top-1 at layers 2-8) read as escapes, none as U+FFFD, and every cell
    label is drawn at 15 px (was 9)."""
    from lenscheck.plot import _top1_texts, render_heatmap_png

    run = embedded_run("transformers")
    result = run.result
    hidden = [r for r in result.records if "\ufffd" in r["topk"][0][0]]
    assert len(hidden) >= 10  # the picture has them: the test is not vacuous
    drawn = _Drawn(monkeypatch)
    render_heatmap_png(result, run.resolved.name, token_bytes=run.backend.token_bytes)
    grid = _top1_texts(result, 31, 17, run.backend.token_bytes)
    assert not any("\ufffd" in t for t, _ in drawn.texts)
    assert [t for t, _ in drawn.cells] == [t for row in grid for t in row]
    assert "\\xe7\\x90" in {t for t, _ in drawn.cells}
    assert {size for _, size in drawn.cells} == {15}


def test_cells_are_coloured_by_their_own_entropy() -> None:
    """Each cell's fill is viridis_r at its entropy scaled to the grid's range: the most
    uncertain cell is the dark end, the most certain the yellow end, and no cell is shifted
    by a row or a column (layer 0 is the bottom row)."""
    import matplotlib
    import numpy as np

    from lenscheck.plot import _Frame, render_heatmap_png

    result = _fake_result(3, SHORT)
    ent = result.entropies.double().numpy()
    img = np.asarray(_image(render_heatmap_png(result, "fake"))).astype(int)
    frame = _Frame(*ent.shape)
    lo, hi = ent.min(), ent.max()
    for layer in range(ent.shape[0]):
        for pos in range(ent.shape[1]):
            # A corner pixel of the cell: the centre holds the top-1 token's text.
            x, y = frame.x(pos) + 3, frame.y(layer + 1) + 3
            want = matplotlib.colormaps["viridis_r"]((ent[layer, pos] - lo) / (hi - lo), bytes=True)
            assert np.abs(img[y, x] - np.array(want[:3])).max() <= 1, (layer, pos)


def test_rendering_imports_neither_pyplot_nor_a_layout_engine() -> None:
    """The picture is drawn with Pillow: pyplot and the figure machinery were most of a warm
    run's time. A fresh interpreter renders without importing them."""
    import subprocess
    import sys
    from pathlib import Path

    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from test_plot import _fake_result, SHORT\n"
        "from lenscheck.plot import render_heatmap_png\n"
        "render_heatmap_png(_fake_result(3, SHORT), 'fake')\n"
        "print(sorted(m for m in ('matplotlib.pyplot', 'matplotlib.figure') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
