"""Contact sheets of real and generated images for training-time grids and the demo (sampling itself is
:class:`~diffcxr.pipelines.DiffCXRPipeline`'s)."""

from __future__ import annotations

import torch

__all__ = ["save_grid", "impression"]


def save_grid(images: torch.Tensor, captions: list[str], path, tile: int = 128, columns: int | None = None,
              title: str | None = None) -> None:
    """Images in [-1, 1] with captions → a contact sheet PNG."""
    from diffcxr.data.contact_sheet import make_contact_sheet

    import numpy as np
    from PIL import Image

    tiles = []
    for im in images:  # upscale small images to the tile (the contact sheet only shrinks)
        a = np.round(((im[0].float() + 1) / 2).clamp(0, 1).numpy() * 255).astype(np.uint8)
        tiles.append(np.asarray(Image.fromarray(a, "L").resize((tile, tile), Image.Resampling.BICUBIC),
                                dtype=np.float32) / 255)
    make_contact_sheet(tiles, captions, tile=tile, columns=columns, caption_lines=6, title=title).save(path)


def impression(report: str) -> str:
    """The IMPRESSION part of a report (the whole text when it has none), whitespace-normalised."""
    text = " ".join(report.split())
    return text[text.index("IMPRESSION:"):] if "IMPRESSION:" in text else text
