"""The classic logit-lens picture: layers x positions coloured by entropy.

Drawn with Pillow rather than through a matplotlib figure: pyplot, the layout engine and one
Text artist per cell cost ~0.9 s of a 5 s warm run; Pillow draws the same picture in a few
hundredths of a second, and its bytes do not move with matplotlib releases. matplotlib still
supplies the colormap and the DejaVu Sans font (importing it without pyplot takes ~0.05 s).
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from lenscheck.vocab import FINAL, NEXT_LN1

if TYPE_CHECKING:
    from lenscheck.lens import LensResult

__all__ = ["UNKNOWN_BYTES", "cell_font_size", "render_heatmap_png"]

_MAX_LABEL = 8
_DPI = 110
# The picture is (4 + 0.75 * positions) x (2 + 0.3 * layers) inches: one cell per position and
# layer, plus fixed margins. The fixed parts below add up to 4 in across and 2 in down.
_CELL_W, _CELL_H = 0.75 * _DPI, 0.3 * _DPI
_LEFT, _TOP, _BOTTOM = 75, 60, 160
_CBAR_GAP, _CBAR_W, _CBAR_LABELS, _SIDE_GAP, _SIDE_W = 15, 16, 60, 30, 214
_RIGHT = 4 * _DPI - (_LEFT + _CBAR_GAP + _CBAR_W + _CBAR_LABELS + _SIDE_GAP + _SIDE_W)

WHITE, BLACK, GREY = (255, 255, 255), (0, 0, 0), (90, 90, 90)
BLUE, RED, ORANGE = (31, 119, 180), (214, 39, 40), (255, 127, 14)  # matplotlib's tab: colours


@dataclass(frozen=True)
class _Curve:
    """One p(answer) curve's style. Drawn in this order: the wide final band first, the
    thin next-ln1 line on top, so that where the two agree (most layers) both stay visible:
    a red line inside an orange band."""

    point: str
    colour: tuple[int, int, int]
    width: int
    marker: str  # "square" or "dot"
    radius: int


_CURVES = (_Curve(FINAL, ORANGE, 7, "square", 4), _Curve(NEXT_LN1, RED, 2, "dot", 2))
_DEJAVU = "fonts/ttf/DejaVuSans.ttf"
#: Cell text: as large as the cell height allows while the label fits the cell width, not
#: below the smallest size that still reads (the old fixed size).
_CELL_FONT_MAX, _CELL_FONT_MIN = round(0.45 * _CELL_H), 9
_CELL_PAD = 6
#: A label's stand-in for bytes that are no whole UTF-8 character, when the tokenizer
#: cannot say which bytes they are.
UNKNOWN_BYTES = "\\x??"

TokenBytes = Callable[[int], "bytes | None"]


def _label(text: str, raw: bytes | None = None) -> str:
    """A short, readable label. A token that is a piece of a UTF-8 character (its text
    holds U+FFFD) shows its bytes as escapes, ``\\xe2``, like other unprintable text."""
    if "\ufffd" in text:
        # With the bytes, a genuine U+FFFD (bytes EF BF BD) stays, spelled as its escape.
        text = (
            text.replace("\ufffd", UNKNOWN_BYTES)
            if raw is None
            else raw.decode("utf-8", "backslashreplace").replace("\ufffd", "\\ufffd")
        )
    shown = text.encode("unicode_escape").decode("ascii") if not text.isprintable() else text
    return shown if len(shown) <= _MAX_LABEL else shown[: _MAX_LABEL - 1] + "…"


@functools.cache
def _font(px: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # DejaVu Sans covers Latin, Greek and Cyrillic tokens; glyphs it lacks (CJK, ...) draw as
    # boxes, silently: the CSVs hold the exact text.
    try:
        return ImageFont.truetype(str(Path(matplotlib.get_data_path(), _DEJAVU)), px)
    except OSError:  # a packager stripped matplotlib's fonts: Pillow's own is Latin only
        return ImageFont.load_default(px)


@dataclass(frozen=True)
class _Frame:
    """Pixel geometry: the cell grid, the colorbar and the side panel share rows."""

    n_layers: int
    n_pos: int

    @property
    def size(self) -> tuple[int, int]:
        return round(4 * _DPI + self.n_pos * _CELL_W), round(2 * _DPI + self.n_layers * _CELL_H)

    @property
    def grid_right(self) -> int:
        return self.x(self.n_pos)

    @property
    def grid_bottom(self) -> int:
        return _TOP + round(self.n_layers * _CELL_H)

    def x(self, pos: float) -> int:
        """Left edge of position ``pos`` (fractions: inside the cell)."""
        return _LEFT + round(pos * _CELL_W)

    def y(self, layer: float) -> int:
        """Top edge of layer ``layer``; layer 0 is the bottom row."""
        return _TOP + round((self.n_layers - layer) * _CELL_H)

    @property
    def cbar_left(self) -> int:
        return self.grid_right + _CBAR_GAP

    @property
    def side_left(self) -> int:
        return self.cbar_left + _CBAR_W + _CBAR_LABELS + _SIDE_GAP


def render_heatmap_png(
    result: LensResult, title: str, *, token_bytes: TokenBytes | None = None
) -> bytes:
    """PNG bytes: entropy heatmap with top-1 tokens, plus next-token entropy and p(answer).

    ``token_bytes(id)``: the raw bytes of a token id (a backend's ``token_bytes``), so that
    byte tokens read as ``\\xe2`` rather than U+FFFD; without it they read ``\\x??``.
    """
    ent = result.entropies.cpu().double().numpy()
    frame = _Frame(*ent.shape)
    img = Image.new("RGB", frame.size, WHITE)
    draw = ImageDraw.Draw(img)
    draw.text(
        (_LEFT, 8),
        f"{title}: logit lens, cell = top-1 token, colour = entropy (bits)",
        fill=BLACK,
        font=_font(15),
    )
    lo, hi = float(ent.min()), float(ent.max())
    top1 = _top1_texts(result, frame.n_layers, frame.n_pos, token_bytes)
    _cells(draw, frame, ent, top1, (lo, hi))
    positions = [
        _label(r["token"], _raw(token_bytes, i, r["token"]))
        for r, i in zip(result.records[: frame.n_pos], result.input_ids, strict=False)
    ]
    _grid_axes(img, draw, frame, positions)
    _colorbar(img, draw, frame, (lo, hi))
    _side_panel(img, draw, frame, result)
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=3)  # Pillow writes no timestamp: deterministic
    return buf.getvalue()


def _colours(values: Any, span: tuple[float, float]) -> Any:
    lo, hi = span
    normed = (values - lo) / (hi - lo) if hi > lo else values * 0.0
    return matplotlib.colormaps["viridis_r"](normed, bytes=True)[..., :3]


def _cells(
    draw: Any, frame: _Frame, ent: Any, top1: list[list[str]], span: tuple[float, float]
) -> None:
    rgb = _colours(ent, span)
    dark = span[1] / 2  # white text on the dark (high-entropy) end of viridis_r
    for layer, row in enumerate(top1):
        top, bottom = frame.y(layer + 1), frame.y(layer)
        for pos, text in enumerate(row):
            left, right = frame.x(pos), frame.x(pos + 1)
            draw.rectangle(
                (left, top, right - 1, bottom - 1), fill=tuple(int(c) for c in rgb[layer, pos])
            )
            colour = WHITE if ent[layer, pos] > dark else BLACK
            font = _font(cell_font_size(text))
            draw.text(
                ((left + right) / 2, (top + bottom) / 2), text, fill=colour, font=font, anchor="mm"
            )


@functools.lru_cache(maxsize=4096)
def cell_font_size(label: str) -> int:
    """The largest size (px) at which ``label`` fits a cell, from what the cell height
    allows (0.45 of 33 px: 15 px) down to the minimum; only a wide label gets smaller."""
    width = _CELL_W - _CELL_PAD
    for px in range(_CELL_FONT_MAX, _CELL_FONT_MIN, -1):
        if _font(px).getlength(label) <= width:
            return px
    return _CELL_FONT_MIN


def _grid_axes(img: Any, draw: Any, frame: _Frame, tokens: list[str]) -> None:
    bottom = frame.grid_bottom
    draw.rectangle((_LEFT - 1, _TOP - 1, frame.grid_right, bottom), outline=BLACK)
    for pos, token in enumerate(tokens):
        centre = (frame.x(pos) + frame.x(pos + 1)) // 2
        draw.line((centre, bottom, centre, bottom + 4), fill=BLACK)
        _rotated(img, token, (centre, bottom + 6), 60, _font(11), BLACK, anchor="right-top")
    step = max(1, frame.n_layers // 16)
    for layer in range(0, frame.n_layers, step):
        mid = (frame.y(layer) + frame.y(layer + 1)) // 2
        draw.line((_LEFT - 5, mid, _LEFT - 1, mid), fill=BLACK)
        draw.text((_LEFT - 7, mid), str(layer), fill=BLACK, font=_font(11), anchor="rm")
    mid_x = (_LEFT + frame.grid_right) // 2
    draw.text(
        (mid_x, frame.size[1] - 8),
        "prompt position (input token)",
        fill=BLACK,
        font=_font(13),
        anchor="md",
    )
    _rotated(
        img,
        "layer (0 = embeddings)",
        (8, (_TOP + bottom) // 2),
        90,
        _font(13),
        BLACK,
        anchor="left-middle",
    )


def _colorbar(img: Any, draw: Any, frame: _Frame, span: tuple[float, float]) -> None:
    left, top, bottom = frame.cbar_left, _TOP, frame.grid_bottom
    lo, hi = span
    height = bottom - top
    ramp = _colours(np.linspace(hi, lo, height), span)
    for i, colour in enumerate(ramp):
        draw.line((left, top + i, left + _CBAR_W - 1, top + i), fill=tuple(int(c) for c in colour))
    draw.rectangle((left - 1, top - 1, left + _CBAR_W, bottom), outline=BLACK)
    for tick in _ticks(lo, hi):
        y = bottom - round((tick - lo) / (hi - lo) * height) if hi > lo else bottom
        draw.line((left + _CBAR_W, y, left + _CBAR_W + 4, y), fill=BLACK)
        draw.text(
            (left + _CBAR_W + 7, y), _tick_text(tick), fill=BLACK, font=_font(11), anchor="lm"
        )
    _rotated(
        img,
        "entropy (bits)",
        (left + _CBAR_W + _CBAR_LABELS - 16, (top + bottom) // 2),
        90,
        _font(13),
        BLACK,
        anchor="left-middle",
    )


def _side_panel(img: Any, draw: Any, frame: _Frame, result: LensResult) -> None:
    left, right = frame.side_left, frame.side_left + _SIDE_W
    top, bottom = _TOP, frame.grid_bottom
    draw.rectangle((left, top, right, bottom), outline=BLACK)
    rows = [(frame.y(i) + frame.y(i + 1)) / 2 for i in range(frame.n_layers)]
    entropy = [float(r["entropy"]) for r in result.pure_records]
    e_hi = max(max(entropy, default=0.0), 1e-9) * 1.05
    _xaxis(draw, (left, right), bottom, (0.0, e_hi), _ticks(0.0, e_hi), below=True)
    draw.text(
        ((left + right) // 2, frame.size[1] - 8),
        "next-token entropy (bits)",
        fill=BLUE,
        font=_font(13),
        anchor="md",
    )
    _polyline(draw, _xs(entropy, (left, right), (0.0, e_hi)), rows, BLUE, width=2)
    # p(answer) at both normed decoding points, on a 0..1 axis along the top. Markers and a
    # margin: p(answer) sits at ~0 for most layers, which a bare line would draw on the spine.
    # Where the two curves part, the onset is an artefact of the decoding point.
    p_span = (-0.04, 1.04)
    _xaxis(draw, (left, right), top, p_span, [0.0, 0.5, 1.0], below=False)
    answer = result.json_data["prompt"]["ground_truth"]
    draw.text(
        ((left + right) // 2, top - 22), f"p({answer})", fill=RED, font=_font(13), anchor="md"
    )
    p_answer = result.extras.get("p_answer", {})
    for curve in _CURVES:
        xs = _xs(p_answer.get(curve.point, [0.0] * frame.n_layers), (left, right), p_span)
        _polyline(draw, xs, rows, curve.colour, width=curve.width)
        for x, y in zip(xs, rows, strict=True):
            _marker(draw, curve, x, y)
    _legend(draw, (right - 90, bottom - 52))


def _marker(draw: Any, curve: _Curve, x: float, y: float) -> None:
    box = (x - curve.radius, y - curve.radius, x + curve.radius, y + curve.radius)
    if curve.marker == "square":
        draw.rectangle(box, fill=curve.colour)
    else:
        draw.ellipse(box, fill=curve.colour)


def _legend(draw: Any, at: tuple[int, int]) -> None:
    x, y = at
    draw.rectangle((x, y, x + 84, y + 46), fill=WHITE, outline=GREY)
    draw.text((x + 42, y + 4), "decoded at", fill=BLACK, font=_font(9), anchor="mt")
    for i, curve in enumerate(sorted(_CURVES, key=lambda c: c.point != NEXT_LN1)):
        row = y + 22 + 13 * i
        _polyline(draw, [x + 6.0, x + 30.0], [row, row], curve.colour, width=curve.width)
        _marker(draw, curve, x + 18.0, row)
        draw.text((x + 35, row), curve.point, fill=BLACK, font=_font(9), anchor="lm")


def _xaxis(
    draw: Any,
    xspan: tuple[int, int],
    y: int,
    span: tuple[float, float],
    ticks: list[float],
    *,
    below: bool,
) -> None:
    sign = 1 if below else -1
    for tick, x in zip(ticks, _xs(ticks, xspan, span), strict=True):
        draw.line((x, y, x, y + 4 * sign), fill=BLACK)
        draw.text(
            (x, y + 6 * sign),
            _tick_text(tick),
            fill=BLACK,
            font=_font(11),
            anchor="mt" if below else "mb",
        )


def _xs(values: list[float], xspan: tuple[int, int], span: tuple[float, float]) -> list[float]:
    (left, right), (lo, hi) = xspan, span
    return [left + (float(v) - lo) / (hi - lo) * (right - left) for v in values]


def _polyline(
    draw: Any, xs: list[float], ys: list[float], colour: tuple[int, int, int], *, width: int
) -> None:
    draw.line(list(zip(xs, ys, strict=True)), fill=colour, width=width, joint="curve")


def _rotated(
    img: Any,
    text: str,
    at: tuple[int, int],
    degrees: int,
    font: Any,
    colour: tuple[int, int, int],
    *,
    anchor: str,
) -> None:
    """Draw ``text`` turned ``degrees`` anticlockwise, its ``anchor`` corner at ``at``."""
    left, top, right, bottom = font.getbbox(text)
    patch = Image.new("L", (right - left + 2, bottom - top + 2), 0)
    ImageDraw.Draw(patch).text((1 - left, 1 - top), text, fill=255, font=font)
    mask = patch.rotate(degrees, expand=True, resample=Image.Resampling.BICUBIC)
    w, h = mask.size
    x = {"right": at[0] - w, "left": at[0]}[anchor.split("-")[0]]
    y = {"top": at[1], "middle": at[1] - h // 2}[anchor.split("-")[1]]
    img.paste(Image.new("RGB", mask.size, colour), (x, y), mask)


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values (steps of 1, 2, 2.5 or 5 times a power of ten) covering lo..hi."""
    if not hi > lo:
        return [lo]
    raw = (hi - lo) / n
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _tick_text(value: float) -> str:
    return f"{value:g}"


def _raw(token_bytes: TokenBytes | None, token_id: int, text: str) -> bytes | None:
    """The id's bytes, asked for only where its text hides them (U+FFFD)."""
    return token_bytes(int(token_id)) if token_bytes is not None and "\ufffd" in text else None


def _top1_texts(
    result: LensResult, n_layers: int, n_pos: int, token_bytes: TokenBytes | None = None
) -> list[list[str]]:
    grid = [["" for _ in range(n_pos)] for _ in range(n_layers)]
    ids = result.top1_ids.tolist()
    for rec in result.records:
        layer, pos, text = rec["layer"], rec["pos"], rec["topk"][0][0]
        grid[layer][pos] = _label(text, _raw(token_bytes, ids[layer][pos], text))
    return grid
