"""Contact sheets: a grid of grayscale images with wrapped caption text under each (PIL only)."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        return ImageFont.load_default()


def make_contact_sheet(
    images: Sequence[np.ndarray],
    captions: Sequence[str] | None = None,
    *,
    tile: int = 256,
    columns: int | None = None,
    caption_lines: int = 5,
    title: str | None = None,
) -> Image.Image:
    """Lay out ``H×W`` images in ``[0, 1]`` (any size; each is fitted into ``tile×tile``) with captions.

    Returns a grayscale PIL image. Captions are wrapped to the tile width and cut after ``caption_lines``
    lines with an ellipsis.
    """
    if not images:
        raise ValueError("no images to lay out")
    captions = list(captions) if captions is not None else [""] * len(images)
    columns = columns or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    font_size = max(9, tile // 20)
    font = _font(font_size)
    line_height = font_size + 3
    chars_per_line = max(10, int(tile / (font_size * 0.55)))
    text_height = (line_height * caption_lines + 6) if any(captions) else 0
    title_height = line_height * 2 if title else 0
    gap = 4
    sheet = Image.new("L", (columns * (tile + gap) + gap, title_height + rows * (tile + text_height + gap) + gap), 255)
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((gap, gap), title, fill=0, font=font)
    for index, (array, caption) in enumerate(zip(images, captions)):
        row, column = divmod(index, columns)
        x = gap + column * (tile + gap)
        y = title_height + gap + row * (tile + text_height + gap)
        picture = Image.fromarray(np.round(np.clip(np.asarray(array, dtype=np.float32), 0, 1) * 255).astype(np.uint8), mode="L")
        picture.thumbnail((tile, tile), Image.Resampling.LANCZOS)
        sheet.paste(picture, (x + (tile - picture.width) // 2, y + (tile - picture.height) // 2))
        if caption:
            lines = textwrap.wrap(" ".join(caption.split()), chars_per_line)
            if len(lines) > caption_lines:
                lines = lines[:caption_lines]
                lines[-1] = lines[-1][: chars_per_line - 1] + "…"
            for number, line in enumerate(lines):
                draw.text((x + 2, y + tile + 3 + number * line_height), line, fill=0, font=font)
    return sheet
